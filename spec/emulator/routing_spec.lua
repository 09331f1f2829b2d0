-- Unknown routes and wrong methods: the contract's error envelope, always.
local emu = require "spec.emulator.emu"

local function assert_envelope(res, status, code)
  assert.are.equal(status, res.status, res.body)
  assert.matches("^application/json", res.headers["content-type"])
  assert.are.equal(code, res.json.error.code)
  assert.is_string(res.json.error.message)
  assert.matches("^req_%x+$", res.json.meta.request_id)
  assert.matches(emu.ISO_US, res.json.meta.ts)
end

describe("emulator routing", function()
  before_each(emu.reset)

  it("answers 404 not_found for unknown routes under the API prefix", function()
    for _, path in ipairs { "/agents", "/calls/", "/calls/x/y", "/", "/batch-calls" } do
      assert_envelope(emu.api("GET", path), 404, "not_found")
    end
  end)

  it("answers 404 not_found outside the API prefix, even without a key", function()
    for _, path in ipairs { "/", "/api", "/api/public/v2/calls", "/favicon.ico" } do
      assert_envelope(emu.request { path = path }, 404, "not_found")
    end
  end)

  it("answers 405 with an Allow header for a wrong method", function()
    local res = emu.api("DELETE", "/calls")
    assert_envelope(res, 405, "method_not_allowed")
    assert.are.equal("GET, POST", res.headers["allow"])
    res = emu.api("PUT", "/calls", "{}")
    assert_envelope(res, 405, "method_not_allowed")
    res = emu.api("POST", "/calls/call_123", "{}")
    assert_envelope(res, 405, "method_not_allowed")
    assert.are.equal("GET", res.headers["allow"])
    res = emu.api("PATCH", "/calls/call_123", "{}")
    assert.are.equal(405, res.status)
  end)

  it("routes before it authenticates (404 and 405 need no key)", function()
    assert_envelope(emu.api("GET", "/nope", nil, { key = false }), 404, "not_found")
    assert_envelope(emu.api("DELETE", "/calls", nil, { key = false }), 405, "method_not_allowed")
  end)

  it("journals API-side requests whatever their fate", function()
    emu.api("GET", "/nope")
    emu.request { path = "/elsewhere" }
    local journal = emu.journal()
    assert.are.equal(2, #journal)
    assert.are.equal(404, journal[1].status)
    assert.are.equal("/elsewhere", journal[2].path)
  end)
end)
