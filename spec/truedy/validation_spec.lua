-- Every validation rule is enforced before sending: the error names the
-- field and the rule, and the emulator's journal proves nothing was sent.
local helper = require "spec.support.helper"
local truedy = require "truedy"

local function refused(params, call_options)
  local client = helper.client()
  local res, err = client:create_call(params, call_options)
  assert.is_nil(res)
  assert.is_table(err)
  assert.equal("invalid_params", err.kind)
  assert.equal(0, err.attempts)
  assert.equal(0, #helper.journal(), "a refused call must not reach the server")
  return err
end

describe("create_call parameter checks", function()
  before_each(helper.reset)

  local cases = {
    { "agent_id missing", {}, "agent_id", "is required", remove = "agent_id" },
    { "agent_id empty", { agent_id = "" }, "agent_id", "must not be empty" },
    { "agent_id a number", { agent_id = 42 }, "agent_id", "must be a string, got a number" },
    { "phone_number missing", {}, "phone_number", "is required", remove = "phone_number" },
    { "phone_number without +", { phone_number = "12125551234" }, "phone_number", "E.164" },
    { "phone_number with spaces", { phone_number = "+1 212 555 1234" }, "phone_number", "E.164" },
    { "phone_number with dashes", { phone_number = "+1-212-555-1234" }, "phone_number", "E.164" },
    { "phone_number starting with 0", { phone_number = "+0212555123" }, "phone_number", "E.164" },
    { "phone_number too long", { phone_number = "+1234567890123456" }, "phone_number", "E.164" },
    { "phone_number too short", { phone_number = "+1" }, "phone_number", "E.164" },
    { "phone_number a number", { phone_number = 12125551234 }, "phone_number", "got a number" },
    { "from_number not E.164", { from_number = "2125551235" }, "from_number", "E.164" },
    { "from_number a table", { from_number = {} }, "from_number", "got a table" },
    { "call_settings a string", { call_settings = "loud" }, "call_settings", "got a string" },
    { "call_settings an array", { call_settings = { true } }, "call_settings", "string keys" },
    { "recording_enabled a string", { call_settings = { recording_enabled = "yes" } },
      "call_settings.recording_enabled", "must be a boolean" },
    { "transcription_enabled a number", { call_settings = { transcription_enabled = 1 } },
      "call_settings.transcription_enabled", "must be a boolean" },
    { "greeting a number", { call_settings = { greeting = 5 } }, "call_settings.greeting",
      "must be a string" },
    { "max_duration without the s", { call_settings = { max_duration = "600" } },
      "call_settings.max_duration", "duration" },
    { "max_duration in minutes", { call_settings = { max_duration = "10m" } },
      "call_settings.max_duration", "duration" },
    { "join_timeout negative", { call_settings = { join_timeout = -5 } },
      "call_settings.join_timeout", "must not be negative" },
    { "join_timeout not a number", { call_settings = { join_timeout = 0 / 0 } },
      "call_settings.join_timeout", "finite" },
    { "join_timeout a boolean", { call_settings = { join_timeout = true } },
      "call_settings.join_timeout", "duration" },
    { "variables a string", { variables = "x" }, "variables", "got a string" },
    { "variables an array", { variables = { "a", "b" } }, "variables", "string keys" },
    { "a nested table in variables", { variables = { address = { city = "Paris" } } },
      "variables.address", "nested tables are not allowed" },
    { "null in variables", { variables = { x = truedy.null } }, "variables.x", "got truedy.null" },
    { "a function in variables", { variables = { f = print } }, "variables.f", "got a function" },
    { "infinity in variables", { variables = { n = math.huge } }, "variables.n", "finite" },
    { "invalid UTF-8 in a variable", { variables = { name = "caf\233" } }, "variables.name",
      "UTF-8" },
    { "invalid UTF-8 in greeting", { call_settings = { greeting = "\255" } },
      "call_settings.greeting", "UTF-8" },
    { "a function in a pass-through field", { metadata = { on_done = print } }, "metadata.on_done",
      "cannot be sent as JSON" },
    { "NaN in a pass-through field", { metadata = { score = 0 / 0 } }, "metadata.score", "finite" },
    { "a sparse array in a pass-through field", { tags = { 1, nil, 3 } }, "tags", "sparse" },
    { "a mixed table in a pass-through field", { tags = { 1, 2, x = 3 } }, "tags", "mixes" },
    { "a boolean key", { tags = { [true] = 1 } }, "tags", "string keys" },
  }

  for _, case in ipairs(cases) do
    local name, overrides, field, rule = case[1], case[2], case[3], case[4]
    it("refuses " .. name, function()
      local params = helper.params(overrides)
      if case.remove then params[case.remove] = nil end
      local err = refused(params)
      assert.equal(field, err.field)
      assert.truthy(err.message:find(rule, 1, true),
        ("message %q does not say %q"):format(err.message, rule))
      assert.equal("truedy: invalid_params: " .. field .. ": " .. err.message, tostring(err))
    end)
  end

  it("refuses a table that contains itself", function()
    local loop = {}
    loop.self = loop
    local err = refused(helper.params{ metadata = loop })
    assert.matches("^metadata%.self", err.field)
    assert.matches("nested more than", err.message)
  end)

  it("refuses a bad idempotency key", function()
    for _, key in ipairs({ "", "has space", "tab\t", "caf\195\169", string.rep("k", 256) }) do
      local err = refused(helper.params(), { idempotency_key = key })
      assert.equal("idempotency_key", err.field)
    end
  end)

  it("does not repeat the phone number in the error (personal data goes to logs)", function()
    local err = refused(helper.params{ phone_number = "+1 555 867 5309" })
    assert.is_nil(tostring(err):find("867", 1, true))
  end)

  it("keeps going after a bad row: the next good call goes through", function()
    local client = helper.client()
    local rows = { helper.to_number, "not-a-number", "+12125550000" }
    local placed, refusals = 0, 0
    for _, number in ipairs(rows) do
      local res, err = client:create_call(helper.params{ phone_number = number })
      if res then placed = placed + 1 elseif err.kind == "invalid_params" then refusals = refusals + 1 end
    end
    assert.equal(2, placed)
    assert.equal(1, refusals)
    assert.equal(2, #helper.journal("POST"))
  end)

  describe("programmer errors raise", function()
    it("when params is not a table", function()
      local client = helper.client()
      assert.has_error(function() client:create_call("agt") end)
      assert.has_error(function() client:create_call(nil) end)
      assert.has_error(function() truedy.create_call(42) end)
    end)

    it("on an unknown per-call option", function()
      local client = helper.client()
      assert.has_error(function() client:create_call(helper.params(), { idempotencykey = "x" }) end,
        "create_call: unknown option 'idempotencykey'")
    end)

    it("on an unknown or mistyped client option", function()
      assert.has_error(function() truedy.new{ api_key = "k", timout = 3 } end,
        "truedy.new: unknown option 'timout'")
      assert.has_error(function() truedy.new{ api_key = "k", timeout = "3" } end,
        "truedy.new: option 'timeout' must be a number, got string")
      assert.has_error(function() truedy.new{ api_key = "k", timeout = -1 } end)
      assert.has_error(function() truedy.new{ api_key = "k", max_retries = 1.5 } end,
        "truedy.new: option 'max_retries' must be a whole number")
      assert.has_error(function() truedy.new{ api_key = "k", debug = "yes" } end,
        "truedy.new: option 'debug' must be a boolean")
      assert.has_error(function() truedy.new("k") end)
    end)
  end)
end)
