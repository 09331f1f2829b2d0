-- The client against every documented variant of the API (issue 12): for each value of each
-- variant key the emulator serves (GET /__emulator/variants, so a new one joins the matrix by
-- itself), and for the "alternate" preset (every key at its second value at once): create, get,
-- list, the pager (both forms), follow (both forms) and the 429 wait.
--
-- The emulated clock is frozen (clock_speed 0) and moved by the specs (clock/advance), so a
-- call's lifecycle costs no waiting; the only real waits are the 429 ones, kept short.
local helper = require "spec.support.helper"
local emu = require "spec.emulator.emu"
local listing = require "spec.support.listing"
local truedy = require "truedy"
local follow = require "truedy.follow"

local catalog = helper.control("GET", "/variants").data

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

local function show(value)
  return type(value) == "number" and string.format("%d", value) or tostring(value)
end

local function variant_state(pick)
  local state = {}
  for name, values in pairs(catalog.variants) do state[name] = values[pick(name)] or values[1] end
  return state
end

-- Each configuration: a name, what to POST as "variant", and every key's value in force.
local configs = { { name = "default", variant = "default", v = variant_state(function() return 1 end) } }
for _, key in ipairs(sorted_keys(catalog.variants)) do
  for i = 2, #catalog.variants[key] do
    local value = catalog.variants[key][i]
    configs[#configs + 1] = { name = key .. " = " .. show(value), variant = { [key] = value },
      v = variant_state(function(name) return name == key and i or 1 end) }
  end
end
configs[#configs + 1] = { name = 'preset "alternate"', variant = "alternate",
  v = variant_state(function() return 2 end) }

-- What a configuration makes the API say; an unknown value fails loudly, so that a new variant
-- value is taught to the matrix rather than skipped.
local function pick(v, key, choices)
  local chosen = choices[v[key]]
  if chosen == nil then error(("the variant matrix does not know %s = %s: add it"):format(key, show(v[key])), 2) end
  return chosen
end

local function words(v)
  local w = {}
  local spelling = pick(v, "status_spelling", { hyphen = { "in-progress", "ended" },
    underscore = { "in_progress", "completed" } })
  w.talking, w.ended = spelling[1], spelling[2]
  w.other_ended = w.ended == "ended" and "completed" or "ended"
  w.cancelled = pick(v, "cancelled_spelling", { cancelled = "cancelled", canceled = "canceled" })
  w.end_key = pick(v, "end_time_key", { ended_at = "ended_at", completed_at = "completed_at" })
  w.other_end_key = w.end_key == "ended_at" and "completed_at" or "ended_at"
  w.time_key = pick(v, "meta_time_key", { ts = "ts", timestamp = "timestamp" })
  w.other_time_key = w.time_key == "ts" and "timestamp" or "ts"
  w.whole_seconds = pick(v, "time_precision", { microseconds = false, seconds = true })
  w.iso = w.whole_seconds and emu.ISO_S or emu.ISO_US
  w.request_id = pick(v, "request_id_style", { req = "^req_%x+$", uuid = emu.UUID })
  w.numbers = pick(v, "call_shape", { numbers = { "to_number", "from_number" },
    phone_number = { "phone_number", false }, to_from = { "to", "from" } })
  w.extras = pick(v, "call_extras", { none = false, all = true })
  w.speakers = pick(v, "transcript_style", { iso = { agent = true, customer = true },
    offsets = { agent = true, contact = true } })
  w.transcript_late = pick(v, "transcript_timing", { immediate = false, delayed = true })
  w.pagination = pick(v, "pagination", { object = "object", meta_count = "meta_count", meta_fields = "meta_fields" })
  w.default_limit = pick(v, "default_limit", { [50] = 50, [20] = 20 })
  w.no_number_fails = pick(v, "no_number", { error_422 = false, failed_call = true })
  w.retry_after_header = pick(v, "rate_limit_headers", { none = false, x_ratelimit = true })
  w.empty_details = pick(v, "error_details", { omitted = false, empty = true })
  pick(v, "error_meta", { meta = true, inside_error = true }) -- either way err.request_id is there
  return w
end

local NUMBER_KEYS = { "to_number", "from_number", "phone_number", "to", "from" }

-- The call's numbers are under this shape's names, and under no other (from: the number
-- asked for, or true for whichever the API picked).
local function check_numbers(w, call, to, from)
  local expected = { [w.numbers[1]] = to }
  if w.numbers[2] then expected[w.numbers[2]] = from end
  for _, key in ipairs(NUMBER_KEYS) do
    if expected[key] == true then
      assert.matches("^%+%d+$", call[key], 1, false, key)
    else
      assert.are.equal(expected[key], call[key], key)
    end
  end
