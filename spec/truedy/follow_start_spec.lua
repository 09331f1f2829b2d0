-- truedy.follow.start: following a call without blocking, on the client's engine.  The
-- emulator's clock is moved by the spec (clock/advance) at a point the spec chooses, so each
-- status is seen because of what the spec did, not because of how long anything took.
local helper = require "spec.support.helper"
local emu = require "spec.emulator.emu"
local truedy = require "truedy"
local follow = require "truedy.follow"

-- Drives `client` until pred() is true, in at most `rounds` polls of at most 20 ms.
local function drive_until(client, pred, what, rounds)
  for _ = 1, rounds or 500 do
    if pred() then return end
    client:poll(0.02)
  end
  assert(pred(), "gave up waiting for " .. what)
end

describe("truedy.follow.start", function()
  before_each(helper.reset)

  it("follows a call to its end without blocking; on_change and on_done run from poll", function()
    local client = helper.client()
    local created = assert(client:create_call(helper.params())).data
    local statuses, finished_with = {}, nil
    local f = follow.start(client, created.id, { interval = 0.05, wait_timeout = 60,
      on_change = function(call)
        statuses[#statuses + 1] = call.status
        if call.status == "queued" then emu.advance(40) end -- the next read sees it ended
      end,
      on_done = function(call, finished, fol) finished_with = { call, finished, fol } end })
    assert.is_false(f:done())
    assert.equal("queued", f:state()) -- its first read is not sent before a poll
    drive_until(client, function() return finished_with end, "the follow to end")
    assert.same({ "queued", "ended" }, statuses)
    assert.equal("ended", finished_with[1].status)
    assert.is_true(finished_with[2])
    assert.equal(f, finished_with[3])
    assert.is_true(f:done())
    assert.equal("done", f:state())
    local call, finished = f:result()
    assert.equal(created.id, call.id)
    assert.is_true(finished)
    assert.equal(0, client:pending())
  end)

  it("waits between reads on the engine's timer: poll(0) returns, the next read is queued", function()
    local client = helper.client()
    local created = assert(client:create_call(helper.params())).data
    local reads = 0
    local f = follow.start(client, created.id, { interval = 60,
      on_change = function() reads = reads + 1 end })
    drive_until(client, function() return reads == 1 end, "the first read")
    for _ = 1, 20 do assert.equal(0, client:poll(0)) end
    assert.equal("queued", f:state())
    assert.is_true(client:timeout() > 1)
    assert.equal(1, #helper.journal("GET"))
    assert.is_true(f:cancel())
  end)

  it("ends with (call, false) when wait_timeout passes first", function()
    local client = helper.client()
    local created = assert(client:create_call(helper.params())).data
    local f = follow.start(client, created.id, { interval = 0.01, wait_timeout = 0 })
    local call, finished = f:wait(10)
    assert.equal(created.id, call.id)
    assert.is_false(finished)
  end)

  it("ends with nil, err when a read fails", function()
    local client = helper.client()
    local got
    local f = follow.start(client, "call_nope", { on_done = function(...) got = { ... } end })
    local call, err = f:wait(10)
    assert.is_nil(call)
    assert.equal(404, err.status)
    assert.is_nil(got[1])
    assert.equal(err, got[2])
  end)

  it("f:wait(timeout) returns nothing when the timeout passes first", function()
    local client = helper.client()
    local created = assert(client:create_call(helper.params())).data
    local f = follow.start(client, created.id, { interval = 60 })
    assert.equal(0, select("#", f:wait(0)))
    assert.is_false(f:done())
    assert.is_true(f:cancel())
  end)

  it("cancel stops it: on_done gets a cancelled error and no read follows", function()
    local client = helper.client()
    local created = assert(client:create_call(helper.params())).data
    local got
    local f = follow.start(client, created.id, { interval = 60, on_done = function(...) got = { ... } end })
    drive_until(client, function() return #helper.journal("GET") == 1 and f:state() == "queued" end,
      "the first read")
    assert.is_true(f:cancel())
    assert.is_false(f:cancel())
    assert.is_nil(got[1])
    assert.equal("cancelled", got[2].kind)
    for _ = 1, 5 do client:poll(0) end
    assert.equal(0, client:pending())
    assert.equal(1, #helper.journal("GET"))
  end)

  it("ends when its client is closed, with the cancelled error of its read", function()
    local client = helper.client()
    local created = assert(client:create_call(helper.params())).data
    local got
    local f = follow.start(client, created.id, { interval = 60, on_done = function(...) got = { ... } end })
    drive_until(client, function() return #helper.journal("GET") == 1 and f:state() == "queued" end,
      "the first read")
    client:close()
    assert.is_true(f:done())
    assert.equal("done", f:state())
    local call, err = f:result()
    assert.is_nil(call)
    assert.equal("cancelled", err.kind)
    assert.matches("the client was closed", err.message)
    assert.same({ nil, err, f }, got)
    local again, err2 = f:wait()
    assert.is_nil(again)
    assert.equal(err, err2)
    assert.is_false(f:cancel())
  end)

  it("raises on unknown options and on sleep (it never sleeps)", function()
    local client = helper.client()
    assert.has_error(function() follow.start(client, "x", { sleep = function() end }) end,
      "truedy.follow.start: unknown option 'sleep'")
    assert.has_error(function() follow.start(client, "x", { intervl = 1 }) end,
      "truedy.follow.start: unknown option 'intervl'")
    assert.is_function(truedy.follow.start)
  end)
end)
