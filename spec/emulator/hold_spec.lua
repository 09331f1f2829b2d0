-- The hold fault: a matching request stays unanswered until the control surface releases it.
-- Every wait here is for a cause ("the server lists it as held", "curl finished"), bounded.
local emu = require "spec.emulator.emu"
local socket = require "socket"

-- The journal entry with sequence number `seq`.
local function entry(seq)
  for _, e in ipairs(emu.journal()) do
    if e.seq == seq then return e end
  end
end

-- Waits (bounded) until journal entry `seq` has a status, and returns the entry.
local function finished_entry(seq)
  return emu.eventually(function()
    local e = entry(seq)
    return e and e.status ~= emu.null and e
  end)
end

describe("emulator hold fault", function()
  before_each(emu.reset)

  it("holds a matching request until it is released, and shows it held meanwhile", function()
    local f = emu.fault { method = "GET", path = "/calls", type = "hold" }
    assert.are.same({ "hold", 30, "before" }, { f.type, f.seconds, f.when })
    local wait, finished = emu.background("GET", "/calls")
    local held = emu.wait_held(1)
    assert.is_table(held, "the request was never held")
    local h = held[1]
    assert.are.same({ f.id, "GET", emu.PREFIX .. "/calls", "before", 30 },
      { h.fault_id, h.method, h.path, h.when, h.seconds })
    assert.matches(emu.ISO_US, h.since)
    assert.is_number(h.worker)

    -- the journal has the request, unanswered, marked as being held
    local e = entry(h.seq)
    assert.are.same({ "GET", emu.null, "hold", f.id, "holding" }, { e.method, e.status, e.fault, e.fault_id, e.held })
    assert.is_false(finished(), "curl got an answer while the request was held")
    assert.are.equal(0, emu.control("GET", "/faults").data[1].remaining)

    assert.are.same({ h.seq }, emu.release())
    local r = wait()
    assert.are.same({ 0, 200 }, { r.exit, r.status })
    assert.are.same({}, emu.json.decode(r.body).data)
    e = entry(h.seq)
    assert.are.same({ 200, "hold", "released" }, { e.status, e.fault, e.held })
    assert.are.same({}, emu.held())
    assert.are.same({}, emu.release(), "nothing left to release")
  end)

  it("drops held requests on demand: closed unanswered, never processed", function()
    for _, when in ipairs({ "before", "inside" }) do
      emu.reset()
      emu.fault { method = "POST", path = "/calls", type = "hold", when = when }
      local wait = emu.background("POST", "/calls", emu.call_body(), { "-H", "X-Idempotency-Key: drop-" .. when })
      local held = emu.wait_held(1)
      assert.is_table(held, "the request was never held")
      assert.are.same({ held[1].seq }, emu.release { drop = true })
      local r = wait()
      assert.are.equal(52, r.exit, when .. ": curl should see an empty reply (connection closed)")
      local e = finished_entry(held[1].seq)
      assert.are.same({ 444, "dropped" }, { e.status, e.held })
      assert.are.same({}, emu.list_calls(), when .. ": a dropped request is never processed")
      -- the idempotency key was let go: the same request now goes through
      local again = emu.background("POST", "/calls", emu.call_body(), { "-H", "X-Idempotency-Key: drop-" .. when })()
      assert.are.equal(201, again.status)
    end
  end)

  it("a reset drops what is held: nothing leaks into the state after it", function()
    emu.fault { method = "POST", path = "/calls", type = "hold" }
    local wait = emu.background("POST", "/calls", emu.call_body())
    assert.is_table(emu.wait_held(1))
    emu.reset()
    local r = wait()
    assert.are.equal(52, r.exit)
    assert.are.same({}, emu.held())
    assert.are.same({}, emu.list_calls(), "the held request created a call after the reset")
  end)

  it("before: the API sees nothing until the release; after: the call exists, its answer waits", function()
    emu.fault { method = "POST", path = "/calls", type = "hold" }
    local wait = emu.background("POST", "/calls", emu.call_body())
    assert.is_table(emu.wait_held(1))
    assert.are.same({}, emu.list_calls(), "a request held before the API created nothing yet")
    emu.release()
    local r = wait()
    assert.are.equal(201, r.status)
    assert.are.equal(1, #emu.list_calls())

    emu.fault { method = "POST", path = "/calls", type = "hold", when = "after" }
    wait = emu.background("POST", "/calls", emu.call_body())
    local held = emu.wait_held(1)
    assert.are.equal("after", held[1].when)
    local listed = emu.list_calls()
    assert.are.equal(2, #listed, "held after: the call was created already")
    emu.release()
    r = wait()
    assert.are.equal(201, r.status)
    assert.are.equal(listed[1].id, emu.json.decode(r.body).data.id, "the answer names the call created")
  end)

  it("inside: a keyed POST /calls holds its idempotency key; a duplicate waits and replays", function()
    emu.fault { method = "POST", path = "/calls", type = "hold", when = "inside" }
    local key = { "-H", "X-Idempotency-Key: held-key" }
    local first = emu.background("POST", "/calls", emu.call_body(), key)
    local held = emu.wait_held(1)
    assert.are.equal("inside", held[1].when)
    assert.are.same({}, emu.list_calls(), "inside: the handler has not run yet")
    local second, second_finished = emu.background("POST", "/calls", emu.call_body(), key)
    -- the duplicate reached the server and waits for the key (it is not held by the fault)
    local dup = emu.eventually(function()
      for _, e in ipairs(emu.journal()) do
        if e.seq ~= held[1].seq and e.method == "POST" then return e end
      end
    end)
    assert.is_table(dup, "the duplicate never reached the server")
    assert.are.same({ emu.null, emu.null }, { dup.status, dup.held })
    assert.are.equal(1, #emu.held())
    assert.is_false(second_finished(), "the duplicate was answered while the key was held")
    emu.release()
    local a, b = first(), second()
    assert.are.same({ 201, 201 }, { a.status, b.status })
    assert.are.equal(a.body, b.body, "the duplicate replays the first answer")
    assert.are.equal(1, #emu.list_calls())
  end)

  it("releases by fault id, by journal seq, or the oldest `count`", function()
    local gets = emu.fault { method = "GET", path = "/calls", type = "hold", count = 3 }
    local posts = emu.fault { method = "POST", path = "/calls", type = "hold" }
    local waits = {}
    for i = 1, 3 do
      waits[i] = emu.background("GET", "/calls")
      assert.is_table(emu.wait_held(i), "GET " .. i .. " was not held")
    end
    local post = emu.background("POST", "/calls", emu.call_body())
    local held = emu.wait_held(4)
    local get_seqs, post_seq = {}, nil
    for _, h in ipairs(held) do
      if h.fault_id == gets.id then get_seqs[#get_seqs + 1] = h.seq else post_seq = h.seq end
    end
    assert.are.equal(3, #get_seqs)
    assert.are.equal(posts.id, held[4].fault_id)
    for i = 2, #held do assert.is_true(held[i - 1].seq < held[i].seq, "listed oldest first") end

    -- the oldest one of the GETs
    assert.are.same({ get_seqs[1] }, emu.release { fault_id = gets.id, count = 1 })
    assert.are.equal(200, finished_entry(get_seqs[1]).status)
    -- one by its journal seq
    assert.are.same({ get_seqs[3] }, emu.release { seq = get_seqs[3] })
    assert.are.equal(200, finished_entry(get_seqs[3]).status)
    -- the rest of the GETs: the POST stays held
    assert.are.same({ get_seqs[2] }, emu.release { fault_id = gets.id })
    local still = emu.held()
    assert.are.equal(1, #still)
    assert.are.equal(post_seq, still[1].seq)
    assert.are.equal(emu.null, entry(post_seq).status)
    assert.are.same({ post_seq }, emu.release { fault_id = posts.id })
    for i = 1, 3 do assert.are.equal(200, waits[i]().status) end
    assert.are.equal(201, post().status)
  end)

  it("lets a forgotten hold go on by itself after its `seconds` cap", function()
    emu.fault { method = "GET", path = "/calls", type = "hold", seconds = 0.3 }
    local res = emu.api("GET", "/calls") -- nobody releases it
    assert.are.equal(200, res.status)
    local e = emu.journal()[1]
    assert.are.same({ 200, "hold", "expired" }, { e.status, e.fault, e.held })
    assert.are.same({}, emu.held())
  end)

  it("records a client that hangs up while held: 499, hung_up, no longer listed", function()
    emu.fault { method = "GET", path = "/calls", type = "hold" }
    local port = tonumber(emu.url:match(":(%d+)$"))
    local c = assert(socket.connect("127.0.0.1", port))
    c:settimeout(emu.TIMEOUT)
    assert(c:send("GET " .. emu.PREFIX .. "/calls HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
      .. emu.key .. "\r\n\r\n"))
    local held = emu.wait_held(1)
    assert.is_table(held, "the request was never held")
    c:close()
    local e = finished_entry(held[1].seq)
    assert.are.same({ 499, "hold", "hung_up" }, { e.status, e.fault, e.held })
    assert.are.same({}, emu.held())
  end)

  it("deleting the fault or all faults releases what it holds (a reset drops it, below)", function()
    local function hold_one()
      local f = emu.fault { method = "GET", path = "/calls", type = "hold" }
      local wait = emu.background("GET", "/calls")
      local held = emu.wait_held(1)
      assert.is_table(held, "the request was never held")
      return f, wait, held[1].seq
    end
    local f, wait, seq = hold_one()
    emu.control("DELETE", ("/faults/%d"):format(f.id))
    assert.are.equal(200, wait().status)
    assert.are.equal("released", entry(seq).held)

    wait = select(2, hold_one())
    emu.control("DELETE", "/faults")
    assert.are.equal(200, wait().status)
    assert.are.same({}, emu.held())
  end)

  it("a request held across a journal clear does not write over the newer entry with its seq", function()
    local first_fault = emu.fault { method = "GET", path = "/calls", type = "hold" }
    local first = emu.background("GET", "/calls")
    local seq = emu.wait_held(1)[1].seq
    emu.control("DELETE", "/journal")
    emu.fault { method = "GET", path = "/calls/call_second", type = "hold" }
    local second = emu.background("GET", "/calls/call_second")
    local held = emu.wait_held(2)
    assert.are.same({ seq, seq }, { held[1].seq, held[2].seq }, "both got the same seq")
    assert.are.same({ seq }, emu.release { fault_id = first_fault.id })
    assert.are.equal(200, first().status)
    local e = entry(seq)
    assert.are.same({ emu.PREFIX .. "/calls/call_second", emu.null, "holding" }, { e.path, e.status, e.held })
    emu.release()
    assert.are.equal(404, second().status)
    e = entry(seq)
    assert.are.same({ 404, "released" }, { e.status, e.held })
  end)

  it("refuses bad hold options and bad release requests with 400", function()
    for _, body in ipairs { '{"type": "hold", "seconds": -1}', '{"type": "hold", "seconds": 601}',
      '{"type": "hold", "seconds": "5"}', '{"type": "hold", "when": "during"}' } do
      local res = emu.request { method = "POST", path = "/__emulator/faults", body = body }
      assert.are.equal(400, res.status, body)
      assert.are.equal("bad_request", res.json.error.code)
    end
    for _, body in ipairs { '[]', '{', '{"fault_id": "1"}', '{"fault_id": 0}', '{"count": 1.5}',
      '{"seq": -2}', '{"everything": true}' } do
      local res = emu.request { method = "POST", path = "/__emulator/held/release", body = body }
      assert.are.equal(400, res.status, body)
      assert.are.equal("bad_request", res.json.error.code)
      assert.is_string(res.json.error.message)
    end
    local res = emu.request { method = "DELETE", path = "/__emulator/held" }
    assert.are.equal(405, res.status)
    assert.are.equal("GET", res.headers.allow)
  end)
end)

describe("emulator hold fault with one worker", function()
  local suite_url, tmp, state_dir

  setup(function()
    suite_url = emu.url
    tmp = emu.tmpdir()
    state_dir = tmp .. "/state"
    local out, err, status = emu.launch("start --workers 1 --dir " .. emu.quote(state_dir))
    assert(status == 0, "could not start a one-worker emulator: " .. err)
    emu.url = emu.parse_env(out).TRUEDY_EMULATOR_URL
  end)

  teardown(function()
    emu.url = suite_url
    if state_dir then emu.launch("stop --dir " .. emu.quote(state_dir)) end
    if tmp then emu.sh("rm -rf " .. emu.quote(tmp)) end
  end)

  it("serves other requests while one is held: the hold never blocks the worker", function()
    emu.reset()
    assert.are.equal(1, emu.control("GET", "/health").data.workers)
    emu.fault { method = "GET", path = "/calls", type = "hold" }
    local wait, finished = emu.background("GET", "/calls")
    local held = emu.wait_held(1)
    assert.is_table(held, "the request was never held")
    -- API requests on other connections are answered by the one worker meanwhile
    local call = emu.create_call()
    assert.are.equal(call.id, emu.api("GET", "/calls/" .. call.id).json.data.id)
    assert.are.equal(404, emu.api("GET", "/calls/call_none").status)
    -- ... while the first is still held, unanswered
    assert.are.same({ held[1].seq }, { emu.held()[1].seq })
    assert.are.equal(emu.null, entry(held[1].seq).status)
    assert.is_false(finished())
    emu.release()
    local r = wait()
    assert.are.equal(200, r.status)
    assert.are.equal(call.id, emu.json.decode(r.body).data[1].id)
  end)
end)
