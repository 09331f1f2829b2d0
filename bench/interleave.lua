-- The timed runs: every client, each pinned with the server to one CPU, one after the other
-- (A, B, C, ...), the order rotated by one each repetition, so that whatever the machine was
-- doing weighs on every client alike.  Before each run it requests /__bench/mark/REP/CLIENT,
-- which cuts the server's access log into runs (report.lua reads it).  Appends one line per
-- run to WORK/results: REP, client, ok|unavailable|failed, calls, seconds, detail.
--   lua5.4 bench/interleave.lua CALLS_URL WORK REPS N WARMUP CPU
-- BENCH_CLIENTS="truedy c-easy ..." runs only those.
local common = require "common"

local url, work = arg[1], arg[2]
local reps, n, warmup, cpu = tonumber(arg[3]), tonumber(arg[4]), tonumber(arg[5]), arg[6]
local server = assert(url:match("^(https?://[^/]+)"), "a URL")
local env = common.wire_env(work)
local prefix = { "taskset", "-c", cpu }

local chosen = {}
local wanted = os.getenv("BENCH_CLIENTS")
for _, c in ipairs(common.clients) do
  if not wanted or (" " .. wanted .. " "):find(" " .. c.name .. " ", 1, true) then chosen[#chosen + 1] = c end
end
assert(#chosen > 0, "BENCH_CLIENTS names no client of bench/registry.lua")

local function mark(label)
  local ok = os.execute("curl -sf -o /dev/null " .. common.quote(server .. "/__bench/mark/" .. label))
  assert(ok, "the bench server did not answer a mark")
end

local results = assert(io.open(work .. "/results", "a"))
local unavailable = {}
for rep = 1, reps do
  local line = {}
  for i = 0, #chosen - 1 do
    local c = chosen[(rep - 1 + i) % #chosen + 1]
    if not unavailable[c.name] then
      local w, calls = common.counts(c, warmup, n)
      mark(rep .. "/" .. c.name)
      local r = common.run_client(c, url, w, calls, env, prefix)
      if r.calls then
        results:write(string.format("%d\t%s\tok\t%d\t%.6f\t\n", rep, c.name, r.calls, r.seconds))
        line[#line + 1] = string.format("%s %s/s", c.name, common.thousands(r.calls / r.seconds))
      elseif r.unavailable then
        unavailable[c.name] = true
        results:write(string.format("%d\t%s\tunavailable\t0\t0\t%s\n", rep, c.name, r.unavailable))
        line[#line + 1] = c.name .. " not available"
      else
        results:write(string.format("%d\t%s\tfailed\t0\t0\t%s\n", rep, c.name, r.failed))
        line[#line + 1] = c.name .. " FAILED"
        io.stderr:write("bench: ", c.name, " failed: ", r.failed, "\n")
      end
      results:flush()
    end
  end
  print(string.format("  repetition %d/%d: %s", rep, reps, table.concat(line, ", ")))
  io.stdout:flush()
end
mark("end")
results:close()
