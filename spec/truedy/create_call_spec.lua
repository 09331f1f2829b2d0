-- create_call end to end against the emulator: what is sent, byte for byte,
-- and what comes back.
local helper = require "spec.support.helper"
local truedy = require "truedy"
local cjson = require("cjson").new()

describe("create_call", function()
  before_each(helper.reset)

  it("places a call and returns the decoded envelope", function()
    local client = helper.client()
    local res, err = client:create_call(helper.params())
    assert.is_nil(err)
    local call = res.data
    assert.matches("^call_", call.id)
    assert.equal(helper.agent.id, call.agent_id)
    assert.equal("queued", call.status)
    assert.equal("outbound", call.direction)
    assert.equal(helper.to_number, call.to_number)
    -- from_number omitted: one of the agent's outbound numbers was chosen
    local chosen = false
    for _, number in ipairs(helper.agent.outbound_numbers) do
      if number == call.from_number then chosen = true end
    end
    assert.is_true(chosen)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%d%d%d%dZ$", call.created_at)
    assert.is_string(res.meta.request_id)
    assert.is_string(res.meta.ts)
    -- and the call exists on the server
    local calls = helper.list_calls_raw()
    assert.equal(1, #calls)
    assert.equal(call.id, calls[1].id)
  end)

  it("sends exactly the JSON body and headers the contract asks for", function()
    local client = helper.client{ user_agent = "spec-suite/1.0" }
    local res = assert(client:create_call({
      agent_id = helper.agent.id,
      phone_number = helper.to_number,
      from_number = helper.agent.outbound_numbers[2],
      call_settings = { recording_enabled = false, greeting = "Hi {{first_name}}",
                        max_duration = "600s", join_timeout = 30 },
      variables = { first_name = "Ada", order = 1234567890123, vip = true, ratio = 0.25 },
    }, { idempotency_key = "order-1234" }))
    assert.equal(helper.agent.outbound_numbers[2], res.data.from_number)

    local posts = helper.journal("POST", "/api/public/v1/calls")
    assert.equal(1, #posts)
    local entry = posts[1]
    -- keys sorted, numbers written exactly, durations normalised, variables as text
    assert.equal('{"agent_id":"' .. helper.agent.id .. '",'
      .. '"call_settings":{"greeting":"Hi {{first_name}}","join_timeout":"30s",'
      .. '"max_duration":"600s","recording_enabled":false},'
      .. '"from_number":"' .. helper.agent.outbound_numbers[2] .. '",'
      .. '"phone_number":"' .. helper.to_number .. '",'
      .. '"variables":{"first_name":"Ada","order":"1234567890123","ratio":"0.25","vip":"true"}}',
      entry.body)
    local headers = entry.headers
    assert.equal("Bearer <redacted>", headers["authorization"])
    assert.equal("acme", entry.auth)
    assert.equal("application/json", headers["content-type"])
    assert.equal("application/json", headers["accept"])
    assert.equal("order-1234", headers["x-idempotency-key"])
    assert.is_nil(headers["expect"])
    assert.matches("^truedy%-lua/" .. truedy.VERSION:gsub("%.", "%%.") .. " %(", headers["user-agent"])
    assert.matches("libcurl/", headers["user-agent"])
    assert.matches("spec%-suite/1%.0$", headers["user-agent"])
  end)

  it("gives every create a fresh random idempotency key when none is passed", function()
    local client = helper.client()
    assert(client:create_call(helper.params()))
    assert(client:create_call(helper.params()))
    local posts = helper.journal("POST")
    assert.equal(2, #posts)
    local uuid = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"
    assert.matches(uuid, posts[1].headers["x-idempotency-key"])
    assert.matches(uuid, posts[2].headers["x-idempotency-key"])
    assert.are_not.equal(posts[1].headers["x-idempotency-key"], posts[2].headers["x-idempotency-key"])
    assert.equal(2, #helper.list_calls_raw())
  end)

  it("replays a create with the same key and parameters instead of dialing again", function()
    local client = helper.client()
    local params = helper.params{ variables = { a = "1", b = "2", c = "3" } }
    local first = assert(client:create_call(params, { idempotency_key = "same-key" }))
    -- a new table with the same content, built in another order: same bytes
    local again = helper.params{ variables = { c = "3", b = "2", a = "1" } }
    local second = assert(client:create_call(again, { idempotency_key = "same-key" }))
    assert.equal(first.data.id, second.data.id)
    assert.equal(1, #helper.list_calls_raw())
    local posts = helper.journal("POST")
    assert.equal(posts[1].body, posts[2].body)
  end)

  it("passes unknown fields through untouched, numbers exactly", function()
    local client = helper.client()
    assert(client:create_call(helper.params{
      metadata = { crm_id = 1234567890123456, tags = { "a", "b" }, empty = {}, flag = false,
                   nothing = truedy.null, price = 12.5 },
    }))
    local body = cjson.decode(helper.journal("POST")[1].body)
    assert.equal("a", body.metadata.tags[1])
    assert.equal(false, body.metadata.flag)
    assert.equal(cjson.null, body.metadata.nothing)
    assert.matches('"crm_id":1234567890123456[,}]', helper.journal("POST")[1].body)
    assert.matches('"empty":{}', helper.journal("POST")[1].body)
    assert.matches('"price":12.5', helper.journal("POST")[1].body)
  end)

  it("sends truedy.null for the nullable fields", function()
    local client = helper.client()
    local res = assert(client:create_call(helper.params{
      from_number = truedy.null, call_settings = truedy.null, variables = truedy.null,
    }))
    assert.equal("queued", res.data.status)
    local body = helper.journal("POST")[1].body
    assert.matches('"from_number":null', body)
    assert.matches('"call_settings":null', body)
    assert.matches('"variables":null', body)
  end)

  it("sends durations given as numbers as strings with an s suffix", function()
    local client = helper.client()
    assert(client:create_call(helper.params{
      call_settings = { max_duration = 90, join_timeout = 1.5 },
    }))
    local body = cjson.decode(helper.journal("POST")[1].body)
    assert.equal("90s", body.call_settings.max_duration)
    assert.equal("1.5s", body.call_settings.join_timeout)
  end)

  it("escapes strings as JSON and keeps UTF-8 text intact", function()
    local client = helper.client()
    local greeting = 'Grüß dich, "Ada"\n\tnew line \\ 日本'
    assert(client:create_call(helper.params{ call_settings = { greeting = greeting } }))
    local body = cjson.decode(helper.journal("POST")[1].body)
    assert.equal(greeting, body.call_settings.greeting)
  end)

  it("accepts an agent id in the bare UUID style", function()
    local client = helper.client()
    local res, err = client:create_call(helper.params{
      agent_id = helper.agent_without_numbers.id,
      from_number = nil,
    })
    -- the UUID agent has no numbers: the API's own rule answers, not ours
    assert.is_nil(res)
    assert.equal("api", err.kind)
    assert.equal("no_phone_number_configured", err.code)
  end)

  it("works through the module-level default client configured from the environment", function()
    local status, output = helper.run_lua([[
      local truedy = require "truedy"
      local res, err = truedy.create_call{ agent_id = "]] .. helper.agent.id .. [[",
                                           phone_number = "+12125551234" }
      print(res and res.data.status or tostring(err))
    ]], { TRUEDY_API_KEY = helper.api_key, TRUEDY_BASE_URL = helper.base_url })
    assert.equal(0, status)
    assert.equal("queued\n", output)
  end)

  it("reports a missing API key as a config error before any request", function()
    local status, output = helper.run_lua([[
      local truedy = require "truedy"
      local res, err = truedy.create_call{ agent_id = "a", phone_number = "+12125551234" }
      print(res, err.kind, err.attempts, tostring(err))
    ]], { TRUEDY_BASE_URL = helper.base_url })
    assert.equal(0, status)
    assert.matches("^nil\tconfig\t0\ttruedy: config: no API key", output)
    assert.equal(0, #helper.journal())
  end)
end)
