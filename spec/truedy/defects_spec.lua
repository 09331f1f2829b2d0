-- The defects a hostile review found (issue 6), one describe each.  Crash
-- reproductions run in a child interpreter and check its exit status, so a
-- crash cannot take the whole run down; the same code also runs in process
-- where that is safe, for `make valgrind` / `make sanitize` to watch.
local helper = require "spec.support.helper"
local truedy = require "truedy"
local cjson = require("cjson").new()

local function run_child(body, env)
  return helper.run_lua(helper.child_script(body), env)
end

describe("a client closed while one of its own calls runs", function()
  before_each(helper.reset)

  for _, method in ipairs({ "create_call", "get_call", "list_calls" }) do
    it("survives options whose __index closes it (" .. method .. ")", function()
      local status, output = run_child(string.format([[
        local c = client()
        local o = setmetatable({}, { __index = function() c:close() end })
        local arg = ({ create_call = params, get_call = "call_x", list_calls = {} })[%q]
        local res, err = c:%s(arg, o)
        print(res, err and err.kind, err and err.attempts)
        print(pcall(c.%s, c, arg))
      ]], method, method, method))
      assert.equal(0, status, output)
      -- the call answers "cancelled, nothing sent"; later use raises
      assert.matches("^nil\tcancelled\t0\n", output)
      assert.matches("false\t[^\n]*the client is closed", output)
    end)
  end

  it("ignores a params __index that would close it: params are read raw", function()
    local status, output = run_child([[
      local c = client()
      local p = setmetatable({ agent_id = params.agent_id, phone_number = params.phone_number },
                             { __index = function() c:close() end })
      local res, err = c:create_call(p)
      print(res and res.data.status or tostring(err), tostring(c))
    ]])
    assert.equal(0, status, output)
    assert.matches("^queued\ttruedy.client %(", output)
  end)

  it("survives finalizers that close it at any allocation (default GC)", function()
    helper.configure{ rate_limit = 0 }
    local status, output = run_child([[
      collectgarbage("setpause", 50) -- collect often: finalizers land everywhere
      local outcomes = {}
      for _ = 1, 300 do
        local c = client{ max_retries = 0 }
        on_collect(function() c:close() end)
        local ok, res, err = pcall(c.create_call, c, params)
        local what = not ok and "raised: " .. tostring(res)
          or res and "ok" or err.kind
        outcomes[what] = (outcomes[what] or 0) + 1
      end
      for what, n in pairs(outcomes) do print(what, n) end
    ]])
    assert.equal(0, status, output)
    -- every call either went through or says it was cancelled; nothing else
    for line in output:gmatch("[^\n]+") do
      local what = line:match("^(.-)\t%d+$")
      assert.truthy(what == "ok" or what == "cancelled"
        or (what and what:match("the client is closed")), line)
    end
  end)

  it("releases libcurl's objects when finalizers close it mid-call (429 bodies)", function()
    -- in process: make valgrind / make sanitize see a leaked share handle
    local old_pause = collectgarbage("setpause", 0) -- a collection at every step
    local clients = {}
    for i = 1, 40 do
      helper.fault{ method = "POST", path = "/calls", type = "status", status = 429,
                    details = { limit = 1, reset_at = "2000-01-01T00:00:00Z" } }
      local c = helper.client{ max_retries = 0 }
      clients[i] = c
      helper.on_collect(function() c:close() end)
      -- a collection may close it before the call (which then raises), during
      -- it (cancelled), or after (the 429 comes back)
      local ok, res, err = pcall(c.create_call, c, helper.params())
      assert.truthy(not ok and tostring(res):match("the client is closed")
        or res == nil and (err.kind == "api" or err.kind == "cancelled"), tostring(err or res))
    end
    collectgarbage("setpause", old_pause)
    collectgarbage()
    collectgarbage()
    for _, c in ipairs(clients) do
      c:close() -- (a no-op for those a finalizer closed)
      local stats = c:stats()
      assert.is_true(stats.closed)
      assert.is_true(stats.released) -- nothing held back by a busy count
    end
  end)

  it("stops a started call at close; its handle stays readable", function()
    local c = helper.client()
    helper.fault{ method = "POST", path = "/calls", type = "delay", seconds = 0.5 }
    local h = c:start_call(helper.params())
    c:close()
    assert.is_true(h:done())
    local res, err = h:result()
    assert.is_nil(res)
    assert.equal("cancelled", err.kind)
    assert.is_true(err.retryable)
    assert.is_string(err.idempotency_key)
    assert.is_true(c:stats().released)
    assert.equal(1, c:stats().live_requests) -- the handle's own
    h = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    assert.equal(0, c:stats().live_requests)
  end)
end)

