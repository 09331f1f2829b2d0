-- Scripted faults: each type, matching, counting, before/after.
-- Transport-level behaviour is observed with curl, whose exit codes name what went wrong.
local emu = require "spec.emulator.emu"

local CURL_EMPTY_REPLY, CURL_PARTIAL, CURL_TIMEOUT = 52, 18, 28

local function create(args, opts)
  return emu.curl("POST", "/calls", emu.call_body(), args, opts)
end

-- The journal entry of the first request with this method.
local function journal_first(method)
  for _, e in ipairs(emu.journal()) do
    if e.method == method then return e end
  end
end

describe("emulator faults", function()
  before_each(emu.reset)

  describe("type", function()
    it("status: that status with the JSON error envelope, defaults per status", function()
      emu.fault { type = "status", status = 503 }
      local res = emu.api("POST", "/calls", emu.call_body())
      assert.are.equal(503, res.status)
      assert.are.equal("service_unavailable", res.json.error.code)
      assert.matches("^req_", res.json.meta.request_id)
      assert.are.same({}, emu.list_calls(), "before: the API did not process it")
    end)

    it("status: the contract's code for each documented status when none is given", function()
      local codes = { [402] = "payment_required", [403] = "forbidden", [409] = "conflict",
        [500] = "internal_error", [502] = "provider_error" }
      for status, code in pairs(codes) do
        emu.fault { type = "status", status = status }
        local res = emu.api("GET", "/calls")
        assert.are.equal(status, res.status)
        assert.are.equal(code, res.json.error.code, "status " .. status)
        assert.is_string(res.json.error.message)
      end
    end)

    it("status: with code, message and details given", function()
      emu.fault { type = "status", status = 402, code = "payment_required", message = "No credits",
        details = { credits = 0 } }
      local res = emu.api("GET", "/calls")
      assert.are.equal(402, res.status)
      assert.are.same({ code = "payment_required", message = "No credits", details = { credits = 0 } },
        res.json.error)
    end)

    it("status: answers after `seconds` when given", function()
      emu.fault { type = "status", status = 504, seconds = 0.5 }
      local t0 = emu.now()
      assert.are.equal(504, emu.api("GET", "/calls").status)
      assert.is_true(emu.now() - t0 >= 0.45)
    end)

    it("status 429: default details carry limit and reset_at", function()
      emu.fault { type = "status", status = 429 }
      local res = emu.api("GET", "/calls")
      assert.are.equal(429, res.status)
      assert.are.equal("rate_limit_exceeded", res.json.error.code)
      assert.are.equal(100, res.json.error.details.limit)
      assert.matches(emu.ISO_US, res.json.error.details.reset_at)
    end)

    it("html: an HTML error page like a proxy's", function()
      emu.fault { type = "html", status = 502 }
      local r = create()
      assert.are.equal(502, r.status)
      assert.matches("^text/html", r.content_type)
      assert.matches("<html>", r.body, 1, true)
      assert.matches("502 Bad Gateway", r.body, 1, true)
    end)

    it("empty: 502 by default", function()
      emu.fault { type = "empty" }
      local r = create()
      assert.are.equal(502, r.status)
      assert.are.equal("", r.body)
      assert.is_nil(r.content_type)
    end)

    it("empty: a status with an empty body", function()
      emu.fault { type = "empty", status = 503 }
      local r = create()
      assert.are.equal(0, r.exit)
      assert.are.equal(503, r.status)
      assert.are.equal(0, r.size)
      assert.are.equal("", r.body)
    end)

    it("delay: waits before the headers, then answers normally", function()
      emu.fault { type = "delay", seconds = 0.6 }
      local r = create()
      assert.are.equal(201, r.status)
      assert.is_true(r.time_starttransfer >= 0.55, "time to first byte " .. r.time_starttransfer)
      assert.are.equal(1, #emu.list_calls())
    end)

    it("delay before: a client that gives up leaves no call behind", function()
      emu.fault { type = "delay", seconds = 1 }
      local r = create({}, { max_time = 0.3 })
      assert.are.equal(CURL_TIMEOUT, r.exit)
      emu.sleep(1.2)
      assert.are.same({}, emu.list_calls())
      local e = emu.eventually(function()
        local j = emu.journal()
        return j[1] and j[1].status ~= emu.null and j[1]
      end)
      assert.are.equal(499, e.status)
      assert.are.equal("delay", e.fault)
    end)

    it("delay after: the call exists although the client gave up", function()
      emu.fault { type = "delay", seconds = 1, when = "after" }
      local r = create({}, { max_time = 0.3 })
      assert.are.equal(CURL_TIMEOUT, r.exit)
      assert.are.equal(1, #emu.list_calls())
    end)

    it("slow_body: headers first, then the body dribbled over the given time", function()
      emu.fault { type = "slow_body", seconds = 1 }
      local r = create()
      assert.are.equal(0, r.exit)
      assert.are.equal(201, r.status)
      assert.is_true(r.time_total >= 0.9, "total " .. r.time_total)
      assert.is_true(r.time_starttransfer < 0.5, "first byte at " .. r.time_starttransfer)
      assert.are.equal("queued", emu.json.decode(r.body).data.status)
    end)

    it("reset: the connection closes without any response", function()
      emu.fault { type = "reset" }
      local r = create()
      assert.are.equal(CURL_EMPTY_REPLY, r.exit)
      assert.are.same({}, emu.list_calls())
      local e = journal_first("POST")
      assert.are.equal("reset", e.fault)
      assert.are.equal(444, e.status)
    end)

    it("truncate: a Content-Length for the whole body, half of it, then the connection closes", function()
      emu.fault { type = "truncate" }
      local r = create()
      assert.are.equal(CURL_PARTIAL, r.exit)
      assert.are.equal(201, r.status)
      local length = tonumber(r.headers:match("[Cc]ontent%-[Ll]ength: (%d+)"))
      assert.is_true(r.size > 0 and r.size < length)
      assert.are.equal(math.floor(length / 2), r.size)
      assert.is_false(pcall(emu.json.decode, r.body))
      -- the journal shows the status line that went out (a reset, which sends none, shows 444)
      local e = journal_first("POST")
      assert.are.same({ 201, "truncate" }, { e.status, e.fault })
      assert.are.equal(1, #emu.list_calls())
    end)

    it("truncate: exactly `bytes` of the body", function()
      emu.fault { type = "truncate", bytes = 10 }
      local r = emu.curl("GET", "/calls")
      assert.are.equal(CURL_PARTIAL, r.exit)
      assert.are.equal(10, r.size)
      assert.are.equal('{"data":[]', r.body)
    end)

    it("malformed_json: application/json that does not parse", function()
      emu.fault { type = "malformed_json" }
      local r = create()
      assert.are.equal(201, r.status)
      assert.matches("^application/json", r.content_type)
      assert.is_true(#r.body > 0)
      assert.is_false(pcall(emu.json.decode, r.body))
    end)

    it("oversized: a huge but valid JSON body, 8 MiB by default", function()
      emu.fault { type = "oversized" }
      local r = create()
      assert.are.equal(201, r.status)
      assert.are.equal(8 * 1024 * 1024, r.size)
      assert.are.equal("queued", emu.json.decode(r.body).data.status)
    end)

    it("oversized: of the given size and status", function()
      emu.fault { type = "oversized", bytes = 100000, status = 200 }
      local r = emu.curl("GET", "/calls")
      assert.are.equal(200, r.status)
      assert.are.equal(100000, r.size)
      assert.are.equal(100000, tonumber(r.headers:match("[Cc]ontent%-[Ll]ength: (%d+)")))
      assert.is_table(emu.json.decode(r.body))
    end)

    it("oversized: exactly `bytes` of valid JSON, however small, in every variant", function()
      emu.config { variant = { request_id_style = "uuid", meta_time_key = "timestamp" } }
      for _, bytes in ipairs { 64, 100, 150, 200, 65536, 65537, 200000 } do
        emu.fault { type = "oversized", bytes = bytes }
        local r = emu.curl("GET", "/calls")
        assert.are.equal(bytes, r.size, "bytes = " .. bytes)
        local ok, doc = pcall(emu.json.decode, r.body)
        assert.is_true(ok, "valid JSON at bytes = " .. bytes .. ": " .. r.body:sub(1, 100))
        assert.is_table(doc.data)
      end
    end)

    it("oversized: up to 64 MiB, streamed (the worker never holds the body), larger refused", function()
      -- the peak resident memory of every worker of the emulator under test, in KiB
      local function worker_peaks()
        local master = emu.read_file(emu.dir() .. "/nginx.pid"):match("%d+")
        local peaks = {}
        for pid in emu.sh("grep -l '^PPid:[[:space:]]*" .. master .. "$' /proc/[0-9]*/status"):gmatch("/proc/(%d+)/") do
          peaks[pid] = tonumber((emu.read_file("/proc/" .. pid .. "/status") or ""):match("VmHWM:%s*(%d+)"))
        end
        return peaks
      end
      local bytes = 64 * 1024 * 1024
      local before = worker_peaks()
      emu.fault { type = "oversized", bytes = bytes }
      local r = emu.curl("GET", "/calls")
      assert.are.equal(0, r.exit)
      assert.are.equal(bytes, r.size)
      assert.are.equal("queued", emu.json.decode(r.body).data.status)
      for pid, peak in pairs(worker_peaks()) do
        local growth = peak - (before[pid] or 0)
        assert.is_true(growth < 32 * 1024, "worker " .. pid .. "'s peak memory grew by " .. growth .. " KiB")
      end

      local res = emu.request { method = "POST", path = "/__emulator/faults",
        body = '{"type": "oversized", "bytes": ' .. (bytes + 1) .. "}" }
      assert.are.equal(400, res.status)
      assert.matches("64 MiB", res.json.error.message, 1, true)
    end)

    it("redirect: a 3xx to another host, by default", function()
      emu.fault { type = "redirect" }
      local r = create()
      assert.are.equal(302, r.status)
      assert.matches("^http://127%.0%.0%.2:%d+/api/public/v1/calls$", r.redirect_url)
      emu.fault { type = "redirect", status = 307, location = "http://example.invalid/x" }
      r = create()
      assert.are.equal(307, r.status)
      assert.are.equal("http://example.invalid/x", r.redirect_url)
    end)

    it("raw: exactly the given status, headers and body", function()
      emu.fault { type = "raw", status = 429,
        headers = { ["Retry-After"] = "2", ["Content-Type"] = "application/json" },
        body = '{"error":{"code":"rate_limit_exceeded","message":"slow down"}}' }
      local res = emu.api("GET", "/calls")
      assert.are.equal(429, res.status)
      assert.are.equal("2", res.headers["retry-after"])
      assert.are.equal('{"error":{"code":"rate_limit_exceeded","message":"slow down"}}', res.body)
    end)

    it("204 and 304: no body and no Content-Length, and the connection stays usable", function()
      for _, spec in ipairs { { type = "status", status = 204 }, { type = "status", status = 304 },
        { type = "html", status = 204 }, { type = "oversized", status = 304 }, { type = "raw", status = 204 } } do
        emu.reset()
        emu.fault(spec)
        -- one curl, two requests: the second reuses the connection after the first's answer
        local url = emu.quote(emu.url .. emu.PREFIX .. "/calls")
        local dir = emu.tmpdir()
        local out = emu.sh("curl -s --max-time 5 -H " .. emu.quote("Authorization: Bearer " .. emu.key) .. " -D "
          .. emu.quote(dir .. "/h") .. " -o /dev/null -o /dev/null -w '%{http_code} ' " .. url .. " " .. url)
        local headers = emu.read_file(dir .. "/h")
        emu.sh("rm -rf " .. emu.quote(dir))
        local what = spec.type .. " " .. spec.status
        assert.are.equal(spec.status .. " 200 ", out, what)
        local first = headers:match("^(.-)\r\n\r\n")
        assert.is_nil(first:lower():find("content-length", 1, true), what .. ": " .. first)
        local j = emu.journal()
        assert.are.same({ spec.status, 200 }, { j[1].status, j[2].status }, what)
        assert.are.equal(j[1].connection, j[2].connection, what)
      end
    end)
  end)

  describe("matching", function()
    it("applies to the next N matching requests only", function()
      emu.fault { method = "GET", path = "/calls", type = "status", status = 500, count = 2 }
      assert.are.equal(500, emu.api("GET", "/calls").status)
      assert.are.equal(201, emu.api("POST", "/calls", emu.call_body()).status) -- other method
      assert.are.equal(404, emu.api("GET", "/calls/call_x").status)             -- other path
      assert.are.equal(500, emu.api("GET", "/calls").status)
      assert.are.equal(200, emu.api("GET", "/calls").status)                    -- used up
      local f = emu.control("GET", "/faults").data[1]
      assert.are.equal(2, f.used)
      assert.are.equal(0, f.remaining)
    end)

    it("matches any method and path with *, and methods in any case", function()
      emu.fault { method = "*", path = "*", type = "status", status = 503, count = 2 }
      assert.are.equal(503, emu.api("GET", "/calls/anything").status)
      assert.are.equal(503, emu.api("DELETE", "/nowhere").status)
      emu.fault { method = "post", path = "/calls", type = "status", status = 500 }
      assert.are.equal(500, emu.api("POST", "/calls", emu.call_body()).status)
    end)

    it("uses the first-added fault first", function()
      emu.fault { type = "status", status = 500 }
      emu.fault { type = "status", status = 502 }
      assert.are.equal(500, emu.api("GET", "/calls").status)
      assert.are.equal(502, emu.api("GET", "/calls").status)
      assert.are.equal(200, emu.api("GET", "/calls").status)
    end)

    it("never touches the control surface", function()
      emu.fault { type = "reset", count = 10 }
      assert.are.equal("ok", emu.control("GET", "/health").data.status)
      assert.are.equal(10, emu.control("GET", "/faults").data[1].remaining)
    end)

    it("before: not processed, not rate counted; after: processed, rate counted, then replaced", function()
      emu.config { rate_limit = 1, rate_window = 86400 }
      emu.fault { method = "POST", path = "/calls", type = "status", status = 500 }
      assert.are.equal(500, emu.api("POST", "/calls", emu.call_body()).status)
      -- the budget of 1 is untouched: the next request passes, the one after is limited
      assert.are.equal(200, emu.api("GET", "/calls").status)
      assert.are.equal(429, emu.api("GET", "/calls").status)
      emu.config { rate_limit = 0 }
      assert.are.same({}, emu.list_calls())

      -- the other organization's key has a budget of its own
      local theirs = { key = emu.other_key }
      emu.config { rate_limit = 1 }
      emu.fault { method = "POST", path = "/calls", type = "status", status = 500, when = "after" }
      assert.are.equal(500, emu.api("POST", "/calls", emu.call_body { agent_id = emu.other_agent.id }, theirs).status)
      assert.are.equal(429, emu.api("GET", "/calls", nil, theirs).status, "the faulted request used the budget")
      emu.config { rate_limit = 0 }
      assert.are.equal(1, #emu.list_calls(emu.other_key))
      local e = emu.journal()
      local posts = {}
      for _, entry in ipairs(e) do
        if entry.method == "POST" then posts[#posts + 1] = entry end
      end
      assert.are.same({ 500, 500 }, { posts[1].status, posts[2].status })
      assert.are.same({ "status", "status" }, { posts[1].fault, posts[2].fault })
      assert.is_number(posts[1].fault_id)
    end)
  end)

  describe("when inside", function()
    local function keyed(key, opts)
      opts = opts or {}
      opts.headers = { ["x-idempotency-key"] = key }
      return emu.api("POST", "/calls", emu.call_body(), opts)
    end

    it("status: the API's own answer, after auth and the rate limit (counted), with no call", function()
      emu.config { rate_limit = 2, rate_window = 86400 }
      emu.fault { method = "POST", path = "/calls", type = "status", status = 503, when = "inside" }
      -- refused credentials are answered before the handler: the fault stays unused
      assert.are.equal(401, emu.api("POST", "/calls", emu.call_body(), { key = false }).status)
      assert.are.equal(1, emu.control("GET", "/faults").data[1].remaining)
      local res = emu.api("POST", "/calls", emu.call_body())
      assert.are.equal(503, res.status)
      assert.are.equal("service_unavailable", res.json.error.code)
      assert.are.equal(200, emu.api("GET", "/calls").status)
      assert.are.equal(429, emu.api("GET", "/calls").status, "the faulted request was counted")
      emu.config { rate_limit = 0 }
      assert.are.same({}, emu.list_calls())
      local e = journal_first("POST")
      assert.are.same({ 401, emu.null }, { e.status, e.fault })
    end)

    it("status: a non-5xx answer is stored for the idempotency key and replayed; a 5xx is not", function()
      emu.fault { method = "POST", path = "/calls", type = "status", status = 402, when = "inside" }
      local first = keyed("inside-1")
      assert.are.equal(402, first.status)
      local again = keyed("inside-1")
      assert.are.equal(first.body, again.body, "the 402 is replayed")
      assert.are.same({}, emu.list_calls())

      emu.fault { method = "POST", path = "/calls", type = "status", status = 500, when = "inside" }
      assert.are.equal(500, keyed("inside-2").status)
      assert.are.equal(201, keyed("inside-2").status, "a 5xx was not stored: the retry is processed")
      assert.are.equal(1, #emu.list_calls())
    end)

    it("delay: sleeps where the handler runs, then the handler answers", function()
      emu.fault { method = "GET", path = "/calls", type = "delay", seconds = 0.5, when = "inside" }
      local t0 = emu.now()
      assert.are.equal(200, emu.api("GET", "/calls").status)
      assert.is_true(emu.now() - t0 >= 0.45)
    end)

    it("delay: a client that gives up lets go of the idempotency lock, so its retry goes through", function()
      emu.fault { method = "POST", path = "/calls", type = "delay", seconds = 3, when = "inside" }
      local r = create({ "-H", "X-Idempotency-Key: inside-3" }, { max_time = 0.3 })
      assert.are.equal(CURL_TIMEOUT, r.exit)
      local e = emu.eventually(function()
        local j = journal_first("POST")
        return j and j.status ~= emu.null and j
      end)
      assert.are.equal(499, e.status)
      local t0 = emu.now()
      local retry = keyed("inside-3")
      assert.are.equal(201, retry.status)
      assert.is_true(emu.now() - t0 < 1, "the retry did not wait for a lock")
      assert.are.equal(1, #emu.list_calls())
    end)

    it("is for status, delay and hold faults only", function()
      local res = emu.request { method = "POST", path = "/__emulator/faults",
        body = '{"type": "html", "when": "inside"}' }
      assert.are.equal(400, res.status)
      assert.matches("status, delay and hold", res.json.error.message, 1, true)
    end)
  end)

  describe("control", function()
    it("lists faults with their id and uses, deletes one, clears all", function()
      local a = emu.fault { type = "html", status = 504, count = 3 }
      local b = emu.fault { type = "delay", seconds = 0 }
      assert.is_number(a.id)
      assert.are_not.equal(a.id, b.id)
      assert.are.equal("before", a.when)
      assert.are.equal("*", a.method)
      assert.are.equal(3, a.remaining)
      local list = emu.control("GET", "/faults").data
      assert.are.equal(2, #list)
      emu.control("DELETE", ("/faults/%d"):format(a.id))
      list = emu.control("GET", "/faults").data
      assert.are.equal(1, #list)
      assert.are.equal(b.id, list[1].id)
      emu.control("DELETE", "/faults")
      assert.are.same({}, emu.control("GET", "/faults").data)
      assert.are.equal(200, emu.api("GET", "/calls").status)
    end)

    local bad = {
      '{"type": "explode"}', '{"type": "status"}', '{"type": "status", "status": 99}',
      '{"type": "delay", "seconds": -1}', '{"type": "reset", "count": 0}', '{"type": "reset", "when": "during"}',
      '{"type": "reset", "path": "calls"}', '{"type": "html", "colour": "red"}', '{"type": "redirect", "status": 200}',
      '{"type": "raw", "status": 200, "headers": {"X": "a\\nb"}}', '[]', '{',
      -- nothing that breaks HTTP's framing
      '{"type": "status", "status": 100}', '{"type": "raw", "status": 101}', '{"type": "empty", "status": 199}',
      '{"type": "raw", "status": 200, "headers": {"Content-Length": "abc"}}',
      '{"type": "raw", "status": 200, "headers": {"Content-Length": "5"}, "body": "hello world"}',
      '{"type": "raw", "status": 200, "headers": {"content-length": " 11"}, "body": "hello world"}',
      '{"type": "raw", "status": 200, "headers": {"Transfer-Encoding": "chunked"}, "body": "x"}',
      '{"type": "raw", "status": 200, "headers": {"X": "a\\u0001b"}}',
      '{"type": "raw", "status": 204, "body": "x"}',
      '{"type": "raw", "status": 304, "headers": {"Content-Length": "0"}}',
    }
    for _, body in ipairs(bad) do
      it("refuses " .. body .. " with 400", function()
        local res = emu.request { method = "POST", path = "/__emulator/faults", body = body }
        assert.are.equal(400, res.status)
        assert.are.equal("bad_request", res.json.error.code)
        assert.are.same({}, emu.control("GET", "/faults").data)
      end)
    end
  end)
end)
