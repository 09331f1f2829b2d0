-- truedy.follow: polling a call until it ends.
local helper = require "spec.support.helper"
local follow = require "truedy.follow"

describe("truedy.follow", function()
  before_each(helper.reset)

  it("polls until the call ends, reporting each status once", function()
    helper.configure{ clock_speed = 100 }
    local client = helper.client()
    local created = assert(client:create_call(helper.params()))
    local statuses = {}
    local call, finished = follow(client, created.data.id, { timeout = 10, interval = 0.05,
      on_change = function(now) statuses[#statuses + 1] = now.status end })
    assert.is_true(finished)
    assert.equal("ended", call.status)
    assert.equal("ended", statuses[#statuses])
    for i = 2, #statuses do assert.are_not.equal(statuses[i - 1], statuses[i]) end
    assert.is_true(#statuses >= 2)
  end)

  it("stops at the timeout with the last state seen", function()
    local client = helper.client()
    local created = assert(client:create_call(helper.params()))
    local started = helper.now()
    local call, finished = follow(client, created.data.id, { timeout = 0.3, interval = 0.1 })
    assert.is_false(finished)
    assert.equal(created.data.id, call.id)
    assert.is_true(helper.now() - started < 2)
    -- bounded: a few polls, not a busy loop
    assert.is_true(#helper.journal("GET") <= 6)
  end)

  it("returns the read error", function()
    local call, err = follow(helper.client(), "call_nope", { timeout = 1 })
    assert.is_nil(call)
    assert.equal(404, err.status)
  end)

  it("uses the sleep function it is given", function()
    local client = helper.client()
    local created = assert(client:create_call(helper.params()))
    local slept = 0
    follow(client, created.data.id, { timeout = 0.2, interval = 0.05,
      sleep = function(seconds) slept = slept + 1; require("socket").sleep(seconds) end })
    assert.is_true(slept >= 1)
  end)

  it("raises on unknown options", function()
    assert.has_error(function() follow(helper.client(), "x", { timout = 1 }) end,
      "truedy.follow: unknown option 'timout'")
  end)
end)
