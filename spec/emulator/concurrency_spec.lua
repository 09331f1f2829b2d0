-- Several workers, many clients at once: state stays exact because it lives in shared memory
-- and changes with atomic operations. This spec starts its own emulator with 4 workers (so it
-- does not depend on how the suite's emulator was started) and drives it with parallel curls.
local emu = require "spec.emulator.emu"

local WORKERS = 4

-- Runs `n` curl processes at once. Returns a list of { status = n, body = s }.
local function parallel(n, method, path, body, headers)
  local dir = emu.tmpdir()
  local args = { "-s", "--max-time", "20", "-X", method, "-H", "Authorization: Bearer " .. emu.key }
  for _, h in ipairs(headers or {}) do
    args[#args + 1] = "-H"
    args[#args + 1] = h
  end
  if body then
    emu.write_file(dir .. "/request", emu.json.encode(body))
    args[#args + 1] = "-H"
    args[#args + 1] = "Content-Type: application/json"
    args[#args + 1] = "--data-binary"
    args[#args + 1] = "@request"
  end
  local quoted = {}
  for i, a in ipairs(args) do quoted[i] = emu.quote(a) end
  local common = table.concat(quoted, " ") .. " " .. emu.quote(emu.url .. emu.PREFIX .. path)
  local script = { "cd " .. emu.quote(dir) }
  for i = 1, n do
    script[#script + 1] = ("curl %s -o out.%d -w '%%{http_code}' >code.%d &"):format(common, i, i)
  end
  script[#script + 1] = "wait"
  emu.sh(table.concat(script, "\n"))
  local results = {}
  for i = 1, n do
    results[i] = { status = tonumber(emu.read_file(dir .. "/code." .. i)), body = emu.read_file(dir .. "/out." .. i) }
  end
  emu.sh("rm -rf " .. emu.quote(dir))
  return results
end

describe("emulator with several workers", function()
  local suite_url, tmp, state_dir

  setup(function()
    suite_url = emu.url
    tmp = emu.tmpdir()
    state_dir = tmp .. "/state"
    local out, err, status = emu.launch("start --workers " .. WORKERS .. " --dir " .. emu.quote(state_dir))
    assert(status == 0, "could not start a second emulator: " .. err)
    emu.url = emu.parse_env(out).TRUEDY_EMULATOR_URL
  end)

  teardown(function()
    emu.url = suite_url
    if state_dir then emu.launch("stop --dir " .. emu.quote(state_dir)) end
    if tmp then emu.sh("rm -rf " .. emu.quote(tmp)) end
  end)

  before_each(function()
    emu.reset()
    emu.config { rate_limit = 0 }
  end)

  it("runs the requested number of workers", function()
    assert.are.equal(WORKERS, emu.control("GET", "/health").data.workers)
  end)

  it("creates one call for many concurrent requests with one idempotency key", function()
    local results = parallel(40, "POST", "/calls", emu.call_body(), { "X-Idempotency-Key: same-for-all" })
    local ids = {}
    for _, r in ipairs(results) do
      assert.are.equal(201, r.status, r.body)
      ids[emu.json.decode(r.body).data.id] = true
    end
    assert.are.equal(1, #emu.list_calls())
    local n = 0
    for _ in pairs(ids) do n = n + 1 end
    assert.are.equal(1, n, "every response names the same call")
  end)

  it("creates one call per key when many keys each get many duplicates at once", function()
    -- Duplicates of one key arrive on several workers around the moment its first request ends.
    local keys, duplicates, requests = 150, 8, {}
    for _ = 1, duplicates do
      for k = 1, keys do
        requests[#requests + 1] = { method = "POST", path = "/calls", body = emu.call_body(),
          headers = { "X-Idempotency-Key: many-" .. k } }
      end
    end
    local results = emu.blast(requests, { processes = 8, per_process = 100 })
    local id_of = {}
    for i, r in ipairs(results) do
      assert.are.equal(201, r.status, r.body)
      local key = requests[i].headers[1]
      local id = emu.json.decode(r.body).data.id
      id_of[key] = id_of[key] or id
      assert.are.equal(id_of[key], id, "every answer for " .. key .. " names one call")
    end
    local _, pagination = emu.list_calls()
    assert.are.equal(keys, pagination.total)
  end)

  it("hands out unique call ids and journals every request once, in a dense order, on several workers", function()
    local results = parallel(100, "POST", "/calls", emu.call_body())
    local ids, n = {}, 0
    for _, r in ipairs(results) do
      assert.are.equal(201, r.status, r.body)
      local id = emu.json.decode(r.body).data.id
      assert.is_nil(ids[id], "duplicate id " .. id)
      ids[id] = true
      n = n + 1
    end
    assert.are.equal(100, n)
    local _, pagination = emu.list_calls()
    assert.are.equal(100, pagination.total)

    local journal = emu.journal()
    local workers = {}
    local posts = 0
    for i, e in ipairs(journal) do
      assert.are.equal(i, e.seq)
      if e.method == "POST" then posts = posts + 1 end
      workers[e.worker] = true
    end
    assert.are.equal(100, posts)
    local distinct = 0
    for _ in pairs(workers) do distinct = distinct + 1 end
    assert.is_true(distinct >= 2, "requests were served by " .. distinct .. " worker(s)")
  end)

  it("holds exactly `count` of many concurrent requests across workers, and releases them all", function()
    local count, total = 20, 60
    local f = emu.fault { method = "GET", path = "/calls", type = "hold", count = count }
    local requests = {}
    for i = 1, total do requests[i] = { method = "GET", path = "/calls" } end
    local wait = emu.blast_start(requests, { processes = 6, per_process = 10 })
    -- every request reached the server: `count` of them held, the others answered
    local journal = emu.eventually(function()
      local j = emu.journal()
      local answered = 0
      for _, e in ipairs(j) do
        if e.status == 200 then answered = answered + 1 end
      end
      return #j == total and answered == total - count and j
    end, 20, 0.05)
    assert.is_table(journal, "the requests did not all reach the server")
    local held = emu.held()
    assert.are.equal(count, #held)
    local workers = {}
    for _, e in ipairs(journal) do
      if e.status == emu.null then assert.are.same({ "hold", f.id, "holding" }, { e.fault, e.fault_id, e.held }) end
      workers[e.worker] = true
    end
    local distinct = 0
    for _ in pairs(workers) do distinct = distinct + 1 end
    assert.is_true(distinct >= 2, "requests were served by " .. distinct .. " worker(s)")
    assert.are.equal(0, emu.control("GET", "/faults").data[1].remaining)

    assert.are.equal(count, #emu.release())
    assert.are.same({ [200] = total }, emu.count_status(wait()))
    local released = 0
    for _, e in ipairs(emu.journal()) do
      if e.held == "released" then released = released + 1 end
    end
    assert.are.equal(count, released)
  end)

  it("applies every one of many concurrent clock advances", function()
    emu.config { clock_speed = 0 } -- emulated time moves only by the advances
    local function emulated_seconds()
      local iso = emu.control("GET", "/config").data.emulated_now
      local h, m, sec = iso:match("T(%d+):(%d+):([%d.]+)Z$")
      return tonumber(h) * 3600 + tonumber(m) * 60 + tonumber(sec)
    end
    local before = emulated_seconds()
    local requests = {}
    for i = 1, 400 do
      requests[i] = { method = "POST", path = "/__emulator/clock/advance", body = { seconds = 1 }, raw = true }
    end
    assert.are.same({ [200] = 400 }, emu.count_status(emu.blast(requests, { processes = 8, per_process = 50 })))
    -- (modulo a day: the emulated clock may pass midnight meanwhile)
    assert.are.equal(400, math.floor((emulated_seconds() - before) % 86400 + 0.5))
  end)

  -- The next two send requests as fast as possible from many connections at once (emu.hammer:
  -- wrk if installed) and count the answers the server journaled, so that workers really count at
  -- the same moment: a count kept with get + set instead of an atomic incr fails both every time
  -- with wrk (tens of lost updates per run); without wrk, the rate-limit one only every other time.
  local budget = emu.has_wrk and 2000 or 500

  it("enforces the rate limit exactly across workers", function()
    emu.config { rate_limit = budget, rate_window = 86400 } -- one window for sure: no edge mid-test
    local counts, total = emu.hammer("/calls")
    assert.is_true(total > budget, "only " .. total .. " requests were sent")
    assert.are.equal(budget, counts[200])
    assert.are.equal(total - budget, counts[429])
  end)

  it("gives a fault exactly `count` uses across workers", function()
    emu.fault { type = "status", status = 503, count = budget }
    local counts, total = emu.hammer("/calls")
    assert.is_true(total > budget, "only " .. total .. " requests were sent")
    assert.are.equal(budget, counts[503])
    assert.are.equal(total - budget, counts[200])
    assert.are.equal(0, emu.control("GET", "/faults").data[1].remaining)
  end)
end)
