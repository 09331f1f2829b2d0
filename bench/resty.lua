-- The timed runs of bench/resty (truedy.resty, issue 8), two measurements, each interleaved
-- (the two sides alternate, the order rotated every repetition), min/median/max over the
-- repetitions. Never a pass/fail test: wall-clock numbers depend on the machine.
--
--   lua5.4 bench/resty.lua ping APP_URL EMULATOR_URL WORK REPS SECONDS HELD LOAD_CPU WORKER_PID
--     GET /ping latency (wrk -t1 -c1 --latency: p50, p99) on the app's one worker, idle and
--     while HELD /dial calls are in flight (the emulator's hold fault keeps each one's POST
--     /calls unanswered, so each holds a thread of the pool) during the whole run; and how many
--     times the pool's threads were switched in meanwhile (/proc: what the held calls cost).
--   lua5.4 bench/resty.lua dial APP_URL CALLS_URL WORK REPS SECONDS CONCURRENCY CPU LOAD_CPU N WARMUP
--     POST /dial with CONCURRENCY connections (wrk) against bench/c_multi.c doing the same POSTs
--     (16 in flight) straight to the bench server: calls per second, and their ratio; and, in
--     the same rotation, GET /ping and GET /hop with as many connections, to split a /dial's
--     time into the front HTTP request, the thread pool's round trip, and the call itself.
-- wrk runs on LOAD_CPU; everything measured (the app's worker and its thread pool, the bench
-- server, c_multi) on CPU (the callers pin the servers with taskset).
local common = require "common"
local cjson = require "cjson"

local mode = arg[1]

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, ok, code
end

local function sleep(s) os.execute("sleep " .. s) end

-- A request with curl: status, decoded body (or nil).
local function request(method, url, body)
  local cmd = ("curl -s -m 30 -X %s -o - -w '\\n%%{http_code}' %s"):format(method, common.quote(url))
  if body then
    cmd = cmd .. " -H 'Content-Type: application/json' --data-binary " .. common.quote(cjson.encode(body))
  end
  local out = sh(cmd)
  local text, status = out:match("^(.*)\n(%d+)$")
  local ok, decoded = pcall(cjson.decode, text or "")
  return tonumber(status), ok and decoded or nil
end

-- Waits until fn() is true, polling every 0.05 s, at most `seconds`; fails with `what`.
local function until_true(fn, seconds, what)
  for _ = 1, math.ceil(seconds / 0.05) do
    if fn() then return end
    sleep(0.05)
  end
  error("bench: " .. what, 0)
end

-- Runs wrk pinned to cpu; returns its output (fails on a non-zero exit).
local function wrk(cpu, args)
  local out, ok = sh(("taskset -c %s wrk %s 2>&1"):format(cpu, args))
  if not ok then error("bench: wrk failed: " .. out, 0) end
  return out
end

local function ms(value, unit)
  local factor = { us = 0.001, ms = 1, s = 1000 }
  return tonumber(value) * assert(factor[unit], "a wrk latency unit: " .. tostring(unit))
end

-- p50 and p99 in ms, and the number of requests, from wrk --latency's output.
local function latency(out)
  local p50v, p50u = out:match("\n%s+50%%%s+([%d.]+)(%a+)")
  local p99v, p99u = out:match("\n%s+99%%%s+([%d.]+)(%a+)")
  local requests = out:match("(%d+) requests in")
  assert(p50v and p99v and requests, "wrk's output has no latency distribution:\n" .. out)
  assert(not out:find("Socket errors", 1, true) and not out:find("Non%-2xx"), "wrk saw errors:\n" .. out)
  return ms(p50v, p50u), ms(p99v, p99u), tonumber(requests)
end

local function spread_text(list, format)
  local lo, mid, hi = common.spread(list)
  return (format .. " / " .. format .. " / " .. format):format(lo, mid, hi)
end

---------------------------------------------------------------------------------------------------
-- /ping latency, idle and with calls held
---------------------------------------------------------------------------------------------------

