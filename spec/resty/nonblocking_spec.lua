-- truedy.resty does not block the nginx worker: with one worker, while calls are held by the
-- emulator (the hold fault: they stay unanswered until the spec releases them), the same worker
-- answers other requests. Causal, not timed: each check happens while the hold is known to be
-- in place, and the held calls end only after the release.
local app = require "spec.resty.app"
local emu = app.emu

describe("truedy.resty in one nginx worker", function()
  local server

  setup(function() server = app.start { workers = 1 } end)
  teardown(function() if server then server:stop() end end)
  before_each(emu.reset)
  after_each(function() emu.release() end)

  it("answers /ping while a call is held by the API", function()
    emu.fault { method = "POST", path = "/calls", type = "hold", count = 1 }
    local dial = server:background("POST", "/dial", { agent_id = emu.agent.id, phone_number = emu.to })
    assert.is_table(emu.wait_held(1), "the call never reached the API")

    local ping = server:request("GET", "/ping")
    assert.equal(200, ping.status)
    assert.is_true(ping.json.pong)
    assert.equal(1, ping.json.pending)
    assert.equal(0, ping.worker)
    -- the call is still held: it cannot have ended
    assert.equal(1, #emu.held())
    assert.is_false(dial.done())

    assert.equal(1, #emu.release())
    local placed = dial.wait()
    assert.equal(201, placed.status, placed.body)
    assert.equal(0, placed.worker)
  end)

  it("has max_pending calls in flight at once, and refuses the next one itself", function()
    -- the example's client: max_pending = 8, and a pool of 8 threads
    emu.fault { method = "POST", path = "/calls", type = "hold", count = 8 }
    local dials = {}
    for i = 1, 8 do
      dials[i] = server:background("POST", "/dial", { agent_id = emu.agent.id, phone_number = emu.to })
    end
    assert.is_table(emu.wait_held(8), "8 calls never were at the API together")
    assert.equal(8, server:request("GET", "/ping").json.pending)

    local refused = server:dial { agent_id = emu.agent.id, phone_number = emu.to }
    assert.equal(503, refused.status, refused.body)
    local err = refused.json.error
    assert.equal("config", err.kind)
    assert.is_true(err.retryable)
    assert.equal(0, err.attempts)
    assert.matches("max_pending = 8", err.line, 1, true)
    assert.equal(8, #emu.held(), "the refused call must not have reached the API")

    assert.equal(8, #emu.release())
    for i = 1, 8 do
      local placed = dials[i].wait()
      assert.equal(201, placed.status, placed.body)
    end
    assert.equal(0, server:request("GET", "/ping").json.pending)
    assert.is_nil(server:error_log():find("queue overflow", 1, true))
  end)
end)
