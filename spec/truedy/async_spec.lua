-- The asynchronous API (issue 7): start_*, poll, handles, cancel, close, callbacks, and the
-- event-loop hooks timeout() and sockets().  Every in-flight state is made causal with the
-- emulator's `hold` fault (the spec waits until the emulator lists the request as held) or
-- with a wait the engine cannot skip (a retry backoff, a 429 pause, a start delay).  No
-- assertion depends on how long anything took; every loop is bounded.
local truedy = require "truedy"
local helper = require "spec.support.helper"
local emu = require "spec.emulator.emu"

local CALLS = emu.PREFIX .. "/calls" -- the path the journal shows

-- Drives `client` until pred() returns a true value (returned), at most `rounds` rounds of a
-- poll of at most 20 ms each (and a short sleep when the client has nothing in flight, for
-- what happens at the emulator's side).  Fails the spec with `what` otherwise.
local function drive_until(client, pred, what, rounds)
  for _ = 1, rounds or 500 do
    local v = pred()
    if v then return v end
    client:poll(0.02)
    if client:timeout() == nil then emu.sleep(0.01) end
  end
  local v = pred()
  assert(v, "gave up waiting for " .. what)
  return v
end

-- A client for specs that hold several requests at once.  Its first answer tells libcurl that
-- the server speaks HTTP/1.1 (no multiplexing): until then, over plain http, libcurl sends
-- further requests to the same host only once the first one is answered (CURLOPT_PIPEWAIT).
local function warm_client(options)
  local client = helper.client(options)
  assert(client:get_call("call_warm_up") == nil)
  helper.control("DELETE", "/journal")
  return client
end

-- Drives `client` until the emulator holds `n` requests; returns the held list.
local function drive_until_held(client, n)
  return drive_until(client, function()
    local held = emu.held()
    return #held >= n and held
  end, n .. " held request(s)")
end

local function hold(overrides)
  local fault = { method = "POST", path = "/calls", type = "hold", seconds = 30 }
  for k, v in pairs(overrides or {}) do fault[k] = v end
  return helper.fault(fault)
end

-- The journal entry of a request (by its seq), once it has a status.
local function finished_entry(seq)
  return emu.eventually(function()
    for _, entry in ipairs(helper.journal()) do
      if entry.seq == seq and entry.status ~= nil then return entry end
    end
  end, 10, 0.02)
end

local function posts_with_key(key)
  local out = {}
  for _, entry in ipairs(helper.journal("POST", CALLS)) do
    if entry.headers["x-idempotency-key"] == key then out[#out + 1] = entry end
  end
  return out
end

-- How many times this process gave up the CPU of its own accord (to sleep or wait), where
-- Linux says it; nil elsewhere.  A call that never sleeps leaves it unchanged.
local function voluntary_switches()
  local file = io.open("/proc/self/status")
  if not file then return nil end
  local text = file:read("*a")
  file:close()
  return tonumber(text:match("\nvoluntary_ctxt_switches:%s*(%d+)"))
end

local function iso_utc(epoch)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", epoch)
end

describe("a started call", function()
  before_each(helper.reset)

  it("is queued until the engine is driven, then gives the envelope", function()
    local client = warm_client()
    local h = assert(client:start_call(helper.params()))
    assert.equal("queued", h:state())
    assert.is_false(h:done())
    assert.equal(1, client:pending())
    assert.equal(0, #helper.journal("POST")) -- nothing sent before a poll
    local res, err = h:wait(10)
    assert.is_nil(err)
    assert.equal("queued", res.data.status)
    assert.is_true(h:done())
    assert.equal("done", h:state())
    assert.equal(res, (h:result()))
    assert.equal(0, client:pending())
    assert.equal(1, #helper.journal("POST", CALLS))
  end)

  it("refuses invalid params with nil, err and sends nothing", function()
    local client = warm_client()
    local h, err = client:start_call(helper.params{ phone_number = "12" })
    assert.is_nil(h)
    assert.equal("invalid_params", err.kind)
    assert.equal("phone_number", err.field)
    assert.equal(0, client:pending())
    assert.is_nil(client:timeout())
    assert.equal(0, #helper.journal())
  end)

  it("raises from h:result() until it is done", function()
    local client = warm_client()
    hold()
    local h = assert(client:start_call(helper.params()))
    drive_until_held(client, 1)
    local ok, msg = pcall(h.result, h)
    assert.is_false(ok)
    assert.matches("not finished yet", msg)
    emu.release()
    assert(h:wait(10))
    assert.is_true(h:done())
  end)

  it("goes queued -> running -> waiting -> done", function()
    -- the first attempt is held until it times out (1 s), then waits out a backoff of at
    -- least 1 s; the second is answered
    local client = warm_client{ timeout = 1, retries = 1, retry_base_delay = 2,
                                  retry_max_delay = 2 }
    hold{ count = 1 }
    local h = assert(client:start_call(helper.params()))
    local seen = { h:state() }
    local function note()
      local state = h:state()
      if seen[#seen] ~= state then seen[#seen + 1] = state end
      return state
    end
    drive_until_held(client, 1)
    note()
    drive_until(client, function() return note() ~= "running" end, "the first attempt to time out")
    drive_until(client, function() return note() == "done" end, "the second attempt")
    assert.same({ "queued", "running", "waiting" }, { seen[1], seen[2], seen[3] })
    assert.equal("done", seen[#seen])
    assert.is_true(#seen == 4 or (#seen == 5 and seen[4] == "running"), table.concat(seen, " "))
    assert(h:result())
  end)

  it("sends the same idempotency key and the same bytes on every attempt", function()
    helper.fault{ method = "POST", path = "/calls", type = "status", status = 503, count = 2 }
    local client = warm_client{ retries = 2 }
    local h = assert(client:start_call(helper.params{ variables = { a = "1", b = 2 } }))
    local res = assert(h:wait(10))
    local posts = helper.journal("POST", CALLS)
    assert.equal(3, #posts)
    assert.same({ 503, 503, 201 }, { posts[1].status, posts[2].status, posts[3].status })
    for i = 2, 3 do
      assert.equal(posts[1].headers["x-idempotency-key"], posts[i].headers["x-idempotency-key"])
      assert.equal(posts[1].body, posts[i].body)
    end
    assert.equal(1, #helper.list_calls_raw())
    assert.equal(helper.list_calls_raw()[1].id, res.data.id)
  end)

  it("keeps the caller's idempotency key", function()
    local client = warm_client()
    local h = assert(client:start_call(helper.params(), { idempotency_key = "async-own-key-1" }))
    assert(h:wait(10))
    assert.equal(1, #posts_with_key("async-own-key-1"))
  end)

  it("reads: start_get_call and start_list_calls", function()
    local client = warm_client()
    local created = assert(client:create_call(helper.params())).data
    local got, listed
    local g = assert(client:start_get_call(created.id, { on_done = function(res) got = res end }))
    local l = assert(client:start_list_calls({ limit = 5 }, { on_done = function(res) listed = res end }))
    drive_until(client, function() return got and listed end, "both reads")
    assert.equal(created.id, got.data.id)
    assert.equal(created.id, listed.data[1].id)
    assert.is_true(g:done() and l:done())
  end)

  it("waits out its delay before the first attempt", function()
    local client = warm_client()
    local h = assert(client:start_call(helper.params(), { delay = 60 }))
    client:poll(0)
    assert.equal("queued", h:state())
    local t = client:timeout()
    assert.is_number(t)
    assert.is_true(t > 1 and t <= 60, tostring(t)) -- the start time, not libcurl's idea
    assert.equal(0, #helper.journal())
    assert.is_true(h:cancel())
  end)
end)

describe("h:wait(timeout)", function()
  before_each(helper.reset)

  it("returns nothing on timeout and the call goes on", function()
    local client = warm_client()
    hold()
    local h = assert(client:start_call(helper.params()))
    local held = drive_until_held(client, 1)
    assert.equal(0, select("#", h:wait(0)))
    assert.equal(0, select("#", h:wait(0.05)))
    assert.is_false(h:done())
    assert.equal("running", h:state())
    assert.equal(1, #emu.held()) -- still held: the wait did not hang up
    emu.release()
    local res = assert(h:wait(10))
    assert.equal("queued", res.data.status)
    assert.equal(201, finished_entry(held[1].seq).status)
  end)

  it("raises for a negative timeout", function()
    local client = warm_client()
    local h = assert(client:start_list_calls())
    assert.has_error(function() h:wait(-1) end)
    assert(h:wait(10))
  end)
end)

describe("client:poll(0)", function()
  before_each(helper.reset)

  it("never sleeps: with a held request it returns 0 and the request is still held", function()
    local client = warm_client()
    hold()
    local h = assert(client:start_call(helper.params()))
    drive_until_held(client, 1)
    local before = voluntary_switches()
    for _ = 1, 50 do assert.equal(0, client:poll(0)) end
    assert.equal(0, client:poll())
    assert.equal(before, voluntary_switches()) -- it never gave the CPU up to wait
    assert.equal("running", h:state())
    assert.equal(1, #emu.held())
    emu.release()
    assert(h:wait(10))
  end)

  it("never sleeps through a retry wait: the request stays waiting", function()
    helper.fault{ method = "POST", path = "/calls", type = "status", status = 503, count = 1 }
    local client = warm_client{ retry_base_delay = 60, retry_max_delay = 60 }
    local h = assert(client:start_call(helper.params()))
    drive_until(client, function() return h:state() == "waiting" end, "the retry wait")
    local before = voluntary_switches()
    for _ = 1, 50 do assert.equal(0, client:poll(0)) end
    assert.equal(before, voluntary_switches())
    assert.equal("waiting", h:state())
    assert.equal(1, #helper.journal("POST"))
    assert.is_true(h:cancel())
  end)

  it("returns at once when nothing is in flight, whatever the timeout", function()
    local client = warm_client()
    assert.equal(0, client:poll(3600))
    assert.equal(0, client:pending())
  end)

  it("counts the handles that finished during it", function()
    local client = warm_client()
    hold{ count = 3 }
    local hs = {}
    for i = 1, 3 do hs[i] = assert(client:start_call(helper.params())) end
    drive_until_held(client, 3)
    emu.release()
    local finished = 0
    for _ = 1, 500 do
      finished = finished + client:poll(0.02)
      if finished >= 3 then break end
    end
    assert.equal(3, finished)
    assert.equal(0, client:poll(0))
    for i = 1, 3 do assert.is_true(hs[i]:done()) end
  end)

  it("raises for a negative timeout", function()
    assert.has_error(function() helper.client():poll(-1) end)
  end)
end)

describe("client:timeout() and client:sockets()", function()
  before_each(helper.reset)

  it("timeout() is nil when idle and a number while a request is in flight", function()
    local client = warm_client()
    assert.is_nil(client:timeout())
    hold()
    local h = assert(client:start_call(helper.params()))
    assert.is_number(client:timeout()) -- queued: due now
    assert.equal(0, client:timeout())
    drive_until_held(client, 1)
    local t = client:timeout()
    assert.is_number(t)
    assert.is_true(t >= 0)
    emu.release()
    assert(h:wait(10))
    assert.is_nil(client:timeout())
  end)

  it("sockets() lists the connection of a held transfer, to be read", function()
    local client = warm_client()
    hold()
    local h = assert(client:start_call(helper.params()))
    drive_until_held(client, 1)
    client:poll(0)
    local socks = client:sockets()
    local n = 0
    for fd, what in pairs(socks) do
      n = n + 1
      assert.is_number(fd)
      assert.is_true(what == "r" or what == "w" or what == "rw", tostring(what))
    end
    assert.is_true(n >= 1)
    assert.equal(n, client:stats().sockets)
    emu.release()
    assert(h:wait(10))
  end)
end)

describe("a handle in flight", function()
  before_each(helper.reset)

  it("survives garbage collection: with no reference left, the call completes and on_done runs", function()
    local client = warm_client()
    hold()
    local done = {}
    -- no reference to the handle is kept anywhere but in the client
    assert(client:start_call(helper.params(), { idempotency_key = "gc-key-1",
      on_done = function(res, err, h)
        done[#done + 1] = { res = res, err = err, state = h:state() }
      end }))
    collectgarbage()
    collectgarbage()
    local held = drive_until_held(client, 1)
    collectgarbage()
    collectgarbage()
    assert.equal(1, client:pending())
    emu.release()
    drive_until(client, function() return #done > 0 end, "on_done")
    assert.equal(1, #done)
    assert.is_nil(done[1].err)
    assert.equal("queued", done[1].res.data.status)
    assert.equal("done", done[1].state)
    local entry = finished_entry(held[1].seq)
    assert.equal(201, entry.status)
    assert.equal("released", entry.held)
    collectgarbage()
    collectgarbage()
    assert.equal(0, client:stats().live_requests)
  end)

  it("survives garbage collection without on_done: the journal shows it answered", function()
    local client = warm_client()
    hold{ count = 2 }
    assert(client:start_call(helper.params(), { idempotency_key = "gc-key-2" }))
    assert(client:start_get_call("call_does_not_exist"))
    local held = drive_until_held(client, 1)
    collectgarbage()
    collectgarbage()
    emu.release()
    drive_until(client, function() return client:pending() == 0 end, "both to finish")
    assert.equal(201, finished_entry(held[1].seq).status)
    assert.equal(1, #posts_with_key("gc-key-2"))
    assert.equal(404, helper.journal("GET")[1].status)
    collectgarbage()
    collectgarbage()
    assert.equal(0, client:stats().live_requests)
  end)

  it("stops when its client and the handle are both dropped: the collection closes the client", function()
    local client = warm_client()
    hold()
    local ran = false
    assert(client:start_call(helper.params(), { on_done = function() ran = true end }))
    local held = drive_until_held(client, 1)
    client = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    -- the request was stopped, not left in libcurl: the emulator sees the hang-up
    assert.equal("hung_up", finished_entry(held[1].seq).held)
    assert.is_false(ran)
  end)

  it("is the caller's once done, readable after the client is gone", function()
    local client = warm_client()
    local h = assert(client:start_list_calls())
    assert(h:wait(10))
    client:close()
    client = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    assert.is_true(h:done())
    assert.is_table((h:result()).data)
  end)
end)

describe("h:cancel()", function()
  before_each(helper.reset)

  it("of a queued request: nothing reached the server", function()
    local client = warm_client()
    local ran
    local h = assert(client:start_call(helper.params(), { delay = 60,
      on_done = function(res, err) ran = { res = res, err = err } end }))
    assert.equal("queued", h:state())
    assert.is_true(h:cancel())
    assert.is_false(h:cancel())
    assert.is_true(h:done())
    local res, err = h:result()
    assert.is_nil(res)
    assert.equal("cancelled", err.kind)
    assert.is_false(err.maybe_sent)
    assert.is_true(err.retryable)
    assert.equal(0, err.attempts)
    assert.is_string(err.idempotency_key)
    assert.matches("nothing reached the server", err.message)
    assert.is_nil(ran) -- on_done waits for the next poll
    client:poll(0)
    assert.equal(err, ran.err)
    assert.equal(0, client:pending())
    assert.is_nil(client:timeout())
    assert.equal(0, #helper.journal())
  end)

  it("of a held transfer: it may have reached the server; the key says how to find out", function()
    local client = warm_client()
    hold()
    local h = assert(client:start_call(helper.params()))
    local held = drive_until_held(client, 1)
    assert.equal("running", h:state())
    assert.is_true(h:cancel())
    local res, err = h:result()
    assert.is_nil(res)
    assert.equal("cancelled", err.kind)
    assert.is_true(err.maybe_sent)
    assert.is_true(err.retryable)
    assert.equal(1, err.attempts)
    assert.matches("may have reached the server", err.message)
    assert.matches("idempotency_key", err.message)
    -- the connection was dropped: the emulator sees the client hang up
    local entry = finished_entry(held[1].seq)
    assert.equal("hung_up", entry.held)
    assert.equal(entry.headers["x-idempotency-key"], err.idempotency_key)
    assert.equal(0, client:pending())
    assert.equal(0, client:stats().running)
    -- placing it again with the key is safe and creates it once
    local again = assert(client:create_call(helper.params(), { idempotency_key = err.idempotency_key }))
    assert.equal("queued", again.data.status)
    assert.equal(1, #helper.list_calls_raw())
  end)

  it("of a read in flight says so, with no key", function()
    local client = warm_client()
    hold{ method = "GET", path = "/calls" }
    local h = assert(client:start_list_calls())
    drive_until_held(client, 1)
    assert.is_true(h:cancel())
    local _, err = h:result()
    assert.equal("cancelled", err.kind)
    assert.is_true(err.maybe_sent)
    assert.is_nil(err.idempotency_key)
    assert.matches("in flight", err.message)
  end)

  it("in a retry wait: after a 503, with the key, and no attempt after it", function()
    helper.fault{ method = "POST", path = "/calls", type = "status", status = 503, count = 1 }
    local client = warm_client{ retry_base_delay = 60, retry_max_delay = 60 }
    local h = assert(client:start_call(helper.params()))
    drive_until(client, function() return h:state() == "waiting" end, "the retry wait")
    assert.is_true(h:cancel())
    local _, err = h:result()
    assert.equal("cancelled", err.kind)
    assert.is_true(err.maybe_sent) -- a 5xx may come after the server acted
    assert.is_true(err.retryable)
    assert.equal(1, err.attempts)
    local posts = helper.journal("POST")
    assert.equal(1, #posts)
    assert.equal(posts[1].headers["x-idempotency-key"], err.idempotency_key)
    assert.matches("may have reached the server", err.message)
    assert.equal(0, client:poll(0))
    assert.is_nil(client:timeout())
    assert.equal(1, #helper.journal("POST"))
  end)

  it("in a 429 wait: the server refused every attempt, so nothing was created", function()
    local reset_at = iso_utc(os.time() + 40)
    helper.fault{ method = "POST", path = "/calls", type = "status", status = 429,
                  code = "rate_limit_exceeded", message = "Rate limit exceeded",
                  details = { limit = 100, reset_at = reset_at }, count = 1 }
    local client = warm_client{ retry_max_wait = 120 }
    local h = assert(client:start_call(helper.params()))
    drive_until(client, function() return h:state() == "waiting" end, "the 429 wait")
    -- the whole client is paused: a read started now waits too
    local r = assert(client:start_get_call("call_x"))
    client:poll(0)
    assert.equal("queued", r:state())
    assert.is_true(client:timeout() > 5, tostring(client:timeout()))
    assert.is_true(h:cancel())
    local _, err = h:result()
    assert.equal("cancelled", err.kind)
    assert.is_false(err.maybe_sent)
    assert.is_true(err.retryable)
    assert.equal(1, err.attempts)
    assert.equal(helper.journal("POST")[1].headers["x-idempotency-key"], err.idempotency_key)
    assert.matches("nothing was created", err.message)
    assert.is_true(r:cancel())
    assert.equal(1, #helper.journal())
  end)

  it("of a done handle returns false and keeps its result", function()
    local client = warm_client()
    local h = assert(client:start_list_calls())
    local res = assert(h:wait(10))
    assert.is_false(h:cancel())
    assert.equal(res, (h:result()))
  end)
end)

describe("the client's 429 pause", function()
  before_each(helper.reset)

  -- A client paused by a 429 whose reset_at is 40 s away, with a create waiting it out.
  local function paused_client()
    helper.fault{ method = "POST", path = "/calls", type = "status", status = 429,
                  code = "rate_limit_exceeded", message = "Rate limit exceeded",
                  details = { limit = 100, reset_at = iso_utc(os.time() + 40) }, count = 1 }
    local client = warm_client{ retry_max_wait = 120 }
    local h = assert(client:start_call(helper.params()))
    drive_until(client, function() return h:state() == "waiting" end, "the 429 wait")
    return client, h
  end

  local function assert_paused_error(err)
    assert.equal("api", err.kind)
    assert.equal(429, err.status)
    assert.equal(0, err.attempts)
    assert.is_true(err.retryable)
    assert.is_true(err.retry_after > 5, tostring(err.retry_after))
    assert.matches("not sent", err.message)
  end

  it("holds back a request started during it that may wait that long", function()
    local client, h = paused_client()
    local r = assert(client:start_get_call("call_x", { retry_max_wait = 120 }))
    for _ = 1, 20 do client:poll(0) end
    assert.equal("queued", r:state())
    assert.equal(1, #helper.journal())
    assert.is_true(r:cancel() and h:cancel())
  end)

  it("gives a started request that may not wait that long the 429 at once, unsent", function()
    local client, h = paused_client()
    local r = assert(client:start_get_call("call_x", { retry_max_wait = 5 }))
    assert.equal(1, client:poll(0))
    assert.is_true(r:done())
    assert_paused_error(select(2, r:result()))
    assert.equal(1, #helper.journal())
    assert.equal("waiting", h:state())
    assert.is_true(h:cancel())
  end)

  it("gives a blocking call that may not wait that long the 429 at once, unsent", function()
    local client, h = paused_client()
    local res, err = client:create_call(helper.params(), { retry_max_wait = 5, idempotency_key = "paused-1" })
    assert.is_nil(res)
    assert_paused_error(err)
    assert.equal("paused-1", err.idempotency_key)
    assert.equal(1, #helper.journal())
    assert.is_true(h:cancel())
  end)
end)

describe("client:close() with calls in flight", function()
  before_each(helper.reset)

  it("stops each one with a cancelled error saying what it knows; handles stay readable", function()
    local client = warm_client{ retry_base_delay = 60, retry_max_delay = 60 }
    local ran = 0
    local function on_done() ran = ran + 1 end
    helper.fault{ method = "POST", path = "/calls", type = "status", status = 503, count = 1 }
    local waiting = assert(client:start_call(helper.params(), { on_done = on_done }))
    drive_until(client, function() return waiting:state() == "waiting" end, "the retry wait")
    hold()
    local running = assert(client:start_call(helper.params(), { on_done = on_done }))
    local held = drive_until_held(client, 1)
    local queued = assert(client:start_call(helper.params(), { delay = 60, on_done = on_done }))
    assert.same({ "waiting", "running", "queued" }, { waiting:state(), running:state(), queued:state() })

    client:close()
    assert.is_true(client:stats().closed)
    assert.is_true(client:stats().released)
    for _, h in ipairs({ waiting, running, queued }) do
      assert.is_true(h:done())
      assert.equal("done", h:state())
      local res, err = h:result()
      assert.is_nil(res)
      assert.equal("cancelled", err.kind)
      assert.is_true(err.retryable)
      assert.is_string(err.idempotency_key)
      assert.matches("the client was closed", err.message)
      assert.is_false(h:cancel())
      assert.equal(err, select(2, h:wait()))
    end
    assert.is_false(select(2, queued:result()).maybe_sent)
    assert.is_true(select(2, running:result()).maybe_sent)
    assert.is_true(select(2, waiting:result()).maybe_sent)
    assert.equal("hung_up", finished_entry(held[1].seq).held)
    assert.equal(0, ran) -- close drops what was not run yet
    local ok, msg = pcall(client.poll, client)
    assert.is_false(ok)
    assert.matches("the client is closed", msg)
    assert.has_error(function() client:start_list_calls() end, "truedy: the client is closed")
    waiting, running, queued = nil, nil, nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    assert.equal(0, client:stats().live_requests)
  end)

  it("drops callbacks already queued, but keeps the results", function()
    local client = warm_client()
    local ran = 0
    local h = assert(client:start_list_calls(nil, { on_done = function() ran = ran + 1 end }))
    -- a blocking call finishes h without running its on_done
    for _ = 1, 200 do
      if h:done() then break end
      assert(client:get_call("call_nope") == nil)
    end
    assert.is_true(h:done())
    client:close()
    assert.equal(0, ran)
    assert.is_table((h:result()).data)
  end)
end)

describe("on_done", function()
  before_each(helper.reset)

  it("gets (res, nil, h) for a success and (nil, err, h) for a failure", function()
    local client = warm_client()
    local got = {}
    local function keep(name)
      return function(...) got[name] = { n = select("#", ...), ... } end
    end
    local ok_h = assert(client:start_list_calls(nil, { on_done = keep("ok") }))
    local bad_h = assert(client:start_get_call("call_missing", { on_done = keep("bad") }))
    drive_until(client, function() return got.ok and got.bad end, "both callbacks")
    assert.equal(3, got.ok.n)
    assert.is_table(got.ok[1].data)
    assert.is_nil(got.ok[2])
    assert.equal(ok_h, got.ok[3])
    assert.equal(3, got.bad.n)
    assert.is_nil(got.bad[1])
    assert.equal(404, got.bad[2].status)
    assert.equal(bad_h, got.bad[3])
  end)

  it("may start another call", function()
    local client = warm_client()
    local log = {}
    assert(client:start_call(helper.params(), { on_done = function(res)
      log[#log + 1] = "created"
      assert(client:start_get_call(res.data.id, { on_done = function(got)
        log[#log + 1] = "read " .. got.data.id
      end }))
    end }))
    drive_until(client, function() return #log == 2 end, "the read started from on_done")
    local id = helper.list_calls_raw()[1].id
    assert.same({ "created", "read " .. id }, log)
  end)

  it("may wait for another handle (its on_done runs inside that wait)", function()
    local client = warm_client()
    local log = {}
    hold{ method = "GET", path = "/calls" }
    local other = assert(client:start_list_calls(nil, { on_done = function() log[#log + 1] = "other" end }))
    drive_until_held(client, 1)
    assert(client:start_call(helper.params(), { on_done = function()
      log[#log + 1] = "first begins"
      emu.release()
      local res = other:wait(10)
      log[#log + 1] = "first got " .. type(res)
    end }))
    drive_until(client, function() return #log == 3 end, "both callbacks")
    assert.same({ "first begins", "other", "first got table" }, log)
  end)

  it("may wait for its own handle (already done)", function()
    local client = warm_client()
    local got
    assert(client:start_list_calls(nil, { on_done = function(_, _, h) got = h:wait() end }))
    drive_until(client, function() return got end, "on_done")
    assert.is_table(got.data)
  end)

  it("may make a blocking call, which runs no other callback", function()
    local client = warm_client()
    local log = {}
    hold{ method = "GET", path = "/calls" }
    assert(client:start_list_calls(nil, { on_done = function() log[#log + 1] = "other" end }))
    drive_until_held(client, 1)
    assert(client:start_call(helper.params(), { on_done = function()
      log[#log + 1] = "first begins"
      emu.release()
      -- the blocking call finishes the held read too (drive_until below would not be needed)
      local res = assert(client:create_call(helper.params()))
      for _ = 1, 200 do
        if client:pending() == 0 then break end
        assert(client:get_call(res.data.id))
      end
      log[#log + 1] = "first ends, pending " .. client:pending()
    end }))
    drive_until(client, function() return #log == 3 end, "both callbacks")
    assert.same({ "first begins", "first ends, pending 0", "other" }, log)
    assert.equal(2, #helper.list_calls_raw())
  end)

  it("may poll: the nested poll runs the callbacks queued behind it, each once", function()
    local client = warm_client()
    local log = {}
    hold{ method = "GET", path = "/calls", count = 2 }
    local hs = {}
    for i = 1, 2 do
      hs[i] = assert(client:start_list_calls(nil, { on_done = function() log[#log + 1] = "read " .. i end }))
    end
    drive_until_held(client, 2)
    assert(client:start_call(helper.params(), { on_done = function()
      log[#log + 1] = "first begins"
      emu.release()
      local n = 0
      for _ = 1, 500 do
        n = n + client:poll(0.02)
        if hs[1]:done() and hs[2]:done() and #log == 3 then break end
      end
      log[#log + 1] = "nested polls finished " .. n
    end }))
    drive_until(client, function() return #log == 4 end, "every callback")
    assert.equal("first begins", log[1])
    assert.same({ "read 1", "read 2" }, { log[2] < log[3] and log[2] or log[3], log[2] < log[3] and log[3] or log[2] })
    assert.equal("nested polls finished 2", log[4])
    for _ = 1, 5 do client:poll(0) end
    assert.equal(4, #log)
  end)

  it("may close the client: what is in flight is cancelled, the poll returns", function()
    local client = warm_client()
    local log = {}
    hold{ method = "GET", path = "/calls" }
    local other = assert(client:start_list_calls(nil, { on_done = function() log[#log + 1] = "other" end }))
    drive_until_held(client, 1)
    local first = assert(client:start_call(helper.params(), { on_done = function()
      log[#log + 1] = "first"
      client:close()
    end }))
    local n
    for _ = 1, 500 do
      n = client:poll(0.02)
      if n > 0 then break end
    end
    assert.equal(1, n)
    assert.same({ "first" }, log)
    assert.is_true(client:stats().closed)
    assert.is_true(client:stats().released)
    assert.equal("queued", (first:result()).data.status)
    local _, err = other:result()
    assert.equal("cancelled", err.kind)
    assert.has_error(function() client:poll(0) end, "truedy: the client is closed")
  end)

  it("may close the client from inside h:wait(): the wait returns the handle's result", function()
    local client = warm_client()
    hold{ method = "GET", path = "/calls" }
    local other = assert(client:start_list_calls())
    drive_until_held(client, 1)
    assert(client:start_call(helper.params(), { on_done = function() client:close() end }))
    local res, err = other:wait(10)
    assert.is_nil(res)
    assert.equal("cancelled", err.kind)
  end)

  it("may cancel another handle", function()
    local client = warm_client()
    hold{ method = "GET", path = "/calls" }
    local log = {}
    local other = assert(client:start_list_calls(nil, { on_done = function(_, err) log[#log + 1] = err.kind end }))
    drive_until_held(client, 1)
    assert(client:start_call(helper.params(), { on_done = function()
      log[#log + 1] = "first"
      assert.is_true(other:cancel())
    end }))
    drive_until(client, function() return #log == 2 end, "both callbacks")
    assert.same({ "first", "cancelled" }, log)
  end)

  it("that raises: poll re-raises the error unchanged, the rest run at the next poll, once each", function()
    local client = warm_client()
    local ran, order = { 0, 0, 0 }, {}
    local boom = setmetatable({}, { __tostring = function() return "boom" end })
    hold{ method = "GET", path = "/calls", count = 3 }
    local hs = {}
    for i = 1, 3 do
      hs[i] = assert(client:start_list_calls(nil, { on_done = function()
        ran[i] = ran[i] + 1
        order[#order + 1] = i
        if i == 2 then error(boom) end
      end }))
    end
    drive_until_held(client, 3)
    emu.release()
    -- blocking reads finish the three handles without running their callbacks
    for _ = 1, 200 do
      if hs[1]:done() and hs[2]:done() and hs[3]:done() then break end
      assert(client:list_calls{ limit = 1 })
    end
    assert.is_true(hs[1]:done() and hs[2]:done() and hs[3]:done())
    assert.same({ 0, 0, 0 }, ran)
    -- they run in the order the handles finished; the one that raises stops the poll
    local ok, err = pcall(client.poll, client, 0)
    assert.is_false(ok)
    assert.is_true(rawequal(boom, err))
    assert.equal(2, order[#order])
    local before = #order
    assert.equal(0, client:poll(0)) -- the rest, without raising
    assert.same({ 1, 1, 1 }, ran)
    assert.equal(3, #order)
    assert.is_true(before >= 1 and before <= 3)
    for _ = 1, 5 do client:poll(0) end
    assert.same({ 1, 1, 1 }, ran)
    -- the engine is sound: it places the next call as before
    local h = assert(client:start_call(helper.params()))
    assert.equal("queued", (h:wait(10)).data.status)
    assert.equal(0, client:pending())
    hs = nil -- luacheck: ignore
    h = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    assert.equal(0, client:stats().live_requests)
  end)

  it("that raises inside h:wait(): the wait re-raises it; the handle waited for is done", function()
    local client = warm_client()
    local h = assert(client:start_list_calls(nil, { on_done = function() error("from on_done", 0) end }))
    local ok, err = pcall(h.wait, h, 10)
    assert.is_false(ok)
    assert.equal("from on_done", err)
    assert.is_true(h:done())
    assert.is_table((h:wait()).data)
  end)
end)

describe("the blocking methods with handles in flight", function()
  before_each(helper.reset)

  it("work, move the handles on, and leave their callbacks to the next poll", function()
    local client = warm_client()
    local ran = 0
    hold()
    local h = assert(client:start_call(helper.params(), { on_done = function() ran = ran + 1 end }))
    drive_until_held(client, 1)
    local listed = assert(client:list_calls())
    assert.is_table(listed.data)
    assert.equal(0, #listed.data) -- the held create has not made its call yet
    emu.release()
    local tries = 0
    while not h:done() and tries < 200 do
      tries = tries + 1
      assert(client:list_calls{ limit = 1 })
    end
    assert.is_true(h:done())
    assert.equal(0, ran)
    assert.equal("queued", (h:result()).data.status)
    client:poll(0)
    assert.equal(1, ran)
  end)
end)

describe("100 concurrent calls", function()
  before_each(helper.reset)
  after_each(helper.reset)

  it("each create once: one 201 per idempotency key, and GET /calls says 100", function()
    helper.configure{ rate_limit = 0 }
    local client = warm_client{ max_connections = 16, retries = 3 }
    local hs, keys = {}, {}
    local tag = string.format("c100-%d-", os.time())
    for i = 1, 100 do
      keys[i] = tag .. i
      hs[i] = assert(client:start_call(helper.params{ variables = { row = tostring(i) } },
                                       { idempotency_key = keys[i] }))
    end
    assert.equal(100, client:pending())
    local most_running = 0
    drive_until(client, function()
      local running = client:stats().running
      if running > most_running then most_running = running end
      return client:pending() == 0
    end, "100 calls", 3000)
    assert.is_true(most_running <= 16, tostring(most_running))
    assert.is_true(most_running > 1, tostring(most_running))
    local ids = {}
    for i = 1, 100 do
      local res, err = hs[i]:result()
      assert(res, tostring(err))
      assert.equal("queued", res.data.status)
      assert.is_nil(ids[res.data.id])
      ids[res.data.id] = true
    end
    local created = {}
    for _, entry in ipairs(helper.journal("POST", CALLS)) do
      if entry.status == 201 then
        local key = entry.headers["x-idempotency-key"]
        created[key] = (created[key] or 0) + 1
      end
    end
    for i = 1, 100 do assert.equal(1, created[keys[i]], keys[i]) end
    local _, pagination = emu.list_calls()
    assert.equal(100, pagination.total)
  end)
end)

describe("the handle", function()
  it("prints what it is", function()
    helper.reset()
    local client = warm_client()
    local h = assert(client:start_get_call("call_1", { delay = 60 }))
    assert.equal("truedy.handle (get_call, queued)", tostring(h))
    h:cancel()
    assert.equal("truedy.handle (get_call, done)", tostring(h))
  end)

  it("is not confused with another type", function()
    assert.has_error(function() truedy.new{ api_key = helper.api_key, base_url = helper.base_url }.poll({}) end)
    assert.equal("truedy.handle", getmetatable(assert(helper.client():start_list_calls())))
  end)
end)
