-- Retries that can never dial a person twice: one idempotency key for every
-- attempt of a create, retries only where they are safe and useful.
local helper = require "spec.support.helper"

local function keys_of(entries)
  local keys = {}
  for i, entry in ipairs(entries) do keys[i] = entry.headers["x-idempotency-key"] end
  return keys
end

describe("retries", function()
  before_each(helper.reset)

  it("retries 503s with the same idempotency key and creates exactly one call", function()
    helper.fault{ method = "POST", path = "/calls", type = "status", status = 503, count = 2 }
    local client = helper.client{ max_retries = 2 }
    local res, err = client:create_call(helper.params())
    assert.is_nil(err)
    assert.equal("queued", res.data.status)
    local posts = helper.journal("POST")
    assert.equal(3, #posts)
    local keys = keys_of(posts)
    assert.is_string(keys[1])
    assert.equal(keys[1], keys[2])
    assert.equal(keys[1], keys[3])
    assert.equal(posts[1].body, posts[3].body)
    assert.equal(1, #helper.list_calls_raw())
  end)

  it("gets the first call back when the connection dropped after the server created it", function()
    -- the server processes the request, then the answer is lost on the way
    helper.fault{ method = "POST", path = "/calls", type = "reset", when = "after" }
    local client = helper.client{ max_retries = 2 }
    local res = assert(client:create_call(helper.params(), { idempotency_key = "drop-1" }))
    local calls = helper.list_calls_raw()
    assert.equal(1, #calls, "the retry must replay, not dial again")
    assert.equal(calls[1].id, res.data.id)
    local posts = helper.journal("POST")
    assert.equal(2, #posts)
    assert.same({ "drop-1", "drop-1" }, keys_of(posts))
  end)

  it("gets the first call back after a truncated answer", function()
    helper.fault{ method = "POST", path = "/calls", type = "truncate", when = "after" }
    local res = assert(helper.client():create_call(helper.params()))
    local calls = helper.list_calls_raw()
    assert.equal(1, #calls)
    assert.equal(calls[1].id, res.data.id)
  end)

  it("gives up after max_retries and says how many attempts were made", function()
    helper.fault{ method = "POST", path = "/calls", type = "status", status = 500, count = 10 }
    local res, err = helper.client{ max_retries = 3 }:create_call(helper.params())
    assert.is_nil(res)
    assert.equal(500, err.status)
    assert.equal(4, err.attempts)
    assert.equal(4, #helper.journal("POST"))
    assert.matches(" after 4 attempts$", tostring(err))
    -- the key to retry by hand later, safely
    assert.equal(helper.journal("POST")[1].headers["x-idempotency-key"], err.idempotency_key)
  end)

  it("does not retry when max_retries is 0", function()
    helper.fault{ method = "POST", path = "/calls", type = "status", status = 503 }
    local res, err = helper.client{ max_retries = 0 }:create_call(helper.params())
    assert.is_nil(res)
    assert.equal(1, err.attempts)
    assert.equal(1, #helper.journal("POST"))
  end)

  it("per-call max_retries overrides the client's", function()
    helper.fault{ method = "POST", path = "/calls", type = "status", status = 503, count = 5 }
    local _, err = helper.client{ max_retries = 5 }:create_call(helper.params(), { max_retries = 1 })
    assert.equal(2, err.attempts)
  end)

  it("never retries a 422", function()
    local res, err = helper.client{ max_retries = 3 }:create_call(
      helper.params{ from_number = "+19995550000" })
    assert.is_nil(res)
    assert.equal(422, err.status)
    assert.equal(1, err.attempts)
    assert.equal(1, #helper.journal("POST"))
  end)

  it("never retries other 4xx answers", function()
    for _, status in ipairs({ 400, 401, 402, 403, 404, 409 }) do
      helper.reset()
      helper.fault{ method = "POST", path = "/calls", type = "status", status = status }
      local _, err = helper.client{ max_retries = 3 }:create_call(helper.params())
      assert.equal(status, err.status)
      assert.equal(1, #helper.journal("POST"), "retried a " .. status)
    end
  end)

  it("waits out a 429 until reset_at, then succeeds", function()
    helper.configure{ rate_limit = 1, rate_window = 2 }
    local client = helper.client{ max_retries = 2 }
    assert(client:create_call(helper.params()))
    local started = helper.now()
    local res, err = client:create_call(helper.params())
    local elapsed = helper.now() - started
    assert.is_nil(err)
    assert.equal("queued", res.data.status)
    local posts = helper.journal("POST")
    assert.equal(3, #posts)
    assert.equal(429, posts[2].status)
    assert.equal(201, posts[3].status)
    assert.equal(posts[2].headers["x-idempotency-key"], posts[3].headers["x-idempotency-key"])
    -- the retry came after the window reset, and not much later
    local limited_at, retried_at = helper.epoch(posts[2].ts), helper.epoch(posts[3].ts)
    assert.is_true(retried_at >= math.floor(limited_at / 2) * 2 + 2 - 0.01,
      "retried before the window reset")
    assert.is_true(elapsed < 4, "waited far too long: " .. elapsed)
    helper.configure{ rate_limit = 100 }
    assert.equal(2, #helper.list_calls_raw())
  end)

  it("honours a Retry-After header", function()
    helper.fault{ method = "POST", path = "/calls", type = "raw", status = 503,
                  headers = { ["Content-Type"] = "text/plain", ["Retry-After"] = "1" },
                  body = "busy" }
    local started = helper.now()
    local res = assert(helper.client{ max_retries = 1 }:create_call(helper.params()))
    local elapsed = helper.now() - started
    assert.equal("queued", res.data.status)
    assert.is_true(elapsed >= 1, "retried before Retry-After: " .. elapsed)
    assert.is_true(elapsed < 3, "waited far too long: " .. elapsed)
  end)

  it("gives a 429 back at once when the wait is longer than max_retry_wait", function()
    helper.configure{ rate_limit = 1, rate_window = 60 }
    local client = helper.client{ max_retries = 2, max_retry_wait = 0.5 }
    assert(client:create_call(helper.params()))
    local started = helper.now()
    local res, err = client:create_call(helper.params())
    assert.is_nil(res)
    assert.equal(429, err.status)
    assert.equal(1, err.attempts)
    assert.is_true(err.retry_after > 0.5)
    assert.is_true(helper.now() - started < 2)
  end)

  it("backs off between attempts, within the configured bounds", function()
    helper.fault{ method = "POST", path = "/calls", type = "status", status = 503, count = 3 }
    local started = helper.now()
    local res = assert(helper.client{ max_retries = 3, retry_base_delay = 0.1, retry_max_delay = 0.15 }
      :create_call(helper.params()))
    local elapsed = helper.now() - started
    assert.equal("queued", res.data.status)
    -- three waits, each between half the cap and the cap: 0.05+0.075+0.075 .. 0.1+0.15+0.15
    assert.is_true(elapsed >= 0.2, "no backoff: " .. elapsed)
    assert.is_true(elapsed < 2, "backoff not capped: " .. elapsed)
  end)

  it("retries reads too, without an idempotency key", function()
    local client = helper.client()
    local created = assert(client:create_call(helper.params()))
    helper.fault{ method = "GET", path = "/calls/" .. created.data.id, type = "status", status = 502 }
    local res = assert(client:get_call(created.data.id))
    assert.equal(created.data.id, res.data.id)
    local gets = helper.journal("GET")
    assert.equal(2, #gets)
    assert.is_nil(gets[1].headers["x-idempotency-key"])
  end)
end)
