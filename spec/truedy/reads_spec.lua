-- get_call, list_calls and the call lifecycle.
local helper = require "spec.support.helper"
local truedy = require "truedy"

describe("reading calls", function()
  before_each(helper.reset)

  it("gets a call by id", function()
    local client = helper.client()
    local created = assert(client:create_call(helper.params()))
    local res = assert(client:get_call(created.data.id))
    assert.equal(created.data.id, res.data.id)
    assert.equal(helper.to_number, res.data.to_number)
  end)

  it("maps an unknown id to 404 not_found", function()
    local res, err = helper.client():get_call("call_nope")
    assert.is_nil(res)
    assert.equal(404, err.status)
    assert.equal("not_found", err.code)
  end)

  it("sends the id as one escaped path segment", function()
    local _, err = helper.client():get_call("call x?y#z")
    assert.equal(404, err.status)
    local entry = helper.journal("GET")[1]
    assert.equal("/api/public/v1/calls/call x?y#z", entry.path)
    assert.is_nil(entry.query)
  end)

  it("refuses an id that could walk out of /calls/", function()
    for _, id in ipairs({ "../../__emulator/reset", "..", ".", "a/b", "a\\b" }) do
      local res, err = helper.client():get_call(id)
      assert.is_nil(res)
      assert.equal("invalid_params", err.kind)
      assert.equal("call_id", err.field)
    end
    assert.equal(0, #helper.journal())
  end)

  it("refuses an empty id without a request, and raises on a non-string", function()
    local res, err = helper.client():get_call("")
    assert.is_nil(res)
    assert.equal("invalid_params", err.kind)
    assert.equal("call_id", err.field)
    assert.equal(0, #helper.journal())
    assert.has_error(function() helper.client():get_call(nil) end)
  end)

  it("does not show one organization's call to another", function()
    local created = assert(helper.client():create_call(helper.params()))
    local other = helper.client{ api_key = helper.other_api_key }
    local _, err = other:get_call(created.data.id)
    assert.equal(404, err.status)
    local listed = assert(other:list_calls())
    assert.equal(0, #listed.data)
  end)

  it("lists calls with filters and pagination", function()
    local client = helper.client()
    for i = 1, 3 do
      assert(client:create_call(helper.params{ phone_number = "+1212555100" .. i }))
    end
    local page = assert(client:list_calls{ limit = 2, offset = 0, direction = "outbound",
                                           agent_id = helper.agent.id })
    assert.equal(2, #page.data)
    assert.same({ total = 3, limit = 2, offset = 0, has_more = true }, page.pagination)
    assert.is_true(helper.is_integer(page.pagination.total))
    local rest = assert(client:list_calls{ limit = 2, offset = 2 })
    assert.equal(1, #rest.data)
    assert.is_false(rest.pagination.has_more)
    local query = helper.journal("GET")[1].query
    for _, part in ipairs({ "limit=2", "offset=0", "direction=outbound", "agent_id=" .. helper.agent.id }) do
      assert.truthy(query:find(part, 1, true), query .. " lacks " .. part)
    end
    local none = assert(client:list_calls{ status = "ended" })
    assert.equal(0, #none.data)
  end)

  it("refuses an out-of-range limit before sending", function()
    for _, limit in ipairs({ 0, 101, 2.5 }) do
      local res, err = helper.client():list_calls{ limit = limit }
      assert.is_nil(res)
      assert.equal("invalid_params", err.kind)
      assert.equal("limit", err.field)
    end
    assert.equal(0, #helper.journal())
  end)

  it("follows a call through its lifecycle to ended, with the ended fields", function()
    helper.configure{ clock_speed = 200 }
    local client = helper.client()
    local created = assert(client:create_call(helper.params()))
    local call, seen = created.data, { [created.data.status] = true }
    for _ = 1, 100 do
      if truedy.is_terminal(call) then break end
      require("socket").sleep(0.05)
      call = assert(client:get_call(created.data.id)).data
      seen[call.status] = true
    end
    assert.equal("ended", call.status)
    assert.is_true(seen["in-progress"], "the call never showed as in-progress")
    assert.is_true(truedy.is_terminal(call))
    assert.is_true(call.duration_seconds > 0)
    assert.is_true(helper.is_integer(call.duration_seconds))
    assert.is_string(call.started_at)
    assert.is_string(call.ended_at)
    assert.is_string(call.recording_url)
    assert.is_table(call.transcript)
    assert.is_string(call.transcript[1].text)
  end)

  it("ends calls to the failing test range as failed, without a recording", function()
    helper.configure{ clock_speed = 500 }
    local client = helper.client()
    local created = assert(client:create_call(helper.params{ phone_number = helper.failing_number }))
    local call = created.data
    for _ = 1, 100 do
      if truedy.is_terminal(call) then break end
      require("socket").sleep(0.05)
      call = assert(client:get_call(created.data.id)).data
    end
    assert.equal("failed", call.status)
    assert.is_nil(call.recording_url)
  end)

  it("knows every documented spelling of a finished call", function()
    for _, status in ipairs({ "ended", "completed", "failed", "cancelled", "canceled", "busy",
                              "no-answer", "no_answer" }) do
      assert.is_true(truedy.is_terminal(status), status)
    end
    for _, status in ipairs({ "queued", "ringing", "in-progress", "in_progress", "brand-new-state" }) do
      assert.is_false(truedy.is_terminal(status), status)
    end
    assert.is_false(truedy.is_terminal(nil))
    assert.is_true(truedy.is_terminal{ status = "ended" })
  end)
end)