end

local function check_meta(w, meta)
  assert.matches(w.iso, meta[w.time_key])
  assert.is_nil(meta[w.other_time_key])
  assert.matches(w.request_id, meta.request_id)
end

-- How many list requests the pager makes for n calls: pages of `sent` (the limit it sent) or of
-- the server's own size.  With only meta.count and no limit sent it learns the size from the
-- first page, so it needs one more request when everything fits in a page (or fills whole ones).
local function pages_needed(shape, n, sent, server_size)
  local size = sent or server_size
  if shape ~= "meta_count" then return math.max(1, math.ceil(n / size)) end
  if sent then return math.floor(n / size) + 1 end
  if n < size then return n == 0 and 1 or 2 end
  return n % size == 0 and n / size + 1 or math.ceil(n / size)
end

local cancelling_number = emu.cancelling_to

for _, cfg in ipairs(configs) do
  describe("variant " .. cfg.name, function()
    local v, w = cfg.v, words(cfg.v)
    local client

    before_each(function()
      helper.reset()
      local config = helper.configure { clock_speed = 0, variant = cfg.variant }
      assert.are.same(v, config.variant, "the emulator serves the configuration the matrix expects")
      client = helper.client()
    end)

    it("create_call: the answer decoded exactly as sent, numbers and meta in this shape", function()
      local from = helper.agent.outbound_numbers[2]
      local res = assert(client:create_call(helper.params { from_number = from, variables = { first_name = "Ada" } }))
      -- the emulator replays its stored answer, byte for byte, to the same key and body
      local post = helper.journal("POST")[1]
      local replay = emu.api("POST", "/calls", post.body,
        { headers = { ["x-idempotency-key"] = post.headers["x-idempotency-key"] } })
      assert.are.equal(201, replay.status)
      assert.are.same(helper.strip_nulls(replay.json), res)
      local call = res.data
      assert.are.equal("queued", call.status)
      check_numbers(w, call, helper.to_number, from)
      check_meta(w, res.meta)
      assert.matches(w.iso, call.created_at)
      assert.is_false(truedy.is_terminal(call))
      if w.extras then
        assert.are.same({ first_name = "Ada" }, call.metadata)
      else
        assert.is_nil(call.metadata)
      end
    end)

    it("create_call for an agent without a number, and an error's details and request id", function()
      local res, err = client:create_call(helper.params { agent_id = helper.agent_without_numbers.id })
      if w.no_number_fails then
        assert.is_nil(err)
        assert.are.equal("queued", res.data.status)
        assert.is_nil(res.data.from_number, "null: an absent key")
        local call, finished = follow(client, res.data.id, { sleep = function() emu.advance(10) end })
        assert.are.same({ "failed", true }, { call.status, finished })
      else
        assert.is_nil(res)
        assert.are.same({ "api", 422, "no_phone_number_configured", false },
          { err.kind, err.status, err.code, err.retryable })
        assert.matches(w.request_id, err.request_id)
      end
      local _, missing = client:get_call("call_nope")
      assert.are.same({ "api", 404, "not_found" }, { missing.kind, missing.status, missing.code })
      if w.empty_details then
        assert.are.same({}, missing.details)
      else
        assert.is_nil(missing.details)
      end
      assert.matches(w.request_id, missing.request_id) -- from meta, or from inside error
      assert.are.equal("truedy: 404 not_found: " .. missing.message .. " (request_id=" .. missing.request_id .. ")",
        tostring(missing))
    end)

    it("get_call: decoded exactly as sent at every stage, in this variant's spellings", function()
      local id = assert(client:create_call(helper.params { variables = { first_name = "Ada" } })).data.id
      local function read()
        local res = assert(client:get_call(id))
        local raw = emu.api("GET", "/calls/" .. id)
        assert.are.equal(200, raw.status)
        assert.are.same(helper.strip_nulls(raw.json.data), res.data)
        check_meta(w, res.meta)
        return res.data
      end
      local call = read()
      assert.are.equal("queued", call.status)
      assert.is_nil(call[w.end_key])
      emu.advance(6)
      call = read()
      assert.are.equal(w.talking, call.status)
      assert.is_false(truedy.is_terminal(call))
      assert.matches(w.iso, call.started_at)
      emu.advance(30)
      call = read()
      assert.are.equal(w.ended, call.status)
      assert.is_true(truedy.is_terminal(call))
      assert.matches(w.iso, call[w.end_key])
      assert.is_nil(call[w.other_end_key])
      assert.are.equal(30, call.duration_seconds)
      check_numbers(w, call, helper.to_number, true)
      if w.transcript_late then
        assert.is_nil(call.transcript, "not there yet")
        emu.advance(10)
        call = read()
      end
      assert.is_true(#call.transcript >= 2)
      for _, line in ipairs(call.transcript) do
        assert.is_true(w.speakers[line.speaker], line.speaker)
        assert.is_string(line.text)
        if type(line.timestamp) == "number" then
          assert.is_true(helper.is_integer(line.timestamp), "seconds from the call's start")
        else
          assert.matches(w.iso, line.timestamp)
        end
      end
      if w.extras then
        assert.are.same({ 0.5, { first_name = "Ada" } }, { call.cost_credits, call.metadata })
        assert.is_string(call.summary)
        assert.matches("/__emulator/transcripts/" .. id .. ".json", call.transcript_url, 1, true)
      else
        for _, key in ipairs { "cost_credits", "metadata", "summary", "transcript_url" } do
          assert.is_nil(call[key], key)
        end
      end
    end)

    it("list_calls: the page and its pagination as sent; the status filter in this spelling", function()
      listing.create_calls(client, 3)
      local res = assert(client:list_calls { limit = 2, offset = 1 })
      local raw = emu.api("GET", "/calls?limit=2&offset=1")
      assert.are.same(helper.strip_nulls(raw.json.data), res.data)
      assert.are.equal(2, #res.data)
      check_meta(w, res.meta)
      if w.pagination == "object" then
        assert.are.same({ total = 3, limit = 2, offset = 1, has_more = false }, res.pagination)
        assert.is_nil(res.meta.count)
      elseif w.pagination == "meta_count" then
        assert.is_nil(res.pagination)
        assert.are.same({ 2 }, { res.meta.count, res.meta.total })
      else
        assert.is_nil(res.pagination)
        assert.are.same({ 3, 2, 1 }, { res.meta.total, res.meta.limit, res.meta.offset })
      end
      emu.advance(40)
      assert.are.equal(3, #assert(client:list_calls { status = w.ended }).data)
      assert.are.equal(0, #assert(client:list_calls { status = w.other_ended }).data, "filters go as given")
    end)

    it("each_call and start_each_call: every call once, in as many pages as this shape needs", function()
      local n = 25
      listing.create_calls(client, n)
      local all = listing.listed_ids()
      assert.are.equal(n, #all)

      -- no limit sent: the server's page size
      assert.are.same(all, listing.ids_of(listing.collect(client:each_call())))
      local queries = listing.queries()
      assert.are.equal(pages_needed(w.pagination, n, nil, w.default_limit), #queries)
      for _, q in ipairs(queries) do assert.is_nil(q.limit) end

      -- the non-blocking form, pages of 5
      helper.control("DELETE", "/journal")
      local given, pages = {}, 0
      local p = assert(client:start_each_call({ limit = 5 }, {
        on_page = function() pages = pages + 1 end,
        on_call = function(call) given[#given + 1] = call.id end,
      }))
      assert.are.equal(n, p:wait(10))
      assert.are.same(all, given)
      assert.are.equal(pages_needed(w.pagination, n, 5), #listing.queries())
      assert.are.equal(#listing.queries(), pages)

      -- a status filter in this variant's spelling
      emu.advance(40)
      local ended = listing.collect(client:each_call { status = w.ended, limit = 10 })
      assert.are.equal(n, #ended)
      for _, call in ipairs(ended) do assert.are.equal(w.ended, call.status) end
    end)

    it("truedy.follow: ends on this variant's terminal spellings, and not before", function()
      local function follow_new(number)
        local id = assert(client:create_call(helper.params { phone_number = number })).data.id
        local seen = {}
        local call, finished = follow(client, id, { interval = 1, sleep = function() emu.advance(10) end,
          on_change = function(c) seen[#seen + 1] = c.status end })
        assert.are.same({ id, true }, { call.id, finished })
        return seen
      end
      assert.are.same({ "queued", w.talking, w.ended }, follow_new(helper.to_number))
      assert.are.same({ "queued", w.cancelled }, follow_new(cancelling_number))
      assert.are.same({ "queued", "failed" }, follow_new(helper.failing_number))
    end)

    it("truedy.follow.start: the same on the engine, three calls at once", function()
      local talking = assert(client:create_call(helper.params())).data.id
      emu.advance(6)
      local cancelling = assert(client:create_call(helper.params { phone_number = cancelling_number })).data.id
      local failing = assert(client:create_call(helper.params { phone_number = helper.failing_number })).data.id
      -- once every follower has read its call, the clock jumps past every end
      local seen, followers, first_reads = {}, {}, 0
      for _, id in ipairs { talking, cancelling, failing } do
        seen[id] = {}
        followers[id] = follow.start(client, id, { interval = 0.01, wait_timeout = 30,
          on_change = function(c)
            seen[id][#seen[id] + 1] = c.status
            if #seen[id] == 1 then
              first_reads = first_reads + 1
              if first_reads == 3 then emu.advance(40) end
            end
          end })
      end
      for id, f in pairs(followers) do
        local call, finished = f:wait(30)
        assert.are.same({ id, true }, { call.id, finished })
      end
      assert.are.same({ w.talking, w.ended }, seen[talking])
      assert.are.same({ "queued", w.cancelled }, seen[cancelling])
      assert.are.same({ "queued", "failed" }, seen[failing])
    end)

    it("a 429: its wait read from reset_at against the server's time, or from Retry-After", function()
      helper.configure { rate_limit = 1, rate_window = 3600 }
      local once = helper.client { max_retries = 0 }
      assert(once:list_calls { limit = 1 })
      local before = helper.now()
      local res, err = once:list_calls { limit = 1 }
      local after = helper.now()
      assert.is_nil(res)
      assert.are.same({ "api", 429, "rate_limit_exceeded", 1, true },
        { err.kind, err.status, err.code, err.attempts, err.retryable })
      assert.matches(w.request_id, err.request_id)
      assert.are.equal(1, err.details.limit)
      assert.matches(w.iso, err.details.reset_at)
      local reset = helper.epoch(err.details.reset_at)
      local low, high
      if w.retry_after_header then -- whole seconds, and it wins
        assert.are.equal(math.floor(err.retry_after), err.retry_after)
        low, high = math.ceil(reset - after), math.ceil(reset - before)
      elseif w.whole_seconds then -- meta's time is truncated too
        low, high = reset - math.floor(after), reset - math.floor(before)
      else
        low, high = reset - after - 1e-3, reset - before + 1e-3
      end
      assert.is_true(err.retry_after >= low and err.retry_after <= high,
        ("retry_after %s, expected between %s and %s"):format(err.retry_after, low, high))
    end)

    it("a 429: the client waits until this variant's answer says, then the read succeeds", function()
      helper.configure { rate_window = 1 } -- a 429's Retry-After: the end of the current second
      local id = assert(client:create_call(helper.params())).data.id
      local now = helper.now()
      local reset = w.whole_seconds and math.floor(now) + 1 or now + 0.03
      helper.fault { method = "GET", path = "/calls/" .. id, type = "status", status = 429,
        details = { limit = 100, reset_at = listing.iso8601(reset, w.whole_seconds) } }
      local res = assert(client:get_call(id))
      assert.are.equal(id, res.data.id)
      local gets = helper.journal("GET")
      assert.are.same({ 429, 200 }, { gets[1].status, gets[2].status })
      local first, retry = helper.epoch(gets[1].ts), helper.epoch(gets[2].ts)
      assert.is_true(retry >= reset, "the retry came after reset_at")
      if w.retry_after_header then
        assert.is_true(retry >= first + 1, "the retry came after Retry-After (1 s)")
      end
    end)
  end)
end

-- The alternate preset's Retry-After hides how its 429 body reads; without the header, the
-- wait comes from reset_at against error.timestamp (no meta), both in whole seconds.
describe('variant preset "alternate" without Retry-After', function()
  it("a 429: reset_at against error.timestamp, in whole seconds", function()
    helper.reset()
    helper.configure { variant = "alternate", rate_limit = 1, rate_window = 3600 }
    helper.configure { variant = { rate_limit_headers = "none" } }
    local client = helper.client { max_retries = 0 }
    assert(client:list_calls { limit = 1 })
    local before = helper.now()
    local _, err = client:list_calls { limit = 1 }
    local after = helper.now()
    assert.are.same({ 429, "rate_limit_exceeded" }, { err.status, err.code })
    local raw = emu.api("GET", "/calls?limit=1")
    assert.are.equal(429, raw.status)
    assert.is_nil(raw.json.meta)
    assert.matches(emu.ISO_S, raw.json.error.timestamp)
    assert.is_nil(raw.headers["retry-after"])
    local reset = helper.epoch(err.details.reset_at)
    local low, high = reset - math.floor(after), reset - math.floor(before)
    assert.is_true(err.retry_after >= low and err.retry_after <= high,
      ("retry_after %s, expected between %s and %s"):format(err.retry_after, low, high))
  end)
end)
