-- Webhooks end to end, in the example nginx (examples/openresty/, two workers): a call placed
-- through truedy.resty (POST /dial), the emulator's webhook endpoint pointed at the example's
-- receiver (POST /truedy/webhook), the lifecycle clock advanced, and the signed events received,
-- verified and handled in nginx: each once, a redelivery dropped, a retry after the receiver
-- answered 500 handled, forgeries refused. Checked from both sides: the receiver's own record
-- (GET /truedy/webhook/recent, examples/openresty/testing.conf) and the emulator's
-- /__emulator/deliveries. Every wait is for a cause (a delivery recorded), bounded.
local app = require "spec.resty.app"
local emu = app.emu
local truedy = require "truedy" -- the plain module, to sign forgeries here

local SECRET = "whsec_resty_spec_0123456789abcdef"

describe("webhooks received by the example nginx", function()
  local server

  setup(function()
    server = app.start { workers = 2, env = { TRUEDY_WEBHOOK_SECRET = "whsec_old_one " .. SECRET } }
  end)
  teardown(function() if server then server:stop() end end)

  local function recent() return server:request("GET", "/truedy/webhook/recent").json.data end
  local function deliveries() return emu.control("GET", "/deliveries").data end

  -- Points the emulator's webhook endpoint at the receiver.
  local function set_endpoint(extra)
    local body = { url = server.url .. "/truedy/webhook", secret = SECRET, retry_base = 0.05 }
    for k, v in pairs(extra or {}) do body[k] = v end
    return emu.control("POST", "/webhook", body).data
  end

  before_each(function()
    emu.reset()
    emu.config { clock_speed = 0 } -- calls move only when a spec advances the clock
    server:request("POST", "/truedy/webhook/forget")
  end)

  -- A call placed through truedy.resty in the example nginx.
  local function dial()
    local placed = server:dial { agent_id = emu.agent.id, phone_number = emu.to }
    assert.equal(201, placed.status, placed.body)
    return placed.json.id
  end

  -- Waits until the emulator has settled `n` deliveries (each attempt's outcome known) and
  -- nothing is left to send; returns them.
  local function settled(n)
    local got = emu.eventually(function()
      local d = deliveries()
      if #d < n then return false end
      for _, e in ipairs(d) do
        if e.outcome == nil then return false end
      end
      return d
    end, 20, 0.05)
    assert(got, ("the emulator did not settle %d deliveries: %s"):format(n, app.json.encode(deliveries())))
    return got
  end

  local function outcomes(list)
    local out = {}
    for i, e in ipairs(list) do out[i] = e.outcome end
    return out
  end

  local function names(list)
    local out = {}
    for i, e in ipairs(list) do out[i] = e.event end
    return out
  end

  it("verifies and handles each event of a call once, in order, and logs its end", function()
    set_endpoint()
    local id = dial()
    emu.advance(60) -- ringing, in progress, ended: every event, in order
    local sent = settled(4)
    assert.same({ "call.started", "call.joined", "call.ended", "call.billed" }, names(sent))
    for _, d in ipairs(sent) do
      assert.equal(200, d.status, app.json.encode(d))
      assert.equal("delivered", d.outcome)
      assert.equal(id, d.call_id)
    end

    local record = recent()
    assert.equal(4, #record, app.json.encode(record))
    for i, r in ipairs(record) do
      assert.equal("handled", r.outcome)
      assert.equal(200, r.status)
      assert.equal(sent[i].event_id, r.id)
      assert.equal(sent[i].event, r.event)
      assert.equal(id, r.call_id)
    end
    -- the receiver logged the call's end, naming the event that said so
    assert.truthy(server:error_log():find("webhook: call " .. id .. " ended (status ended, 30 s, event "
      .. sent[3].event_id .. ")", 1, true), "no log line for the call's end")
  end)

  it("drops a redelivery by its event id, answering 200", function()
    set_endpoint()
    emu.control("POST", "/webhook/faults", { type = "duplicate", count = 1 })
    dial()
    emu.advance(2) -- call.started, delivered twice
    local sent = settled(2)
    assert.equal(sent[1].event_id, sent[2].event_id)
    assert.same({ "call.started", "call.started" }, names(sent))
    for _, d in ipairs(sent) do assert.equal(200, d.status) end

    local record = recent()
    assert.same({ "handled", "redelivery" }, outcomes(record))
    assert.equal(sent[1].event_id, record[2].id)
    -- the next event is new: handled
    emu.advance(3)
    settled(3)
    assert.same({ "handled", "redelivery", "handled" }, outcomes(recent()))
  end)

  it("handles the retry of an event it answered 500 (handling failed), and nothing twice", function()
    set_endpoint()
    server:request("POST", "/truedy/webhook/fail-next", { count = 1 })
    dial()
    emu.advance(5) -- call.started, then call.joined behind it
    local sent = settled(3)
    -- the first attempt answered 500, its retry 200; the event behind waited its turn
    assert.same({ "call.started", "call.started", "call.joined" }, names(sent))
    assert.same({ 500, 200, 200 }, { sent[1].status, sent[2].status, sent[3].status })
    assert.same({ "retry", "delivered", "delivered" }, outcomes(sent))
    assert.same({ 1, 2, 1 }, { sent[1].attempt, sent[2].attempt, sent[3].attempt })
    assert.equal(sent[1].event_id, sent[2].event_id)

    local record = recent()
    assert.same({ "failed", "handled", "handled" }, outcomes(record))
    assert.same({ 500, 200, 200 }, { record[1].status, record[2].status, record[3].status })
    assert.equal(sent[1].event_id, record[1].id)
    assert.equal(sent[1].event_id, record[2].id)
  end)

  it("handles events that arrive out of order: each is new, none is taken for a redelivery", function()
    set_endpoint()
    emu.control("POST", "/webhook/faults", { type = "out_of_order", count = 1 })
    dial()
    emu.advance(5)
    local sent = settled(2)
    assert.same({ "call.joined", "call.started" }, names(sent))
    assert.same({ "handled", "handled" }, outcomes(recent()))
  end)

  it("refuses, with a 401, deliveries signed with another secret, until the sender gives up", function()
    set_endpoint { secret = "whsec_someone_else", max_attempts = 2 }
    dial()
    emu.advance(2)
    local sent = settled(2)
    assert.same({ 401, 401 }, { sent[1].status, sent[2].status })
    assert.same({ "retry", "gave_up" }, outcomes(sent))
    local record = recent()
    assert.same({ "refused", "refused" }, outcomes(record))
    assert.equal("bad_signature", record[1].code)
  end)

  it("accepts the old secret during a rotation", function()
    set_endpoint { secret = "whsec_old_one" }
    dial()
    emu.advance(2)
    assert.equal(200, settled(1)[1].status)
    assert.same({ "handled" }, outcomes(recent()))
  end)

  describe("a delivery posted here, not by the emulator", function()
    local function post(body, headers)
      return server:request("POST", "/truedy/webhook", body, headers)
    end

    local function signed(body, secret, timestamp)
      local ts, sig = truedy.webhook.sign(body, secret or SECRET, timestamp)
      return { ["X-Truedy-Timestamp"] = ts, ["X-Truedy-Signature"] = sig }
    end

    local event = '{"event":"call.started","timestamp":"2026-01-01T00:00:00Z","data":{"id":"call_x"},'
      .. '"id":"evt_posted_here"}'

    it("answers 401 without a signature, with a stale one, or a changed body; 400 for a bad body", function()
      assert.equal(401, post(event).status)
      assert.equal(401, post(event, signed(event, SECRET, os.time() - 600)).status)
      local headers = signed(event)
      assert.equal(401, post(event:gsub("call_x", "call_y"), headers).status)
      local not_event = '{"hello":"world"}'
      assert.equal(400, post(not_event, signed(not_event)).status)
      local record = recent()
      local codes = {}
      for i, r in ipairs(record) do codes[i] = r.code end
      assert.same({ "missing_signature", "stale_timestamp", "bad_signature", "bad_body" }, codes)
      -- and then the real one is handled
      assert.equal(200, post(event, signed(event)).status)
    end)

    it("keeps a large body in memory: 300 KiB verify (the default buffer would have used a file)", function()
      local big = '{"event":"call.ended","timestamp":"2026-01-01T00:00:00Z","id":"evt_big",'
        .. '"data":{"id":"call_big","notes":"' .. ("x"):rep(300 * 1024) .. '"}}'
      local res = post(big, signed(big))
      assert.equal(200, res.status, res.body)
      assert.equal("handled", recent()[1].outcome)
      -- over client_max_body_size: nginx refuses it before the receiver runs
      local huge = big:gsub("x+", ("y"):rep(1100 * 1024))
      assert.equal(413, post(huge, signed(huge)).status)
    end)

    it("answers 405 to another method", function()
      assert.equal(405, server:request("GET", "/truedy/webhook").status)
    end)
  end)
end)
