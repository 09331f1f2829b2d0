-- truedy.follow: read a call until it ends.
--
--   local truedy = require "truedy"
--   -- blocking: sleeps between reads
--   local call, finished = truedy.follow(client, call_id, { wait_timeout = 120, interval = 2,
--                                       on_change = function(call) print(call.status) end })
--   -- non-blocking, on the client's engine (driven by client:poll)
--   local f = truedy.follow.start(client, call_id, { on_done = function(call, finished) ... end })
--
-- Either gives the last call object seen and whether it reached a terminal
-- status (false when wait_timeout passed first), or nil, err when a read
-- failed or its answer is not a call.  The API pushes nothing to a script
-- (webhooks need a server), so this polls, politely: one read per
-- `interval` seconds, never longer than `wait_timeout`.
local truedy = require "truedy"

local follow = {}

local function default_sleep()
  local ngx = rawget(_G, "ngx")
  if ngx and ngx.sleep then return ngx.sleep end
  return truedy.sleep
end

local function default_now()
  local ngx = rawget(_G, "ngx")
  if ngx and ngx.now then
    return function() ngx.update_time(); return ngx.now() end
  end
  return truedy.now
end

-- Options: `wait_timeout` is the whole wait (its older spelling `timeout`
-- stays as an alias; `timeout` means one attempt in truedy.new).
local known = { wait_timeout = true, timeout = true, interval = true, sleep = true,
                on_change = true, on_done = true }

local function read_options(fname, options, allowed)
  options = options or {}
  if type(options) ~= "table" then error(fname .. ": options must be a table", 3) end
  for name in pairs(options) do
    if not known[name] or not allowed[name] then
      error(("%s: unknown option '%s'"):format(fname, tostring(name)), 3)
    end
  end
  if options.wait_timeout ~= nil and options.timeout ~= nil then
    error(fname .. ": options 'wait_timeout' and 'timeout' are the same option: give one of them", 3)
  end
  local function number(name, default)
    local value = options[name]
    if value == nil then return default end
    if type(value) ~= "number" or value ~= value or value < 0 then
      error(("%s: option '%s' must be a number, 0 or more"):format(fname, name), 3)
    end
    return value
  end
  local function func(name)
    local value = options[name]
    if value ~= nil and type(value) ~= "function" then
      error(("%s: option '%s' must be a function"):format(fname, name), 3)
    end
    return value
  end
  return {
    wait_timeout = number(options.wait_timeout ~= nil and "wait_timeout" or "timeout", 300),
    interval = number("interval", 2),
    sleep = func("sleep"),
    on_change = func("on_change"),
    on_done = func("on_done"),
  }
end

-- The call in an answer, or nil, a response error: a 200 whose body has no
-- call object must end the wait at once, not poll until the timeout.
local function call_of(res)
  local call = type(res) == "table" and res.data
  if type(call) ~= "table" then
    return nil, truedy.restore_error{ kind = "response", retryable = false, attempts = 1,
      message = "the answer to get_call has no call object (no 'data' object)" }
  end
  if type(call.status) ~= "string" then
    return nil, truedy.restore_error{ kind = "response", retryable = false, attempts = 1,
      message = "the answer to get_call has no status (data.status is not a string)" }
  end
  return call
end

local blocking_options = { wait_timeout = true, timeout = true, interval = true, sleep = true,
                           on_change = true }

-- follow(client, call_id [, options]) -> call, finished | nil, err
local function follow_blocking(client, call_id, options)
  local o = read_options("truedy.follow", options, blocking_options)
  local sleep = o.sleep or default_sleep()
  local now = default_now()
  local deadline = now() + o.wait_timeout
  local last_status, call
  while true do
    local res, err = client:get_call(call_id)
    if not res then return nil, err end
    call, err = call_of(res)
    if not call then return nil, err end
    if call.status ~= last_status then
      last_status = call.status
      if o.on_change then o.on_change(call) end
    end
    if truedy.is_terminal(call.status) then return call, true end
    local left = deadline - now()
    if left <= 0 then return call, false end
    sleep(math.min(o.interval, left))
  end
end

-- The non-blocking form: a follower with the methods of a handle.
local Follower = {}
Follower.__index = Follower

-- A closed client drops the on_done of the read in flight (its handle is done with a
-- cancelled error): the follow ends with that error, rather than never.
function Follower:settle()
  local handle = self.handle
  if not self.finished and handle and handle:done() and self.client:stats().closed then
    self.handle = nil
    self:finish(handle:result())
  end
end

function Follower:done()
  self:settle()
  return self.finished
end

function Follower:state()
  self:settle()
  if self.finished then return "done" end
  return self.handle and self.handle:state() or "queued"
end

function Follower:result()
  self:settle()
  if not self.finished then
    error("truedy: the follow is not finished yet (f:done() is false; drive it with client:poll())", 2)
  end
  return self.res, self.second
end

-- f:wait([timeout]) -> call, finished | nil, err; nothing when timeout passed first
function Follower:wait(timeout)
  local deadline = timeout and truedy.now() + timeout
  self:settle()
  while not self.finished do
    local left = deadline and deadline - truedy.now() or 1
    if left <= 0 then return end
    self.client:poll(math.min(left, 1))
  end
  return self:result()
end

function Follower:cancel()
  self:settle()
  if self.finished then return false end
  local handle = self.handle
  self.handle = nil
  if handle then handle:cancel() end
  self:finish(nil, truedy.restore_error{ kind = "cancelled", retryable = true, attempts = 0,
    message = "cancelled: the follow stopped (the call itself goes on)" })
  return true
end

function Follower:finish(res, second)
  if self.finished then return end
  self.finished, self.res, self.second = true, res, second
  if self.on_done then self.on_done(res, second, self) end
end

local start_options = { wait_timeout = true, timeout = true, interval = true, on_change = true,
                        on_done = true }

-- follow.start(client, call_id [, options]) -> follower.  options.on_done(call,
-- finished | nil, err, f) runs from client:poll() like a handle's.
function follow.start(client, call_id, options)
  local o = read_options("truedy.follow.start", options, start_options)
  local f = setmetatable({ client = client, finished = false, on_done = o.on_done }, Follower)
  local deadline = truedy.now() + o.wait_timeout
  local last_status
  local read
  local function on_read(res, err)
    f.handle = nil
    if f.finished then return end
    if not res then return f:finish(nil, err) end
    local call
    call, err = call_of(res)
    if not call then return f:finish(nil, err) end
    if call.status ~= last_status then
      last_status = call.status
      if o.on_change then o.on_change(call) end
    end
    if truedy.is_terminal(call.status) then return f:finish(call, true) end
    local left = deadline - truedy.now()
    if left <= 0 then return f:finish(call, false) end
    read(math.min(o.interval, left))
  end
  read = function(delay)
    local handle, err = client:start_get_call(call_id, { delay = delay, on_done = on_read })
    if not handle then return f:finish(nil, err) end
    f.handle = handle
  end
  read(0)
  return f
end

return setmetatable(follow, { __call = function(_, ...) return follow_blocking(...) end })
