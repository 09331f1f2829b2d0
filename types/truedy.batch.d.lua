---@meta truedy.batch
-- LuaLS annotations for `require "truedy.batch"` (lua/truedy/batch.lua): the functions behind
-- `client:create_calls` and `client:start_calls`, and the batch object.
error("types/truedy.batch.d.lua: LuaLS annotations for editors, not code (README, Editor support)", 2)

---A row of a batch: `create_call` parameters, or `{ params = ..., idempotency_key = ... }` for a
---row with its own key.
---@alias truedy.BatchRow truedy.CreateParams|truedy.BatchKeyedRow

---A row with its own idempotency key.
---@class truedy.BatchKeyedRow
---@field params truedy.CreateParams
---@field idempotency_key? string

---One row's result: `{ res = envelope }` or `{ err = error }`.
---@class truedy.BatchResult
---@field res? truedy.CallEnvelope
---@field err? truedy.Error

---Options of `create_calls` / `start_calls` (unknown names raise).
---@class truedy.BatchOptions
---@field concurrency? integer rows in flight at once (default 4; 1 or more)
---@field per_minute? number a pace: first attempts at least `60 / per_minute` seconds apart
---@field batch_id? string rows without their own key get `batch_id .. ":" .. i`, so a rerun replays instead of dialing
---@field on_result? fun(i: integer, res: truedy.CallEnvelope|nil, err: truedy.Error|nil, b: truedy.Batch) once per row, in the order rows finish
---@field on_progress? fun(done: integer, total: integer) after each `on_result`

---@class truedy.batch
local batch = {}

---`client:create_calls(rows [, options])`.
---@param client truedy.Client
---@param rows truedy.BatchRow[]
---@param options? truedy.BatchOptions
---@return truedy.BatchResult[] results
function batch.create_calls(client, rows, options) end

---`client:start_calls(rows [, options])`.
---@param client truedy.Client
---@param rows truedy.BatchRow[]
---@param options? truedy.BatchOptions
---@return truedy.Batch b
function batch.start_calls(client, rows, options) end

---A batch in progress (`client:start_calls`), driven by `client:poll()` or `b:wait()`.
---@class truedy.Batch
local Batch = {}

---`true` once every row has its result and its callbacks ran.
---@return boolean
function Batch:done() end

---Rows with a result so far, rows in all.
---@return integer finished
---@return integer total
function Batch:progress() end

---The results, as `create_calls` returns them; raises while `b:done()` is false.
---@return truedy.BatchResult[]
function Batch:results() end

---Drives the client until done, then the results; nothing when `timeout` seconds passed
---first (the batch goes on).
---@param timeout? number
---@return truedy.BatchResult[]? results
function Batch:wait(timeout) end

---Stops the batch: rows in flight get the engine's `cancelled` error, rows not started one
---that says nothing was sent. `true`, or `false` when it had finished already.
---@return boolean
function Batch:cancel() end

return batch
