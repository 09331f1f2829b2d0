-- truedy.batch: place many calls with bounded concurrency, results in input order.
--
--   -- blocking: drives the client until every row has its result
--   local results = client:create_calls(rows, { concurrency = 4, batch_id = "spring-2026" })
--   for i, r in ipairs(results) do print(i, r.res and r.res.data.id or tostring(r.err)) end
--   -- non-blocking, on the client's engine (driven by client:poll)
--   local b = client:start_calls(rows, { on_result = function(i, res, err, b) ... end })
--   while not b:done() do client:poll(0); draw_frame() end
--
-- A row is a table of create_call parameters, or { params = ..., idempotency_key = ... }.
-- Every row gets exactly one result, { res = envelope } or { err = error }: a bad row is
-- refused (kind "invalid_params", nothing sent) without stopping the others.
--
-- Built on the engine's handles (client:start_call with on_done and delay), so everything
-- the batch does runs from client:poll(), never from inside libcurl.  Retries, backoff and
-- the client's 429 pause are the engine's.
local truedy = require "truedy"

local batch = {}

local known_options = { concurrency = true, per_minute = true, on_result = true,
                        on_progress = true, batch_id = true }

local MAX_KEY = 255 -- the engine's limit for an idempotency key

-- How the engine words a request its client's 429 pause stopped (csrc/run.c).
local PAUSED = " (not sent: the client is paused until the rate limit resets, longer than retry_max_wait)"

local function type_phrase(value)
  if value == nil then return "nil" end
  return "a " .. type(value)
end

-- rows: an array 1..n.  A hole would make #rows ambiguous and drop rows silently.
local function count_rows(fname, rows)
  if type(rows) ~= "table" then
    error(("%s: rows must be a table (an array of rows), got %s"):format(fname, type_phrase(rows)), 4)
  end
  local n, count = #rows, 0
  for k in pairs(rows) do
    if type(k) ~= "number" or k < 1 or k > n or k ~= math.floor(k) then
      error(("%s: rows must be an array (keys 1 to n, no holes), found key %s")
        :format(fname, type(k) == "string" and ("'" .. k .. "'") or tostring(k)), 4)
    end
    count = count + 1
  end
  if count ~= n then
    error(("%s: rows must be an array (keys 1 to n, no holes)"):format(fname), 4)
  end
  return n
end

local function read_options(fname, options, total)
  if options == nil then options = {} end
  if type(options) ~= "table" then
    error(("%s: options must be a table, got %s"):format(fname, type_phrase(options)), 4)
  end
  for name in pairs(options) do
    if type(name) ~= "string" then error(fname .. ": option names must be strings", 4) end
    if not known_options[name] then error(("%s: unknown option '%s'"):format(fname, name), 4) end
  end
  local o = {}
  local c = options.concurrency
  if c == nil then
    o.concurrency = 4
  elseif type(c) ~= "number" or c ~= math.floor(c) or c < 1 or c == math.huge then
    error(("%s: option 'concurrency' must be a whole number, 1 or more"):format(fname), 4)
  else
    o.concurrency = c
  end
  local pace = options.per_minute
  if pace ~= nil then
    if type(pace) ~= "number" or pace ~= pace or pace <= 0 or pace == math.huge then
      error(("%s: option 'per_minute' must be a number greater than 0"):format(fname), 4)
    end
    o.interval = 60 / pace
  end
  for _, name in ipairs { "on_result", "on_progress" } do
    local fn = options[name]
    if fn ~= nil and type(fn) ~= "function" then
      error(("%s: option '%s' must be a function, got %s"):format(fname, name, type_phrase(fn)), 4)
    end
    o[name] = fn
  end
  local id = options.batch_id
  if id ~= nil then
    if type(id) ~= "string" or id == "" then
      error(("%s: option 'batch_id' must be a non-empty string, got %s"):format(fname, type_phrase(id)), 4)
    end
    if id:find("[^\33-\126]") then
      error(("%s: option 'batch_id' must be printable ASCII without spaces (its keys travel in an"
        .. " HTTP header)"):format(fname), 4)
    end
    local longest = MAX_KEY - #(":" .. total)
    if #id > longest then
      error(("%s: option 'batch_id' is too long: at most %d characters for %d rows (a row's key is"
        .. " batch_id:index, at most %d characters)"):format(fname, longest, total, MAX_KEY), 4)
    end
    o.batch_id = id
  end
  return o