describe("the base URL's scheme", function()
  before_each(helper.reset)

  it("is judged from one parse, so http:/host (one slash) never goes through a proxy", function()
    local port = helper.base_url:match(":(%d+)/")
    for _, url in ipairs({ "http:/127.0.0.1:" .. port .. "/api/public/v1",
                           "HTTP:/localhost:" .. port .. "/api/public/v1",
                           "hTtP://127.0.0.1:" .. port .. "/api/public/v1" }) do
      local status, output = helper.run_lua([[
        local truedy = require "truedy"
        local client = assert(truedy.new{ max_retries = 0 })
        local res, err = client:list_calls()
        print(res and "ok" or tostring(err))
      ]], { TRUEDY_API_KEY = helper.api_key, TRUEDY_BASE_URL = url,
            http_proxy = "http://127.0.0.1:1", HTTP_PROXY = "http://127.0.0.1:1",
            ALL_PROXY = "http://127.0.0.1:1", all_proxy = "http://127.0.0.1:1" })
      assert.equal(0, status, output)
      assert.equal("ok\n", output, url)
    end
  end)

  it("shows the normalised URL", function()
    local port = helper.base_url:match(":(%d+)/")
    local c = assert(truedy.new{ api_key = helper.api_key, base_url = "HTTP:/127.0.0.1:" .. port .. "/api/public/v1/" })
    assert.equal("truedy.client (http://127.0.0.1:" .. port .. "/api/public/v1)", tostring(c))
  end)
end)

describe("tostring(err)", function()
  before_each(helper.reset)

  it("stays one printable line whatever the server puts in its fields", function()
    local nasty = "a\nb\rc\27[2Jd\0e\226\128\168f\194\155g"
    helper.fault{ method = "POST", path = "/calls", type = "raw", status = 422,
                  headers = { ["Content-Type"] = "application/json", ["X-Request-Id"] = "req_hdr" },
                  body = cjson.encode{ error = { code = "bad\ncode", message = nasty,
                                                 details = { field = "f\r\nX", reason = "r\n" .. nasty } },
                                       meta = { request_id = "id\n2" } } }
    local _, err = helper.client{ max_retries = 0 }:create_call(helper.params())
    local line = tostring(err)
    assert.is_nil(line:find("[%c\127]"), line)
    assert.is_nil(line:find("\194[\128-\159]"), line) -- no C1 controls
    assert.is_nil(line:find("\226\128[\168\169]"), line) -- no line separators
    assert.matches("bad\\ncode", line, 1, true)
    assert.matches("\\x1b[2J", line, 1, true)
    -- the fields keep what the server sent
    assert.equal("bad\ncode", err.code)
    assert.equal("f\r\nX", err.field)
    assert.equal("id\n2", err.request_id)
  end)

  it("escapes bytes that are not UTF-8", function()
    local line = truedy.format_error{ kind = "network", message = "x\255\254y" }
    assert.equal("truedy: network: x\\xff\\xfey", line)
  end)
end)

describe("a duration of -0.0", function()
  before_each(helper.reset)

  it("is sent as \"0s\", for max_duration and join_timeout", function()
    assert(helper.client():create_call(helper.params{ call_settings = { max_duration = -0.0, join_timeout = -0.0 } }))
    local body = cjson.decode(helper.journal("POST")[1].body)
    assert.equal("0s", body.call_settings.max_duration)
    assert.equal("0s", body.call_settings.join_timeout)
  end)
end)

