-- A game loop's frame times with and without calls in flight: 60 frames a second, 3 ms of work
-- and one client:poll(0) a frame, frame pacing with truedy.sleep.  With CALLS > 0, the first
-- frame places CALLS calls (client:start_call) and each answer starts a read of that call
-- (client:start_get_call from on_done), so CALLS requests stay in flight for the whole run;
-- the emulator's delay fault gives every request LATENCY seconds.  With CALLS = 0 the loop is
-- the same, without truedy.
--
--   lua5.4 bench/game_frames.lua EMULATOR_URL API_KEY CALLS FRAMES [LATENCY]
--
-- Prints "frames N p50_ms A p95_ms B max_ms C poll_p95_ms P poll_max_ms Q answers D" (frame
-- time = from one frame's start to the next's; P, Q: the time client:poll(0) took; D =
-- answers handled).  The bench/async script sets the delay fault up.
local truedy = require "truedy"

local emulator, key = arg[1], arg[2]
local ncalls, nframes = tonumber(arg[3]), tonumber(arg[4])
assert(emulator and key and ncalls and nframes,
  "usage: lua5.4 bench/game_frames.lua EMULATOR_URL API_KEY CALLS FRAMES")

local FRAME, WORK = 1 / 60, 0.003
local now, sleep = truedy.now, truedy.sleep

local client = assert(truedy.new{ api_key = key, base_url = emulator .. "/api/public/v1",
                                  max_connections = math.max(1, math.min(64, ncalls)) })
local answers, failures = 0, 0
local stopping = false

local function follow(id)
  local function on_read(res, err)
    if not res then failures = failures + 1; io.stderr:write(tostring(err), "\n") return end
    answers = answers + 1
    if not stopping then assert(client:start_get_call(id, { on_done = on_read })) end
  end
  assert(client:start_get_call(id, { on_done = on_read }))
end

local function place()
  for i = 1, ncalls do
    assert(client:start_call({ agent_id = "agt_f9447372", phone_number = "+12125551234",
                               variables = { player = tostring(i) } },
      { on_done = function(res, err)
          if not res then failures = failures + 1; io.stderr:write(tostring(err), "\n") return end
          answers = answers + 1
          follow(res.data.id)
        end }))
  end
end

local function work(seconds)
  local stop = now() + seconds
  local x = 0
  while now() < stop do x = x + 1 end
  return x
end

local times, poll_times = {}, {}
local frame_start = now()
for frame = 1, nframes do
  if frame == 1 and ncalls > 0 then place() end
  work(WORK)
  if ncalls > 0 then
    local t0 = now()
    client:poll(0)
    poll_times[#poll_times + 1] = now() - t0
  end
  local next_frame = frame_start + FRAME
  local t = now()
  if next_frame > t then sleep(next_frame - t) end
  t = now()
  times[frame] = t - frame_start
  frame_start = t
end
stopping = true
client:close()

table.sort(times)
table.sort(poll_times)
local function ms(list, p)
  if #list == 0 then return 0 end
  return 1000 * list[math.min(#list, math.floor(#list * p) + 1)]
end
print(string.format("frames %d p50_ms %.3f p95_ms %.3f max_ms %.3f poll_p95_ms %.3f poll_max_ms %.3f"
  .. " answers %d failures %d", #times, ms(times, 0.5), ms(times, 0.95), ms(times, 1),
  ms(poll_times, 0.95), ms(poll_times, 1), answers, failures))
if failures > 0 then os.exit(1) end
