---@meta truedy.pager
-- LuaLS annotations for `require "truedy.pager"` (lua/truedy/pager.lua): the functions behind
-- `client:each_call` and `client:start_each_call`, and the pager object.
error("types/truedy.pager.d.lua: LuaLS annotations for editors, not code (README, Editor support)", 2)

---Options of `start_each_call`: `list_calls`' options and these (unknown names raise).
---@class truedy.PagerOptions: truedy.ListOptions
---@field on_call? fun(call: truedy.Call, p: truedy.Pager) once per call
---@field on_page? fun(calls: truedy.Call[], page: truedy.ListEnvelope, p: truedy.Pager) once per page: its new calls, and its envelope
---@field on_done? fun(count: integer|nil, err: truedy.Error|nil, p: truedy.Pager) the number of calls given, or `nil, err`
---@field delay? number seconds before the first page

---@class truedy.pager
local pager = {}

---`client:each_call([filters [, options]])`.
---@param client truedy.Client
---@param filters? truedy.ListFilters
---@param options? truedy.ListOptions
---@return fun(): truedy.Call? iterator
function pager.each_call(client, filters, options) end

---`client:start_each_call([filters [, options]])`.
---@param client truedy.Client
---@param filters? truedy.ListFilters
---@param options truedy.PagerOptions
---@return truedy.Pager? p
---@return truedy.Error? err
function pager.start_each_call(client, filters, options) end

---A listing in progress (`client:start_each_call`): the methods of a handle. Pages come one
---after the other on the client's engine; the callbacks run from `client:poll()` / `p:wait()`.
---@class truedy.Pager
local Pager = {}

---`true` once finished.
---@return boolean
function Pager:done() end

---@return truedy.HandleState
function Pager:state() end

---The number of calls given, or `nil, err` (`err.offset`: where the failed page started);
---raises if not done yet.
---@return integer? count
---@return truedy.Error? err
function Pager:result() end

---Drives the client until done, then the result; nothing when `timeout` seconds passed first.
---@param timeout? number
---@return integer? count
---@return truedy.Error? err
function Pager:wait(timeout) end

---Stops the listing: `true`, or `false` when already finished. The result becomes a
---`cancelled` error at once; `on_done` runs at the next poll or wait.
---@return boolean
function Pager:cancel() end

return pager
