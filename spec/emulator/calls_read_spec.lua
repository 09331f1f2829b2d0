-- GET /calls/{id}, GET /calls (filters, pagination) and the call lifecycle.
local emu = require "spec.emulator.emu"

local null = emu.null

local function get(id)
  local res = emu.api("GET", "/calls/" .. id)
  assert.are.equal(200, res.status, res.body)
  return res.json.data
end

describe("emulator GET /calls/{id}", function()
  before_each(function()
    emu.reset()
    emu.config { clock_speed = 0 } -- time stands still unless a spec advances it
  end)

  it("returns the call with meta", function()
    local created = emu.create_call()
    local res = emu.api("GET", "/calls/" .. created.id)
    assert.are.equal(200, res.status)
    assert.are.equal(created.id, res.json.data.id)
    assert.are.equal(created.created_at, res.json.data.created_at)
    assert.are.equal(created.from_number, res.json.data.from_number)
    assert.matches("^req_", res.json.meta.request_id)
    assert.are_not.equal(created.id, res.json.meta.request_id)
  end)

  it("answers 404 not_found for an unknown id", function()
    local res = emu.api("GET", "/calls/call_0000000000000000")
    assert.are.equal(404, res.status)
    assert.are.equal("not_found", res.json.error.code)
    assert.matches("call_0000000000000000", res.json.error.message, 1, true)
    assert.matches(emu.ISO_US, res.json.meta.ts)
  end)

  describe("lifecycle", function()
    it("goes queued → ringing → in-progress → ended on the emulated clock", function()
      local id = emu.create_call().id
      local c = get(id)
      assert.are.equal("queued", c.status)
      assert.are.equal(null, c.started_at)

      emu.advance(2)
      c = get(id)
      assert.are.equal("ringing", c.status)
      assert.are_not.equal(c.created_at, c.updated_at)

      emu.advance(3)
      c = get(id)
      assert.are.equal("in-progress", c.status)
      assert.matches(emu.ISO_US, c.started_at)
      assert.are.equal(null, c.ended_at)
      assert.are.equal(null, c.recording_url)

      emu.advance(30)
      c = get(id)
      assert.are.equal("ended", c.status)
      assert.are.equal(30, c.duration_seconds)
      assert.matches(emu.ISO_US, c.started_at)
      assert.matches(emu.ISO_US, c.ended_at)
      assert.are.equal(c.ended_at, c.updated_at)
      assert.is_true(c.started_at < c.ended_at)
      assert.matches("^http://127%.0%.0%.1:%d+/.*" .. id, c.recording_url)
      assert.is_table(c.transcript)
      assert.is_true(#c.transcript >= 2)
      for _, line in ipairs(c.transcript) do
        assert.is_string(line.speaker)
        assert.is_string(line.text)
        assert.matches(emu.ISO_US, line.timestamp)
      end
    end)

    it("runs faster with clock_speed", function()
      emu.config { clock_speed = 200 } -- an emulated call of ~35 s takes ~0.18 s
      local id = emu.create_call().id
      local ended = emu.eventually(function()
        local c = get(id)
        return c.status == "ended" and c
      end, 5)
      assert.is_table(ended, "the call ended within 5 s")
    end)

    it("ends `failed` for destinations in the failing range, without recording or transcript", function()
      local id = emu.create_call({ phone_number = emu.failing_to }).id
      emu.advance(60)
      local c = get(id)
      assert.are.equal("failed", c.status)
      assert.are.equal(null, c.recording_url)
      assert.are.equal(null, c.transcript)
      assert.are.equal(null, c.started_at)
      assert.matches(emu.ISO_US, c.ended_at)
    end)

    it("fills the transcript from the greeting and the variables", function()
      local id = emu.create_call({ variables = { first_name = "Ada" } }).id
      emu.advance(40)
      local c = get(id)
      assert.are.equal(emu.agent.greeting:gsub("{{first_name}}", "Ada"), c.transcript[1].text)
      local id2 = emu.create_call({ call_settings = { greeting = "Yo {{n}}" }, variables = { n = 12 } }).id
      emu.advance(40)
      assert.are.equal("Yo 12", get(id2).transcript[1].text)
    end)

    it("records nothing when recording_enabled is false, no transcript when transcription_enabled is false",
      function()
        local no_rec = emu.create_call({ call_settings = { recording_enabled = false } }).id
        local no_tr = emu.create_call({ call_settings = { transcription_enabled = false } }).id
        emu.advance(40)
        local a, b = get(no_rec), get(no_tr)
        assert.are.equal("ended", a.status)
        assert.are.equal(null, a.recording_url)
        assert.is_table(a.transcript)
        assert.are.equal("ended", b.status)
        assert.are.equal(null, b.transcript)
        assert.is_string(b.recording_url)
      end)

    it("caps the conversation at max_duration", function()
      local id = emu.create_call({ call_settings = { max_duration = "10s" } }).id
      emu.advance(15)
      local c = get(id)
      assert.are.equal("ended", c.status)
      assert.are.equal(10, c.duration_seconds)
    end)

    it("serves the recording of an ended call", function()
      local id = emu.create_call().id
      emu.advance(40)
      local res = emu.request { url = get(id).recording_url }
      assert.are.equal(200, res.status)
      assert.are.equal("audio/wav", res.headers["content-type"])
      assert.are.equal("RIFF", res.body:sub(1, 4))
    end)
  end)
end)

describe("emulator GET /calls", function()
  before_each(function()
    emu.reset()
    emu.config { clock_speed = 0 }
  end)

  it("lists newest first with pagination", function()
    local ids = {}
    for i = 1, 3 do ids[i] = emu.create_call().id end
    local res = emu.api("GET", "/calls")
    assert.are.equal(200, res.status)
    local data, p = res.json.data, res.json.pagination
    assert.are.same({ ids[3], ids[2], ids[1] }, { data[1].id, data[2].id, data[3].id })
    assert.are.same({ total = 3, limit = 50, offset = 0, has_more = false }, p)
    assert.matches("^req_", res.json.meta.request_id)
  end)

  it("pages with limit and offset", function()
    local ids = {}
    for i = 1, 5 do ids[i] = emu.create_call().id end
    local res = emu.api("GET", "/calls?limit=2&offset=1")
    assert.are.same({ ids[4], ids[3] }, { res.json.data[1].id, res.json.data[2].id })
    assert.are.equal(2, #res.json.data)
    assert.are.same({ total = 5, limit = 2, offset = 1, has_more = true }, res.json.pagination)
    res = emu.api("GET", "/calls?limit=2&offset=4")
    assert.are.equal(1, #res.json.data)
    assert.is_false(res.json.pagination.has_more)
    res = emu.api("GET", "/calls?offset=10")
    assert.matches('"data":%[%]', res.body) -- an empty array, not {}
    assert.are.equal(5, res.json.pagination.total)
  end)

  it("accepts limit 1 and 100", function()
    emu.create_call()
    assert.are.equal(200, emu.api("GET", "/calls?limit=1").status)
    assert.are.equal(200, emu.api("GET", "/calls?limit=100").status)
  end)

  for _, q in ipairs { "limit=0", "limit=101", "limit=-1", "limit=abc", "limit=1.5", "limit=" } do
    it("refuses " .. q .. " with 422 on limit", function()
      local res = emu.api("GET", "/calls?" .. q)
      assert.are.equal(422, res.status)
      assert.are.equal("validation_error", res.json.error.code)
      assert.are.equal("limit", res.json.error.details.field)
    end)
  end

  it("refuses a negative offset with 422 on offset", function()
    local res = emu.api("GET", "/calls?offset=-1")
    assert.are.equal(422, res.status)
    assert.are.equal("offset", res.json.error.details.field)
  end)

  it("filters by agent_id, status and direction", function()
    local other = emu.create_call({ agent_id = emu.other_agent.id }, { key = emu.other_key })
    local old = emu.create_call().id
    emu.advance(3) -- old is ringing now
    local new = emu.create_call().id

    local function ids(query)
      local out = {}
      for _, c in ipairs((emu.list_calls(nil, query))) do out[#out + 1] = c.id end
      return out
    end
    assert.are.same({ new }, ids("&status=queued"))
    assert.are.same({ old }, ids("&status=ringing"))
    assert.are.same({}, ids("&status=ended"))
    assert.are.same({ new, old }, ids("&agent_id=" .. emu.agent.id))
    assert.are.same({}, ids("&agent_id=" .. emu.draft_agent.id))
    assert.are.same({ new, old }, ids("&direction=outbound"))
    assert.are.same({}, ids("&direction=inbound"))
    local _, p = emu.list_calls(nil, "&status=queued")
    assert.are.equal(1, p.total)
    assert.are.same({ other.id }, (function()
      local out = {}
      for _, c in ipairs((emu.list_calls(emu.other_key))) do out[#out + 1] = c.id end
      return out
    end)())
  end)
end)
