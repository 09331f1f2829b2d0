-- The control surface: health, reset, config, clock, journal.
local emu = require "spec.emulator.emu"

local function control_raw(method, path, body)
  return emu.request { method = method, path = "/__emulator" .. path, body = body }
end

describe("emulator control surface", function()
  before_each(emu.reset)

  it("answers GET /__emulator/health", function()
    local h = emu.control("GET", "/health").data
    assert.are.equal("ok", h.status)
    assert.is_string(h.instance)
    assert.is_string(h.dir)
    assert.is_true(h.workers >= 1)
  end)

  describe("reset", function()
    it("clears calls, idempotency records, rate windows, journal and faults, and restores the config", function()
      emu.create_call({}, { headers = { ["x-idempotency-key"] = "k" } })
      emu.config { rate_limit = 2, clock_speed = 5, variant = { meta_time_key = "timestamp" } }
      emu.api("GET", "/calls")
      emu.fault { type = "status", status = 500, count = 5 }

      local res = emu.reset()
      assert.are.equal(100, res.data.rate_limit)

      assert.are.same({}, emu.journal())
      assert.are.same({}, emu.control("GET", "/faults").data)
      local cfg = emu.control("GET", "/config").data
      assert.are.same({ 100, 60, 1 }, { cfg.rate_limit, cfg.rate_window, cfg.clock_speed })
      local defaults = {}
      for name, values in pairs(emu.control("GET", "/variants").data.variants) do defaults[name] = values[1] end
      assert.are.same(defaults, cfg.variant)
      assert.are.same({ "ts", "numbers", "meta", "req" },
        { cfg.variant.meta_time_key, cfg.variant.call_shape, cfg.variant.error_meta, cfg.variant.request_id_style })
      assert.are.same({}, emu.list_calls())
      -- the same key creates a new call: the record is gone
      local again = emu.create_call({}, { headers = { ["x-idempotency-key"] = "k" } })
      assert.are.equal(1, #emu.list_calls())
      assert.is_string(again.id)
    end)
  end)

  describe("config", function()
    it("returns the effective config and applies changes", function()
      local cfg = emu.config { rate_limit = 7, rate_window = 30, clock_speed = 2.5 }
      assert.are.equal(7, cfg.rate_limit)
      assert.are.equal(30, cfg.rate_window)
      assert.are.equal(2.5, cfg.clock_speed)
      assert.matches(emu.ISO_US, cfg.emulated_now)
      local got = emu.control("GET", "/config").data
      assert.are.equal(7, got.rate_limit)
      -- partial updates keep the rest
      emu.config { variant = { call_shape = "phone_number" } }
      got = emu.control("GET", "/config").data
      assert.are.equal(7, got.rate_limit)
      assert.are.equal("phone_number", got.variant.call_shape)
      assert.are.equal("ts", got.variant.meta_time_key)
    end)

    local bad = {
      '{"rate_limit": -1}', '{"rate_limit": "5"}', '{"rate_limit": 1.5}', '{"rate_window": 0}',
      '{"clock_speed": -1}', '{"clock_speed": "fast"}', '{"rate_limt": 5}', '{"variant": {"call_shape": "x"}}',
      '{"variant": {"colour": "red"}}', '{"variant": "ts"}', "[1]", "{", '"x"',
    }
    for _, body in ipairs(bad) do
      it("refuses " .. body .. " with 400, changing nothing", function()
        local res = control_raw("POST", "/config", body)
        assert.are.equal(400, res.status)
        assert.are.equal("bad_request", res.json.error.code)
        assert.is_string(res.json.error.message)
        assert.are.equal(100, emu.control("GET", "/config").data.rate_limit)
      end)
    end
  end)

  describe("clock", function()
    it("advances the emulated time of every call", function()
      emu.config { clock_speed = 0 }
      local id = emu.create_call().id
      emu.advance(3)
      assert.are.equal("ringing", emu.api("GET", "/calls/" .. id).json.data.status)
    end)

    it("refuses a negative or missing number of seconds", function()
      assert.are.equal(400, control_raw("POST", "/clock/advance", '{"seconds": -1}').status)
      assert.are.equal(400, control_raw("POST", "/clock/advance", '{}').status)
    end)
  end)

  describe("journal", function()
    it("records each API request in order with method, path, query, headers, auth, body and status", function()
      local body = '{"agent_id":"' .. emu.agent.id .. '", "phone_number":"' .. emu.to .. '", "variables":{"x":"é"}}'
      emu.api("POST", "/calls", body,
        { headers = { ["x-idempotency-key"] = "abc", ["x-custom"] = "1", ["x_under_score"] = "u" } })
      emu.api("GET", "/calls?limit=5&status=queued", nil, { key = false })
      local j = emu.journal()
      assert.are.equal(2, #j)
      assert.is_true(j[1].seq < j[2].seq)
      assert.matches(emu.ISO_US, j[1].ts)

      assert.are.equal("POST", j[1].method)
      assert.are.equal("/api/public/v1/calls", j[1].path)
      assert.are.equal(emu.null, j[1].query)
      assert.are.equal(body, j[1].body)
      assert.are.equal("abc", j[1].headers["x-idempotency-key"])
      assert.are.equal("1", j[1].headers["x-custom"])
      assert.are.equal("u", j[1].headers["x_under_score"])
      assert.are.equal("application/json", j[1].headers["content-type"])
      assert.are.equal("Bearer <redacted>", j[1].headers.authorization)
      assert.are.equal(emu.fixtures.organizations[1].name, j[1].auth)
      assert.are.equal(201, j[1].status)
      assert.are.equal(emu.null, j[1].fault)
      assert.is_number(j[1].connection)
      assert.is_number(j[1].connection_requests)

      assert.are.equal("GET", j[2].method)
      assert.are.equal("/api/public/v1/calls", j[2].path)
      assert.are.equal("limit=5&status=queued", j[2].query)
      assert.are.equal("", j[2].body)
      assert.are.equal("missing", j[2].auth)
      assert.is_nil(j[2].headers.authorization)
      assert.are.equal(401, j[2].status)
    end)

    it("shows a repeated header as an array", function()
      emu.curl("GET", "/calls", nil, { "-H", "X-Dup: a", "-H", "X-Dup: b" })
      assert.are.same({ "a", "b" }, emu.journal()[1].headers["x-dup"])
    end)

    it("never sees a request with two Authorization headers: nginx refuses it with 400", function()
      local r = emu.curl("GET", "/calls", nil, { "-H", "Authorization: Bearer " .. emu.key, "-H",
        "Authorization: Bearer " .. emu.other_key }, { key = false })
      assert.are.equal(400, r.status)
      assert.are.same({}, emu.journal())
    end)

    it("does not record control requests", function()
      emu.control("GET", "/config")
      emu.control("GET", "/faults")
      assert.are.same({}, emu.journal())
    end)

    it("shows which connection a request came on (keep-alive reuse)", function()
      -- one curl with two URLs reuses its connection; a second curl opens another
      local url = emu.url .. emu.PREFIX .. "/calls"
      local auth = emu.quote("Authorization: Bearer " .. emu.key)
      emu.sh("curl -s -o /dev/null -o /dev/null --max-time 10 -H " .. auth .. " " .. emu.quote(url) .. " "
        .. emu.quote(url))
      emu.sh("curl -s -o /dev/null --max-time 10 -H " .. auth .. " " .. emu.quote(url))
      local j = emu.journal()
      assert.are.equal(3, #j)
      assert.are.equal(j[1].connection, j[2].connection)
      assert.are.same({ 1, 2 }, { j[1].connection_requests, j[2].connection_requests })
      assert.are_not.equal(j[1].connection, j[3].connection)
      assert.are.equal(1, j[3].connection_requests)
    end)

    it("keeps a body that is not UTF-8 exactly, in body_base64", function()
      emu.api("POST", "/calls", "\255\254{}")
      local e = emu.journal()[1]
      assert.are.equal("//57fQ==", e.body_base64)
      assert.are.equal(400, e.status)
    end)

    it("reads bodies larger than the in-memory buffer, and caps them in the journal at 1 MiB", function()
      local blob = ("x"):rep(2 * 1024 * 1024)
      local res = emu.api("POST", "/calls", emu.json.encode(emu.call_body { variables = { blob = blob } }))
      assert.are.equal(201, res.status, res.body:sub(1, 200))
      local e = emu.journal()[1]
      assert.is_true(e.body_truncated)
      assert.is_true(e.body_length > #blob)
      assert.are.equal(1024 * 1024, #e.body)
    end)

    it("lists only entries after ?since=", function()
      emu.api("GET", "/calls")
      local first = emu.journal()
      emu.api("GET", "/calls/call_x")
      local later = emu.journal(first[#first].seq)
      assert.are.equal(1, #later)
      assert.are.equal("/api/public/v1/calls/call_x", later[1].path)
    end)

    it("is cleared by DELETE /__emulator/journal alone", function()
      emu.create_call()
      emu.control("DELETE", "/journal")
      assert.are.same({}, emu.journal())
      assert.are.equal(1, #emu.list_calls())
    end)
  end)

  it("answers 404 for an unknown control endpoint and 405 for a wrong method", function()
    local res = control_raw("GET", "/nope")
    assert.are.equal(404, res.status)
    assert.are.equal("not_found", res.json.error.code)
    res = control_raw("GET", "/reset")
    assert.are.equal(405, res.status)
    assert.are.equal("POST", res.headers["allow"])
    assert.are.equal("method_not_allowed", res.json.error.code)
  end)
end)
