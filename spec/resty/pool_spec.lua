-- truedy.resty and nginx's thread pool (spec/resty/edges.conf, one worker): max_pending keeps
-- the pool's queue from ever being full (on lua-nginx-module 0.10.23 a full queue kills the
-- worker), a request that went away gives its place back, follow sleeps without blocking, and
-- the pace spaces requests.
local app = require "spec.resty.app"
local helper_epoch = require("spec.support.helper").epoch
local emu = app.emu

-- The pool `tiny` has one thread and a queue of two: max_pending 2 is its safe bound.
local TINY = "?pool=tiny&max_pending=2"

describe("truedy.resty and the thread pool", function()
  local server

  setup(function()
    server = app.start { conf = "spec/resty/edges.conf", key = false, env = { TRUEDY_EDGES_KEY = emu.key } }
  end)
  teardown(function() if server then server:stop() end end)
  before_each(function()
    emu.reset()
    server:request("POST", "/reset")
  end)
  after_each(function() emu.release() end)

  local function body() return { agent_id = emu.agent.id, phone_number = emu.to } end
  local function pending() return server:request("GET", "/pending" .. TINY).json.pending end

  -- What shows that nginx's own queue limit was met, or that a worker died.
  local function assert_no_overflow()
    local log = server:error_log()
    assert.is_nil(log:find("queue overflow", 1, true), "nginx's thread pool queue overflowed")
    assert.is_nil(log:find("exited on signal", 1, true), "a worker died")
  end

  it("refuses a request beyond max_pending itself, before nginx's queue is full", function()
    emu.fault { method = "POST", path = "/calls", type = "hold", count = 2 }
    local a = server:background("POST", "/dial" .. TINY, body())
    local b = server:background("POST", "/dial" .. TINY, body())
    -- one thread: one call at the API, the other waiting in nginx's queue
    assert.is_table(emu.wait_held(1), "no call reached the API")
    assert.is_truthy(emu.eventually(function() return pending() == 2 end, 10), "two tasks were never pending")

    local refused = server:request("POST", "/dial" .. TINY, body())
    local err = refused.json.error
    assert.is_table(err, refused.body)
    assert.equal("config", err.kind)
    assert.is_true(err.metatable)
    assert.is_true(err.retryable)
    assert.equal(0, err.attempts)
    assert.truthy(err.message:find("(max_pending = 2)", 1, true), err.message)

    -- release the first, then the second (which reaches the API only then)
    assert.equal(1, #emu.release())
    assert.is_table(emu.wait_held(1), "the queued call never reached the API")
    assert.equal(1, #emu.release())
    for _, waiter in ipairs { a, b } do
      local placed = waiter.wait()
      assert.is_table(placed.json and placed.json.ok, placed.body)
    end
    assert.equal(0, pending())
    assert.equal(2, #app.posts())
    assert_no_overflow()
  end)

  it("never lets nginx's queue fill, however many requests come at once", function()
    local pids = server:worker_pids()
    local batch = {}
    for i = 1, 40 do batch[i] = { method = "POST", path = "/dial" .. TINY, body = body() } end
    local answers = server:parallel(batch)
    local placed, refused = 0, 0
    for _, a in ipairs(answers) do
      assert.equal(200, a.status, a.body)
      if a.json.ok then
        placed = placed + 1
      else
        assert.equal("config", a.json.error.kind, a.body)
        assert.truthy(a.json.error.message:find("max_pending", 1, true), a.body)
        refused = refused + 1
      end
    end
    assert.equal(40, placed + refused)
    assert.is_true(placed >= 2)
    assert.equal(placed, #app.posts())
    assert.same(pids, server:worker_pids(), "the worker was replaced")
    assert_no_overflow()
  end)

  it("says lua_worker_thread_vm_pool_size is too small when max_pending is larger", function()
    -- edges.conf: a VM pool of 8, the pool `truedy` has 4 threads and a queue of 16
    local LARGE = "?max_pending=10"
    emu.fault { method = "POST", path = "/calls", type = "hold", count = 8 }
    local dials = {}
    for i = 1, 8 do dials[i] = server:background("POST", "/dial" .. LARGE, body()) end
    assert.is_table(emu.wait_held(4), "four calls never reached the API")
    assert.is_truthy(emu.eventually(function()
      return server:request("GET", "/pending" .. LARGE).json.pending == 8
    end, 10), "eight tasks were never pending")

    local refused = server:request("POST", "/dial" .. LARGE, body())
    local err = refused.json.error
    assert.is_table(err, refused.body)
    assert.equal("config", err.kind)
    assert.is_true(err.retryable)
    assert.truthy(err.message:find("lua_worker_thread_vm_pool_size must be at least max_pending (10)", 1, true),
      err.message)

    assert.is_truthy(emu.eventually(function()
      emu.release()
      return server:request("GET", "/pending" .. LARGE).json.pending == 0
    end, 15), "the held calls never ended")
    for i = 1, 8 do
      local placed = dials[i].wait()
      assert.is_table(placed.json and placed.json.ok, placed.body)
    end
    assert_no_overflow()
  end)

  it("gets the place of a request that went away back when its task ends", function()
    emu.fault { method = "POST", path = "/calls", type = "hold", count = 2 }
    -- lua_check_client_abort on: when curl hangs up (after 1 s), nginx ends the request and its
    -- coroutine never resumes; the tasks in the pool go on
    local a = server:background("POST", "/dial-abortable" .. TINY, body(), 1)
    local b = server:background("POST", "/dial-abortable" .. TINY, body(), 1)
    assert.is_table(emu.wait_held(1), "no call reached the API")
    assert.is_truthy(emu.eventually(function() return a.done() and b.done() end, 10), "curl never hung up")
    a.wait()
    b.wait()
    assert.equal(2, pending())

    -- let both tasks end: each place comes back though nobody waits for it any more
    assert.is_truthy(emu.eventually(function()
      emu.release()
      return pending() == 0
    end, 15), "the places of the tasks that lost their request never came back")
    local placed = server:request("POST", "/dial" .. TINY, body())
    assert.is_table(placed.json.ok, placed.body)
    assert_no_overflow()
  end)

  it("keeps a client, and its connection, in the thread VM from one request to the next", function()
    for _ = 1, 3 do
      local placed = server:request("POST", "/dial", body())
      assert.is_table(placed.json.ok, placed.body)
    end
    local posts = app.posts()
    assert.equal(3, #posts)
    -- one worker, one request at a time: nginx hands the same VM back, whose client reuses
    -- its kept-alive connection
    assert.equal(posts[1].connection, posts[3].connection)
    assert.equal(posts[1].connection_requests + 2, posts[3].connection_requests)
  end)

  it("follows a call with ngx.sleep: the worker answers meanwhile", function()
    local placed = server:request("POST", "/dial", body())
    local id = placed.json.ok.data.id
    local following = server:background("GET", "/follow?timeout=15&interval=0.1&id=" .. id)
    -- it has polled at least twice (so it slept between), and goes on: the call has not ended
    assert.is_truthy(emu.eventually(function()
      local gets = 0
      for _, e in ipairs(emu.journal()) do
        if e.method == "GET" and e.path == emu.PREFIX .. "/calls/" .. id then gets = gets + 1 end
      end
      return gets >= 2
    end, 10), "follow did not poll")
    local ping = server:request("GET", "/ping")
    assert.is_true(ping.json.pong)
    assert.is_false(following.done())

    emu.advance(3600) -- the call ends
    local followed = following.wait()
    assert.equal(200, followed.status, followed.body)
    assert.is_true(followed.json.finished)
    assert.equal("ended", followed.json.status)
  end)

  it("spaces requests by the pace, across requests of the worker", function()
    -- per_minute = 30: a slot every 2 s
    local answers = server:parallel {
      { method = "POST", path = "/dial?per_minute=30", body = body() },
      { method = "POST", path = "/dial?per_minute=30", body = body() },
    }
    for _, a in ipairs(answers) do assert.is_table(a.json and a.json.ok, a.body) end
    local posts = app.posts()
    assert.equal(2, #posts)
    -- slots 2 s apart; arrival times vary by far less than the 0.5 s allowed here
    assert.is_true(helper_epoch(posts[2].ts) - helper_epoch(posts[1].ts) >= 1.5,
      posts[1].ts .. " and " .. posts[2].ts .. " are not a pace apart")

    -- the next slot is more than max_retry_wait away: held back, nothing sent
    local held = server:request("POST", "/dial?per_minute=30&max_retry_wait=0.5", body())
    local err = held.json.error
    assert.is_table(err, held.body)
    assert.equal("api", err.kind)
    assert.equal("rate_limit_exceeded", err.code)
    assert.equal(0, err.attempts)
    assert.is_true(err.retryable)
    assert.is_true(err.retry_after > 0.5)
    assert.matches("per_minute", err.line, 1, true)
    assert.equal(2, #app.posts())
  end)
end)
