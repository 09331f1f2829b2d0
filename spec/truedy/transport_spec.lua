-- Timeouts, connection reuse and the engine's behaviour on the wire.
local helper = require "spec.support.helper"

describe("transport", function()
  before_each(helper.reset)

  it("honours the timeout when the server stalls before answering", function()
    helper.fault{ method = "POST", path = "/calls", type = "delay", seconds = 5 }
    local client = helper.client{ timeout = 0.5, max_retries = 0 }
    local started = helper.now()
    local res, err = client:create_call(helper.params())
    local elapsed = helper.now() - started
    assert.is_nil(res)
    assert.equal("network", err.kind)
    assert.equal(28, err.curl_code)
    assert.matches("timed out", err.message)
    assert.is_true(err.retryable)
    assert.is_true(elapsed >= 0.45, "gave up too early: " .. elapsed)
    assert.is_true(elapsed < 2, "timeout not honoured: " .. elapsed)
  end)

  it("honours the timeout when the body dribbles in", function()
    helper.fault{ method = "POST", path = "/calls", type = "slow_body", seconds = 5 }
    local client = helper.client{ timeout = 0.7, max_retries = 0 }
    local started = helper.now()
    local _, err = client:create_call(helper.params())
    local elapsed = helper.now() - started
    assert.equal("network", err.kind)
    assert.equal(28, err.curl_code)
    assert.is_true(elapsed < 2.5, "timeout not honoured: " .. elapsed)
  end)

  it("bounds the whole call by (retries + 1) timeouts plus the backoff", function()
    helper.fault{ method = "POST", path = "/calls", type = "delay", seconds = 5, count = 5 }
    local client = helper.client{ timeout = 0.3, max_retries = 2 }
    local started = helper.now()
    local _, err = client:create_call(helper.params())
    local elapsed = helper.now() - started
    assert.equal(3, err.attempts)
    assert.is_true(elapsed < 3 * 0.3 + 1.5, "took " .. elapsed)
  end)

  it("a per-call timeout overrides the client's", function()
    helper.fault{ method = "POST", path = "/calls", type = "delay", seconds = 3 }
    local client = helper.client{ timeout = 10, max_retries = 0 }
    local started = helper.now()
    local _, err = client:create_call(helper.params(), { timeout = 0.3 })
    assert.equal(28, err.curl_code)
    assert.is_true(helper.now() - started < 2)
  end)

  it("reports a refused connection as a retryable network error", function()
    -- port 1 on loopback: nothing listens there
    local client = helper.client{ base_url = "http://127.0.0.1:1/api/public/v1", max_retries = 1 }
    local res, err = client:create_call(helper.params())
    assert.is_nil(res)
    assert.equal("network", err.kind)
    assert.equal(7, err.curl_code)
    assert.equal(2, err.attempts)
    assert.is_true(err.retryable)
  end)

  it("reuses one connection for many calls on one client", function()
    local client = helper.client()
    for _ = 1, 5 do assert(client:create_call(helper.params())) end
    assert(client:list_calls())
    local entries = helper.journal()
    assert.equal(6, #entries)
    for i = 2, #entries do
      assert.equal(entries[1].connection, entries[i].connection, "request " .. i .. " used a new connection")
    end
    assert.equal(6, entries[6].connection_requests)
  end)

  it("keeps the connection across a retried failure", function()
    helper.fault{ method = "POST", path = "/calls", type = "status", status = 503 }
    local client = helper.client()
    assert(client:create_call(helper.params()))
    local entries = helper.journal()
    assert.equal(2, #entries)
    assert.equal(entries[1].connection, entries[2].connection)
  end)

  it("gives separate clients separate connections", function()
    local a, b = helper.client(), helper.client()
    assert(a:create_call(helper.params()))
    assert(b:create_call(helper.params()))
    local entries = helper.journal()
    assert.are_not.equal(entries[1].connection, entries[2].connection)
  end)
end)
