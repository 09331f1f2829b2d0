-- truedy.follow: poll a call until it ends.
--
--   local follow = require "truedy.follow"
--   local call, finished = follow(client, call_id, { timeout = 120, interval = 2,
--                                                    on_change = function(call) print(call.status) end })
--
-- Returns the last call object seen and whether it reached a terminal status
-- (false when `timeout` passed first), or nil, err when reading the call failed.
-- The API pushes nothing to a script (webhooks need a server), so this polls,
-- politely: one request per `interval` seconds, never more than `timeout`.
local truedy = require "truedy"

local function default_sleep()
  local ngx = rawget(_G, "ngx")
  if ngx and ngx.sleep then return ngx.sleep end
  local ok, socket = pcall(require, "socket")
  if ok and socket.sleep then return socket.sleep end
  return function(seconds) os.execute(string.format("sleep %.3f", seconds)) end
end

local function now_function()
  local ngx = rawget(_G, "ngx")
  if ngx and ngx.now then
    return function() ngx.update_time(); return ngx.now() end
  end
  local ok, socket = pcall(require, "socket")
  if ok and socket.gettime then return socket.gettime end
  return os.time
end

local function check_number(options, name, default)
  local value = options[name]
  if value == nil then return default end
  if type(value) ~= "number" or value ~= value or value < 0 then
    error(("truedy.follow: option '%s' must be a number, 0 or more"):format(name), 3)
  end
  return value
end

local known_options = { timeout = true, interval = true, sleep = true, on_change = true }

return function(client, call_id, options)
  options = options or {}
  if type(options) ~= "table" then error("truedy.follow: options must be a table", 2) end
  for name in pairs(options) do
    if not known_options[name] then error(("truedy.follow: unknown option '%s'"):format(name), 2) end
  end
  local timeout = check_number(options, "timeout", 300)
  local interval = check_number(options, "interval", 2)
  local sleep = options.sleep or default_sleep()
  local on_change = options.on_change
  local now = now_function()
  local deadline = now() + timeout

  local last_status, call
  while true do
    local res, err = client:get_call(call_id)
    if not res then return nil, err end
    call = res.data
    if call.status ~= last_status then
      last_status = call.status
      if on_change then on_change(call) end
    end
    if truedy.is_terminal(call.status) then return call, true end
    local left = deadline - now()
    if left <= 0 then return call, false end
    sleep(math.min(interval, left))
  end
end
