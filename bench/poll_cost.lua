-- The cost of client:poll(0) with 16 requests in flight that nothing answers yet: what a game
-- loop pays every frame while its calls are on the wire.
--
--   lua5.4 bench/poll_cost.lua EMULATOR_URL API_KEY [POLLS]
--
-- The emulator holds 16 POST /calls (its hold fault) and lists them as held before the clock
-- starts, so the 16 transfers are really waiting for an answer; then POLLS calls of poll(0)
-- (default 100,000) are timed one by one with truedy.now().  Each must return 0, and the 16
-- must still be held afterwards (else the run fails: it would not have measured that).
-- Prints: "poll0_ns median M p95 P max X clock_ns C polls N sockets S", where C is the
-- median cost of the two clock reads around each poll, already subtracted from M, P and X.
local truedy = require "truedy"

local emulator, key, polls = arg[1], arg[2], tonumber(arg[3] or 100000)
assert(emulator and key and polls, "usage: lua5.4 bench/poll_cost.lua EMULATOR_URL API_KEY [POLLS]")
local IN_FLIGHT = 16

local function quote(s) return "'" .. tostring(s):gsub("'", [['\'']]) .. "'" end

-- A control request to the emulator (curl: nothing of truedy's).
local function control(method, path, body)
  local p = assert(io.popen(("curl -sS -f -X %s %s %s"):format(method,
    body and ("-H 'Content-Type: application/json' --data-binary " .. quote(body)) or "",
    quote(emulator .. "/__emulator" .. path))))
  local out = p:read("*a")
  assert(p:close(), "emulator control " .. method .. " " .. path .. " failed: " .. out)
  return out
end

local function held_count()
  local _, n = control("GET", "/held"):gsub('"seq":', "")
  return n
end

local function median_and(list, p)
  table.sort(list)
  return list[math.floor(#list * 0.5) + 1], list[math.min(#list, math.floor(#list * p) + 1)], list[#list]
end

control("POST", "/reset")
control("POST", "/config", '{"rate_limit": 0}')
local client = assert(truedy.new{ api_key = key, base_url = emulator .. "/api/public/v1",
                                  max_connections = IN_FLIGHT, timeout = 300, max_retries = 0 })
-- one answered request first: until then, over plain http, libcurl opens no second
-- connection to the host (it waits to learn whether the first can multiplex)
assert(client:get_call("call_warm_up") == nil)
control("POST", "/faults", ('{"type": "hold", "method": "POST", "path": "/calls", "count": %d,'
  .. ' "seconds": 300}'):format(IN_FLIGHT))
local handles = {}
for i = 1, IN_FLIGHT do
  handles[i] = assert(client:start_call{ agent_id = "agt_f9447372", phone_number = "+12125551234" })
end
local held = 0
for _ = 1, 500 do
  client:poll(0.01)
  held = held_count()
  if held == IN_FLIGHT then break end
end
assert(held == IN_FLIGHT, "the emulator holds " .. held .. " of " .. IN_FLIGHT .. " requests")
client:poll(0) -- the sockets settle: every transfer waits for its answer
local sockets = 0
for _ in pairs(client:sockets()) do sockets = sockets + 1 end

local now, poll = truedy.now, client.poll
local costs, clocks = {}, {}
for i = 1, polls do
  local t0 = now()
  local t1 = now()
  clocks[i] = t1 - t0
end
for i = 1, polls do
  local t0 = now()
  local finished = poll(client, 0)
  local t1 = now()
  costs[i] = t1 - t0
  if finished ~= 0 then error("a request finished while it was held") end
end
assert(held_count() == IN_FLIGHT and client:pending() == IN_FLIGHT, "the requests were not held throughout")

control("POST", "/held/release", "{}")
for _, h in ipairs(handles) do
  local res, err = h:wait(60)
  assert(res, tostring(err))
end

local clock = median_and(clocks, 0.5)
local m, p95, max = median_and(costs, 0.95)
print(string.format("poll0_ns median %.0f p95 %.0f max %.0f clock_ns %.0f polls %d sockets %d",
  (m - clock) * 1e9, (p95 - clock) * 1e9, (max - clock) * 1e9, clock * 1e9, polls, sockets))
