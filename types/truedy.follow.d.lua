---@meta truedy.follow
-- LuaLS annotations for `require "truedy.follow"` (lua/truedy/follow.lua), also reachable as
-- `truedy.follow`.
error("types/truedy.follow.d.lua: LuaLS annotations for editors, not code (README, Editor support)", 2)

---Options of the blocking `truedy.follow(client, call_id, options)` (unknown names raise).
---@class truedy.FollowOptions
---@field wait_timeout? number the whole wait, seconds (default 300); then `call, false`
---@field interval? number seconds between reads (default 2)
---@field sleep? fun(seconds: number) how to wait (default `ngx.sleep` in nginx, else `truedy.sleep`)
---@field on_change? fun(call: truedy.Call) runs on every new status
local FollowOptions = {}

---Older spelling of `wait_timeout` (still accepted; not both).
---@deprecated
---@type number?
FollowOptions.timeout = nil

---Options of `truedy.follow.start` (unknown names raise; no `sleep`: it waits on the engine).
---@class truedy.FollowStartOptions
---@field wait_timeout? number the whole wait, seconds (default 300)
---@field interval? number seconds between reads (default 2)
---@field on_change? fun(call: truedy.Call) runs on every new status
---@field on_done? fun(call: truedy.Call|nil, finished_or_err: boolean|truedy.Error, f: truedy.Follower) `call, true` (ended), `call, false` (wait_timeout passed) or `nil, err`; runs from `client:poll()`
local FollowStartOptions = {}

---Older spelling of `wait_timeout` (still accepted; not both).
---@deprecated
---@type number?
FollowStartOptions.timeout = nil

---Reads a call until it reaches a terminal status: `call, true`; `call, false` when
---`wait_timeout` passed first (`call` is the last state seen); `nil, err` when a read failed.
---@class truedy.follow
---@overload fun(client: truedy.Client|truedy.resty.Client, call_id: string, options?: truedy.FollowOptions): truedy.Call|nil, boolean|truedy.Error
local follow = {}

---The non-blocking form: reads the call every `interval` seconds on the client's engine
---(driven by `client:poll()`), until it ends.
---@param client truedy.Client
---@param call_id string
---@param options? truedy.FollowStartOptions
---@return truedy.Follower f
function follow.start(client, call_id, options) end

---What `truedy.follow.start` returns: the methods of a handle.
---@class truedy.Follower
local Follower = {}

---`true` once finished.
---@return boolean
function Follower:done() end

---@return truedy.HandleState
function Follower:state() end

---`call, finished` or `nil, err`; raises if not done yet.
---@return truedy.Call|nil call
---@return boolean|truedy.Error finished_or_err
function Follower:result() end

---Drives the client until done, then the result; nothing when `timeout` seconds passed first.
---@param timeout? number
---@return truedy.Call|nil call
---@return boolean|truedy.Error finished_or_err
function Follower:wait(timeout) end

---Stops following (the call itself goes on): `true`, or `false` when already done. The result
---becomes a `cancelled` error.
---@return boolean
function Follower:cancel() end

---Internal: ends the follow once the client was closed under it.
---@private
function Follower:settle() end

---Internal: records the result and runs `on_done`.
---@private
---@param res truedy.Call|nil
---@param second boolean|truedy.Error
function Follower:finish(res, second) end

return follow
