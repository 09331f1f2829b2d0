-- Responses decoded the way Lua code wants them, whatever lua-cjson does.
local helper = require "spec.support.helper"
local truedy = require "truedy"

local function answer(body, status)
  helper.fault{ method = "GET", path = "/calls", type = "raw", status = status or 200,
                headers = { ["Content-Type"] = "application/json" }, body = body }
  return helper.client{ max_retries = 0 }:list_calls()
end

describe("decoding responses", function()
  before_each(helper.reset)

  it("drops null object fields so `if call.ended_at then` works", function()
    local res = assert(answer('{"data":{"id":"c1","ended_at":null,"summary":null},"meta":{}}'))
    assert.equal("c1", res.data.id)
    assert.is_nil(res.data.ended_at)
    assert.is_nil(rawget(res.data, "summary"))
  end)

  it("keeps null array items as truedy.null so positions survive", function()
    local res = assert(answer('{"data":[1,null,3]}'))
    assert.equal(3, #res.data)
    assert.equal(truedy.null, res.data[2])
  end)

  it("returns whole numbers as integers (Lua 5.3+), fractions as floats", function()
    local res = assert(answer('{"data":{"total":10,"big":1234567890123,"cost":0.5,"neg":-3}}'))
    assert.equal(10, res.data.total)
    assert.equal(0.5, res.data.cost)
    assert.equal(-3, res.data.neg)
    if math.type then
      assert.equal("integer", math.type(res.data.total))
      assert.equal("integer", math.type(res.data.big))
      assert.equal("float", math.type(res.data.cost))
    end
  end)

  it("normalises deep inside arrays and objects", function()
    local res = assert(answer('{"data":[{"transcript":[{"speaker":"agent","t":1,"x":null}]}]}'))
    local line = res.data[1].transcript[1]
    assert.equal("agent", line.speaker)
    assert.is_nil(line.x)
    if math.type then assert.equal("integer", math.type(line.t)) end
  end)

  it("leaves the variant fields as the server sent them", function()
    local res = assert(answer('{"data":{"phone_number":"+1","to":"+2"},'
      .. '"meta":{"request_id":"x","timestamp":"2026-01-01T00:00:00Z","total":1,"count":1}}'))
    assert.equal("+1", res.data.phone_number)
    assert.equal("+2", res.data.to)
    assert.equal("2026-01-01T00:00:00Z", res.meta.timestamp)
    assert.equal(1, res.meta.count)
  end)

  it("refuses a JSON answer that is not an object", function()
    local res, err = answer('[1,2,3]')
    assert.is_nil(res)
    assert.equal("response", err.kind)
    assert.matches("not an object", err.message)
  end)

  it("refuses JSON extensions a strict parser would not take", function()
    local res, err = answer('{"data": NaN}')
    assert.is_nil(res)
    assert.equal("response", err.kind)
  end)

  it("does not change the user's own cjson settings", function()
    -- truedy decodes with a private cjson.new() instance set to strict numbers
    -- and a depth of 128; the shared module keeps lua-cjson's defaults
    local cjson = require "cjson"
    assert(answer('{"data":[]}'))
    assert.is_true(cjson.decode_invalid_numbers())
    assert.equal(1000, cjson.decode_max_depth())
    assert.is_true(cjson.decode("NaN") ~= cjson.decode("NaN"), "the user's cjson still reads NaN")
  end)
end)
