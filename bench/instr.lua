-- make bench-instr: instructions per call under callgrind, the number to compare across
-- commits.  Each client runs twice, making 200 and then 2,200 calls (no warm-up); the
-- difference over 2,000 leaves out start-up, the first connection and everything else that
-- does not repeat per call.  Client and server are pinned to one CPU, as in make bench.
--   lua5.4 bench/instr.lua CALLS_URL WORK CPU
-- BENCH_CLIENTS="truedy c-easy ..." measures only those.
local common = require "common"

local url, work, cpu = arg[1], arg[2], arg[3]
local SHORT, LONG = 200, 2200
local env = common.wire_env(work)
local wanted = os.getenv("BENCH_CLIENTS")

-- Total instructions (Ir) of one client run of `calls` calls.
local function instructions(c, calls)
  local out = string.format("%s/callgrind.%s.%d", work, c.name, calls)
  local r = common.run_client(c, url, 0, calls, env,
                              { "taskset", "-c", cpu, "valgrind", "--tool=callgrind", "-q",
                                "--callgrind-out-file=" .. out })
  if not r.calls then return nil, r.unavailable and "not available: " .. r.unavailable or "FAILED: " .. r.failed end
  local data = assert(common.read(out), "callgrind wrote no " .. out)
  local total = data:match("\ntotals: (%d+)") or data:match("\nsummary: (%d+)")
  return assert(tonumber(total), "no totals in " .. out)
end

print(string.format("Instructions per call: callgrind, Lua 5.4, (instructions for %s calls - for %s calls) / %s,",
                    common.thousands(LONG), common.thousands(SHORT), common.thousands(LONG - SHORT)))
print(string.format("client and server pinned to CPU %s. Repeatable to about 1%%: compare these across commits.", cpu))
print(string.format("  %-15s %12s %10s", "client", "instr/call", "/ truedy"))
local per_call = {}
for _, c in ipairs(common.clients) do
  if c.instr and (not wanted or (" " .. wanted .. " "):find(" " .. c.name .. " ", 1, true)) then
    local short, why = instructions(c, SHORT)
    local long
    if short then long, why = instructions(c, LONG) end
    if long then
      per_call[c.name] = (long - short) / (LONG - SHORT)
      local ref = per_call[c.vs or c.name] or per_call.truedy
      print(string.format("  %-15s %12s %10s", c.name, common.thousands(per_call[c.name]),
                          ref and string.format("%.2f", per_call[c.name] / ref) or ""))
    else
      print(string.format("  %-15s %s", c.name, why))
    end
    io.stdout:flush()
  elseif c.not_instr then
    print(string.format("  %-15s not measured (%s)", c.name, c.not_instr))
  end
end
print("\nThe clients:")
for _, c in ipairs(common.clients) do
  if per_call[c.name] then print(string.format("  %-15s %s", c.name, c.label)) end
end
if per_call.truedy and per_call.binding then
  print(string.format("\nbinding / truedy = %.2f: what a hand-written libcurl + cjson client spends per call, "
                      .. "for each instruction truedy spends (target >= 1.0: truedy the cheaper).",
                      per_call.binding / per_call.truedy))
end
