-- truedy.webhook: Truedy's webhook signatures, made and checked by the library.
-- No server involved: every input is built here, every clock is given (`now`).
local truedy = require "truedy"
local webhook = truedy.webhook

local SECRET = "whsec_9fK2pQ7rT4vX1zL8mN3bC6dH0jS5wY"
local OLD_SECRET = "whsec_oldOldOld0123456789abcdefABCDEF"
local NOW = 1767225600 -- 2026-01-01T00:00:00Z
local BODY = '{"event":"call.ended","timestamp":"2026-01-01T00:00:00Z","id":"evt_01",'
  .. '"data":{"call_id":"call_1","status":"ended","duration_seconds":42,"cost":0.5,'
  .. '"ended_at":null,"tags":["a",null,"c"]}}'

-- the headers of a delivery, and their two values
local function signed(body, secret, timestamp)
  local ts, sig = webhook.sign(body, secret or SECRET, timestamp or NOW)
  return { ["x-truedy-timestamp"] = ts, ["x-truedy-signature"] = sig }, ts, sig
end

local function headers_for(body, secret, timestamp) return (signed(body, secret, timestamp)) end

-- every error made in this file, to check afterwards that none shows the secret
local seen_errors = {}

local function refused(code, body, headers, secret, options)
  local event, err = webhook.verify(body, headers, secret or SECRET, options or { now = NOW })
  assert.is_nil(event)
  assert.is_table(err)
  seen_errors[#seen_errors + 1] = err
  assert.equal("webhook", err.kind)
  assert.equal(code, err.code)
  assert.is_string(err.message)
  return err
end

local function accepted(body, headers, secret, options)
  local event, err = webhook.verify(body, headers, secret or SECRET, options or { now = NOW })
  assert.is_nil(err, err and tostring(err))
  assert.is_table(event)
  return event
end

local function bytes(n, byte) return string.rep(string.char(byte), n) end

describe("truedy.webhook.hmac_sha256", function()
  -- RFC 4231, section 4: HMAC-SHA-256 of each test case
  it("gives the RFC 4231 HMAC-SHA-256 vectors (test cases 1-4, 6, 7)", function()
    local count = {}
    for i = 1, 25 do count[i] = string.char(i) end
    local long_key = bytes(131, 0xaa)
    local cases = {
      { bytes(20, 0x0b), "Hi There",
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7" },
      { "Jefe", "what do ya want for nothing?",
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" },
      { bytes(20, 0xaa), bytes(50, 0xdd),
        "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe" },
      { table.concat(count), bytes(50, 0xcd),
        "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b" },
      { long_key, "Test Using Larger Than Block-Size Key - Hash Key First",
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54" },
      { long_key, "This is a test using a larger than block-size key and a larger than block-size data."
          .. " The key needs to be hashed before being used by the HMAC algorithm.",
        "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2" },
    }
    for i, case in ipairs(cases) do
      assert.equal(case[3], webhook.hmac_sha256(case[1], case[2]), "case " .. i)
    end
  end)

  it("gives test case 5's 128-bit truncation as the first 32 hex digits", function()
    local mac = webhook.hmac_sha256(bytes(20, 0x0c), "Test With Truncation")
    assert.equal("a3b6167473100ee06e0c796c2955552b", mac:sub(1, 32))
    assert.equal(64, #mac)
  end)

  it("takes an empty key and message, and bytes past a NUL", function()
    assert.equal("b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad",
      webhook.hmac_sha256("", ""))
    assert.not_equal(webhook.hmac_sha256("k", "a\0b"), webhook.hmac_sha256("k", "a\0c"))
    assert.not_equal(webhook.hmac_sha256("k\0x", "m"), webhook.hmac_sha256("k\0y", "m"))
  end)

  it("raises on arguments that are not strings", function()
    assert.has_error(function() webhook.hmac_sha256(nil, "m") end)
    assert.has_error(function() webhook.hmac_sha256("k", 12) end)
    assert.has_error(function() webhook.hmac_sha256({}, "m") end)
  end)
end)

describe("truedy.webhook.sign", function()
  it("returns the two header values: the timestamp and the hex HMAC of '<timestamp>.<body>'", function()
    local ts, sig = webhook.sign(BODY, SECRET, NOW)
    assert.equal(tostring(NOW), ts)
    assert.equal("string", type(ts))
    assert.equal(webhook.hmac_sha256(SECRET, ts .. "." .. BODY), sig)
    assert.matches("^[0-9a-f]+$", sig)
    assert.equal(64, #sig)
  end)

  it("takes the timestamp as digits too, and keeps them as given", function()
    local ts, sig = webhook.sign(BODY, SECRET, "1767225600")
    assert.equal("1767225600", ts)
    assert.equal(select(2, webhook.sign(BODY, SECRET, NOW)), sig)
  end)

  it("stamps the current Unix time by default", function()
    local before = os.time()
    local ts, sig = webhook.sign(BODY, SECRET)
    local after = os.time()
    assert.matches("^%d+$", ts)
    assert.is_true(tonumber(ts) >= before and tonumber(ts) <= after)
    assert.equal(webhook.hmac_sha256(SECRET, ts .. "." .. BODY), sig)
    -- and verify, on its own clock, takes what sign made
    assert.equal("call.ended", accepted(BODY, { ["X-Truedy-Timestamp"] = ts,
      ["X-Truedy-Signature"] = sig }, SECRET, {}).event)
  end)

  it("raises on bad arguments", function()
    assert.has_error(function() webhook.sign(nil, SECRET) end)
    assert.has_error(function() webhook.sign(42, SECRET) end)
    assert.has_error(function() webhook.sign(BODY, nil) end)
    assert.has_error(function() webhook.sign(BODY, "") end)
    assert.has_error(function() webhook.sign(BODY, { SECRET }) end) -- one secret signs
    assert.has_error(function() webhook.sign(BODY, SECRET, -1) end)
    assert.has_error(function() webhook.sign(BODY, SECRET, 1.5) end)
    assert.has_error(function() webhook.sign(BODY, SECRET, 0 / 0) end)
    assert.has_error(function() webhook.sign(BODY, SECRET, "12a") end)
    assert.has_error(function() webhook.sign(BODY, SECRET, "") end)
    assert.has_error(function() webhook.sign(BODY, SECRET, {}) end)
  end)
end)

describe("truedy.webhook.verify", function()
  it("accepts a good signature and returns the decoded event", function()
    local event = accepted(BODY, headers_for(BODY))
    assert.equal("call.ended", event.event)
    assert.equal("evt_01", event.id)
    assert.equal("2026-01-01T00:00:00Z", event.timestamp)
    assert.equal("call_1", event.data.call_id)
  end)

  it("decodes the event like the API's answers: null fields gone, array nulls kept, integers", function()
    local event = accepted(BODY, headers_for(BODY))
    assert.is_nil(rawget(event.data, "ended_at"))
    assert.equal(3, #event.data.tags)
    assert.equal(truedy.null, event.data.tags[2])
    assert.equal("c", event.data.tags[3])
    assert.equal(42, event.data.duration_seconds)
    assert.equal(0.5, event.data.cost)
    if math.type then
      assert.equal("integer", math.type(event.data.duration_seconds))
      assert.equal("float", math.type(event.data.cost))
    end
  end)

  it("refuses a body changed by one byte", function()
    local headers = headers_for(BODY)
    local changed = BODY:gsub('"duration_seconds":42', '"duration_seconds":43')
    assert.equal(#BODY, #changed)
    assert.not_equal(BODY, changed)
    refused("bad_signature", changed, headers)
    -- a byte added at the end, or one taken away, are changes too
    refused("bad_signature", BODY .. " ", headers)
    refused("bad_signature", BODY:sub(1, -2), headers)
  end)

  it("refuses a signature with only its last hex digit changed", function()
    local headers, _, sig = signed(BODY)
    local last = sig:sub(-1)
    headers["x-truedy-signature"] = sig:sub(1, -2) .. (last == "0" and "1" or "0")
    refused("bad_signature", BODY, headers)
    headers["x-truedy-signature"] = (sig:sub(1, 1) == "0" and "1" or "0") .. sig:sub(2)
    refused("bad_signature", BODY, headers)
  end)

  it("refuses a signature made with another secret", function()
    refused("bad_signature", BODY, headers_for(BODY, "whsec_someone_else"))
  end)

  it("refuses a signature over another timestamp", function()
    local headers = headers_for(BODY)
    headers["x-truedy-timestamp"] = tostring(NOW - 1)
    refused("bad_signature", BODY, headers)
  end)

  it("MACs every byte of the body, past a NUL", function()
    local body = BODY .. "\0tail"
    local headers = headers_for(body)
    -- authentic, then refused as a body: the NUL and what follows are not JSON
    refused("bad_body", body, headers)
    refused("bad_signature", BODY .. "\0tall", headers)
  end)

  describe("the timestamp", function()
    it("refuses one older than the tolerance (300 seconds by default)", function()
      local err = refused("stale_timestamp", BODY, headers_for(BODY), SECRET, { now = NOW + 301 })
      assert.matches("301 seconds in the past", err.message)
    end)

    it("refuses one in the future by more than the tolerance", function()
      local err = refused("stale_timestamp", BODY, headers_for(BODY), SECRET, { now = NOW - 301 })
      assert.matches("301 seconds in the future", err.message)
    end)

    it("accepts one exactly at the tolerance, both ways", function()
      accepted(BODY, headers_for(BODY), SECRET, { now = NOW + 300 })
      accepted(BODY, headers_for(BODY), SECRET, { now = NOW - 300 })
    end)

    it("takes another tolerance", function()
      refused("stale_timestamp", BODY, headers_for(BODY), SECRET, { now = NOW + 11, tolerance = 10 })
      accepted(BODY, headers_for(BODY), SECRET, { now = NOW + 10, tolerance = 10 })
      accepted(BODY, headers_for(BODY), SECRET, { now = NOW, tolerance = 0 })
      refused("stale_timestamp", BODY, headers_for(BODY), SECRET, { now = NOW + 1, tolerance = 0 })
      accepted(BODY, headers_for(BODY), SECRET, { now = NOW + 3600, tolerance = 3600 })
    end)

    it("is checked before the signature: a stale forged delivery is stale", function()
      local headers = headers_for(BODY, "whsec_someone_else")
      refused("stale_timestamp", BODY, headers, SECRET, { now = NOW + 1000 })
    end)

    it("is bad_signature when not a whole number of Unix seconds", function()
      for _, ts in ipairs({ "abc", "1767225600.0", "1.7e9", "-1767225600", "+1767225600",
                            "0x693a0a80", "1767225600s", "17672 25600", "1234567890123456789" }) do
        local headers = headers_for(BODY)
        headers["x-truedy-timestamp"] = ts
        refused("bad_signature", BODY, headers)
      end
    end)

    it("is signed as the text of the header, leading zeros and all", function()
      local headers = headers_for(BODY, SECRET, "01767225600")
      assert.equal("01767225600", headers["x-truedy-timestamp"])
      accepted(BODY, headers)
      headers["x-truedy-timestamp"] = tostring(NOW) -- the same number, other text
      refused("bad_signature", BODY, headers)
    end)

    it("may be a number in a table built by hand", function()
      local headers = headers_for(BODY)
      headers["x-truedy-timestamp"] = NOW
      accepted(BODY, headers)
    end)
  end)

  describe("the headers", function()
    it("refuse a delivery without the signature header as missing_signature", function()
      local headers = headers_for(BODY)
      headers["x-truedy-signature"] = nil
      local err = refused("missing_signature", BODY, headers)
      assert.matches("X%-Truedy%-Signature", err.message)
      refused("missing_signature", BODY, {})
      headers["x-truedy-signature"] = ""
      refused("missing_signature", BODY, headers)
      headers["x-truedy-signature"] = {}
      refused("missing_signature", BODY, headers)
    end)

    it("refuse a delivery without the timestamp header as missing_signature", function()
      local headers = headers_for(BODY)
      headers["x-truedy-timestamp"] = nil
      local err = refused("missing_signature", BODY, headers)
      assert.matches("X%-Truedy%-Timestamp", err.message)
      headers["x-truedy-timestamp"] = "  "
      refused("missing_signature", BODY, headers)
    end)

    it("match names in any case", function()
      local _, ts, sig = signed(BODY)
      for _, names in ipairs({ { "x-truedy-timestamp", "x-truedy-signature" },
                               { "X-Truedy-Timestamp", "X-Truedy-Signature" },
                               { "X-TRUEDY-TIMESTAMP", "X-TRUEDY-SIGNATURE" },
                               { "x-TrUeDy-tImEsTaMp", "X-tRuEdY-SiGnAtUrE" } }) do
        accepted(BODY, { [names[1]] = ts, [names[2]] = sig, ["content-type"] = "application/json" })
      end
    end)

    it("refuse a signature given twice, as an array", function()
      local headers, _, sig = signed(BODY)
      headers["x-truedy-signature"] = { sig, sig }
      local err = refused("bad_signature", BODY, headers)
      assert.matches("more than once", err.message)
    end)

    it("refuse a signature given twice, comma-joined", function()
      local headers, _, sig = signed(BODY)
      headers["x-truedy-signature"] = sig .. ", " .. sig
      local err = refused("bad_signature", BODY, headers)
      assert.matches("more than once", err.message)
      headers["x-truedy-signature"] = sig .. ","
      refused("bad_signature", BODY, headers)
    end)

    it("refuse a signature given twice under two spellings of its name", function()
      local headers, _, sig = signed(BODY)
      headers["X-Truedy-Signature"] = sig
      refused("bad_signature", BODY, headers)
    end)

    it("refuse a timestamp given twice", function()
      local headers, ts = signed(BODY)
      headers["x-truedy-timestamp"] = { ts, ts }
      refused("bad_signature", BODY, headers)
      headers["x-truedy-timestamp"] = ts .. "," .. ts
      refused("bad_signature", BODY, headers)
    end)

    it("take a one-element array as the single value", function()
      local headers, ts, sig = signed(BODY)
      headers["x-truedy-signature"] = { sig }
      headers["x-truedy-timestamp"] = { ts }
      accepted(BODY, headers)
    end)

    it("take upper-case hex and the white space HTTP allows around a value", function()
      local headers, ts, sig = signed(BODY)
      headers["x-truedy-signature"] = " " .. sig:upper() .. "\t"
      headers["x-truedy-timestamp"] = "\t" .. ts .. " "
      accepted(BODY, headers)
    end)

    it("refuse a signature that is not 64 hex digits", function()
      local headers, _, sig = signed(BODY)
      for _, bad in ipairs({ sig:sub(1, 63), sig .. "0", sig:sub(1, 63) .. "g", "sha256=" .. sig,
                             sig:sub(1, 32) }) do
        headers["x-truedy-signature"] = bad
        refused("bad_signature", BODY, headers)
      end
    end)

    it("raise on values that no header table holds", function()
      local headers = headers_for(BODY)
      headers["x-truedy-signature"] = true
      assert.has_error(function() webhook.verify(BODY, headers, SECRET, { now = NOW }) end)
      headers["x-truedy-signature"] = { 1 }
      assert.has_error(function() webhook.verify(BODY, headers, SECRET, { now = NOW }) end)
    end)
  end)

  describe("secret rotation", function()
    it("accepts a signature made with any secret of the array", function()
      local event = accepted(BODY, headers_for(BODY, SECRET), { OLD_SECRET, SECRET })
      assert.equal("evt_01", event.id)
      accepted(BODY, headers_for(BODY, OLD_SECRET), { OLD_SECRET, SECRET })
      accepted(BODY, headers_for(BODY, SECRET), { SECRET })
    end)

    it("refuses one made with none of them", function()
      refused("bad_signature", BODY, headers_for(BODY, "whsec_third"), { OLD_SECRET, SECRET })
    end)
  end)

  describe("the body", function()
    local function signed_body(body) return refused("bad_body", body, headers_for(body)) end

    it("is bad_body when not JSON", function()
      signed_body("not json")
      signed_body("")
      signed_body('{"event":"call.ended",}')
      signed_body('{"event": NaN}')
    end)

    it("is bad_body when not a JSON object", function()
      assert.matches("not a JSON object", signed_body("[]").message)
      signed_body('[{"event":"call.ended"}]')
      signed_body('"call.ended"')
      signed_body("42")
      signed_body("null")
      signed_body("true")
    end)

    it("is bad_body without a string event", function()
      signed_body("{}")
      signed_body('{"event":null,"id":"evt_1"}')
      signed_body('{"event":1,"id":"evt_1"}')
      signed_body('{"event":{"name":"call.ended"}}')
    end)

    it("is read only once the signature holds", function()
      refused("bad_signature", "not json", headers_for(BODY))
      refused("missing_signature", "not json", {})
    end)

    it("may have white space around the object", function()
      local body = '\n {"event":"call.started","id":"evt_2"} \r\n'
      assert.equal("call.started", accepted(body, headers_for(body)).event)
    end)
  end)

  describe("errors", function()
    it("are the module's error object: one readable line, not retryable", function()
      local err = refused("bad_signature", BODY, headers_for(BODY, "whsec_someone_else"))
      assert.matches("^truedy: webhook: ", tostring(err))
      assert.equal(tostring(err), truedy.format_error(err))
      assert.is_false(err.retryable)
    end)

    it("never show the secret", function()
      -- a failure of each kind, with the secret also as the signature and timestamp text
      local headers, ts = signed(BODY)
      refused("bad_signature", BODY, { ["x-truedy-timestamp"] = ts, ["x-truedy-signature"] = SECRET })
      refused("bad_signature", BODY, { ["x-truedy-timestamp"] = SECRET,
                                       ["x-truedy-signature"] = headers["x-truedy-signature"] })
      refused("stale_timestamp", BODY, headers, { SECRET, OLD_SECRET }, { now = NOW + 999 })
      refused("bad_body", SECRET, headers_for(SECRET))
      refused("bad_body", '{"event":"' .. SECRET .. '",', headers_for('{"event":"' .. SECRET .. '",'))
      assert.is_true(#seen_errors >= 5)
      for _, err in ipairs(seen_errors) do
        for _, text in ipairs({ tostring(err), err.message }) do
          assert.is_nil(text:find(SECRET, 1, true), text)
          assert.is_nil(text:find(OLD_SECRET, 1, true), text)
          assert.is_nil(text:find("9fK2pQ7rT4", 1, true), text)
        end
        for k, v in pairs(err) do
          assert.is_true(type(v) ~= "string" or not v:find(SECRET, 1, true), k)
        end
      end
      -- nor do the messages of bad arguments
      local ok, message = pcall(webhook.verify, BODY, headers, { SECRET, 7 })
      assert.is_false(ok)
      assert.is_nil(tostring(message):find(SECRET, 1, true))
    end)
  end)

  describe("arguments", function()
    local headers = headers_for(BODY)
    local unpack_args = table.unpack or unpack -- luacheck: ignore 143 (5.1's unpack)
    local function raises(...)
      local args = { n = select("#", ...), ... } -- n: the arguments may end with nils
      assert.has_error(function() webhook.verify(unpack_args(args, 1, args.n)) end)
    end

    it("raise when the body is not a string (ngx: get_body_data() is nil when it went to a file)", function()
      raises(nil, headers, SECRET)
      raises(42, headers, SECRET)
      raises({}, headers, SECRET)
    end)

    it("raise when the headers are not a table", function()
      raises(BODY, nil, SECRET)
      raises(BODY, "x-truedy-signature: abc", SECRET)
    end)

    it("raise when the secret is not a non-empty string or array of them", function()
      raises(BODY, headers, nil)
      raises(BODY, headers, 42)
      raises(BODY, headers, "")
      raises(BODY, headers, {})
      raises(BODY, headers, { SECRET, "" })
      raises(BODY, headers, { SECRET, 42 })
      raises(BODY, headers, { SECRET, nil, OLD_SECRET })
      raises(BODY, headers, { SECRET, other = OLD_SECRET })
    end)

    it("raise on bad options", function()
      raises(BODY, headers, SECRET, "now")
      raises(BODY, headers, SECRET, { now = NOW, tolerence = 10 })
      raises(BODY, headers, SECRET, { [1] = 10 })
      raises(BODY, headers, SECRET, { tolerance = -1 })
      raises(BODY, headers, SECRET, { tolerance = 0 / 0 })
      raises(BODY, headers, SECRET, { tolerance = math.huge })
      raises(BODY, headers, SECRET, { tolerance = "300" })
      raises(BODY, headers, SECRET, { now = "1767225600" })
      raises(BODY, headers, SECRET, { now = -math.huge })
      raises(BODY, headers, SECRET, { now = 0 / 0 })
    end)

    it("leave the caller's tables as they were", function()
      local copy = {}
      for k, v in pairs(headers) do copy[k] = v end
      local secrets = { OLD_SECRET, SECRET }
      accepted(BODY, headers, secrets)
      assert.same(copy, headers)
      assert.same({ OLD_SECRET, SECRET }, secrets)
    end)
  end)
end)

describe("examples/webhook.lua", function()
  it("runs: handles each event once, drops the redelivery, refuses the forgeries", function()
    local helper = require "spec.support.helper"
    local status, output = helper.run_lua('dofile("examples/webhook.lua")')
    assert.equal(0, status, output)
    assert.matches("evt_003 %(call%.ended%) was handled already: a redelivery, dropped", output)
    assert.matches("refused, bad_signature", output)
    assert.matches("refused, stale_timestamp", output)
    assert.matches("handled 4 events, dropped 1 redelivery, refused 3 deliveries\n$", output)
    local _, handled_ended = output:gsub("call_7f3a9c ended after 42 s", "")
    assert.equal(1, handled_ended)
    local _, unauthorized = output:gsub("%-> 401", "")
    assert.equal(3, unauthorized) -- a signature or timestamp that does not hold: 401
  end)
end)
