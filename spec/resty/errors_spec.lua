-- truedy.resty: errors come back from the thread pool as the plain module's error objects, their
-- metatable put back: the example answers each with tostring(err) and logs it with ngx.log,
-- which prints the line only for a table with __tostring (it raises for a bare copy).
local app = require "spec.resty.app"
local emu = app.emu

describe("truedy.resty errors in the example nginx", function()
  local server

  setup(function() server = app.start { workers = 1 } end)
  teardown(function() if server then server:stop() end end)
  before_each(emu.reset)

  -- The error of a failed /dial (or read), checked to have come with its metatable.
  local function failed(res, what)
    assert.is_table(res.json, res.body)
    local err = res.json.error
    assert.is_table(err, res.body)
    assert.is_string(err.kind)
    assert.matches("^truedy: ", err.line)
    -- ngx.log printed the same line: it calls __tostring, so the metatable was there
    local log = server:error_log()
    assert.truthy(log:find((what or "dial") .. " failed: " .. err.line, 1, true),
      "the error log lacks the line: " .. err.line)
    return err
  end

  it("invalid_params: refused before sending, with the field", function()
    local res = server:dial { agent_id = emu.agent.id, phone_number = "12" }
    assert.equal(422, res.status)
    local err = failed(res)
    assert.equal("invalid_params", err.kind)
    assert.equal("phone_number", err.field)
    assert.equal(0, err.attempts)
    assert.is_false(err.retryable)
    assert.matches("^truedy: invalid_params: phone_number: must be an E%.164", err.line)
    assert.equal(0, #app.posts())
  end)

  it("api: the server's status, code and request id", function()
    local res = server:dial { agent_id = "agt_nobody", phone_number = emu.to }
    assert.equal(404, res.status)
    local err = failed(res)
    assert.equal("api", err.kind)
    assert.equal(404, err.status)
    assert.equal("not_found", err.code)
    assert.matches("^req_", err.request_id)
    assert.equal("truedy: 404 not_found: Agent not found: agt_nobody (request_id=" .. err.request_id .. ")",
      err.line)
  end)

  it("api on a read: GET /calls/{id} of an unknown call", function()
    local res = server:request("GET", "/calls/call_nope")
    assert.equal(404, res.status)
    local err = failed(res, "get_call")
    assert.equal("api", err.kind)
    assert.equal("not_found", err.code)
  end)

  it("network: a connection closed without an answer, retried, then given back", function()
    -- (libcurl itself sends once more when a kept-alive connection turns out closed: more
    -- requests than attempts may reach the server)
    emu.fault { method = "POST", path = "/calls", type = "reset", count = 20 }
    local res = server:dial { agent_id = emu.agent.id, phone_number = emu.to }
    assert.equal(502, res.status)
    local err = failed(res)
    assert.equal("network", err.kind)
    assert.is_true(err.retryable)
    assert.equal(3, err.attempts)
    assert.is_number(err.curl_code)
    assert.matches("^truedy: network: .* after 3 attempts$", err.line)
    -- every attempt carried the same key
    local posts = app.posts()
    assert.is_true(#posts >= 3)
    for i = 2, #posts do
      assert.equal(app.header(posts[1], "x-idempotency-key"), app.header(posts[i], "x-idempotency-key"))
    end
  end)

  it("response: a 201 whose body is not JSON, not retried", function()
    emu.fault { method = "POST", path = "/calls", type = "malformed_json", count = 1 }
    local res = server:dial { agent_id = emu.agent.id, phone_number = emu.to }
    assert.equal(502, res.status)
    local err = failed(res)
    assert.equal("response", err.kind)
    assert.equal(201, err.status)
    assert.equal(1, err.attempts)
    assert.matches("^truedy: response: ", err.line)
    assert.equal(1, #app.posts())
  end)

  it("response: an answer nested deeper than the thread pool's copy can carry", function()
    -- 110 levels of arrays inside data: the plain module decodes it (up to 128), the copy out
    -- of the thread VM stops at 100 tables
    local body = '{"data":{"id":"call_deep","x":' .. ("["):rep(110) .. ("]"):rep(110)
      .. '},"meta":{"request_id":"req_deep"}}'
    emu.fault { method = "POST", path = "/calls", type = "raw", status = 201, count = 1,
      headers = { ["Content-Type"] = "application/json" }, body = body }
    local res = server:dial { agent_id = emu.agent.id, phone_number = emu.to }
    assert.equal(502, res.status)
    local err = failed(res)
    assert.equal("response", err.kind)
    assert.equal("req_deep", err.request_id)
    assert.matches("nested more than 99 levels deep", err.line)
    assert.is_false(err.retryable)
  end)

  it("a deep but crossable answer arrives whole", function()
    local body = '{"data":{"id":"call_deepish","status":"queued","x":' .. ("["):rep(90) .. '"bottom"'
      .. ("]"):rep(90) .. '},"meta":{"request_id":"req_deepish"}}'
    emu.fault { method = "GET", path = "/calls/call_deepish", type = "raw", status = 200, count = 1,
      headers = { ["Content-Type"] = "application/json" }, body = body }
    local res = server:request("GET", "/calls/call_deepish")
    assert.equal(200, res.status, res.body)
    local x = res.json.x
    for _ = 1, 89 do x = x[1] end
    assert.same({ "bottom" }, x)
  end)
end)
