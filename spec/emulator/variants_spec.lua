-- The documented alternatives the emulator can be switched to (config.variant).
local emu = require "spec.emulator.emu"

describe("emulator variants", function()
  before_each(emu.reset)

  it("serves the consistent variant by default", function()
    local call, res = emu.create_call()
    assert.is_string(res.json.meta.ts)
    assert.is_nil(res.json.meta.timestamp)
    assert.is_string(call.from_number)
    assert.is_string(call.to_number)
    assert.is_nil(call.phone_number)
    assert.matches("^req_%x+$", res.json.meta.request_id)
  end)

  it("meta_time_key = timestamp: meta.timestamp instead of meta.ts, errors too", function()
    emu.config { variant = { meta_time_key = "timestamp" } }
    local _, res = emu.create_call()
    assert.matches(emu.ISO_US, res.json.meta.timestamp)
    assert.is_nil(res.json.meta.ts)
    local err = emu.api("GET", "/calls/none")
    assert.matches(emu.ISO_US, err.json.meta.timestamp)
    assert.is_nil(err.json.meta.ts)
  end)

  it("call_shape = phone_number: the first documented shape, without from/to", function()
    emu.config { variant = { call_shape = "phone_number" } }
    local call = emu.create_call()
    assert.are.equal(emu.to, call.phone_number)
    assert.is_nil(call.from_number)
    assert.is_nil(call.to_number)
    local got = emu.api("GET", "/calls/" .. call.id).json.data
    assert.are.equal(emu.to, got.phone_number)
    assert.is_nil(got.to_number)
    local listed = emu.list_calls()[1]
    assert.are.equal(emu.to, listed.phone_number)
  end)

  it("error_meta = inside_error: request_id and ts inside error, no meta", function()
    emu.config { variant = { error_meta = "inside_error" } }
    local res = emu.api("GET", "/calls", nil, { key = false })
    assert.are.equal(401, res.status)
    assert.is_nil(res.json.meta)
    assert.are.equal("unauthorized", res.json.error.code)
    assert.matches("^req_", res.json.error.request_id)
    assert.matches(emu.ISO_US, res.json.error.ts)
    emu.config { rate_limit = 1, rate_window = 86400 }
    emu.api("GET", "/calls")
    res = emu.api("GET", "/calls")
    assert.are.equal(429, res.status)
    assert.is_nil(res.json.meta)
    assert.are.equal(1, res.json.error.details.limit)
    -- successes keep their meta
    emu.config { rate_limit = 0 }
    local _, ok = emu.create_call()
    assert.is_string(ok.json.meta.request_id)
  end)

  it("request_id_style = uuid: bare UUIDs", function()
    emu.config { variant = { request_id_style = "uuid" } }
    local _, res = emu.create_call()
    assert.matches(emu.UUID, res.json.meta.request_id)
    assert.matches(emu.UUID, emu.api("GET", "/calls/none").json.meta.request_id)
  end)

  it("combine, and a reset restores the default", function()
    emu.config { variant = { meta_time_key = "timestamp", call_shape = "phone_number", request_id_style = "uuid" } }
    local call, res = emu.create_call()
    assert.is_string(res.json.meta.timestamp)
    assert.is_string(call.phone_number)
    emu.reset()
    call, res = emu.create_call()
    assert.is_string(res.json.meta.ts)
    assert.is_string(call.to_number)
  end)
end)