end

local function invalid(field, message)
  return truedy.restore_error { kind = "invalid_params", field = field, message = message,
                                retryable = false, attempts = 0 }
end

-- The parameters and the caller's own key of a row, or nil, an invalid_params error.
local function read_row(row)
  if type(row) ~= "table" then
    return nil, nil, invalid("row", "must be a table of create_call parameters, or"
      .. " { params = ..., idempotency_key = ... }, got " .. type_phrase(row))
  end
  if rawget(row, "params") == nil then
    -- a key among the parameters would be sent as a call field, not as the key: refuse it
    if rawget(row, "idempotency_key") ~= nil then
      return nil, nil, invalid("idempotency_key", "goes beside the parameters, not among them:"
        .. " { params = { ... }, idempotency_key = ... }")
    end
    return row
  end
  for name in pairs(row) do
    if name ~= "params" and name ~= "idempotency_key" then
      return nil, nil, invalid(tostring(name), "is not a field of a row { params = ...,"
        .. " idempotency_key = ... } (call parameters go inside params)")
    end
  end
  local params = rawget(row, "params")
  if type(params) ~= "table" then
    return nil, nil, invalid("params", "must be a table of create_call parameters, got "
      .. type_phrase(params))
  end
  return params, rawget(row, "idempotency_key")
end

local function is_closed(client)
  return client:stats().closed
end

-- The error of a row that never got a request: like the engine's own for a handle
-- stopped before sending (csrc/run.c, td_push_stopped).
local function not_sent(why, key)
  return truedy.restore_error { kind = "cancelled", retryable = true, attempts = 0, maybe_sent = false,
    idempotency_key = key,
    message = why .. " before the request was sent: nothing reached the server" }
end

local Batch = {}
Batch.__index = Batch

-- ---- bookkeeping ------------------------------------------------------------------------

local function has_callbacks(b)
  return b.on_result ~= nil or b.on_progress ~= nil
end

-- The rows whose callbacks are due, in finishing order: b.ready[b.ready_next..].  Read
-- from the front by index (table.remove(t, 1) would make a large batch quadratic).
local function due(b)
  return #b.ready - b.ready_next + 1
end

local function drop_due(b)
  b.ready, b.ready_next = {}, 1
end

