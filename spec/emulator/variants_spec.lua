-- The documented alternatives the emulator can be switched to (config.variant), one by one, and
-- the presets that switch them all.
local emu = require "spec.emulator.emu"

local null = emu.null

local function get(id)
  local res = emu.api("GET", "/calls/" .. id)
  assert.are.equal(200, res.status, res.body)
  return res.json.data
end

local function count_keys(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

describe("emulator variants", function()
  before_each(function()
    emu.reset()
    emu.config { clock_speed = 0 } -- the emulated clock moves only when a spec advances it
  end)

  it("serves the consistent variant by default", function()
    local call, res = emu.create_call()
    assert.is_string(res.json.meta.ts)
    assert.is_nil(res.json.meta.timestamp)
    assert.is_string(call.from_number)
    assert.is_string(call.to_number)
    assert.is_nil(call.phone_number)
    assert.is_nil(call.to)
    assert.matches("^req_%x+$", res.json.meta.request_id)
    for _, extra in ipairs { "transcript_url", "summary", "cost_credits", "metadata", "completed_at" } do
      assert.is_nil(call[extra], extra)
    end
    assert.are.equal(null, call.ended_at)
  end)

  it("lists every variant with its values (the default first) and the presets; the README names each", function()
    local v = emu.control("GET", "/variants").data
    assert.are.same({ "default", "alternate" }, v.presets)
    local readme = assert(emu.read_file(emu.root .. "/README.md"))
    local cfg = emu.control("GET", "/config").data.variant
    assert.are.equal(count_keys(v.variants), count_keys(cfg))
    for name, values in pairs(v.variants) do
      assert.is_true(#values >= 2, name)
      assert.are.equal(values[1], cfg[name], name .. " defaults to its first value")
      assert.is_truthy(readme:find("`" .. name .. "`", 1, true), name .. " in the README")
      for _, value in ipairs(values) do
        value = type(value) == "number" and string.format("%d", value) or value -- 50, not 50.0
        assert.is_truthy(readme:find("`" .. value .. "`", 1, true), name .. " = " .. value .. " in the README")
      end
    end
  end)

  it("refuses an unknown variant, value or preset with 400, naming what is allowed", function()
    for body, says in pairs {
      ['{"variant": {"status_spelling": "camel"}}'] = '"hyphen", "underscore"',
      ['{"variant": {"default_limit": 30}}'] = "50, 20",
      ['{"variant": {"default_limit": "20"}}'] = "50, 20",
      ['{"variant": {"spelling": "x"}}'] = "unknown variant",
      ['{"variant": "docs_v9"}'] = "default, alternate",
    } do
      local res = emu.request { method = "POST", path = "/__emulator/config", body = body }
      assert.are.equal(400, res.status, body)
      assert.matches(says, res.json.error.message, 1, true)
    end
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
    local got = get(call.id)
    assert.are.equal(emu.to, got.phone_number)
    assert.is_nil(got.to_number)
    local listed = emu.list_calls()[1]
    assert.are.equal(emu.to, listed.phone_number)
  end)

  it("call_shape = to_from: `to` and `from`, as the get-call and list-calls examples", function()
    emu.config { variant = { call_shape = "to_from" } }
    local call = emu.create_call { from_number = emu.agent.outbound_numbers[2] }
    assert.are.same({ emu.to, emu.agent.outbound_numbers[2] }, { call.to, call.from })
    for _, absent in ipairs { "to_number", "from_number", "phone_number" } do assert.is_nil(call[absent], absent) end
    local got, listed = get(call.id), emu.list_calls()[1]
    assert.are.same({ emu.to, emu.agent.outbound_numbers[2] }, { got.to, got.from })
    assert.are.same({ emu.to, emu.agent.outbound_numbers[2] }, { listed.to, listed.from })
    assert.is_nil(listed.to_number)
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

  describe("status_spelling", function()
    it("hyphen (default): in-progress, ended", function()
      local id = emu.create_call().id
      emu.advance(6)
      assert.are.equal("in-progress", get(id).status)
      emu.advance(30)
      assert.are.equal("ended", get(id).status)
    end)

    it("underscore: in_progress and completed, in reads, lists and the status filter", function()
      emu.config { variant = { status_spelling = "underscore" } }
      local id = emu.create_call().id
      local failing = emu.create_call({ phone_number = emu.failing_to }).id
      assert.are.equal("queued", get(id).status)
      emu.advance(3)
      assert.are.equal("ringing", get(id).status)
      emu.advance(3)
      assert.are.equal("in_progress", get(id).status)
      assert.are.equal(1, #emu.list_calls(nil, "&status=in_progress"))
      emu.advance(30)
      local c = get(id)
      assert.are.equal("completed", c.status)
      assert.are.equal(30, c.duration_seconds)
      assert.are.equal("failed", get(failing).status)
      local listed = emu.list_calls(nil, "&status=completed")
      assert.are.equal(1, #listed)
      assert.are.equal(id, listed[1].id)
      assert.are.same({}, emu.list_calls(nil, "&status=ended"), "the filter takes the spelling in force")
    end)
  end)

  describe("cancelled calls", function()
    it("a number in the cancelling range rings, then ends cancelled, never answered", function()
      local id = emu.create_call({ phone_number = emu.cancelling_to }).id
      emu.advance(3)
      assert.are.equal("ringing", get(id).status)
      emu.advance(3)
      local c = get(id)
      assert.are.same({ "cancelled", null, 0, null, null }, { c.status, c.started_at, c.duration_seconds,
        c.recording_url, c.transcript })
      assert.matches(emu.ISO_US, c.ended_at)
      assert.are.equal(1, #emu.list_calls(nil, "&status=cancelled"))
    end)

    it("cancelled_spelling = canceled: one l, in reads and the status filter", function()
      emu.config { variant = { cancelled_spelling = "canceled" } }
      local id = emu.create_call({ phone_number = emu.cancelling_to }).id
      emu.advance(10)
      assert.are.equal("canceled", get(id).status)
      assert.are.equal(1, #emu.list_calls(nil, "&status=canceled"))
      assert.are.same({}, emu.list_calls(nil, "&status=cancelled"))
    end)

    it("POST /__emulator/calls/ID/cancel ends a call that is not over, now", function()
      local queued = emu.create_call().id
      local talking = emu.create_call().id
      local res = emu.request { method = "POST", path = "/__emulator/calls/" .. queued .. "/cancel" }
      assert.are.equal(200, res.status, res.body)
      local shown = res.json.data
      assert.are.same({ queued, "cancelled", null }, { shown.id, shown.status, shown.started_at })
      assert.are.equal("cancelled", get(queued).status)
      assert.are.equal("queued", get(talking).status, "only that call")

      emu.advance(15) -- talking for 10 s
      emu.control("POST", "/calls/" .. talking .. "/cancel")
      local c = get(talking)
      assert.are.same({ "cancelled", 10, null }, { c.status, c.duration_seconds, c.recording_url })
      assert.matches(emu.ISO_US, c.started_at)
      emu.advance(60)
      assert.are.equal("cancelled", get(talking).status, "it stays cancelled")
      assert.are.equal(10, get(talking).duration_seconds)

      -- nothing to cancel: over already, or unknown
      res = emu.request { method = "POST", path = "/__emulator/calls/" .. talking .. "/cancel" }
      assert.are.equal(409, res.status)
      assert.matches("cancelled", res.json.error.message, 1, true)
      local ended = emu.create_call().id
      emu.advance(40)
      assert.are.equal(409, emu.request { method = "POST", path = "/__emulator/calls/" .. ended .. "/cancel" }.status)
      res = emu.request { method = "POST", path = "/__emulator/calls/call_nothere/cancel" }
      assert.are.equal(404, res.status)
      assert.are.equal(405, emu.request { method = "GET", path = "/__emulator/calls/" .. ended .. "/cancel" }.status)
    end)
  end)

  it("end_time_key = completed_at: the end time under completed_at, no ended_at", function()
    emu.config { variant = { end_time_key = "completed_at" } }
    local id = emu.create_call().id
    local c = get(id)
    assert.are.equal(null, c.completed_at)
    assert.is_nil(c.ended_at)
    emu.advance(40)
    c = get(id)
    assert.matches(emu.ISO_US, c.completed_at)
    assert.is_nil(c.ended_at)
    assert.are.equal(c.completed_at, emu.list_calls()[1].completed_at)
  end)

  describe("call_extras = all", function()
    before_each(function() emu.config { variant = { call_extras = "all" } } end)

    it("adds transcript_url, summary, cost_credits (null until the end) and metadata (the variables)", function()
      local call = emu.create_call { variables = { first_name = "Ann", visits = 3 } }
      assert.are.same({ null, null, null }, { call.transcript_url, call.summary, call.cost_credits })
      assert.are.same({ first_name = "Ann", visits = "3" }, call.metadata)
      emu.advance(40)
      local c = get(call.id)
      assert.are.equal(0.5, c.cost_credits, "30 s at a credit a minute")
      assert.is_string(c.summary)
      assert.matches("^http://127%.0%.0%.1:%d+/__emulator/transcripts/" .. call.id .. "%.json$", c.transcript_url)
      local served = emu.request { url = c.transcript_url }
      assert.are.equal(200, served.status)
      assert.are.same(c.transcript, served.json.data)
    end)

    it("metadata is an empty object for a call without variables; a failed call costs 0", function()
      local call = emu.create_call { phone_number = emu.failing_to }
      local res = emu.api("GET", "/calls/" .. call.id)
      assert.matches('"metadata":{}', res.body, 1, true)
      emu.advance(10)
      local c = get(call.id)
      assert.are.same({ "failed", 0, null, null }, { c.status, c.cost_credits, c.transcript_url, c.summary })
      assert.are.equal(404, emu.request { path = "/__emulator/transcripts/" .. call.id .. ".json" }.status)
    end)
  end)

  describe("transcript", function()
    it("transcript_style = iso (default): agent/customer, ISO timestamps", function()
      local id = emu.create_call().id
      emu.advance(40)
      local t = get(id).transcript
      assert.are.same({ "agent", "customer", "agent" }, { t[1].speaker, t[2].speaker, t[3].speaker })
      for _, line in ipairs(t) do assert.matches(emu.ISO_US, line.timestamp) end
    end)

    it("transcript_style = offsets: agent/contact, timestamp = whole seconds from the call's start", function()
      emu.config { variant = { transcript_style = "offsets" } }
      local id = emu.create_call({ variables = { first_name = "Ann" } }).id
      emu.advance(40)
      local t = get(id).transcript
      assert.are.same({ "agent", "contact", "agent" }, { t[1].speaker, t[2].speaker, t[3].speaker })
      assert.are.same({ 0, 3, 6 }, { t[1].timestamp, t[2].timestamp, t[3].timestamp })
      assert.matches("Hi Ann", t[1].text, 1, true)
    end)

    it("transcript_timing = delayed: null for 10 s after the end, then there", function()
      emu.config { variant = { transcript_timing = "delayed", call_extras = "all" } }
      local id = emu.create_call().id
      emu.advance(36) -- ended at 35
      local c = get(id)
      assert.are.same({ "ended", null, null, null }, { c.status, c.transcript, c.transcript_url, c.summary })
      assert.is_string(c.recording_url, "only the transcript is late")
      emu.advance(10)
      c = get(id)
      assert.are.equal(3, #c.transcript)
      assert.is_string(c.transcript_url)
    end)
  end)

  it("time_precision = seconds: every API timestamp in whole seconds", function()
    emu.config { variant = { time_precision = "seconds", call_extras = "all" }, rate_limit = 1, rate_window = 86400 }
    local call, res = emu.create_call()
    assert.matches(emu.ISO_S, res.json.meta.ts)
    assert.matches(emu.ISO_S, call.created_at)
    assert.matches(emu.ISO_S, call.updated_at)
    local limited = emu.api("GET", "/calls")
    assert.are.equal(429, limited.status)
    assert.matches(emu.ISO_S, limited.json.error.details.reset_at)
    assert.matches(emu.ISO_S, limited.json.meta.ts)
    emu.config { rate_limit = 0 }
    emu.advance(40)
    local c = get(call.id)
    for _, field in ipairs { "created_at", "updated_at", "started_at", "ended_at" } do
      assert.matches(emu.ISO_S, c[field], field)
    end
    for _, line in ipairs(c.transcript) do assert.matches(emu.ISO_S, line.timestamp) end
    -- truncated, not rounded: the second of created_at is the one the microseconds had
    emu.config { variant = { time_precision = "microseconds" } }
    assert.are.equal(get(call.id).created_at:sub(1, 19) .. "Z", c.created_at)
  end)

  describe("pagination", function()
    before_each(function()
      for _ = 1, 3 do emu.create_call() end
    end)

    it("object (default): a pagination object", function()
      local res = emu.api("GET", "/calls?limit=2&offset=1")
      assert.are.same({ total = 3, limit = 2, offset = 1, has_more = false }, res.json.pagination)
      assert.is_nil(res.json.meta.count)
    end)

    it("meta_count: meta.count (the page's size), no pagination", function()
      emu.config { variant = { pagination = "meta_count" } }
      local res = emu.api("GET", "/calls?limit=2")
      assert.are.equal(200, res.status)
      assert.is_nil(res.json.pagination)
      assert.are.equal(2, res.json.meta.count)
      assert.are.equal(2, #res.json.data)
      assert.is_string(res.json.meta.request_id)
    end)

    it("meta_fields: meta.total, meta.limit, meta.offset, no pagination", function()
      emu.config { variant = { pagination = "meta_fields" } }
      local res = emu.api("GET", "/calls?limit=2&offset=2")
      assert.is_nil(res.json.pagination)
      assert.are.same({ 3, 2, 2 }, { res.json.meta.total, res.json.meta.limit, res.json.meta.offset })
      assert.is_nil(res.json.meta.has_more)
      assert.are.equal(1, #res.json.data)
    end)
  end)

  it("default_limit = 20: a list without ?limit has 20 calls (50 by default)", function()
    emu.config { rate_limit = 0 }
    local requests = {}
    for i = 1, 25 do requests[i] = { method = "POST", path = "/calls", body = emu.call_body() } end
    assert.are.same({ [201] = 25 }, emu.count_status(emu.blast(requests)))
    local res = emu.api("GET", "/calls")
    assert.are.same({ 25, 50 }, { #res.json.data, res.json.pagination.limit })
    emu.config { variant = { default_limit = 20 } }
    res = emu.api("GET", "/calls")
    assert.are.same({ 20, 20, true }, { #res.json.data, res.json.pagination.limit, res.json.pagination.has_more })
    assert.are.equal(25, #emu.api("GET", "/calls?limit=30").json.data, "an explicit limit still wins")
  end)

  it("no_number = failed_call: an agent without a number gets a 201, then the call fails", function()
    local body = emu.call_body { agent_id = emu.agent_without_numbers.id }
    local res = emu.api("POST", "/calls", body)
    assert.are.equal(422, res.status)
    assert.are.equal("no_phone_number_configured", res.json.error.code)

    emu.config { variant = { no_number = "failed_call" } }
    res = emu.api("POST", "/calls", body)
    assert.are.equal(201, res.status, res.body)
    local call = res.json.data
    assert.are.same({ "queued", null, emu.to }, { call.status, call.from_number, call.to_number })
    emu.advance(6)
    local c = get(call.id)
    assert.are.same({ "failed", null, null }, { c.status, c.started_at, c.recording_url })
  end)

  describe("rate_limit_headers", function()
    it("none (default): no X-RateLimit-* and no Retry-After, even on a 429", function()
      emu.config { rate_limit = 1, rate_window = 86400 }
      emu.api("GET", "/calls")
      local res = emu.api("GET", "/calls")
      assert.are.equal(429, res.status)
      assert.is_nil(res.headers["retry-after"])
      assert.is_nil(res.headers["x-ratelimit-limit"])
    end)

    it("x_ratelimit: Limit, Remaining, Reset (Unix time) on counted answers; Retry-After on a 429", function()
      emu.config { variant = { rate_limit_headers = "x_ratelimit" }, rate_limit = 2, rate_window = 86400 }
      local first = emu.api("GET", "/calls")
      assert.are.same({ "2", "1" }, { first.headers["x-ratelimit-limit"], first.headers["x-ratelimit-remaining"] })
      local reset = tonumber(first.headers["x-ratelimit-reset"])
      assert.are.equal(0, reset % 86400, "the end of the day-long window")
      assert.is_nil(first.headers["retry-after"])
      local second = emu.api("GET", "/calls/call_none") -- a 404 counts too
      assert.are.same({ 404, "0" }, { second.status, second.headers["x-ratelimit-remaining"] })
      local limited = emu.api("GET", "/calls")
      assert.are.equal(429, limited.status)
      assert.are.equal("0", limited.headers["x-ratelimit-remaining"])
      assert.are.equal(tostring(reset), limited.headers["x-ratelimit-reset"])
      local wait = tonumber(limited.headers["retry-after"])
      assert.is_true(wait >= 1 and wait <= 86400, "Retry-After " .. tostring(wait))
      -- a 429 fault says the same; an answer the limit did not count has none
      emu.config { rate_limit = 0 }
      assert.is_nil(emu.api("GET", "/calls").headers["x-ratelimit-limit"], "the limit is off")
      emu.config { rate_limit = 5 }
      emu.fault { type = "status", status = 429 }
      local faulted = emu.api("GET", "/calls")
      assert.are.same({ 429, "5", "0" }, { faulted.status, faulted.headers["x-ratelimit-limit"],
        faulted.headers["x-ratelimit-remaining"] })
      assert.is_string(faulted.headers["retry-after"])
      assert.is_nil(emu.api("GET", "/nowhere").headers["x-ratelimit-limit"], "unknown routes are not counted")
    end)
  end)

  it("error_details = empty: an error without details has \"details\": {}", function()
    assert.is_nil(emu.api("GET", "/calls", nil, { key = false }).body:find('"details"', 1, true))
    emu.config { variant = { error_details = "empty" } }
    for _, res in ipairs { emu.api("GET", "/calls", nil, { key = false }), emu.api("GET", "/calls/call_none") } do
      assert.matches('"details":{}', res.body, 1, true)
    end
    local invalid = emu.api("POST", "/calls", emu.call_body { phone_number = "555" })
    assert.are.equal(422, invalid.status)
    assert.are.equal("phone_number", invalid.json.error.details.field, "details that exist are kept")
  end)

  describe("presets", function()
    it("alternate switches every variant to its second value; default switches them back", function()
      local v = emu.control("GET", "/variants").data.variants
      local cfg = emu.config { variant = "alternate" }
      for name, values in pairs(v) do assert.are.equal(values[2], cfg.variant[name], name) end
      local call, res = emu.create_call()
      assert.matches(emu.UUID, res.json.meta.request_id)
      assert.matches(emu.ISO_S, res.json.meta.timestamp)
      assert.are.equal(emu.to, call.phone_number)
      emu.advance(6)
      assert.are.equal("in_progress", get(call.id).status)
      local list = emu.api("GET", "/calls")
      assert.are.same({ 1, null }, { list.json.meta.count, list.json.pagination or null })

      cfg = emu.config { variant = "default" }
      for name, values in pairs(v) do assert.are.equal(values[1], cfg.variant[name], name) end
    end)

    it("a preset and single changes combine, the later request winning", function()
      emu.config { variant = "alternate" }
      local cfg = emu.config { variant = { status_spelling = "hyphen" } }
      assert.are.same({ "hyphen", "timestamp" }, { cfg.variant.status_spelling, cfg.variant.meta_time_key })
      emu.reset()
      assert.are.equal("ts", emu.control("GET", "/config").data.variant.meta_time_key)
    end)
  end)
end)
