-- truedy.pager: client:each_call (a for-loop iterator) and client:start_each_call (on the
-- engine, driven by client:poll) against the emulator's default variant.  The other pagination
-- shapes and page sizes run in variant_matrix_spec.lua.
local helper = require "spec.support.helper"
local emu = require "spec.emulator.emu"

local listing = require "spec.support.listing"

local list_queries, create_calls, listed_ids = listing.queries, listing.create_calls, listing.listed_ids
local ids_of, collect, poll_until_held = listing.ids_of, listing.collect, listing.poll_until_held

describe("client:each_call", function()
  before_each(function()
    helper.reset()
    helper.configure { clock_speed = 0 }
  end)

  it("gives every call once, newest first, a page at a time, moving offset by each page", function()
    local client = helper.client()
    create_calls(client, 7)
    local calls = collect(client:each_call { limit = 3 })
    assert.are.same(listed_ids(), ids_of(calls))
    assert.are.equal("queued", calls[1].status)
    local queries = list_queries()
    assert.are.equal(3, #queries, "7 calls in pages of 3, the last says has_more = false")
    for i, q in ipairs(queries) do
      assert.are.equal("3", q.limit)
      assert.are.equal(tostring((i - 1) * 3), q.offset or "0")
    end
    assert.is_nil(queries[1].offset, "the first page is the listing as asked: no offset added")
  end)

  it("sends no limit unless given, and stops when the answer says there is no more", function()
    local client = helper.client()
    create_calls(client, 3)
    assert.are.equal(3, #collect(client:each_call()))
    local queries = list_queries()
    assert.are.equal(1, #queries)
    assert.is_nil(queries[1].limit)
  end)

  it("passes the filters on, starts at the offset given, and leaves the caller's table alone", function()
    local client = helper.client()
    create_calls(client, 5)
    local filters = { agent_id = helper.agent.id, direction = "outbound", offset = 1, limit = 2 }
    local calls = collect(client:each_call(filters))
    local all = listed_ids()
    assert.are.same({ all[2], all[3], all[4], all[5] }, ids_of(calls))
    assert.are.same({ agent_id = helper.agent.id, direction = "outbound", offset = 1, limit = 2 }, filters)
    local queries = list_queries()
    assert.are.same({ "1", "3" }, { queries[1].offset, queries[2].offset })
    assert.are.equal("outbound", queries[2].direction)
    assert.are.equal(0, #collect(client:each_call { status = "failed" }), "a filter that matches nothing")
  end)

  it("asks for a page only when the loop wants its first call: a loop left early sends no more", function()
    local client = helper.client()
    create_calls(client, 6)
    local iterator = client:each_call { limit = 2 }
    assert.are.equal(0, #list_queries())
    assert.is_table(iterator())
    assert.is_table(iterator())
    assert.are.equal(1, #list_queries())
    assert.is_table(iterator())
    assert.are.equal(2, #list_queries())
  end)

  it("does not give a call twice when a new call pushes it onto the next page", function()
    local client = helper.client()
    create_calls(client, 5)
    local before = listed_ids()
    local given, created = {}, false
    for call in client:each_call { limit = 2 } do
      given[#given + 1] = call.id
      if #given == 2 and not created then
        created = true
        assert(client:create_call(helper.params())) -- newest first: everything moves one place on
      end
    end
    assert.are.same(before, given)
  end)

  it("raises the error object of a failed page, after the calls before it, with the offset to resume at", function()
    local client = helper.client { max_retries = 0 }
    create_calls(client, 5)
    local given = {}
    local ok, err = pcall(function()
      for call in client:each_call { limit = 2 } do
        given[#given + 1] = call.id
        if #given == 2 then
          helper.fault { method = "GET", path = "/calls", type = "status", status = 503 }
        end
      end
    end)
    assert.is_false(ok)
    assert.are.equal("table", type(err), tostring(err))
    assert.are.same({ "api", 503, 2 }, { err.kind, err.status, err.offset })
    assert.matches("^truedy: 503 ", tostring(err))
    assert.are.equal(2, #given)
    -- going on from err.offset gives the rest
    local rest = collect(client:each_call { limit = 2, offset = err.offset })
    local all = listed_ids()
    assert.are.same({ all[3], all[4], all[5] }, ids_of(rest))
  end)

  it("refuses bad filter values before sending (raised at the first step), and raises on misuse", function()
    local client = helper.client()
    local iterator = client:each_call { limit = 0 }
    local ok, err = pcall(iterator)
    assert.is_false(ok)
    assert.are.same({ "invalid_params", "limit", 0 }, { err.kind, err.field, err.offset })
    assert.is_nil(iterator(), "an iterator that failed is over")
    assert.has_error(function() client:each_call({}, { timout = 1 }) end, "each_call: unknown option 'timout'")
    assert.has_error(function() client:each_call({}, { on_call = print }) end, "each_call: unknown option 'on_call'")
    assert.has_error(function() client:each_call("ended") end, "each_call: filters must be a table, got string")
    assert.has_error(function() client:each_call({}, { limit = 5 }) end,
      "each_call: 'limit' is a filter, not an option: each_call({ limit = ... } [, options])")
    assert.has_error(function() client:each_call({}, { query = { offset = 4 } }) end)
    assert.has_error(function() client:each_call { colour = "red" }() end)
    assert.are.equal(0, #helper.journal())
  end)

  it("passes list_calls options on (query, retries)", function()
    local client = helper.client()
    create_calls(client, 2)
    helper.fault { method = "GET", path = "/calls", type = "status", status = 503 }
    local calls = collect(client:each_call({ limit = 5 }, { query = { sort = "newest" }, retries = 1 }))
    assert.are.equal(2, #calls)
    local queries = list_queries()
    assert.are.equal(2, #queries, "one 503, retried once")
    assert.are.equal("newest", queries[2].sort)
  end)

  describe("answers that do not add up", function()
    local function page_body(ids, pagination)
      local data = {}
      for i, id in ipairs(ids) do data[i] = { id = id, status = "queued" } end
      return emu.json.encode { data = data, meta = { request_id = "req_x" }, pagination = pagination }
    end

    local function raw_list(body, count)
      helper.fault { method = "GET", path = "/calls", type = "raw", status = 200, count = count or 1,
        headers = { ["Content-Type"] = "application/json" }, body = body }
    end

    it("stops at an empty page even when it says has_more", function()
      raw_list(page_body({}, { total = 9, limit = 2, offset = 0, has_more = true }))
      assert.are.equal(0, #collect(helper.client():each_call { limit = 2 }))
      assert.are.equal(1, #list_queries())
    end)

    it("raises when the server answers every offset with the same page", function()
      raw_list(page_body({ "call_a", "call_b" }, { total = 9, limit = 2, offset = 0, has_more = true }), 5)
      local given = {}
      local ok, err = pcall(function()
        for call in helper.client():each_call { limit = 2 } do given[#given + 1] = call.id end
      end)
      assert.is_false(ok)
      assert.are.same({ "call_a", "call_b" }, given)
      assert.are.same({ "response", 2 }, { err.kind, err.offset })
      assert.matches("ignore offset", err.message, 1, true)
    end)

    it("raises a response error when data is not a list", function()
      raw_list('{"data": {"id": "call_a"}, "meta": {}}')
      local ok, err = pcall(collect, helper.client():each_call())
      assert.is_false(ok)
      assert.are.equal("response", err.kind)
      assert.matches("data is not an array", err.message, 1, true)
    end)
  end)
end)

describe("client:start_each_call", function()
  before_each(function()
    helper.reset()
    helper.configure { clock_speed = 0 }
  end)

  it("gives pages and calls to on_page and on_call from client:poll, then on_done(count)", function()
    local client = helper.client()
    create_calls(client, 5)
    local events = {}
    local p = assert(client:start_each_call({ limit = 2 }, {
      on_page = function(calls, page, pg) events[#events + 1] = { "page", #calls, page.pagination.offset, pg } end,
      on_call = function(call) events[#events + 1] = { "call", call.id } end,
      on_done = function(count, err, pg) events[#events + 1] = { "done", count, err, pg } end,
    }))
    assert.is_false(p:done())
    assert.are.equal(0, #events, "nothing runs before a poll")
    local count = p:wait(10)
    assert.are.equal(5, count)
    assert.is_true(p:done())
    assert.are.equal("done", p:state())
    assert.are.same({ 5 }, { p:result() })
    local all = listed_ids()
    assert.are.same({
      { "page", 2, 0, p }, { "call", all[1] }, { "call", all[2] },
      { "page", 2, 2, p }, { "call", all[3] }, { "call", all[4] },
      { "page", 1, 4, p }, { "call", all[5] },
      { "done", 5, nil, p },
    }, events)
    assert.matches("^truedy.pager %(5 calls, done%)$", tostring(p))
  end)

  it("does not wait: the page is in flight while the caller goes on", function()
    local client = helper.client()
    create_calls(client, 1)
    helper.fault { method = "GET", path = "/calls", type = "hold" }
    local given = {}
    local p = assert(client:start_each_call(nil, { on_call = function(call) given[#given + 1] = call.id end }))
    assert.is_truthy(poll_until_held(client), "the page request reached the server")
    client:poll(0)
    assert.is_false(p:done())
    assert.are.equal("running", p:state())
    assert.has_error(function() p:result() end)
    emu.release()
    assert.are.equal(1, p:wait(10))
    assert.are.same(listed_ids(), given)
  end)

  it("a failed page ends it: on_done(nil, err) with the offset, after the calls before it", function()
    local client = helper.client { max_retries = 0 }
    create_calls(client, 3)
    local seen, done = 0, nil
    local p = assert(client:start_each_call({ limit = 2 }, {
      on_call = function()
        seen = seen + 1
        if seen == 2 then helper.fault { method = "GET", path = "/calls", type = "status", status = 500 } end
      end,
      on_done = function(count, err) done = { count, err } end,
    }))
    local res, err = p:wait(10)
    assert.is_nil(res)
    assert.are.same({ "api", 500, 2 }, { err.kind, err.status, err.offset })
    assert.are.equal(2, seen)
    assert.are.equal(err, done[2])
    assert.is_nil(done[1])
  end)

  it("cancel() while a page is in flight: done at once, on_done at the next poll, no more pages", function()
    local client = helper.client()
    create_calls(client, 3)
    helper.fault { method = "GET", path = "/calls", type = "hold" }
    local done
    local p = assert(client:start_each_call({ limit = 2 }, {
      on_call = function() error("no call was expected") end,
      on_done = function(count, err) done = { count, err } end,
    }))
    assert.is_truthy(poll_until_held(client))
    assert.is_true(p:cancel())
    assert.is_false(p:cancel(), "once")
    assert.is_true(p:done())
    local res, err = p:result()
    assert.is_nil(res)
    assert.are.same({ "cancelled", 0 }, { err.kind, err.offset })
    assert.is_nil(done, "on_done waits for a poll")
    client:poll(0)
    assert.are.equal(err, done[2])
    emu.release()
    assert.are.equal(1, #list_queries())
  end)

  it("cancel() from on_call stops the delivery: on_done runs after that call, no more pages", function()
    local client = helper.client()
    create_calls(client, 4)
    local given, done = {}, nil
    local p
    p = assert(client:start_each_call({ limit = 3 }, {
      on_call = function(call)
        given[#given + 1] = call.id
        if #given == 2 then assert.is_true(p:cancel()) end
      end,
      on_done = function(count, err) done = { count, err } end,
    }))
    local res, err = p:wait(10)
    assert.is_nil(res)
    assert.are.equal("cancelled", err.kind)
    assert.matches("after 2 calls", err.message, 1, true)
    assert.are.equal(2, #given)
    assert.are.equal(err, done[2])
    assert.are.equal(1, #list_queries())
  end)

  it("an on_call that raises: the poll running it raises that error, and the listing stops with it", function()
    local client = helper.client()
    create_calls(client, 3)
    local p = assert(client:start_each_call({ limit = 2 }, { on_call = function() error("boom", 0) end }))
    local ok, err = pcall(function() return p:wait(10) end)
    assert.are.same({ false, "boom" }, { ok, err })
    assert.is_true(p:done())
    assert.are.same({ nil, "boom" }, { p:result() })
    client:poll(0)
    assert.are.equal(1, #list_queries())
  end)

  it("refuses bad filters with nil, err and sends nothing; raises on misuse", function()
    local client = helper.client()
    local p, err = client:start_each_call({ offset = -1 }, { on_call = print })
    assert.is_nil(p)
    assert.are.same({ "invalid_params", "offset" }, { err.kind, err.field })
    assert.has_error(function() client:start_each_call({}) end,
      "start_each_call: give on_call or on_page (they receive the calls)")
    assert.has_error(function() client:start_each_call({}, { on_call = "print" }) end,
      "start_each_call: option 'on_call' must be a function")
    assert.has_error(function() client:start_each_call({}, { on_call = print, sleep = print }) end,
      "start_each_call: unknown option 'sleep'")
    assert.are.equal(0, #helper.journal())
  end)

  it("a page answered 429 waits for the reset like any request, then the listing goes on", function()
    local client = helper.client()
    create_calls(client, 3)
    local reset = helper.now() + 0.1
    local given = {}
    local p = assert(client:start_each_call({ limit = 2 }, {
      on_page = function(_, page)
        if page.pagination.offset == 0 then
          helper.fault { method = "GET", path = "/calls", type = "status", status = 429,
            details = { limit = 100, reset_at = listing.iso8601(reset) } }
        end
      end,
      on_call = function(call) given[#given + 1] = call.id end,
    }))
    assert.are.equal(3, p:wait(10))
    assert.are.same(listed_ids(), given)
    local gets = helper.journal("GET", "/api/public/v1/calls")
    assert.are.same({ 200, 429, 200 }, { gets[1].status, gets[2].status, gets[3].status })
    assert.is_true(helper.epoch(gets[3].ts) >= reset, "the retry came after the reset")
  end)

  it("p:wait(timeout) returns nothing when the time runs out first", function()
    local client = helper.client()
    helper.fault { method = "GET", path = "/calls", type = "hold" }
    local p = assert(client:start_each_call(nil, { on_page = function() end }))
    assert.is_truthy(poll_until_held(client))
    assert.are.equal(0, select("#", p:wait(0)))
    assert.is_false(p:done())
    emu.release()
    assert.are.equal(0, p:wait(10))
  end)
end)