describe("integers in responses", function()
  before_each(helper.reset)

  local function decoded(body)
    helper.fault{ method = "GET", path = "/calls", type = "raw", status = 200,
                  headers = { ["Content-Type"] = "application/json" }, body = body }
    return assert(helper.client():list_calls()).data
  end

  it("never change silently above 2^53", function()
    local data = decoded('{"data":{"a":9007199254740993,"b":1234567890123456789,"c":9007199254740991,'
      .. '"d":-9007199254740991,"e":-9007199254740993,"f":1e300}}')
    if math.type then
      -- exact below 2^53: integers
      assert.equal("integer", math.type(data.c))
      assert.equal(9007199254740991, data.c)
      assert.equal("integer", math.type(data.d))
      -- above: floats (lua-cjson 2.1.0 already rounded them), never a wrong integer
      assert.equal("float", math.type(data.a))
      assert.equal("float", math.type(data.b))
      assert.equal("float", math.type(data.e))
      assert.equal("float", math.type(data.f))
    else
      assert.equal(2 ^ 53 - 1, data.c)
    end
    assert.equal(2 ^ 53, data.a) -- the nearest double, as a float
    assert.equal(1234567890123456768, data.b)
  end)
end)

describe("params with a metatable", function()
  before_each(helper.reset)

  it("are read raw: a field only reachable through __index is missing", function()
    local p = setmetatable({ phone_number = helper.to_number }, { __index = { agent_id = helper.agent.id } })
    local res, err = helper.client():create_call(p)
    assert.is_nil(res)
    assert.equal("invalid_params", err.kind)
    assert.equal("agent_id", err.field)
    assert.equal(0, #helper.journal())
  end)
end)

describe("the API key", function()
  before_each(helper.reset)

  it("is refused under 16 bytes, after the options' types are checked", function()
    assert.has_error(function() truedy.new{ api_key = "short", timeout = "x" } end,
      "truedy.new: option 'timeout' must be a number, got string")
    local client, err = truedy.new{ api_key = "truedy_short", base_url = helper.base_url }
    assert.is_nil(client)
    assert.equal("config", err.kind)
    assert.is_nil(err.message:find("truedy_short", 1, true))
    assert.truthy(truedy.new{ api_key = string.rep("k", 16), base_url = helper.base_url })
  end)

  local function escaped(key)
    return (key:gsub(".", function(ch) return string.format("\\u%04x", ch:byte()) end))
  end

  it("is redacted when a server echoes it JSON-escaped, in errors", function()
    local key = helper.api_key
    helper.fault{ method = "POST", path = "/calls", type = "raw", status = 500,
                  headers = { ["Content-Type"] = "application/json" },
                  body = '{"error":{"code":"internal_error","message":"echo ' .. escaped(key)
                    .. '","details":{"' .. escaped(key) .. '":"' .. escaped(key) .. '"}}}' }
    local _, err = helper.client{ max_retries = 0 }:create_call(helper.params())
    assert.equal(500, err.status)
    for _, text in ipairs(helper.all_strings(err)) do
      assert.is_nil(text:find(key, 1, true), "key in: " .. text)
    end
    assert.equal("echo [redacted]", err.message)
    assert.equal("[redacted]", err.details["[redacted]"])
  end)

  it("is redacted when a server echoes it JSON-escaped, in a success envelope", function()
    local key = helper.api_key
    helper.fault{ method = "GET", path = "/calls", type = "raw", status = 200,
                  headers = { ["Content-Type"] = "application/json" },
                  body = '{"data":[{"note":"' .. escaped(key) .. '","n":1}],"meta":{"x":"' .. escaped(key) .. '"}}' }
    local res = assert(helper.client():list_calls())
    for _, text in ipairs(helper.all_strings(res)) do
      assert.is_nil(text:find(key, 1, true), "key in: " .. text)
    end
    assert.equal("[redacted]", res.data[1].note)
  end)
end)

describe("truedy.follow on a malformed answer", function()
  before_each(helper.reset)

  it("returns a response error at once when the 200 has no data object", function()
    helper.fault{ method = "GET", path = "/calls/call_x", type = "raw", status = 200,
                  headers = { ["Content-Type"] = "application/json" }, body = '{"meta":{}}' }
    local call, err = truedy.follow(helper.client(), "call_x", { timeout = 5, interval = 0.01 })
    assert.is_nil(call)
    assert.equal("response", err.kind)
    assert.equal(1, #helper.journal("GET"))
  end)

  it("returns a response error at once when data has no string status", function()
    helper.fault{ method = "GET", path = "/calls/call_x", type = "raw", status = 200,
                  headers = { ["Content-Type"] = "application/json" }, body = '{"data":[]}' }
    local call, err = truedy.follow(helper.client(), "call_x", { timeout = 5, interval = 0.01 })
    assert.is_nil(call)
    assert.equal("response", err.kind)
    assert.equal(1, #helper.journal("GET"))
  end)
end)
