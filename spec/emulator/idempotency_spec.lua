-- X-Idempotency-Key on POST /calls.
local emu = require "spec.emulator.emu"

local function post(body, key, api_key)
  return emu.api("POST", "/calls", body, { key = api_key, headers = { ["x-idempotency-key"] = key } })
end

describe("emulator idempotency", function()
  before_each(emu.reset)

  it("replays the stored status and body, byte for byte, for the same key and body", function()
    local body = emu.json.encode(emu.call_body())
    local first = post(body, "order-1")
    local second = post(body, "order-1")
    assert.are.equal(201, first.status)
    assert.are.equal(201, second.status)
    assert.are.equal(first.body, second.body)
    assert.are.equal(1, #emu.list_calls(), "no second call")
    local posts = 0
    for _, e in ipairs(emu.journal()) do
      if e.method == "POST" then posts = posts + 1 end
    end
    assert.are.equal(2, posts, "both requests reached the server")
  end)

  it("treats the same key with a different body as a new request", function()
    local a = post(emu.call_body(), "order-2")
    local b = post(emu.call_body { phone_number = "+12125559876" }, "order-2")
    assert.are.equal(201, a.status)
    assert.are.equal(201, b.status)
    assert.are_not.equal(a.json.data.id, b.json.data.id)
    assert.are.equal(2, #emu.list_calls())
  end)

  it("hashes the raw body: the same JSON spelled differently is a different request", function()
    local a = post('{"agent_id":"' .. emu.agent.id .. '","phone_number":"' .. emu.to .. '"}', "order-3")
    local b = post('{"phone_number":"' .. emu.to .. '","agent_id":"' .. emu.agent.id .. '"}', "order-3")
    assert.are_not.equal(a.json.data.id, b.json.data.id)
  end)

  it("creates a call per request without a key, or with different keys", function()
    local body = emu.json.encode(emu.call_body())
    emu.api("POST", "/calls", body)
    emu.api("POST", "/calls", body)
    post(body, "k1")
    post(body, "k2")
    assert.are.equal(4, #emu.list_calls())
  end)

  it("scopes keys per organization", function()
    local body = emu.json.encode(emu.call_body())
    local mine = post(body, "shared-key")
    local theirs = post(body, "shared-key", emu.other_key)
    assert.are.equal(201, mine.status)
    -- the other organization is not replayed acme's call: its own request is processed
    -- (and acme's agent does not exist for it)
    assert.are.equal(404, theirs.status)
    assert.is_nil(theirs.body:find(mine.json.data.id, 1, true))
  end)

  it("replays a stored error response too", function()
    local body = emu.json.encode(emu.call_body { phone_number = "bad" })
    local a, b = post(body, "bad-1"), post(body, "bad-1")
    assert.are.equal(422, a.status)
    assert.are.equal(a.body, b.body)
  end)

  it("lets a retry after a lost response get the original call", function()
    -- the server creates the call, then the connection drops before any answer
    emu.fault { method = "POST", path = "/calls", type = "reset", when = "after" }
    local body = emu.json.encode(emu.call_body())
    local lost = emu.curl("POST", "/calls", body, { "-H", "X-Idempotency-Key: retry-1" })
    assert.are.equal(52, lost.exit) -- curl: empty reply from server
    local calls = emu.list_calls()
    assert.are.equal(1, #calls)
    local retry = post(body, "retry-1")
    assert.are.equal(201, retry.status)
    assert.are.equal(calls[1].id, retry.json.data.id)
    assert.are.equal(1, #emu.list_calls())
  end)

  describe("a duplicate sent while the first request is still in flight", function()
    -- An "inside" fault keeps the first request in the API, holding the key, for a while; the
    -- duplicate arrives meanwhile (once the first is journaled).
    local function first_in_flight(body, key)
      local done = emu.background("POST", "/calls", body, { "-H", "X-Idempotency-Key: " .. key })
      assert.is_truthy(emu.eventually(function() return #emu.journal() == 1 end), "the first arrived")
      emu.sleep(0.1)
      return done
    end

    it("waits for the first and replays its answer: one call, the same body", function()
      emu.fault { method = "POST", path = "/calls", type = "delay", seconds = 1, when = "inside" }
      local body = emu.json.encode(emu.call_body())
      local first = first_in_flight(body, "flight-1")
      local t0 = emu.now()
      local second = post(body, "flight-1")
      assert.is_true(emu.now() - t0 >= 0.5, "the duplicate waited for the first")
      local a = first()
      assert.are.equal(201, a.status)
      assert.are.equal(201, second.status)
      assert.are.equal(a.body, second.body)
      assert.are.equal(1, #emu.list_calls())
    end)

    it("processes the request itself when the first fails with a 5xx (not stored)", function()
      emu.fault { method = "POST", path = "/calls", type = "status", status = 503, seconds = 1, when = "inside" }
      local body = emu.json.encode(emu.call_body())
      local first = first_in_flight(body, "flight-2")
      local second = post(body, "flight-2")
      assert.are.equal(503, first().status)
      assert.are.equal(201, second.status, second.body)
      local calls = emu.list_calls()
      assert.are.equal(1, #calls)
      assert.are.equal(calls[1].id, second.json.data.id)
      -- and that answer is the one stored
      assert.are.equal(second.body, post(body, "flight-2").body)
    end)
  end)

  it("forgets keys on reset", function()
    local body = emu.json.encode(emu.call_body())
    local a = post(body, "k")
    emu.reset()
    local b = post(body, "k")
    assert.are_not.equal(a.json.data.id, b.json.data.id)
  end)
end)
