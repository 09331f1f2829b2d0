-- Place one outbound call with truedy and print it.
--
--   TRUEDY_API_KEY, TRUEDY_BASE_URL  the account and server (make demo points them at the
--                                    bundled emulator when no key is set)
--   TRUEDY_AGENT_ID                  the agent that places the call
--   TRUEDY_TO_NUMBER                 the number to call, E.164 (+12125551234)
--   TRUEDY_FROM_NUMBER               optional caller id, one of the agent's numbers
--   TRUEDY_WAIT                      seconds to follow the call until it ends (default 0)
--
-- Run:  LUA_CPATH="build/5.4/?.so;;" LUA_PATH="lua/?.lua;;" lua5.4 examples/create_call.lua
local truedy = require "truedy"

local function env(name, default)
  local value = os.getenv(name)
  if value == nil or value == "" then return default end
  return value
end

local agent_id = env("TRUEDY_AGENT_ID")
local to_number = env("TRUEDY_TO_NUMBER")
if not agent_id or not to_number then
  io.stderr:write("create_call.lua: set TRUEDY_AGENT_ID and TRUEDY_TO_NUMBER\n")
  os.exit(2)
end

local res, err = truedy.create_call({
  agent_id = agent_id,
  phone_number = to_number,
  from_number = env("TRUEDY_FROM_NUMBER"),
  call_settings = { recording_enabled = true, max_duration = 600, join_timeout = 30 },
  variables = { first_name = "Ada", order_id = 1234567890123 },
})
if not res then
  -- one readable line; err.kind, err.code, err.field... for programs
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end

local call = res.data
print(string.format("call %s %s: %s -> %s (request %s)", call.id, call.status,
  call.from_number or "?", call.to_number or call.phone_number or "?", res.meta.request_id))

-- Follow the call until it ends (the API pushes nothing to a script: this polls).
local wait = tonumber(env("TRUEDY_WAIT", "0"))
if wait > 0 then
  local follow = require "truedy.follow"
  local client = assert(truedy.new())
  local shown = call.status
  local last, follow_err = follow(client, call.id, { timeout = wait, interval = 0.5,
    on_change = function(now)
      if now.status ~= shown then
        shown = now.status
        print(string.format("call %s %s", now.id, now.status))
      end
    end })
  if not last then
    io.stderr:write(tostring(follow_err), "\n")
    os.exit(1)
  end
  call = last
end

if truedy.is_terminal(call.status) then
  print(string.format("ended: %s, %s seconds%s", call.status, tostring(call.duration_seconds or 0),
    call.recording_url and (", recording " .. call.recording_url) or ""))
  for _, line in ipairs(call.transcript or {}) do
    print(string.format("  %s: %s", line.speaker, line.text))
  end
end