-- Records row i's result once (a cancelled row's handle still reports later: ignored).
local function finish_row(b, i, res, err)
  if b.outcomes[i] then return end
  b.outcomes[i] = { res = res, err = err }
  b.finished = b.finished + 1
  if has_callbacks(b) then
    b.ready[#b.ready + 1] = i
  end
end

-- A copy of the 429 that paused the client, for a row it stopped (the engine gives the
-- requests it stops the same): attempts and key are the row's own.
local function paused_error(b, left, attempts, key)
  local copy = {}
  for k, v in pairs(b.pause_error) do copy[k] = v end
  if type(copy.details) == "table" then
    local details = {}
    for k, v in pairs(copy.details) do details[k] = v end
    copy.details = details
  end
  local message = type(copy.message) == "string" and copy.message or "Rate limit exceeded"
  if not message:find(PAUSED, 1, true) then message = message .. PAUSED end
  copy.message = message
  copy.attempts = attempts
  copy.retry_after = left
  copy.retryable = true
  copy.idempotency_key = key
  return truedy.restore_error(copy)
end

local function row_key(b, i, own)
  if own ~= nil then return own end
  if b.batch_id then return b.batch_id .. ":" .. i end
  return nil
end

-- A 429 whose wait is beyond retry_max_wait: the engine holds every new attempt of the
-- client until then.  It stops the requests that were queued or between attempts when the
-- pause began, but not those queued after (csrc/engine.c checks only then): a row this
-- batch started meanwhile (another row's on_done ran before this one's) would wait the whole
-- pause.  Those get the 429 now, like the engine's, and no new row starts until it ends.
local function note_pause(b, err)
  if type(err) ~= "table" or err.kind ~= "api" or err.status ~= 429 then return end
  local wait = err.retry_after
  if type(wait) ~= "number" or wait <= b.max_wait then return end
  local pause_end = truedy.now() + wait
  if not b.paused_until or pause_end > b.paused_until then
    b.paused_until, b.pause_error = pause_end, err
  end
  for i, h in pairs(b.handles) do
    local state = h:state()
    if state == "queued" or state == "waiting" then
      b.handles[i] = nil
      b.active = b.active - 1
      h:cancel()
      local _, stopped = h:result()
      local key = stopped.idempotency_key
      if stopped.attempts == 0 and not stopped.maybe_sent then
        local _, own = read_row(b.rows[i])
        key = row_key(b, i, own) -- not sent: the key it would have had
      end
      finish_row(b, i, nil, paused_error(b, b.paused_until - truedy.now(), stopped.attempts, key))
    end
  end
end

local start_rows, flush -- each calls the other through the rows' callbacks

-- Runs flush from the client's next poll or wait.  The engine runs a cancelled handle's
-- on_done there; this handle is a read queued an hour ahead and cancelled at once, so it is
-- never sent.  (Used only when the batch must report results outside of poll: rows
-- refused at start, cancel(), a callback that raised.)
local function defer_flush(b)
  if b.deferred or is_closed(b.client) then return end
  local h = b.client:start_get_call("truedy-batch-wakeup", { delay = 3600, on_done = function()
    b.deferred = nil
    flush(b)
  end })
  b.deferred = h
  h:cancel()
end

local function start_row(b, i)
  local params, own, err = read_row(b.rows[i])
  if not params then return finish_row(b, i, nil, err) end
  local key = row_key(b, i, own)
  if b.paused_until then
    local left = b.paused_until - truedy.now()
    if left > b.max_wait then return finish_row(b, i, nil, paused_error(b, left, 0, key)) end
  end
  local now = truedy.now()
  local at = now
  if b.next_slot and b.next_slot > now then at = b.next_slot end
  local h
  h, err = b.client:start_call(params, {
    idempotency_key = key,
    delay = at > now and at - now or nil,
    on_done = function(res, e, handle)
      if b.handles[i] == handle then
        b.handles[i] = nil
        b.active = b.active - 1
        finish_row(b, i, res, e)
        note_pause(b, e)
        start_rows(b)
      end
      flush(b)
    end,
  })
  if not h then return finish_row(b, i, nil, err) end -- refused: nothing sent
  b.handles[i] = h
  b.active = b.active + 1
  if b.interval then b.next_slot = at + b.interval end
end

-- Fills the free slots with the next rows.
start_rows = function(b)
  while not b.stopped and b.active < b.concurrency and b.next_row <= b.total do
    local i = b.next_row
    b.next_row = i + 1
    start_row(b, i)
  end
end

-- Runs the callbacks of finished rows, in the order they finished.  Nested calls (a
-- callback that polls) leave the work to the loop already running.  A callback that raises
-- is not lost: the error goes up unchanged (client:poll re-raises it) and the rest of the
-- queue runs at the next poll.
flush = function(b)
  if b.flushing or not has_callbacks(b) then return end
  b.flushing = true
  local ok, err = true, nil
  while due(b) > 0 and not b.callbacks_off do
    if is_closed(b.client) then break end
    local i = b.ready[b.ready_next]
    b.ready_next = b.ready_next + 1
    if due(b) == 0 then drop_due(b) end
    b.reported = b.reported + 1
    local r = b.outcomes[i]
    if b.on_result then ok, err = pcall(b.on_result, i, r.res, r.err, b) end
    if ok and b.on_progress then ok, err = pcall(b.on_progress, b.reported, b.total) end
    if not ok then break end
  end
  b.flushing = false
  if not ok then
    if due(b) > 0 then defer_flush(b) end
    error(err, 0)
  end
end

-- After client:close(): every row without a result gets the engine's "closed" error; the
-- callbacks still queued are dropped, as the engine drops queued on_done callbacks.
local function settle_if_closed(b)
  if b.finished == b.total and due(b) == 0 then return end
  if not is_closed(b.client) then return end
  b.stopped = true
  for i, h in pairs(b.handles) do
    b.handles[i] = nil
    finish_row(b, i, h:result())
  end
  b.active = 0
  for i = b.next_row, b.total do
    local _, own = read_row(b.rows[i])
    finish_row(b, i, nil, not_sent("the client was closed", row_key(b, i, own)))
  end
  b.next_row = b.total + 1
  drop_due(b)
end

-- ---- the batch object ----------------------------------------------------------------------

-- b:done() -> true once every row has its result and its callbacks ran.
function Batch:done()
  settle_if_closed(self)
  return self.finished == self.total and due(self) == 0
end

-- b:progress() -> rows finished, rows in all
function Batch:progress()
  settle_if_closed(self)
  return self.finished, self.total
end

-- b:results() -> { { res = ..., err = ... }, ... } in input order; raises when not done.
function Batch:results()
  if not self:done() then
    error("truedy: the batch is not finished yet (b:done() is false; drive it with client:poll()"
      .. " or b:wait())", 2)
  end
  local out = {}
  for i = 1, self.total do out[i] = self.outcomes[i] end
  return out
end

-- b:wait([timeout]) -> results; nothing when timeout seconds passed first (the batch goes on).
function Batch:wait(timeout)
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout or timeout < 0) then
    error("bad argument #1 to 'wait' (timeout must be a number of seconds, 0 or more)", 2)
  end
  if self.flushing then
    error("truedy: b:wait() from the batch's own on_result/on_progress would wait for itself", 2)
  end
  local deadline = timeout and truedy.now() + timeout
  while not self:done() do
    local left = deadline and deadline - truedy.now() or 3600
    if left <= 0 then return end
    self.client:poll(math.min(left, 3600))
    if not self:done() and not is_closed(self.client) and self.client:timeout() == nil then
      -- every unfinished row is in the engine or has a flush queued: cannot happen
      error("truedy: internal error: the batch waits, but nothing is in flight", 2)
    end
  end
  return self:results()
