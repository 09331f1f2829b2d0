-- A 60 fps loop that places 20 calls and follows them to their end without ever blocking:
-- each frame does its 3 ms of work, drives truedy once with client:poll(0) (which never
-- sleeps), then sleeps until the next frame.  At the end it prints the frame times and
-- each call's final status.
--
--   TRUEDY_API_KEY, TRUEDY_BASE_URL  the account and server
--   TRUEDY_AGENT_ID                  the agent that places the calls
--   TRUEDY_TO_NUMBER                 the number to call, E.164 (+12125551234)
--   TRUEDY_WAIT                      the longest the loop runs, seconds (default 120)
--   TRUEDY_CALLS                     how many calls (default 20)
--
-- Run:  LUA_CPATH="build/5.4/?.so;;" LUA_PATH="lua/?.lua;;" lua5.4 examples/game_loop.lua
-- With the bundled emulator: set -a; eval "$(emulator/truedy-emulator start)"; set +a, then
-- TRUEDY_AGENT_ID=agt_f9447372 TRUEDY_TO_NUMBER=+12125551234 lua5.4 examples/game_loop.lua
local truedy = require "truedy"
local follow = require "truedy.follow"

local function env(name, default)
  local value = os.getenv(name)
  if value == nil or value == "" then return default end
  return value
end

local agent_id, to_number = env("TRUEDY_AGENT_ID"), env("TRUEDY_TO_NUMBER")
if not agent_id or not to_number then
  io.stderr:write("game_loop.lua: set TRUEDY_AGENT_ID and TRUEDY_TO_NUMBER\n")
  os.exit(2)
end
local time_limit = tonumber(env("TRUEDY_WAIT", "120"))
local ncalls = tonumber(env("TRUEDY_CALLS", "20"))

local FRAME = 1 / 60
local WORK = 0.003      -- seconds of game work each frame
-- Seconds between two reads of one call.  Every read counts against the API's rate limit;
-- when a 429 comes back the client pauses its requests until the limit resets, and the loop
-- goes on regardless.
local FOLLOW_INTERVAL = 2

local client = assert(truedy.new())

-- What happened to each call: { n, id, last (status seen), status (final), err }.
local calls = {}
local ended = 0

local function finish(c, status, err)
  c.status, c.err = status, err
  ended = ended + 1
end

-- The frame's work: here a busy loop standing in for physics, AI, rendering...
local function work(seconds)
  local stop = truedy.now() + seconds
  local x = 0
  while truedy.now() < stop do x = x + 1 end
  return x
end

local frame_times, poll_times = {}, {}
local start = truedy.now()
local frame_start = start
local frame = 0

while ended < ncalls and truedy.now() - start < time_limit do
  frame = frame + 1
  if frame == 1 then
    -- every call placed in one frame: start_call returns at once, nothing is sent yet
    for i = 1, ncalls do
      local c = { n = i }
      calls[i] = c
      local handle, err = client:start_call({ agent_id = agent_id, phone_number = to_number,
                                              variables = { player = "player" .. i } },
        { on_done = function(res, err2)
            if not res then return finish(c, nil, err2) end
            c.id = res.data.id
            follow.start(client, c.id, { interval = FOLLOW_INTERVAL,
              wait_timeout = time_limit,
              on_change = function(call) c.last = call.status end,
              on_done = function(call, finished)
                if not call then return finish(c, nil, finished) end
                finish(c, call.status)
              end })
          end })
      if not handle then finish(c, nil, err) end -- refused: nothing was sent
    end
  end

  work(WORK)
  local before_poll = truedy.now()
  client:poll(0) -- moves every transfer on, runs the on_done callbacks; never sleeps
  poll_times[#poll_times + 1] = truedy.now() - before_poll

  -- frame pacing: sleep what is left of this frame
  local next_frame = frame_start + FRAME
  local now = truedy.now()
  if next_frame > now then truedy.sleep(next_frame - now) end
  now = truedy.now()
  frame_times[#frame_times + 1] = now - frame_start
  frame_start = now
end

-- At the time limit, stop following (the calls themselves go on).
client:close()

local function percentile(list, p)
  local sorted = {}
  for i, v in ipairs(list) do sorted[i] = v end
  table.sort(sorted)
  if #sorted == 0 then return 0 end
  return sorted[math.max(1, math.ceil(#sorted * p))]
end

local function ms(list, p) return string.format("%.1f", 1000 * percentile(list, p)) end

print(string.format("%d frames in %.1f s; frame time ms p50 %s, p95 %s, max %s (target %.1f);"
  .. " poll(0) ms p50 %s, p95 %s, max %s", frame, truedy.now() - start, ms(frame_times, 0.5),
  ms(frame_times, 0.95), ms(frame_times, 1), 1000 * FRAME, ms(poll_times, 0.5),
  ms(poll_times, 0.95), ms(poll_times, 1)))
for _, c in ipairs(calls) do
  print(string.format("call %2d %s: %s", c.n, c.id or "-",
    c.status or (c.err and tostring(c.err)) or ((c.last or "not placed") .. " at the time limit")))
end
