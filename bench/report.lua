-- The summary of make bench: calls/s per client (min/median/max over the repetitions), what
-- the server saw of each run (from its access log, cut into runs by the marks), and the
-- ratios of truedy to each baseline, taken within each repetition.
--   lua5.4 bench/report.lua WORK REPS N WARMUP
local common = require "common"

local work, reps = arg[1], tonumber(arg[2])
local UUID4 = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89abAB]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"
local CALLS_URI = "/api/public/v1/calls"

-- results[client] = { rates = { [rep] = calls/s }, why = "..." }
local results = {}
for line in io.lines(work .. "/results") do
  local rep, name, kind, calls, seconds, detail = line:match("^(%d+)\t([^\t]+)\t(%a+)\t(%d+)\t([%d.]+)\t(.*)$")
  local r = results[name] or { rates = {} }
  results[name] = r
  if kind == "ok" then
    r.rates[tonumber(rep)] = tonumber(calls) / tonumber(seconds)
  else
    r.why = (kind == "unavailable" and "not available: " or "FAILED: ") .. detail
  end
end

local verdicts = {}
for line in io.lines(work .. "/likeforlike") do
  local name, verdict = line:match("^([^\t]+)\t([^\t]+)")
  verdicts[name] = verdict
end

-- runs["REP/client"] = what the server saw during that run
local runs, current = {}, nil
for line in io.lines(work .. "/timed/access.log") do
  local conn, hlen, blen, status, uri, key = line:match("^(%d+) (%d+) (%S+) (%d+) (%S+) (%S+)$")
  local label = uri and uri:match("^/__bench/mark/(.+)$")
  if label then
    current = { requests = 0, conns = {}, nconns = 0, sizes = {}, bad_status = 0, keys = {}, fresh = 0 }
    runs[label] = current
  elseif current and uri == CALLS_URI then
    current.requests = current.requests + 1
    if not current.conns[conn] then
      current.conns[conn] = true
      current.nconns = current.nconns + 1
    end
    current.sizes[tonumber(hlen) + (tonumber(blen) or 0)] = true
    if status ~= "201" then current.bad_status = current.bad_status + 1 end
    if key:match(UUID4) and not current.keys[key] then
      current.keys[key] = true
      current.fresh = current.fresh + 1
    end
  end
end

local function keys_of(set)
  local t = {}
  for k in pairs(set) do t[#t + 1] = k end
  table.sort(t)
  return t
end

-- What the server saw of client c over all its runs.
local function seen(c)
  local sizes, conns, problems, requests = {}, {}, {}, 0
  for rep = 1, reps do
    local run = runs[rep .. "/" .. c.name]
    if run and results[c.name] and results[c.name].rates[rep] then
      local warmup, calls = common.counts(c, tonumber(arg[4]), tonumber(arg[3]))
      if run.requests ~= warmup + calls then
        problems[#problems + 1] = string.format("rep %d: %d requests seen, %d made", rep, run.requests, warmup + calls)
      end
      if run.bad_status > 0 then problems[#problems + 1] = string.format("rep %d: %d not 201", rep, run.bad_status) end
      if run.fresh ~= run.requests then
        problems[#problems + 1] = string.format("rep %d: %d of %d keys fresh UUIDv4", rep, run.fresh, run.requests)
      end
      for s in pairs(run.sizes) do sizes[s] = true end
      conns[#conns + 1] = run.nconns
      requests = requests + run.requests
    end
  end
  return { sizes = keys_of(sizes), conns = conns, problems = problems, requests = requests }
end

local truedy_size
do
  local s = seen(common.client("truedy")).sizes
  truedy_size = #s == 1 and s[1] or nil
end

print(string.format("\ncalls/s over %d repetitions (min / median / max), and what the server saw of every timed "
                    .. "request:", reps))
print(string.format("  %-15s %9s %9s %9s   %-9s %-10s %s", "client", "min", "median", "max", "bytes/req", "conns/run",
                    "like for like"))
local flagged = {}
for _, c in ipairs(common.clients) do
  local r = results[c.name]
  if r then
    local rates = {}
    for rep = 1, reps do rates[#rates + 1] = r.rates[rep] end
    if #rates == 0 then
      print(string.format("  %-15s %s", c.name, r.why or "no run"))
    else
      local lo, mid, hi = common.spread(rates)
      local s = seen(c)
      local size = #s.sizes == 1 and tostring(s.sizes[1]) or table.concat(s.sizes, "|")
      local _, conns = common.spread(s.conns)
      local verdict = verdicts[c.name] or "?"
      if #s.sizes ~= 1 or (truedy_size and s.sizes[1] ~= truedy_size) then
        verdict = verdict .. ", SIZE DIFFERS"
      end
      if verdict ~= "reference" and verdict ~= "identical" then flagged[#flagged + 1] = c.name end
      print(string.format("  %-15s %9s %9s %9s   %-9s %-10s %s%s", c.name, common.thousands(lo), common.thousands(mid),
                          common.thousands(hi), size, common.thousands(conns), verdict,
                          #rates < reps and string.format(" (%d of %d runs)", #rates, reps) or ""))
      for _, p in ipairs(s.problems) do print("                  PROBLEM: " .. p) end
    end
  end
end

print("\nratio = truedy's calls/s / the baseline's (> 1: truedy is faster): min, median and max over the")
print("repetitions, each taken within one repetition; and the ratio of each one's fastest run (noise only slows):")
print(string.format("  %-32s %6s %6s %6s   %s", "", "min", "median", "max", "fastest runs"))
for _, c in ipairs(common.clients) do
  local base, ref = results[c.name], c.vs and results[c.vs]
  if base and ref then
    local ratios, best_ref, best_base = {}, 0, 0
    for rep = 1, reps do
      if ref.rates[rep] and base.rates[rep] then ratios[#ratios + 1] = ref.rates[rep] / base.rates[rep] end
      best_ref = math.max(best_ref, ref.rates[rep] or 0)
      best_base = math.max(best_base, base.rates[rep] or 0)
    end
    local name = string.format("%s / %s", c.vs, c.name)
    if #ratios > 0 then
      local lo, mid, hi = common.spread(ratios)
      print(string.format("  %-32s %6.2f %6.2f %6.2f   %6.2f", name, lo, mid, hi, best_ref / best_base))
    else
      print(string.format("  %-32s %s", name, ref.why or base.why or "no common repetition"))
    end
  end
end

print("\nThe clients:")
for _, c in ipairs(common.clients) do
  if results[c.name] then print(string.format("  %-15s %s", c.name, c.label)) end
end
if #flagged > 0 then
  print("\nNOT like for like (their requests differ from truedy's, see above): " .. table.concat(flagged, ", "))
end
