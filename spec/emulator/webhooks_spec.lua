-- Webhooks the emulator sends: events in order as the lifecycle clock moves, signed (checked here
-- with the openssl command line, independently of the emulator), at least once (retries, and
-- faults that duplicate or reorder), with every attempt in /__emulator/deliveries.
-- The receiver is the emulator's own test sink (/__emulator/sink). Waits are for causes (an event
-- arrived), bounded.
local emu = require "spec.emulator.emu"

local SECRET = "whsec_emulator_spec_0123456789"

local function sink() return emu.control("GET", "/sink").data end
local function deliveries() return emu.control("GET", "/deliveries").data end

-- Waits (bounded) until the sink received `n` requests; returns them.
local function received(n)
  local got = emu.eventually(function()
    local s = sink()
    return #s >= n and s
  end, 15, 0.02)
  assert(got, "the sink did not receive " .. n .. " requests; it has " .. #sink())
  return got
end

local function set_endpoint(extra)
  local body = { url = emu.url .. "/__emulator/sink", secret = SECRET, retry_base = 0.02 }
  for k, v in pairs(extra or {}) do body[k] = v end
  return emu.control("POST", "/webhook", body).data
end

-- The hex HMAC-SHA256 of `message` keyed with `key`, by `openssl dgst`.
local function openssl_hmac(key, message)
  local dir = emu.tmpdir()
  emu.write_file(dir .. "/message", message)
  local out = emu.sh("openssl dgst -sha256 -hmac " .. emu.quote(key) .. " <" .. emu.quote(dir .. "/message"))
  emu.sh("rm -rf " .. emu.quote(dir))
  return out:match("(%x+)%s*$")
end

local function events(entries)
  local names = {}
  for i, e in ipairs(entries) do names[i] = emu.json.decode(e.body).event end
  return names
end

-- Asserts a sink entry is a well-formed, correctly signed delivery; returns its decoded body.
local function check_signed(e)
  local ts = e.headers["x-truedy-timestamp"]
  assert.matches("^%d+$", ts)
  assert.matches("^application/json", e.headers["content-type"])
  assert.are.equal(openssl_hmac(SECRET, ts .. "." .. e.body), e.headers["x-truedy-signature"])
  -- the envelope, in the documented order
  assert.matches('^{"event":"[%w.]+","timestamp":"[^"]+","data":{.*},"id":"evt_%x+"}$', e.body)
  return emu.json.decode(e.body)
end

describe("emulator webhooks", function()
  before_each(function()
    emu.reset()
    emu.config { clock_speed = 0 } -- calls move only when a spec advances the clock
  end)

  it("sign with HMAC-SHA256 that matches the RFC 4231 test vectors", function()
    local function hmac(key_hex, data_hex)
      return emu.control("POST", "/hmac-sha256", { key_hex = key_hex, data_hex = data_hex }).data.hmac_sha256
    end
    local function hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end
    local aa131 = ("aa"):rep(131)
    local cases = {
      { ("0b"):rep(20), hex("Hi There"), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7" },
      { hex("Jefe"), hex("what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" },
      { ("aa"):rep(20), ("dd"):rep(50), "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe" },
      { "0102030405060708090a0b0c0d0e0f10111213141516171819", ("cd"):rep(50),
        "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b" },
      { ("0c"):rep(20), hex("Test With Truncation"), "a3b6167473100ee06e0c796c2955552b", 32 },
      { aa131, hex("Test Using Larger Than Block-Size Key - Hash Key First"),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54" },
      { aa131, hex("This is a test using a larger than block-size key and a larger than block-size data. The key "
        .. "needs to be hashed before being used by the HMAC algorithm."),
        "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2" },
    }
    for i, c in ipairs(cases) do
      local got = hmac(c[1], c[2])
      assert.are.equal(c[3], c[4] and got:sub(1, c[4]) or got, "RFC 4231 test case " .. i)
    end
    -- and as openssl computes it
    assert.are.equal(openssl_hmac("Jefe", "what do ya want for nothing?"), hmac(hex("Jefe"),
      hex("what do ya want for nothing?")))
  end)

  it("send call.started, call.joined, call.ended, call.billed for a normal call, in order, signed", function()
    set_endpoint()
    local call = emu.create_call()
    emu.advance(2)
    local s = received(1)
    assert.are.same({ "call.started" }, events(s))
    emu.advance(3)
    assert.are.same({ "call.started", "call.joined" }, events(received(2)))
    emu.advance(30)
    s = received(4)
    assert.are.same({ "call.started", "call.joined", "call.ended", "call.billed" }, events(s))
    local got = emu.api("GET", "/calls/" .. call.id).json.data
    local ids = {}
    for i, e in ipairs(s) do
      local body = check_signed(e)
      assert.are.equal(call.id, body.data.id)
      assert.is_nil(ids[body.id], "each event has its own id")
      ids[body.id] = true
      assert.are.equal(200, e.status)
      assert.are.equal("POST", e.method, "delivery " .. i)
    end
    local started, joined, ended, billed = emu.json.decode(s[1].body), emu.json.decode(s[2].body),
      emu.json.decode(s[3].body), emu.json.decode(s[4].body)
    -- each event carries the call as it stood then, and the time of its transition
    assert.are.same({ "ringing", "in-progress", "ended", "ended" },
      { started.data.status, joined.data.status, ended.data.status, billed.data.status })
    assert.are.equal(got.started_at, joined.timestamp)
    assert.are.equal(got.ended_at, ended.timestamp)
    assert.are.equal(got.ended_at, billed.timestamp)
    assert.are.equal(0.5, billed.data.cost_credits)
    assert.are.equal(got.recording_url, ended.data.recording_url)

    -- every attempt is in the deliveries list, none in the request journal
    local d = deliveries()
    assert.are.equal(4, #d)
    for i, x in ipairs(d) do
      assert.are.same({ emu.json.decode(s[i].body).id, 1, "delivered", 200, false },
        { x.event_id, x.attempt, x.outcome, x.status, x.duplicate })
      assert.are.equal(call.id, x.call_id)
    end
    for _, e in ipairs(emu.journal()) do assert.are.equal(emu.PREFIX, e.path:sub(1, #emu.PREFIX)) end

    -- nothing more comes for it: a later call's events arrive next (delivery is in order)
    local sentinel = emu.create_call({ phone_number = emu.failing_to }).id
    emu.advance(5)
    s = received(6)
    assert.are.same({ "call.started", "call.failed" }, { events(s)[5], events(s)[6] })
    assert.are.equal(sentinel, emu.json.decode(s[6].body).data.id)
  end)

  it("send call.started then call.failed for a failing number; call.ended and call.billed when cancelled", function()
    set_endpoint()
    local failing = emu.create_call({ phone_number = emu.failing_to }).id
    local cancelling = emu.create_call({ phone_number = emu.cancelling_to }).id
    emu.advance(10)
    local s = received(5)
    local by_call = {}
    for _, e in ipairs(s) do
      local body = check_signed(e)
      by_call[body.data.id] = by_call[body.data.id] or {}
      table.insert(by_call[body.data.id], body.event .. ":" .. body.data.status)
    end
    assert.are.same({ "call.started:ringing", "call.failed:failed" }, by_call[failing])
    assert.are.same({ "call.started:ringing", "call.ended:cancelled", "call.billed:cancelled" }, by_call[cancelling])

    -- a call cancelled through the control surface while talking
    local talking = emu.create_call().id
    emu.advance(10)
    received(7)
    emu.control("POST", "/calls/" .. talking .. "/cancel")
    s = received(9)
    assert.are.same({ "call.started", "call.joined", "call.ended", "call.billed" },
      { events(s)[6], events(s)[7], events(s)[8], events(s)[9] })
    assert.are.equal("cancelled", emu.json.decode(s[8].body).data.status)
  end)

  it("send every event a clock jump passed, in the order they happened, across calls", function()
    set_endpoint()
    local a = emu.create_call().id
    local b = emu.create_call({ phone_number = emu.failing_to }).id
    emu.advance(100)
    local s = received(6)
    local seen = {}
    for i, e in ipairs(s) do
      local body = check_signed(e)
      seen[i] = (body.data.id == a and "a" or body.data.id == b and "b" or "?") .. ":" .. body.event
    end
    assert.are.same({ "a:call.started", "b:call.started", "a:call.joined", "b:call.failed", "a:call.ended",
      "a:call.billed" }, seen)
  end)

  it("stamp X-Truedy-Timestamp with the wall clock, whatever the emulated clock says", function()
    set_endpoint()
    emu.create_call()
    local cfg = emu.advance(10 * 86400).data -- the emulated clock is ten days ahead
    local e = received(4)[1]
    check_signed(e)
    local header = tonumber(e.headers["x-truedy-timestamp"])
    assert.is_true(math.abs(header - os.time()) < 120, "header " .. header .. " vs wall clock " .. os.time())
    local y, mo, d = cfg.emulated_now:match("^(%d+)%-(%d+)%-(%d+)T")
    local emulated_day = os.time { year = tonumber(y), month = tonumber(mo), day = tonumber(d), hour = 12 }
    assert.is_true(emulated_day - header > 8 * 86400, "the emulated clock is days ahead of the header")
  end)

  it("retry after a non-2xx answer, with the same event id and body, the events behind waiting", function()
    set_endpoint()
    emu.control("POST", "/sink/fail", { count = 2, status = 500 })
    emu.create_call()
    emu.advance(5) -- call.started and call.joined
    local s = received(4)
    assert.are.same({ 500, 500, 200, 200 }, { s[1].status, s[2].status, s[3].status, s[4].status })
    assert.are.same({ "call.started", "call.started", "call.started", "call.joined" }, events(s))
    assert.are.equal(s[1].body, s[2].body)
    assert.are.equal(s[1].body, s[3].body)
    for _, e in ipairs(s) do check_signed(e) end -- every attempt is signed afresh
    local d = deliveries()
    assert.are.same({ "retry", "retry", "delivered", "delivered" },
      { d[1].outcome, d[2].outcome, d[3].outcome, d[4].outcome })
    assert.are.same({ 1, 2, 3, 1 }, { d[1].attempt, d[2].attempt, d[3].attempt, d[4].attempt })
    assert.are.same({ 500, 500, 200 }, { d[1].status, d[2].status, d[3].status })
    assert.are.equal("answered 500", d[1].error)
    assert.are.equal(d[1].event_id, d[3].event_id)
  end)

  it("retry after a timeout", function()
    set_endpoint { timeout = 0.2 }
    emu.control("POST", "/sink/fail", { count = 1, status = 200, delay = 1 })
    emu.create_call()
    emu.advance(2)
    local d = emu.eventually(function()
      local x = deliveries()
      return #x >= 2 and x
    end, 15, 0.02)
    assert.is_table(d, "no retry")
    assert.are.same({ "timeout", "retry", 1 }, { d[1].error, d[1].outcome, d[1].attempt })
    assert.are.same({ emu.null, "delivered", 2, 200 }, { d[2].error, d[2].outcome, d[2].attempt, d[2].status })
  end)

  it("give up after max_attempts, then go on with the next event", function()
    set_endpoint { max_attempts = 2 }
    emu.control("POST", "/sink/fail", { count = 2, status = 503 })
    emu.create_call()
    emu.advance(5)
    received(3)
    local d = deliveries()
    assert.are.same({ "call.started", "call.started", "call.joined" }, { d[1].event, d[2].event, d[3].event })
    assert.are.same({ "retry", "gave_up", "delivered" }, { d[1].outcome, d[2].outcome, d[3].outcome })
  end)

  it("duplicate fault: deliver the same event twice", function()
    set_endpoint()
    local f = emu.control("POST", "/webhook/faults", { type = "duplicate" }).data
    assert.are.same({ "duplicate", 1, 1 }, { f.type, f.count, f.remaining })
    emu.create_call()
    emu.advance(5)
    local s = received(3)
    assert.are.same({ "call.started", "call.started", "call.joined" }, events(s))
    assert.are.equal(s[1].body, s[2].body, "the same event: same id, same body")
    local d = deliveries()
    assert.are.same({ false, true, false }, { d[1].duplicate, d[2].duplicate, d[3].duplicate })
    assert.are.equal(0, emu.control("GET", "/webhook/faults").data[1].remaining)
  end)

  it("out_of_order fault: deliver an event after the one behind it", function()
    set_endpoint()
    emu.control("POST", "/webhook/faults", { type = "out_of_order" })
    emu.create_call()
    emu.advance(40)
    local s = received(4)
    assert.are.same({ "call.joined", "call.started", "call.ended", "call.billed" }, events(s))
    for _, e in ipairs(s) do check_signed(e) end
  end)

  it("send nothing for calls created while no endpoint is set", function()
    local before = emu.create_call().id
    set_endpoint()
    local after = emu.create_call().id
    emu.advance(5)
    -- had `before` been followed, its call.started would have come before after's call.joined
    local s = received(2)
    assert.are.same({ "call.started", "call.joined" }, events(s))
    for _, e in ipairs(s) do assert.are.equal(after, emu.json.decode(e.body).data.id) end

    emu.control("DELETE", "/webhook")
    assert.are.equal(emu.null, emu.control("GET", "/webhook").data)
    local unwatched = emu.create_call().id
    set_endpoint()
    local watched = emu.create_call().id
    emu.advance(2)
    s = received(3)
    assert.are.equal(watched, emu.json.decode(s[3].body).data.id)
    for _, e in ipairs(s) do
      local id = emu.json.decode(e.body).data.id
      assert.is_true(id ~= unwatched and id ~= before, "an event for a call created with no endpoint")
    end
  end)

  it("keep deliveries and the sink out of the journal; a reset clears endpoint, deliveries and sink", function()
    set_endpoint()
    emu.create_call()
    emu.advance(2)
    received(1)
    assert.are.equal(1, #deliveries())
    assert.are.equal(1, #emu.journal(), "only the POST /calls")
    local shown = emu.control("GET", "/webhook").data
    assert.are.same({ emu.url .. "/__emulator/sink", true }, { shown.url, shown.secret_set })
    assert.is_nil(shown.secret, "the secret is never shown")
    emu.reset()
    assert.are.same({}, deliveries())
    assert.are.same({}, sink())
    assert.are.equal(emu.null, emu.control("GET", "/webhook").data)
    emu.control("DELETE", "/deliveries")
    emu.control("DELETE", "/sink")
  end)

  it("refuse bad endpoints, faults and sink plans with 400", function()
    local port = emu.url:match(":(%d+)$")
    local cases = {
      ["/webhook"] = { '{"url": "https://127.0.0.1:' .. port .. '/x", "secret": "s"}',
        '{"url": "http://example.com:80/x", "secret": "s"}', '{"url": "http://127.0.0.1/x", "secret": "s"}',
        '{"url": "http://127.0.0.1:' .. port .. '/x"}', '{"url": "http://127.0.0.1:' .. port .. '/x", "secret": ""}',
        '{"url": "http://127.0.0.1:' .. port .. '/x", "secret": "s", "colour": 1}',
        '{"url": "http://127.0.0.1:' .. port .. '/x", "secret": "s", "max_attempts": 0}',
        '{"url": "http://127.0.0.1:' .. port .. '/x", "secret": "s", "timeout": "1"}', "[]", "{" },
      ["/webhook/faults"] = { '{"type": "lose"}', '{"type": "duplicate", "count": 0}',
        '{"type": "duplicate", "x": 1}' },
      ["/sink/fail"] = { '{"status": 99}', '{"count": -1}', '{"delay": 61}', '{"colour": 1}' },
      ["/hmac-sha256"] = { '{"key_hex": "0g", "data_hex": ""}', '{"key_hex": "abc", "data_hex": ""}', '{}' },
    }
    for path, bodies in pairs(cases) do
      for _, body in ipairs(bodies) do
        local res = emu.request { method = "POST", path = "/__emulator" .. path, body = body }
        assert.are.equal(400, res.status, path .. " " .. body)
        assert.are.equal("bad_request", res.json.error.code)
        assert.is_string(res.json.error.message)
      end
    end
    assert.are.equal(emu.null, emu.control("GET", "/webhook").data)
  end)
end)
