-- truedy inside a luv (libuv) event loop: the loop watches the sockets truedy's libcurl wants
-- watched (client:sockets(), with uv.new_poll) and wakes after client:timeout() seconds (a uv
-- timer); either way it calls client:poll(0), which does the work and never sleeps.  Beside
-- it a 60 Hz game tick does 3 ms of work; at the end the tick times and each call's final
-- status are printed.
--
--   TRUEDY_API_KEY, TRUEDY_BASE_URL  the account and server
--   TRUEDY_AGENT_ID                  the agent that places the calls
--   TRUEDY_TO_NUMBER                 the number to call, E.164 (+12125551234)
--   TRUEDY_WAIT                      the longest the loop runs, seconds (default 120)
--   TRUEDY_CALLS                     how many calls (default 10)
--
-- Needs luv: Debian's lua-luv serves Lua 5.1, 5.2, 5.3, 5.4 and LuaJIT (apt-get install lua-luv).
-- Run:  LUA_CPATH="build/5.4/?.so;;" LUA_PATH="lua/?.lua;;" lua5.4 examples/luv.lua
local uv = require "luv"
local truedy = require "truedy"
local follow = require "truedy.follow"

local function env(name, default)
  local value = os.getenv(name)
  if value == nil or value == "" then return default end
  return value
end

local agent_id, to_number = env("TRUEDY_AGENT_ID"), env("TRUEDY_TO_NUMBER")
if not agent_id or not to_number then
  io.stderr:write("luv.lua: set TRUEDY_AGENT_ID and TRUEDY_TO_NUMBER\n")
  os.exit(2)
end
local time_limit = tonumber(env("TRUEDY_WAIT", "120"))
local ncalls = tonumber(env("TRUEDY_CALLS", "10"))
local FOLLOW_INTERVAL = 2 -- seconds between two reads of one call (each counts against the rate limit)

local client = assert(truedy.new())

---------------------------------------------------------------------------------------------
-- Driving truedy from the loop
---------------------------------------------------------------------------------------------

local watchers = {} -- fd -> uv poll handle
local wake = uv.new_timer()
local drive

-- After every client:poll(0): watch exactly the sockets libcurl wants now, and wake up after
-- client:timeout() at the latest.  The poll handles are made afresh each time: libcurl may
-- have closed a socket inside poll(0) and opened another with the same number, which an
-- existing uv poll handle would not notice (libuv must stop polling a descriptor before it
-- is closed; here it learns of the close only afterwards).
local function rearm()
  for fd, watcher in pairs(watchers) do
    watcher:stop()
    watcher:close()
    watchers[fd] = nil
  end
  for fd, what in pairs(client:sockets()) do
    local watcher = uv.new_poll(fd)
    watcher:start(what, drive) -- "r", "w" or "rw", which is how luv names the events too
    watchers[fd] = watcher
  end
  wake:stop()
  local seconds = client:timeout()
  if seconds then wake:start(math.ceil(seconds * 1000), 0, drive) end
end

drive = function()
  client:poll(0) -- runs the on_done callbacks below
  if not client:stats().closed then rearm() end
end

---------------------------------------------------------------------------------------------
-- The calls
---------------------------------------------------------------------------------------------

local calls, ended = {}, 0
local stop_loop -- set below

local function finish(c, status, err)
  c.status, c.err = status, err
  ended = ended + 1
  if ended == ncalls then stop_loop() end
end

for i = 1, ncalls do
  local c = { n = i }
  calls[i] = c
  local handle, err = client:start_call({ agent_id = agent_id, phone_number = to_number },
    { on_done = function(res, err2)
        if not res then return finish(c, nil, err2) end
        c.id = res.data.id
        follow.start(client, c.id, { interval = FOLLOW_INTERVAL, wait_timeout = time_limit,
          on_change = function(call) c.last = call.status end,
          on_done = function(call, finished)
            if not call then return finish(c, nil, finished) end
            finish(c, call.status)
          end })
      end })
  if not handle then finish(c, nil, err) end
end

---------------------------------------------------------------------------------------------
-- The game tick, the time limit, and the end
---------------------------------------------------------------------------------------------

local TICK = 1 / 60
local tick_times, last_tick = {}, nil
local tick = uv.new_timer()
local next_tick = truedy.now()
local function on_tick()
  local now = truedy.now()
  if last_tick then tick_times[#tick_times + 1] = now - last_tick end
  last_tick = now
  local stop = now + 0.003 -- the tick's work
  while truedy.now() < stop do end -- luacheck: ignore
  -- paced from when the tick was due, not from when this one ended
  next_tick = next_tick + TICK
  local wait = next_tick - truedy.now()
  tick:start(wait > 0 and math.floor(wait * 1000 + 0.5) or 0, 0, on_tick)
end
tick:start(0, 0, on_tick)

local limit = uv.new_timer()
limit:start(math.floor(time_limit * 1000), 0, function() stop_loop() end)

stop_loop = function()
  for _, handle in ipairs({ tick, limit, wake }) do
    if not handle:is_closing() then handle:close() end
  end
  for fd, watcher in pairs(watchers) do
    watcher:close()
    watchers[fd] = nil
  end
  client:close() -- stops what is still in flight (the calls themselves go on)
end

rearm() -- the calls are queued: timeout() is 0, so the first wake-up is now
uv.run()

table.sort(tick_times)
local function ms(p)
  if #tick_times == 0 then return "-" end
  return string.format("%.1f", 1000 * tick_times[math.max(1, math.ceil(#tick_times * p))])
end
print(string.format("%d ticks; tick interval ms p50 %s, p95 %s, max %s (target 16.7)",
  #tick_times + 1, ms(0.5), ms(0.95), ms(1)))
for _, c in ipairs(calls) do
  print(string.format("call %2d %s: %s", c.n, c.id or "-",
    c.status or (c.err and tostring(c.err)) or ((c.last or "not placed") .. " at the time limit")))
end