end

-- b:cancel() -> true, or false when the batch had already finished.  Rows in flight get the
-- engine's cancelled error (it says whether the request may have reached the server, with
-- the idempotency key); rows not started get one that says nothing was sent.  Their
-- callbacks run at the next client:poll() or b:wait(), as a handle's on_done does.
function Batch:cancel()
  settle_if_closed(self)
  if self.finished == self.total then return false end
  self.stopped = true
  for i = 1, self.total do
    local h = self.handles[i]
    if h then
      self.handles[i] = nil
      h:cancel()
      finish_row(self, i, h:result())
    end
  end
  self.active = 0
  for i = self.next_row, self.total do
    local _, own = read_row(self.rows[i])
    finish_row(self, i, nil, not_sent("cancelled", row_key(self, i, own)))
  end
  self.next_row = self.total + 1
  if self.callbacks_off then
    drop_due(self)
  elseif due(self) > 0 and not self.flushing then
    defer_flush(self)
  end
  return true
end

function Batch:__tostring()
  return ("truedy.batch: %d of %d rows finished"):format(self.finished, self.total)
end

-- ---- entry points -----------------------------------------------------------------------

local function new_batch(fname, client, rows, options)
  local total = count_rows(fname, rows)
  local o = read_options(fname, options, total)
  -- the array as it is now: rows are read when they start, and row i must stay row i
  local snapshot = {}
  for i = 1, total do snapshot[i] = rows[i] end
  local b = setmetatable({
    client = client, rows = snapshot, total = total,
    concurrency = o.concurrency, interval = o.interval, batch_id = o.batch_id,
    on_result = o.on_result, on_progress = o.on_progress,
    max_wait = client:config().retry_max_wait, -- also raises on a closed client
    outcomes = {}, finished = 0, reported = 0, ready = {}, ready_next = 1,
    handles = {}, active = 0, next_row = 1,
  }, Batch)
  start_rows(b)
  -- rows refused at once are reported from the next poll, never from inside start_calls
  if due(b) > 0 then defer_flush(b) end
  return b
end

-- batch.start_calls(client, rows [, options]) -> b   (client:start_calls(rows [, options]))
function batch.start_calls(client, rows, options)
  return new_batch("start_calls", client, rows, options)
end

-- batch.create_calls(client, rows [, options]) -> results   (client:create_calls(...))
-- When a callback raises, the rows not finished are cancelled and the error goes up.
function batch.create_calls(client, rows, options)
  local b = new_batch("create_calls", client, rows, options)
  local ok, results = pcall(b.wait, b)
  if not ok then
    b.callbacks_off = true
    b:cancel()
    error(results, 0)
  end
  return results
end

return batch
