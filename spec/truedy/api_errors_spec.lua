-- Every way the server can say no, mapped into the one error object.
local helper = require "spec.support.helper"

local function no_retry_client(options)
  local merged = { max_retries = 0 }
  for k, v in pairs(options or {}) do merged[k] = v end
  return helper.client(merged)
end

local function fails(params, options)
  local res, err = no_retry_client(options):create_call(params or helper.params())
  assert.is_nil(res)
  assert.is_table(err)
  return err
end

describe("API errors", function()
  before_each(helper.reset)

  it("maps 401 unauthorized for an unknown key", function()
    local err = fails(nil, { api_key = "truedy_" .. string.rep("x", 32) })
    assert.equal("api", err.kind)
    assert.equal(401, err.status)
    assert.equal("unauthorized", err.code)
    assert.is_string(err.message)
    assert.matches("^req_", err.request_id)
    assert.is_false(err.retryable)
    assert.equal(1, err.attempts)
    assert.equal("truedy: 401 unauthorized: " .. err.message .. " (request_id=" .. err.request_id .. ")",
      tostring(err))
  end)

  it("maps 404 not_found for an unknown agent", function()
    local err = fails(helper.params{ agent_id = "agt_doesnotexist" })
    assert.equal(404, err.status)
    assert.equal("not_found", err.code)
    assert.matches("agt_doesnotexist", err.message)
  end)

  it("hides another organization's agent as not found", function()
    local err = fails(helper.params{ agent_id = helper.other_org_agent.id })
    assert.equal(404, err.status)
  end)

  it("maps 422 validation_error with details.field and reason", function()
    -- a valid E.164 number that is not one of the agent's: only the server knows
    local err = fails(helper.params{ from_number = "+19995550000" })
    assert.equal(422, err.status)
    assert.equal("validation_error", err.code)
    assert.equal("from_number", err.field)
    assert.equal("from_number", err.details.field)
    assert.is_string(err.details.reason)
    assert.is_false(err.retryable)
    assert.equal(("truedy: 422 validation_error: from_number: %s (request_id=%s)")
      :format(err.details.reason, err.request_id), tostring(err))
  end)

  it("maps 422 for a draft agent", function()
    local err = fails(helper.params{ agent_id = helper.draft_agent.id })
    assert.equal(422, err.status)
    assert.equal("agent_id", err.field)
  end)

  it("maps 422 no_phone_number_configured", function()
    local err = fails(helper.params{ agent_id = helper.agent_without_numbers.id })
    assert.equal(422, err.status)
    assert.equal("no_phone_number_configured", err.code)
  end)

  local scripted = {
    { 400, "bad_request" }, { 402, "payment_required" }, { 403, "forbidden" }, { 409, "conflict" },
    { 500, "internal_error" }, { 502, "provider_error" }, { 503, "service_unavailable" },
  }
  for _, case in ipairs(scripted) do
    local status, code = case[1], case[2]
    it("maps a scripted " .. status .. " " .. code, function()
      helper.fault{ method = "POST", path = "/calls", type = "status", status = status, code = code,
                    message = "scripted " .. code, details = { hint = "from the spec" } }
      local err = fails()
      assert.equal("api", err.kind)
      assert.equal(status, err.status)
      assert.equal(code, err.code)
      assert.equal("scripted " .. code, err.message)
      assert.equal("from the spec", err.details.hint)
      assert.equal(status >= 500, err.retryable)
    end)
  end

  it("turns a proxy's HTML 502 page into a clear error with an excerpt", function()
    helper.fault{ method = "POST", path = "/calls", type = "html", status = 502 }
    local err = fails()
    assert.equal("api", err.kind)
    assert.equal(502, err.status)
    assert.equal("bad_gateway", err.code)
    assert.matches("^text/html", err.content_type)
    assert.matches("502", err.excerpt)
    assert.is_nil(err.excerpt:find("<", 1, true), "tags are stripped from the excerpt")
    assert.matches("not the API's JSON", err.message)
    assert.is_true(err.retryable)
    assert.is_nil(tostring(err):find("\n", 1, true), "one line")
  end)

  it("turns an empty 503 into a clear error", function()
    helper.fault{ method = "POST", path = "/calls", type = "empty", status = 503 }
    local err = fails()
    assert.equal(503, err.status)
    assert.equal("service_unavailable", err.code)
    assert.equal("HTTP 503 with an empty body", err.message)
  end)

  it("reads the older envelope with request_id inside error", function()
    helper.configure{ variant = { error_meta = "inside_error" } }
    local err = fails(helper.params{ agent_id = "agt_nobody" })
    assert.equal(404, err.status)
    assert.equal("not_found", err.code)
    assert.is_string(err.request_id)
  end)

  it("reads a framework-style {detail = [...]} body", function()
    helper.fault{ method = "POST", path = "/calls", type = "raw", status = 422,
                  headers = { ["Content-Type"] = "application/json" },
                  body = '{"detail":[{"loc":["body","phone_number"],"msg":"bad number","type":"x"}]}' }
    local err = fails()
    assert.equal(422, err.status)
    assert.equal("validation_error", err.code)
    assert.equal("bad number", err.message)
    assert.equal("phone_number", err.field)
  end)

  it("takes the request id from an X-Request-Id header when the body has none", function()
    helper.fault{ method = "POST", path = "/calls", type = "raw", status = 500,
                  headers = { ["Content-Type"] = "text/plain", ["X-Request-Id"] = "req_from_header" },
                  body = "oops" }
    local err = fails()
    assert.equal("req_from_header", err.request_id)
    assert.equal("oops", err.excerpt)
  end)

  it("reports a 201 whose body is not JSON as a response error", function()
    helper.fault{ method = "POST", path = "/calls", type = "malformed_json", status = 201 }
    local err = fails()
    assert.equal("response", err.kind)
    assert.equal(201, err.status)
    assert.matches("not JSON", err.message)
    assert.is_false(err.retryable)
    assert.is_string(err.idempotency_key)
  end)

  it("refuses an oversized body without buffering it all", function()
    helper.fault{ method = "POST", path = "/calls", type = "oversized", bytes = 6 * 1024 * 1024 }
    local err = fails(nil, { max_response_bytes = 1024 * 1024 })
    assert.equal("response", err.kind)
    assert.matches("larger than the 1048576%-byte limit", err.message)
  end)

  it("reports a truncated body as a response error", function()
    helper.fault{ method = "POST", path = "/calls", type = "truncate" }
    local err = fails()
    assert.equal("response", err.kind)
    assert.matches("cut short", err.message)
    assert.is_true(err.retryable)
    assert.equal(18, err.curl_code)
  end)

  it("reports a connection closed before any answer as a network error", function()
    helper.fault{ method = "POST", path = "/calls", type = "reset" }
    local err = fails()
    assert.equal("network", err.kind)
    assert.is_number(err.curl_code)
    assert.is_true(err.retryable)
  end)

  it("never follows a redirect", function()
    helper.fault{ method = "POST", path = "/calls", type = "redirect", status = 302 }
    local err = fails(nil, { max_retries = 2 })
    assert.equal("api", err.kind)
    assert.equal(302, err.status)
    assert.equal("redirect_not_followed", err.code)
    assert.matches("does not follow redirects", err.message)
    assert.equal(1, err.attempts)
    -- one request only: nothing went to the Location
    assert.equal(1, #helper.journal())
  end)

  it("maps a 429 over the retry budget with retry_after", function()
    helper.configure{ rate_limit = 1, rate_window = 60 }
    local client = no_retry_client()
    assert(client:create_call(helper.params()))
    local res, err = client:create_call(helper.params())
    assert.is_nil(res)
    assert.equal(429, err.status)
    assert.equal("rate_limit_exceeded", err.code)
    assert.equal(1, err.details.limit)
    assert.is_string(err.details.reset_at)
    assert.is_true(err.retry_after > 0 and err.retry_after <= 60)
    assert.is_true(err.retryable)
  end)

  it("works with the other documented success shapes", function()
    helper.configure{ variant = { meta_time_key = "timestamp", call_shape = "phone_number",
                                  request_id_style = "uuid" } }
    local res = assert(no_retry_client():create_call(helper.params()))
    assert.equal(helper.to_number, res.data.phone_number)
    assert.is_string(res.meta.timestamp)
    assert.matches("^%x+%-%x+%-%x+%-%x+%-%x+$", res.meta.request_id)
  end)
end)
