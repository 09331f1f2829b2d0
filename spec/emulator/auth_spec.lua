-- Authorization: Bearer <key>, and organizations kept apart.
local emu = require "spec.emulator.emu"

local function assert_unauthorized(res)
  assert.are.equal(401, res.status)
  assert.are.equal("unauthorized", res.json.error.code)
  assert.are.equal("Invalid or missing API key", res.json.error.message)
  assert.matches("^req_%x+$", res.json.meta.request_id)
  assert.matches(emu.ISO_US, res.json.meta.ts)
end

describe("emulator auth", function()
  before_each(emu.reset)

  it("answers 401 unauthorized without an Authorization header", function()
    assert_unauthorized(emu.api("GET", "/calls", nil, { key = false }))
    assert.are.equal("missing", emu.journal()[1].auth)
  end)

  it("answers 401 unauthorized to malformed headers", function()
    local malformed = { "Token " .. emu.key, "Bearer", "Bearer ", emu.key, "Basic dXNlcjpwYXNz",
      "Bearer " .. emu.key .. " extra" }
    for _, value in ipairs(malformed) do
      assert_unauthorized(emu.api("POST", "/calls", emu.call_body(), { authorization = value }))
    end
    for _, entry in ipairs(emu.journal()) do assert.are.equal("malformed", entry.auth) end
    assert.are.same({}, emu.list_calls())
  end)

  it("answers 401 unauthorized to a well-formed key that is not seeded", function()
    local unknown = "truedy_" .. ("A"):rep(32)
    assert_unauthorized(emu.api("GET", "/calls", nil, { key = unknown }))
    assert_unauthorized(emu.api("GET", "/calls/call_123", nil, { key = unknown }))
    assert_unauthorized(emu.api("POST", "/calls", emu.call_body(), { key = unknown }))
    for _, entry in ipairs(emu.journal()) do assert.are.equal("unknown", entry.auth) end
  end)

  it("accepts the seeded keys, with the scheme in any case", function()
    assert.are.equal(200, emu.api("GET", "/calls").status)
    assert.are.equal(200, emu.api("GET", "/calls", nil, { key = emu.other_key }).status)
    assert.are.equal(200, emu.api("GET", "/calls", nil, { authorization = "bearer " .. emu.key }).status)
    local journal = emu.journal()
    assert.are.equal(emu.fixtures.organizations[1].name, journal[1].auth)
    assert.are.equal(emu.fixtures.organizations[2].name, journal[2].auth)
  end)

  describe("a second organization", function()
    it("does not see the first one's calls", function()
      local call = emu.create_call()
      local res = emu.api("GET", "/calls/" .. call.id, nil, { key = emu.other_key })
      assert.are.equal(404, res.status)
      assert.are.equal("not_found", res.json.error.code)
      local list, pagination = emu.list_calls(emu.other_key)
      assert.are.same({}, list)
      assert.are.equal(0, pagination.total)
      -- while the owner does
      assert.are.equal(200, emu.api("GET", "/calls/" .. call.id).status)
      assert.are.equal(1, #emu.list_calls())
    end)

    it("cannot use the first one's agents, nor the first theirs", function()
      local res = emu.api("POST", "/calls", emu.call_body(), { key = emu.other_key })
      assert.are.equal(404, res.status)
      assert.are.equal("not_found", res.json.error.code)
      res = emu.api("POST", "/calls", emu.call_body { agent_id = emu.other_agent.id })
      assert.are.equal(404, res.status)
      -- each with its own agent works
      local call = emu.create_call({ agent_id = emu.other_agent.id }, { key = emu.other_key })
      assert.are.equal(emu.other_agent.outbound_numbers[1], call.from_number)
      assert.are.same({}, emu.list_calls())
    end)
  end)

  it("never writes a key sent elsewhere than in Authorization into the journal or the logs", function()
    local unseeded = "truedy_" .. ("Z9"):rep(16)
    local marker = "/calls/call_marker" .. math.random(1e9)
    local no_auth = { key = false } -- the key travels only where each request puts it
    -- a custom header, User-Agent and Referer (which nginx's combined log format records)
    emu.curl("GET", "/calls", nil, { "-H", "X-Api-Key: " .. emu.key, "-H", "User-Agent: " .. emu.other_key,
      "-H", "Referer: http://x/?k=" .. unseeded }, no_auth)
    -- the query string, plain and percent-encoded, and the path
    emu.curl("GET", "/calls?api_key=" .. emu.key .. "&k2=truedy%5F" .. unseeded:sub(8), nil, nil, no_auth)
    emu.curl("GET", "/calls/" .. emu.other_key, nil, nil, no_auth)
    -- the body: JSON, and a body that is not UTF-8 (journaled in base64 too)
    emu.curl("POST", "/calls", emu.call_body { api_key = emu.key, variables = { k = unseeded } }, nil, no_auth)
    emu.api("POST", "/calls", "\255" .. emu.key, no_auth)
    emu.curl("GET", marker, nil, nil, no_auth)

    local raw = emu.request { path = "/__emulator/journal" }.body
    assert.are.equal(6, #emu.journal())
    for _, secret in ipairs { emu.key, emu.other_key, unseeded, unseeded:sub(8) } do
      assert.is_nil(raw:find(secret, 1, true), "journal: " .. secret)
    end
    local exact
    for _, e in ipairs(emu.journal()) do exact = exact or e.body_base64 end
    assert.is_string(exact)
    assert.are.equal("\255<redacted>", (require("mime").unb64(exact)))
    local dir = emu.dir()
    -- the access log is written through a buffer flushed every second: wait for the last request
    local access = emu.eventually(function()
      local text = emu.read_file(dir .. "/logs/access.log") or ""
      return text:find(marker, 1, true) and text
    end, 5)
    assert.is_string(access, "the access log shows the requests")
    local error_log = emu.read_file(dir .. "/logs/error.log") or ""
    for _, secret in ipairs { emu.key, emu.other_key, unseeded:sub(8) } do
      assert.is_nil(access:find(secret, 1, true), "access.log: " .. secret)
      assert.is_nil(error_log:find(secret, 1, true), "error.log: " .. secret)
    end
  end)

  it("never writes a key into the journal or the error log", function()
    emu.create_call()
    emu.api("GET", "/calls", nil, { key = emu.other_key })
    emu.api("GET", "/calls", nil, { authorization = "Basic " .. emu.key })
    emu.api("GET", "/calls", nil, { authorization = "Bearer truedy_notseeded0123456789" })
    emu.api("GET", "/calls", nil, { authorization = emu.key })
    local raw = emu.request { path = "/__emulator/journal" }.body
    assert.is_nil(raw:find(emu.key, 1, true))
    assert.is_nil(raw:find(emu.other_key, 1, true))
    assert.is_nil(raw:find("truedy_notseeded0123456789", 1, true))
    local journal = emu.journal()
    assert.are.equal("Bearer <redacted>", journal[1].headers.authorization)
    assert.are.equal("Basic <redacted>", journal[3].headers.authorization)
    assert.are.equal("<redacted>", journal[5].headers.authorization)
    local log = emu.read_file(emu.dir() .. "/logs/error.log") or ""
    assert.is_nil(log:find(emu.key, 1, true))
    assert.is_nil(log:find(emu.other_key, 1, true))
  end)
end)
