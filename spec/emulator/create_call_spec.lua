-- POST /calls: the success shape, and validation exactly as the contract states it.
local emu = require "spec.emulator.emu"

local null = emu.null

describe("emulator POST /calls", function()
  before_each(emu.reset)

  it("answers 201 with the call object and meta", function()
    local res = emu.api("POST", "/calls", emu.call_body { from_number = emu.agent.outbound_numbers[2] })
    assert.are.equal(201, res.status)
    assert.matches("^application/json", res.headers["content-type"])
    local call, meta = res.json.data, res.json.meta
    assert.matches("^call_%x+$", call.id)
    assert.are.equal(emu.agent.id, call.agent_id)
    assert.are.equal("queued", call.status)
    assert.are.equal(emu.agent.outbound_numbers[2], call.from_number)
    assert.are.equal(emu.to, call.to_number)
    assert.are.equal("outbound", call.direction)
    assert.matches(emu.ISO_US, call.created_at)
    assert.matches(emu.ISO_US, call.updated_at)
    assert.are.equal(null, call.ended_at)
    assert.matches("^req_%x+$", meta.request_id)
    assert.matches(emu.ISO_US, meta.ts)
    -- the created call is really there
    local got = emu.api("GET", "/calls/" .. call.id)
    assert.are.equal(200, got.status)
    assert.are.equal(call.id, got.json.data.id)
  end)

  it("picks one of the agent's numbers when from_number is omitted, using each of them", function()
    local used = {}
    for _ = 1, 4 do
      local call = emu.create_call()
      used[call.from_number] = true
    end
    for n in pairs(used) do
      assert.is_true(n == emu.agent.outbound_numbers[1] or n == emu.agent.outbound_numbers[2])
    end
    assert.is_true(used[emu.agent.outbound_numbers[1]] and used[emu.agent.outbound_numbers[2]])
  end)

  it("accepts an agent id in the bare UUID style", function()
    local uuid_agent
    for _, a in ipairs(emu.fixtures.agents) do
      if a.id:find(emu.UUID) then uuid_agent = a end
    end
    -- the UUID agent has no numbers: it gets past the id lookup to the number check
    local res = emu.api("POST", "/calls", emu.call_body { agent_id = uuid_agent.id })
    assert.are.equal(422, res.status)
    assert.are.equal("no_phone_number_configured", res.json.error.code)
  end)

  it("accepts null for from_number, call_settings and variables", function()
    local res = emu.api("POST", "/calls",
      '{"agent_id":"' .. emu.agent.id .. '","phone_number":"' .. emu.to
        .. '","from_number":null,"call_settings":null,"variables":null}')
    assert.are.equal(201, res.status)
  end)

  it("accepts every documented call setting, variables of each type, and unknown fields", function()
    local res = emu.api("POST", "/calls", emu.call_body {
      call_settings = { recording_enabled = false, transcription_enabled = true, greeting = "Hi {{first_name}}",
        max_duration = "600s", join_timeout = "1.5s", future_setting = { anything = 1 } },
      variables = { first_name = "Ada", order = 1234567890123, vip = true, empty = "" },
      metadata = { campaign = "spring" },
      some_future_field = 42,
    })
    assert.are.equal(201, res.status, res.body)
    assert.are.equal(null, res.json.data.recording_url)
  end)

  it("accepts the E.164 extremes: 2 and 15 digits", function()
    assert.are.equal(201, emu.api("POST", "/calls", emu.call_body { phone_number = "+12" }).status)
    assert.are.equal(201, emu.api("POST", "/calls", emu.call_body { phone_number = "+123456789012345" }).status)
  end)

  describe("validation", function()
    -- { description, body (a table, or a function of the valid body), field, reason pattern }
    local RAW = {} -- marks a body given as raw JSON text
    local cases = {
      { "agent_id missing", { agent_id = RAW }, "agent_id", "required" },
      { "agent_id empty", { agent_id = "" }, "agent_id", "empty" },
      { "agent_id a number", { agent_id = 123 }, "agent_id", "string" },
      { "agent_id null", { agent_id = null }, "agent_id", "null" },
      { "phone_number missing", { phone_number = RAW }, "phone_number", "required" },
      { "phone_number without +", { phone_number = "12125551234" }, "phone_number", "E%.164" },
      { "phone_number starting +0", { phone_number = "+0123456" }, "phone_number", "E%.164" },
      { "phone_number of 16 digits", { phone_number = "+1234567890123456" }, "phone_number", "E%.164" },
      { "phone_number of 1 digit", { phone_number = "+1" }, "phone_number", "E%.164" },
      { "phone_number with spaces", { phone_number = "+1 212 555 1234" }, "phone_number", "E%.164" },
      { "phone_number empty", { phone_number = "" }, "phone_number", "E%.164" },
      { "phone_number a number", { phone_number = 12125551234 }, "phone_number", "string" },
      { "from_number not E.164", { from_number = "555-1234" }, "from_number", "E%.164" },
      { "from_number a number", { from_number = 12125551235 }, "from_number", "string" },
      { "call_settings a string", { call_settings = "loud" }, "call_settings", "object" },
      { "call_settings an array", { call_settings = { 1 } }, "call_settings", "object" },
      { "call_settings an empty array", '"call_settings":[]', "call_settings", "object" },
      { "recording_enabled a string", { call_settings = { recording_enabled = "yes" } },
        "call_settings.recording_enabled", "boolean" },
      { "transcription_enabled a number", { call_settings = { transcription_enabled = 1 } },
        "call_settings.transcription_enabled", "boolean" },
      { "greeting a number", { call_settings = { greeting = 5 } }, "call_settings.greeting", "string" },
      { "max_duration a number", { call_settings = { max_duration = 30 } }, "call_settings.max_duration", "string" },
      { "max_duration without s", { call_settings = { max_duration = "30" } }, "call_settings.max_duration",
        "duration" },
      { "max_duration with a space", { call_settings = { max_duration = "30 s" } }, "call_settings.max_duration",
        "duration" },
      { "max_duration negative", { call_settings = { max_duration = "-1s" } }, "call_settings.max_duration",
        "duration" },
      { "max_duration .5s", { call_settings = { max_duration = ".5s" } }, "call_settings.max_duration", "duration" },
      { "join_timeout in minutes", { call_settings = { join_timeout = "1m" } }, "call_settings.join_timeout",
        "duration" },
      { "variables a string", { variables = "x" }, "variables", "object" },
      { "variables an empty array", '"variables":[]', "variables", "object" },
      { "variables an array", { variables = { "a" } }, "variables", "object" },
      { "a variable null", { variables = { first_name = null } }, "variables.first_name", "string, number or boolean" },
      { "a variable an object", { variables = { first_name = { x = 1 } } }, "variables.first_name",
        "string, number or boolean" },
      { "a variable an array", { variables = { tags = { "a" } } }, "variables.tags", "string, number or boolean" },
    }

    for _, case in ipairs(cases) do
      local description, change, field, reason = case[1], case[2], case[3], case[4]
      it("refuses " .. description .. " with 422 on " .. field, function()
        local body
        if type(change) == "string" then
          body = '{"agent_id":"' .. emu.agent.id .. '","phone_number":"' .. emu.to .. '",' .. change .. "}"
        else
          local t = emu.call_body()
          for k, v in pairs(change) do
            if v == RAW then t[k] = nil else t[k] = v end
          end
          body = emu.json.encode(t)
        end
        local res = emu.api("POST", "/calls", body)
        assert.are.equal(422, res.status, res.body)
        assert.are.equal("validation_error", res.json.error.code)
        assert.is_string(res.json.error.message)
        assert.are.equal(field, res.json.error.details.field)
        assert.matches(reason, res.json.error.details.reason)
        assert.matches("^req_", res.json.meta.request_id)
        assert.are.same({}, emu.list_calls(), "no call was created")
      end)
    end
  end)

  describe("business rules", function()
    it("answers 404 not_found for an unknown agent", function()
      local res = emu.api("POST", "/calls", emu.call_body { agent_id = "agt_doesnotexist" })
      assert.are.equal(404, res.status)
      assert.are.equal("not_found", res.json.error.code)
      assert.are.equal("Agent not found: agt_doesnotexist", res.json.error.message)
    end)

    it("refuses a draft agent with 422 on agent_id", function()
      local res = emu.api("POST", "/calls", emu.call_body { agent_id = emu.draft_agent.id })
      assert.are.equal(422, res.status)
      assert.are.equal("validation_error", res.json.error.code)
      assert.are.equal("agent_id", res.json.error.details.field)
    end)

    it("refuses a from_number that is not one of the agent's numbers", function()
      local res = emu.api("POST", "/calls", emu.call_body { from_number = "+12125550000" })
      assert.are.equal(422, res.status)
      assert.are.equal("validation_error", res.json.error.code)
      assert.are.equal("from_number", res.json.error.details.field)
      -- another agent's number is not this agent's either
      res = emu.api("POST", "/calls", emu.call_body { from_number = emu.draft_agent.outbound_numbers[1] })
      assert.are.equal(422, res.status)
      assert.are.equal("from_number", res.json.error.details.field)
    end)

    it("answers 422 no_phone_number_configured for an agent without numbers and no from_number", function()
      local res = emu.api("POST", "/calls", emu.call_body { agent_id = emu.agent_without_numbers.id })
      assert.are.equal(422, res.status)
      assert.are.equal("no_phone_number_configured", res.json.error.code)
      assert.matches(emu.agent_without_numbers.id, res.json.error.message, 1, true)
      assert.are.same({}, emu.list_calls())
    end)
  end)

  describe("a body that is not a JSON object", function()
    local bodies = { ["invalid JSON"] = '{"agent_id": ', ["plain text"] = "hello", ["an empty body"] = "",
      ["an array"] = "[]", ["a string"] = '"x"', ["a number"] = "1", ["null"] = "null",
      ["a trailing comma"] = '{"agent_id":"a",}', ["invalid UTF-8"] = '{"agent_id":"\255"}' }
    for description, body in pairs(bodies) do
      it("is refused with 400 bad_request: " .. description, function()
        local res = emu.api("POST", "/calls", body)
        assert.are.equal(400, res.status, res.body)
        assert.are.equal("bad_request", res.json.error.code)
        assert.is_string(res.json.error.message)
        assert.matches("^req_", res.json.meta.request_id)
        assert.matches(emu.ISO_US, res.json.meta.ts)
      end)
    end
  end)
end)
