-- Batches: client:create_calls (blocking) and client:start_calls (driven by client:poll):
-- bounded concurrency, results in input order, bad rows refused alone, the 429 pause,
-- batch_id keys that make a rerun dial no one twice, pacing, callbacks, cancel.
local helper = require "spec.support.helper"
local emu = require "spec.emulator.emu"

local function phone(i) return ("+1212555%04d"):format(i) end

local function rows_of(n, first)
  local rows = {}
  for i = 1, n do rows[i] = helper.params { phone_number = phone((first or 0) + i) } end
  return rows
end

local function calls_total()
  local _, page = emu.list_calls()
  return page.total
end

local function key_of(entry) return entry.headers["x-idempotency-key"] end

-- Drives the client until cond() holds; bounded (a stuck batch fails the spec, it does not hang it).
local function drive_until(client, cond, what)
  local deadline = helper.now() + 15
  while not cond() do
    assert(helper.now() < deadline, "gave up waiting for " .. what)
    client:poll(0.01)
  end
end

local function held_count() return #emu.held() end

-- The journal as lines, for failure messages.
local function journal_lines()
  local lines = {}
  for k, entry in ipairs(helper.journal()) do
    lines[k] = ("#%d %s %s %s %s"):format(k, entry.ts, entry.method, tostring(entry.status),
      tostring(key_of(entry)))
  end
  return table.concat(lines, "\n")
end