local function ping()
  local app, emulator, work = arg[2], arg[3], arg[4]
  local reps, seconds, held, load_cpu = tonumber(arg[5]), tonumber(arg[6]), tonumber(arg[7]), arg[8]
  local worker_pid = arg[9]

  -- Context switches so far of the worker's other threads (the thread pool's), from /proc.
  local function pool_switches()
    local total = 0
    for tid in sh("ls /proc/" .. worker_pid .. "/task"):gmatch("%d+") do
      if tid ~= worker_pid then
        local status = common.read("/proc/" .. worker_pid .. "/task/" .. tid .. "/status") or ""
        for n in status:gmatch("ctxt_switches:%s*(%d+)") do total = total + tonumber(n) end
      end
    end
    return total
  end

  local function control(method, path, body)
    local status, doc = request(method, emulator .. "/__emulator" .. path, body)
    assert(status and status < 300, ("emulator %s %s answered %s"):format(method, path, tostring(status)))
    return doc and doc.data
  end

  -- HELD /dial requests at once (curl --parallel, in the background), each held by the
  -- emulator once its POST /calls arrives; returns when all HELD are held.
  local dials = work .. "/held-dials"
  os.execute("mkdir -p " .. common.quote(dials))
  local conf = {}
  for i = 1, held do
    if i > 1 then conf[#conf + 1] = "next" end
    conf[#conf + 1] = ('url = "%s/dial"'):format(app)
    conf[#conf + 1] = 'request = "POST"\noutput = "/dev/null"\nwrite-out = "%{http_code}\\n"'
    conf[#conf + 1] = 'header = "Content-Type: application/json"'
    conf[#conf + 1] = [[data-binary = "{\"agent_id\":\"agt_f9447372\",\"phone_number\":\"+12125551234\"}"]]
  end
  common.write(dials .. "/curl.conf", table.concat(conf, "\n") .. "\n")

  local function hold_calls()
    control("POST", "/faults", { type = "hold", method = "POST", path = "/calls", count = held, seconds = 600 })
    os.remove(dials .. "/done")
    os.execute(("(curl -s --max-time 600 --parallel --parallel-immediate --parallel-max %d -K %s >%s 2>&1;"
      .. " touch %s) </dev/null >/dev/null 2>&1 &"):format(held, common.quote(dials .. "/curl.conf"),
      common.quote(dials .. "/codes"), common.quote(dials .. "/done")))
    until_true(function() return #control("GET", "/held") == held end, 120,
      ("the emulator never held %d calls"):format(held))
    local _, doc = request("GET", app .. "/ping")
    assert(doc and doc.pending == held, "the app does not have the held calls in its thread pool")
  end

  local function release_calls()
    -- still all held: the run measured with every one of them in flight
    assert(#control("GET", "/held") == held, "a held call ended during the run")
    control("POST", "/held/release", {})
    until_true(function() return common.read(dials .. "/done") ~= nil end, 120, "the held dials never ended")
    local codes = common.read(dials .. "/codes") or ""
    local placed = select(2, codes:gsub("201", ""))
    assert(placed == held, ("%d of %d held dials were placed: %s"):format(placed, held, codes))
    control("DELETE", "/faults")
  end

  local function run(label)
    if label == "held" then hold_calls() end
    local before = pool_switches()
    local p50, p99, requests = latency(wrk(load_cpu, ("-t1 -c1 -d%ds --latency %s"):format(seconds,
      common.quote(app .. "/ping"))))
    local switches = pool_switches() - before
    if label == "held" then release_calls() end
    return { p50 = p50, p99 = p99, requests = requests, switches = switches }
  end

  control("POST", "/reset")
  control("POST", "/config", { rate_limit = 1000000, rate_window = 60 })
  wrk(load_cpu, "-t1 -c1 -d1s " .. common.quote(app .. "/ping")) -- warm-up
  local results = { idle = {}, held = {} }
  for rep = 1, reps do
    local order = rep % 2 == 1 and { "idle", "held" } or { "held", "idle" }
    local line = {}
    for _, label in ipairs(order) do
      local r = run(label)
      results[label][rep] = r
      line[#line + 1] = ("%s p50 %.3f ms p99 %.3f ms (%s requests%s)"):format(label, r.p50, r.p99,
        common.thousands(r.requests),
        label == "held" and (", pool threads switched in %d times"):format(r.switches) or "")
    end
    print(("  repetition %d/%d: %s"):format(rep, reps, table.concat(line, ", ")))
    io.stdout:flush()
  end

  local col = { idle = { p50 = {}, p99 = {} }, held = { p50 = {}, p99 = {} } }
  local diff, met, switches = {}, 0, {}
  for rep = 1, reps do
    for _, label in ipairs { "idle", "held" } do
      col[label].p50[rep] = results[label][rep].p50
      col[label].p99[rep] = results[label][rep].p99
    end
    diff[rep] = results.held[rep].p99 - results.idle[rep].p99
    switches[rep] = results.held[rep].switches
    if diff[rep] <= 5 then met = met + 1 end
  end
  print()
  print(("GET /ping on one nginx worker, ms (min / median / max of %d repetitions of %d s):"):format(reps, seconds))
  print(("  idle:                 p50 %s    p99 %s"):format(spread_text(col.idle.p50, "%.3f"),
    spread_text(col.idle.p99, "%.3f")))
  print(("  %3d calls in flight:  p50 %s    p99 %s"):format(held, spread_text(col.held.p50, "%.3f"),
    spread_text(col.held.p99, "%.3f")))
  print(("  p99 with calls held minus idle p99, paired by repetition: %s ms"):format(spread_text(diff, "%+.3f")))
  print(("  target (p99 within 5 ms of the idle p99): met in %d of %d repetitions"):format(met, reps))
  print(("  the %d held calls' threads were switched in %s times during a %d s run (min / median / max):"
    .. " they wait in poll(), costing the worker nothing"):format(held, spread_text(switches, "%d"), seconds))
end

---------------------------------------------------------------------------------------------------
-- 16 concurrent /dial against the C multi loop
---------------------------------------------------------------------------------------------------

local function dial()
  local app, calls_url, work = arg[2], arg[3], arg[4]
  local reps, seconds, concurrency = tonumber(arg[5]), tonumber(arg[6]), tonumber(arg[7])
  local cpu, load_cpu, n, warmup = arg[8], arg[9], tonumber(arg[10]), tonumber(arg[11])
  local env = common.wire_env(work)
  local c_multi = assert(common.client("c-multi16"), "bench/registry.lua has no c-multi16")

  -- wrk with CONCURRENCY connections on app's PATH; calls/s.
  local function app_rate(path, duration)
    local out = wrk(load_cpu, ("-t1 -c%d -d%ds -s bench/wrk_dial.lua %s"):format(concurrency, duration,
      common.quote(app .. path)))
    local requests, us, connect, read, write, status, timeout = out:match(
      "requests (%d+) duration_us (%d+) connect (%d+) read (%d+) write (%d+) status (%d+) timeout (%d+)")
    assert(requests, "no summary line from bench/wrk_dial.lua:\n" .. out)
    local errors = tonumber(connect) + tonumber(read) + tonumber(write) + tonumber(status) + tonumber(timeout)
    if errors > 0 then error("bench: " .. path .. " had " .. errors .. " errors (non-2xx or socket):\n" .. out, 0) end
    return tonumber(requests) / (tonumber(us) / 1e6)
  end

  local sides = {
    { name = "resty", label = "truedy.resty /dial", run = function() return app_rate("/dial", seconds) end },
    { name = "c_multi", label = "c-multi16", run = function()
      local r = common.run_client(c_multi, calls_url, warmup, n, env, { "taskset", "-c", cpu })
      if not r.calls then error("bench: c_multi: " .. tostring(r.failed or r.unavailable), 0) end
      return r.calls / r.seconds
    end },
    { name = "ping", label = "/ping", run = function() return app_rate("/ping", seconds) end },
    { name = "hop", label = "/hop", run = function() return app_rate("/hop", seconds) end },
  }
  app_rate("/dial", 1) -- warm-up: the thread VMs' clients and connections
  local rates, ratios = {}, {}
  for _, side in ipairs(sides) do rates[side.name] = {} end
  for rep = 1, reps do
    local line = {}
    for i = 0, #sides - 1 do
      local side = sides[(rep - 1 + i) % #sides + 1]
      local rate = side.run()
      rates[side.name][rep] = rate
      line[#line + 1] = ("%s %s/s"):format(side.label, common.thousands(rate))
    end
    ratios[rep] = rates.resty[rep] / rates.c_multi[rep]
    print(("  repetition %d/%d: %s (ratio %.2f)"):format(rep, reps, table.concat(line, ", "), ratios[rep]))
    io.stdout:flush()
  end
  print()
  print(("Calls per second (min / median / max of %d repetitions):"):format(reps))
  print(("  truedy.resty, %d concurrent POST /dial (wrk, %d s):        %s"):format(concurrency, seconds,
    spread_text(rates.resty, "%.0f")))
  print(("  c-multi16, C libcurl multi, 16 POSTs in flight (%s calls): %s"):format(common.thousands(n),
    spread_text(rates.c_multi, "%.0f")))
  local lo, mid, hi = common.spread(ratios)
  print(("  ratio truedy.resty / c-multi16, paired by repetition: %.2f / %.2f / %.2f (target >= 0.5: %s at"
    .. " the median)"):format(lo, mid, hi, mid >= 0.5 and "met" or "NOT met"))
  local _, ping_rate = common.spread(rates.ping)
  local _, hop_rate = common.spread(rates.hop)
  local _, dial_rate = common.spread(rates.resty)
  local _, c_rate = common.spread(rates.c_multi)
  local us = function(rate) return 1e6 / rate end
  print(("Where a /dial's time goes (medians; microseconds of CPU %s per request, %d connections):"):format(cpu,
    concurrency))
  print(("    the front HTTP request and its Lua handler (/ping, %s/s)   %7.1f"):format(
    common.thousands(ping_rate), us(ping_rate)))
  print(("  + a thread pool round trip doing nothing (/hop, %s/s)        %7.1f"):format(
    common.thousands(hop_rate), us(hop_rate) - us(ping_rate)))
  print(("  + the call in the thread, truedy.resty's checks and copies          %7.1f"):format(
    us(dial_rate) - us(hop_rate)))
  print(("  = POST /dial                                                        %7.1f"):format(us(dial_rate))
    .. ("   (c-multi16's call: %.1f)"):format(us(c_rate)))
end

if mode == "ping" then
  ping()
elseif mode == "dial" then
  dial()
else
  io.stderr:write("usage: lua5.4 bench/resty.lua ping|dial ... (see the comment at the top)\n")
  os.exit(2)
end