-- A fresh client sends nothing else until its first answer came back (CURLOPT_PIPEWAIT on
-- plain http://, see the pending spec at the end): one finished read first, so that a held
-- first request does not hold back the others.
local function warm_client(options)
  local client = helper.client(options)
  assert(client:list_calls { limit = 1 })
  return client
end

-- The n held POSTs the client gave up on end unprocessed: whatever the emulator holds is
-- dropped (lua-nginx-module does not always see a hang-up that follows the request at once),
-- then every one of them must show as hung up (499) or dropped (444): never processed, and
-- nothing left that could be processed after the next spec's reset.
local function assert_hung_up(n)
  local ok = emu.eventually(function()
    -- (again each time: a request that reached the server may not be listed as held yet)
    helper.control("POST", "/held/release", { drop = true })
    local count = 0
    for _, entry in ipairs(helper.journal("POST")) do
      if (entry.held == "hung_up" and entry.status == 499) or (entry.held == "dropped" and entry.status == 444) then
        count = count + 1
      end
    end
    return count >= n
  end, 10, 0.01)
  assert.is_truthy(ok, n .. " held requests ended unprocessed\n" .. journal_lines())
end

-- Rate-limit specs count requests inside one window: start early in one.
local function early_in_window(window, margin)
  local into = helper.now() % window
  if into > margin then require("socket").sleep(window - into + 0.05) end
end

describe("batches", function()
  before_each(helper.reset)
  after_each(function() helper.control("DELETE", "/faults") end)

  it("places every row and gives the results in input order, each { res = ... }", function()
    local rows = rows_of(6)
    local results = helper.client():create_calls(rows, { concurrency = 3 })
    assert.equal(6, #results)
    for i, r in ipairs(results) do
      assert.is_nil(r.err, "row " .. i)
      assert.equal(phone(i), r.res.data.to_number, "row " .. i .. " holds its own call")
      assert.matches("^call_", r.res.data.id)
    end
    assert.equal(6, #helper.journal("POST"))
    assert.equal(6, calls_total())
  end)

  it("gives an empty batch an empty result", function()
    assert.same({}, helper.client():create_calls({}))
    assert.equal(0, #helper.journal())
  end)

  it("refuses bad rows, each with its own invalid_params error, without stopping the batch", function()
    local rows = {
      helper.params { phone_number = phone(1) },
      helper.params { phone_number = "555-1234" },
      42,
      { params = "nope" },
      { params = helper.params(), priority = 1 },
      helper.params { idempotency_key = "inside-params" },
      { params = helper.params(), idempotency_key = "has space" },
      { params = helper.params { phone_number = phone(8) }, idempotency_key = "own-8" },
    }
    local results = helper.client():create_calls(rows, { concurrency = 2 })
    assert.equal(8, #results)
    assert.equal(phone(1), results[1].res.data.to_number)
    assert.equal(phone(8), results[8].res.data.to_number)
    local fields = {}
    for i = 2, 7 do
      local err = results[i].err
      assert.is_nil(results[i].res)
      assert.equal("invalid_params", err.kind, "row " .. i)
      assert.equal(0, err.attempts)
      assert.is_false(err.retryable)
      assert.matches("^truedy: invalid_params: ", tostring(err))
      fields[i] = err.field
    end
    assert.same({ "phone_number", "row", "params", "priority", "idempotency_key", "idempotency_key" },
      { fields[2], fields[3], fields[4], fields[5], fields[6], fields[7] })
    assert.matches("beside the parameters", results[6].err.message)
    -- only the two good rows reached the server
    local posts = helper.journal("POST")
    assert.equal(2, #posts)
    local keys = { key_of(posts[1]), key_of(posts[2]) }
    assert.is_true(keys[1] == "own-8" or keys[2] == "own-8")
  end)

  it("raises on programmer errors: rows and options", function()
    local client = helper.client()
    local cases = {
      { "x", nil, "create_calls: rows must be a table (an array of rows), got a string" },
      { { helper.params(), name = "x" }, nil,
        "create_calls: rows must be an array (keys 1 to n, no holes), found key 'name'" },
      { {}, "fast", "create_calls: options must be a table, got a string" },
      { {}, { concurency = 2 }, "create_calls: unknown option 'concurency'" },
      { {}, { concurrency = 0 }, "create_calls: option 'concurrency' must be a whole number, 1 or more" },
      { {}, { concurrency = 1.5 }, "create_calls: option 'concurrency' must be a whole number, 1 or more" },
      { {}, { concurrency = "4" }, "create_calls: option 'concurrency' must be a whole number, 1 or more" },
      { {}, { per_minute = 0 }, "create_calls: option 'per_minute' must be a number greater than 0" },
      { {}, { per_minute = 0 / 0 }, "create_calls: option 'per_minute' must be a number greater than 0" },
      { {}, { on_result = true }, "create_calls: option 'on_result' must be a function, got a boolean" },
      { {}, { on_progress = {} }, "create_calls: option 'on_progress' must be a function, got a table" },
      { {}, { batch_id = "" }, "create_calls: option 'batch_id' must be a non-empty string, got a string" },
      { {}, { batch_id = 7 }, "create_calls: option 'batch_id' must be a non-empty string, got a number" },
      { {}, { batch_id = "spring batch" }, "create_calls: option 'batch_id' must be printable ASCII"
        .. " without spaces (its keys travel in an HTTP header)" },
      { {}, { batch_id = "caf\195\169" }, "create_calls: option 'batch_id' must be printable ASCII"
        .. " without spaces (its keys travel in an HTTP header)" },
      { rows_of(1000), { batch_id = ("x"):rep(251) }, "create_calls: option 'batch_id' is too long: at most"
        .. " 250 characters for 1000 rows (a row's key is batch_id:index, at most 255 characters)" },
    }
    for _, case in ipairs(cases) do
      assert.has_error(function() client:create_calls(case[1], case[2]) end, case[3])
    end
    -- #rows of a table with a hole is either border: the message names the key beyond it, or none
    assert.error_matches(function() client:create_calls({ [1] = helper.params(), [3] = helper.params() }) end,
      "^create_calls: rows must be an array %(keys 1 to n, no holes%)")
    assert.has_error(function() client:start_calls({}, { batch_id = 1 }) end,
      "start_calls: option 'batch_id' must be a non-empty string, got a number")
    -- the longest batch_id that fits is accepted
    assert.equal(0, #client:create_calls({}, { batch_id = ("x"):rep(253) }))
    assert.equal(0, #helper.journal())
    client:close()
    assert.has_error(function() client:create_calls({}) end, "truedy: the client is closed")
  end)

  it("keeps at most `concurrency` requests in flight (held by the emulator)", function()
    local client = warm_client()
    helper.fault { method = "POST", path = "/calls", type = "hold", count = 100 }
    local b = client:start_calls(rows_of(7), { concurrency = 3 })
    drive_until(client, function() return held_count() >= 3 end, "3 held requests")
    -- nothing can finish while all are held, so no fourth row can have started
    assert.equal(3, held_count())
    assert.equal(3, #helper.journal("POST"))
    assert.equal(3, client:pending())
    assert.equal(0, (b:progress()))
    -- one answer frees one slot: exactly one more row goes
    emu.release { count = 1 }
    drive_until(client, function() return #helper.journal("POST") >= 4 and held_count() >= 3 end,
      "the fourth row held")
    assert.equal(4, #helper.journal("POST"))
    assert.equal(3, client:pending())
    assert.equal(1, (b:progress()))
    helper.control("DELETE", "/faults") -- releases them, holds no more
    local results = assert(b:wait(15))
    for i, r in ipairs(results) do assert.equal(phone(i), r.res.data.to_number) end
    assert.equal(7, #helper.journal("POST"))
  end)

  it("honours a 429 mid-batch: no POST /calls before reset_at once the 429 was answered", function()
    local window, concurrency = 2, 3
    helper.configure { rate_limit = 3, rate_window = window }
    early_in_window(window, 0.5)
    local results = helper.client():create_calls(rows_of(7), { concurrency = concurrency, batch_id = "paused" })
    for i, r in ipairs(results) do
      assert.is_nil(r.err, "row " .. i .. " is placed after the window resets: " .. tostring(r.err))
      assert.equal(phone(i), r.res.data.to_number)
    end
    local posts = helper.journal("POST")
    local first
    for k, entry in ipairs(posts) do
      if entry.status == 429 then first = k; break end
    end
    local shown = {}
    for k, entry in ipairs(posts) do
      shown[k] = ("#%d %s %s %s"):format(k, entry.ts, tostring(entry.status), tostring(key_of(entry)))
    end
    shown = table.concat(shown, "\n")
    assert.is_number(first, "the batch met the rate limit\n" .. shown)
    -- the window of that 429 ends at reset_at (the emulator's windows are aligned to the epoch)
    local reset = (math.floor(helper.epoch(posts[first].ts) / window) + 1) * window
    local early, after = 0, 0
    for k = first + 1, #posts do
      if helper.epoch(posts[k].ts) < reset then
        -- only a POST already on its way when that 429 came back (one per other slot)
        early = early + 1
        assert.equal(429, posts[k].status, "POST #" .. k .. " before reset_at\n" .. shown)
      else
        after = after + 1
      end
    end
    assert.is_true(early <= concurrency - 1, early .. " POSTs before reset_at\n" .. shown)
    assert.is_true(after >= 1, shown)
    local created = 0
    for _, entry in ipairs(posts) do
      if entry.status == 201 then created = created + 1 end
    end
    assert.equal(7, created, shown)
    assert.equal(7, calls_total())
  end)

  it("fails every waiting row at once with the 429 when reset_at is beyond retry_max_wait", function()
    helper.configure { rate_limit = 2, rate_window = 3600 }
    early_in_window(3600, 3600 - 5)
    local client = helper.client { retry_max_wait = 1 }
    local b = client:start_calls(rows_of(8), { concurrency = 2, batch_id = "far-reset" })
    -- bounded: a row started into the pause would wait about an hour
    local results = b:wait(20)
    local shown = journal_lines()
    assert.is_table(results, "the batch ended at once\n" .. shown)
    -- the first two POSTs to arrive were placed (which rows they are depends on arrival)
    local placed, sent, not_sent = 0, 0, 0
    for i, r in ipairs(results) do
      if r.res then
        placed = placed + 1
        assert.equal(phone(i), r.res.data.to_number)
      else
        local err = r.err
        assert.equal("api", err.kind, "row " .. i .. "\n" .. shown)
        assert.equal(429, err.status)
        assert.equal("rate_limit_exceeded", err.code)
        assert.is_true(err.retryable)
        assert.is_true(err.retry_after > 1, "the wait that was too long")
        assert.equal("far-reset:" .. i, err.idempotency_key)
        if err.attempts > 0 then
          sent = sent + 1
        else
          not_sent = not_sent + 1
          assert.matches("not sent: the client is paused", err.message)
        end
      end
    end
    assert.equal(2, placed, shown)
    -- at most one 429 on the wire per slot; every other row stopped without a request
    assert.is_true(sent >= 1 and sent <= 2, shown)
    assert.equal(6 - sent, not_sent)
    assert.equal(2 + sent, #helper.journal("POST"), shown)
    assert.equal(0, client:pending())
  end)

  it("stops a row it started into the pause before it learnt of it (on_done order)", function()
    -- Two rows answered, a 201 and then a 429 beyond retry_max_wait, both judged before the
    -- batch's callbacks run: the 201's on_done starts the next row into the client's pause,
    -- then the 429's on_done must stop that row at once (the engine leaves it queued).
    helper.configure { rate_limit = 3, rate_window = 3600 }
    early_in_window(3600, 3600 - 5)
    local client = warm_client { retry_max_wait = 1 } -- counted: 1 of 3
    helper.fault { method = "POST", path = "/calls", type = "hold", count = 2 }
    local b = client:start_calls(rows_of(6), { concurrency = 2, batch_id = "order" })
    drive_until(client, function() return held_count() >= 2 end, "2 held requests")
    local function answered(n)
      return emu.eventually(function()
        local count = 0
        for _, entry in ipairs(helper.journal("POST")) do
          if entry.status then count = count + 1 end
        end
        return count >= n
      end, 10, 0.01)
    end
    -- the first row out gets its 201 (2 of 3); a blocking read judges it without running
    -- the batch's on_done (404, 3 of 3)
    emu.release { count = 1 }
    assert.is_truthy(answered(1))
    assert.equal(404, select(2, client:get_call("call_nope")).status)
    -- the second row gets the 429 (4 of 3); another blocking read judges it: the pause
    -- begins, and its on_done is queued behind the first one's
    emu.release {}
    assert.is_truthy(answered(2))
    local _, read_err = client:get_call("call_nope")
    assert.equal(429, read_err.status)
    -- now the callbacks: the 201's starts row 3 (into the pause), the 429's stops it
    local results = b:wait(20)
    local shown = journal_lines()
    assert.is_table(results, "the batch ended at once\n" .. shown)
    local placed = 0
    for i = 1, 6 do
      local r = results[i]
      if r.res then
        placed = placed + 1
      else
        assert.equal(429, r.err.status, "row " .. i)
        assert.equal("order:" .. i, r.err.idempotency_key)
      end
    end
    assert.equal(1, placed)
    for i = 3, 6 do
      assert.equal(0, results[i].err.attempts, "row " .. i .. " never sent")
      assert.matches("not sent: the client is paused", results[i].err.message)
    end
    assert.equal(2, #helper.journal("POST"), shown)
    assert.equal(0, client:pending())
  end)

  it("reruns a batch with the same batch_id without creating anything new", function()
    local rows = rows_of(4)
    local client = helper.client()
    local first = client:create_calls(rows, { batch_id = "rerun-7", concurrency = 2 })
    assert.equal(4, calls_total())
    -- a crash and a restart: a new client, the same rows in the same order
    local again = helper.client():create_calls(rows, { batch_id = "rerun-7" })
    assert.equal(4, calls_total())
    for i = 1, 4 do assert.equal(first[i].res.data.id, again[i].res.data.id, "row " .. i) end
    local posts = helper.journal("POST")
    assert.equal(8, #posts)
    for k, entry in ipairs(posts) do assert.matches("^rerun%-7:[1-4]$", key_of(entry), "POST " .. k) end
    -- another batch_id is another batch
    client:create_calls(rows, { batch_id = "rerun-8" })
    assert.equal(8, calls_total())
  end)

  it("uses a row's own idempotency_key, and batch_id:index for the others", function()
    local rows = {
      { params = helper.params { phone_number = phone(1) }, idempotency_key = "crm-contact-1" },
      helper.params { phone_number = phone(2) },
      { params = helper.params { phone_number = phone(3) } },
    }
    local client = helper.client()
    local first = client:create_calls(rows, { batch_id = "own", concurrency = 1 })
    local keys = {}
    for k, entry in ipairs(helper.journal("POST")) do keys[k] = key_of(entry) end
    assert.same({ "crm-contact-1", "own:2", "own:3" }, keys)
    -- rows with their own keys survive an edited input: here the rows move and row 2 is new
    local edited = {
      { params = helper.params { phone_number = phone(9) }, idempotency_key = "crm-contact-9" },
      { params = helper.params { phone_number = phone(1) }, idempotency_key = "crm-contact-1" },
    }
    local again = client:create_calls(edited)
    assert.equal(first[1].res.data.id, again[2].res.data.id)
    assert.equal(phone(9), again[1].res.data.to_number)
    assert.equal(4, calls_total())
  end)

  it("paces the starts with per_minute (each POST no earlier than its slot)", function()
    local interval = 0.2
    local started = helper.now()
    local results = helper.client():create_calls(rows_of(4), { per_minute = 60 / interval,
      concurrency = 4, batch_id = "paced" })
    for i, r in ipairs(results) do assert.equal(phone(i), r.res.data.to_number) end
    local posts = helper.journal("POST")
    assert.equal(4, #posts)
    for _, entry in ipairs(posts) do
      local row = tonumber(key_of(entry):match("^paced:(%d+)$"))
      -- a lower bound only: row k may not start before (k - 1) intervals (ms slack for clocks)
      local earliest = started + (row - 1) * interval
      assert.is_true(helper.epoch(entry.ts) >= earliest - 0.01,
        ("row %d arrived %.3f s before its slot"):format(row, earliest - helper.epoch(entry.ts)))
    end
  end)

  it("calls on_result once per row and on_progress with done counting up, from poll only", function()
    local client = helper.client()
    local in_poll = false
    local seen, progress, batches = {}, {}, {}
    local rows = rows_of(5)
    rows[1] = helper.params { phone_number = "bad" } -- refused at once: reported from poll too
    local b = client:start_calls(rows, { concurrency = 2,
      on_result = function(i, res, err, batch)
        assert.is_true(in_poll, "on_result runs from client:poll")
        seen[#seen + 1] = i
        batches[#batches + 1] = batch
        if i == 1 then assert.equal("invalid_params", err.kind) else assert.is_nil(err); assert.is_table(res) end
      end,
      on_progress = function(done, total)
        assert.is_true(in_poll, "on_progress runs from client:poll")
        progress[#progress + 1] = done .. "/" .. total
      end })
    assert.same({}, seen, "nothing runs from inside start_calls")
    local deadline = helper.now() + 15
    while not b:done() do
      assert(helper.now() < deadline, "the batch did not finish")
      in_poll = true
      client:poll(0.05)
      in_poll = false
    end
    table.sort(seen)
    assert.same({ 1, 2, 3, 4, 5 }, seen)
    assert.same({ "1/5", "2/5", "3/5", "4/5", "5/5" }, progress)
    for _, batch in ipairs(batches) do assert.equal(b, batch) end
  end)

  it("runs without blocking: start_calls sends nothing, poll(0) drives it to the end", function()
    local client = helper.client()
    local b = client:start_calls(rows_of(5), { concurrency = 2 })
    assert.is_false(b:done())
    assert.same({ 0, 5 }, { b:progress() })
    assert.equal(0, #helper.journal(), "nothing is sent before the first poll")
    assert.has_error(function() b:results() end,
      "truedy: the batch is not finished yet (b:done() is false; drive it with client:poll() or b:wait())")
    local polls, deadline = 0, helper.now() + 15
    while not b:done() do
      assert(helper.now() < deadline, "the batch did not finish")
      client:poll(0)
      polls = polls + 1
    end
    assert.is_true(polls > 1)
    local results = b:results()
    for i, r in ipairs(results) do assert.equal(phone(i), r.res.data.to_number) end
    assert.same({ 5, 5 }, { b:progress() })
    assert.same(results, b:wait(0))
    assert.equal(0, client:pending())
  end)

  it("cancels the rows in flight and the rows not started", function()
    local client = warm_client()
    helper.fault { method = "POST", path = "/calls", type = "hold", count = 100 }
    local reported = {}
    local b = client:start_calls(rows_of(5), { concurrency = 2, batch_id = "stop",
      on_result = function(i, _, err) reported[i] = err.kind end })
    drive_until(client, function() return held_count() >= 2 end, "2 held requests")
    assert.is_true(b:cancel())
    assert.is_false(b:cancel())
    assert.equal(0, client:pending())
    local results = assert(b:wait(5))
    for i, r in ipairs(results) do
      assert.is_nil(r.res)
      assert.equal("cancelled", r.err.kind, "row " .. i)
      assert.is_true(r.err.retryable)
      assert.equal("stop:" .. i, r.err.idempotency_key)
      -- rows 1 and 2 were on the wire: the call may exist; 3 to 5 never left
      assert.equal(i <= 2, r.err.maybe_sent, "row " .. i)
      if i > 2 then
        assert.equal(0, r.err.attempts)
        assert.matches("nothing reached the server", r.err.message)
      end
    end
    assert.same({ "cancelled", "cancelled", "cancelled", "cancelled", "cancelled" }, reported)
    assert.equal(2, #helper.journal("POST"))
    assert_hung_up(2)
    assert.equal(0, calls_total())
  end)

  it("finishes with 'closed' errors when the client is closed mid-batch", function()
    local client = warm_client()
    helper.fault { method = "POST", path = "/calls", type = "hold", count = 100 }
    local calls = 0
    local b = client:start_calls(rows_of(4), { concurrency = 2, on_result = function() calls = calls + 1 end })
    drive_until(client, function() return held_count() >= 2 end, "2 held requests")
    client:close()
    assert.is_true(b:done())
    local results = b:results()
    for i, r in ipairs(results) do
      assert.equal("cancelled", r.err.kind, "row " .. i)
      assert.matches("the client was closed", r.err.message)
    end
    assert.equal(0, calls, "a closed client runs no more callbacks")
    assert.is_false(b:cancel())
    assert_hung_up(2)
  end)

  it("surfaces an error raised by on_result from poll, and goes on", function()
    local client = helper.client()
    local boom = { "boom" }
    local calls = {}
    local b = client:start_calls(rows_of(4), { concurrency = 4,
      on_result = function(i)
        calls[#calls + 1] = i
        if #calls == 1 then error(boom) end
      end })
    local raised, deadline = nil, helper.now() + 15
    while not b:done() do
      assert(helper.now() < deadline, "the batch did not finish")
      local ok, err = pcall(client.poll, client, 0.05)
      if not ok then
        assert.is_nil(raised, "raised once")
        raised = err
      end
    end
    assert.equal(boom, raised, "the callback's own error, unchanged")
    assert.equal(4, #calls)
    table.sort(calls)
    assert.same({ 1, 2, 3, 4 }, calls)
  end)

  it("create_calls cancels what is left and re-raises when a callback raises", function()
    -- the first POST to arrive is refused, the other one is held
    helper.fault { method = "POST", path = "/calls", type = "status", status = 422, count = 1 }
    local client = warm_client()
    helper.fault { method = "POST", path = "/calls", type = "hold", count = 100 }
    assert.has_error(function()
      client:create_calls(rows_of(4), { concurrency = 2,
        on_result = function(_, _, err) if err then error("stop the batch") end end })
    end, "stop the batch")
    assert.equal(0, client:pending())
    assert_hung_up(1)
    assert.equal(0, calls_total())
  end)

  it("can cancel itself from on_result (the fourth argument)", function()
    local client = helper.client()
    local results = client:create_calls(rows_of(6), { concurrency = 1,
      on_result = function(i, _, _, b) if i == 2 then b:cancel() end end })
    assert.is_table(results[1].res)
    assert.is_table(results[2].res)
    for i = 3, 6 do assert.equal("cancelled", results[i].err.kind) end
    assert.equal(2, #helper.journal("POST"))
  end)
end)

describe("examples/batch.lua", function()
  before_each(helper.reset)

  local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

  -- Runs the example in a fresh interpreter; returns exit status, stdout, stderr.
  local function run_example(args, extra)
    local err_file = os.tmpname()
    local wrapper = ""
    if os.getenv("TRUEDY_TEST_WRAPPER") == "valgrind" then
      wrapper = "valgrind --quiet --error-exitcode=97 --leak-check=full --show-leak-kinds=definite"
        .. " --errors-for-leak-kinds=definite "
    end
    local command = ("env -u TRUEDY_API_KEY -u TRUEDY_BASE_URL TRUEDY_API_KEY=%s TRUEDY_BASE_URL=%s"
      .. " TRUEDY_AGENT_ID=%s %s LUA_CPATH=%s LUA_PATH=%s %s%s examples/batch.lua %s 2>%s; echo \"__exit=$?\"")
      :format(quote(helper.api_key), quote(helper.base_url), quote(helper.agent.id), extra or "",
        quote(helper.module_dir .. "/?.so;;"), quote("lua/?.lua;;"), wrapper, helper.lua, args, quote(err_file))
    local pipe = assert(io.popen(command))
    local output = pipe:read("*a")
    pipe:close()
    local file = assert(io.open(err_file, "rb"))
    local stderr = file:read("*a")
    file:close()
    os.remove(err_file)
    return tonumber(output:match("__exit=(%d+)%s*$")), (output:gsub("__exit=%d+%s*$", "")), stderr
  end

  it("writes one CSV line per contact, and a rerun with the same batch id dials no one twice", function()
    local status, out, err = run_example("examples/contacts.csv spec-rerun", "TRUEDY_PROGRESS=1")
    assert.equal(0, status, err)
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.equal("row,phone_number,call_id,status,error", lines[1])
    assert.equal(6, #lines, out)
    assert.matches("^1,%+12125550101,call_%x+,queued,$", lines[2])
    assert.matches('^4,555%-0104,,,"truedy: invalid_params: phone_number: ', lines[5])
    -- the progress, one line per contact (stderr is not a terminal here)
    assert.matches("^1/5 done: .*\n5/5 done: 4 placed, 1 failed\n$", err)
    local created = calls_total()
    assert.equal(4, created)
    -- again, the same contacts from standard input under the same batch id: the same calls back
    local status2, out2, err2 = run_example("- spec-rerun < examples/contacts.csv")
    assert.equal(0, status2, err2)
    assert.equal("", err2)
    assert.equal(out, out2)
    assert.equal(created, calls_total())
    local keys = {}
    for k, entry in ipairs(helper.journal("POST")) do keys[k] = key_of(entry) end
    table.sort(keys)
    assert.same({ "spec-rerun:1", "spec-rerun:1", "spec-rerun:2", "spec-rerun:2", "spec-rerun:3",
      "spec-rerun:3", "spec-rerun:5", "spec-rerun:5" }, keys)
  end)
end)

-- Engine defects found while building batches, fixed in csrc/: each spec failed before.
describe("the engine, as batches need it", function()
  before_each(helper.reset)
  after_each(function() helper.control("DELETE", "/faults") end)

  it("gives a request started while the client is paused past its retry_max_wait the 429 at once", function()
    helper.configure { rate_limit = 1, rate_window = 3600 }
    early_in_window(3600, 3600 - 5)
    local client = helper.client { retry_max_wait = 1 }
    assert(client:create_call(helper.params()))
    local _, err = client:create_call(helper.params())
    assert.equal(429, err.status) -- reset_at beyond retry_max_wait: the client is paused
    local h = assert(client:start_call(helper.params()))
    local res, paused = h:wait(5)
    assert.is_true(h:done(), "the handle is still " .. h:state())
    assert.is_nil(res)
    assert.equal(429, paused.status)
    assert.equal(0, paused.attempts)
    assert.matches("not sent", paused.message)
    assert.equal(2, #helper.journal("POST"))
  end)

  it("sends a fresh client's first requests side by side on plain http://", function()
    local client = helper.client()
    helper.fault { method = "POST", path = "/calls", type = "hold", count = 3 }
    for _ = 1, 3 do assert(client:start_call(helper.params())) end
    drive_until(client, function() return held_count() >= 3 end, "3 held requests")
    assert.equal(3, #helper.journal("POST"))
    emu.release {}
  end)
end)
