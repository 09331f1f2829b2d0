-- truedy.resty's options (spec/resty/edges.conf, one worker): both spellings of every option,
-- for clients and per call, exactly as the plain module reads them (both at once raises, with
-- the plain module's words); the retry settings the worker applies between attempts are those
-- the plain module resolved; truedy.follow's wait_timeout and its older name.
local app = require "spec.resty.app"
local emu = app.emu
local truedy = require "truedy" -- the plain module, in the Lua running the specs

describe("truedy.resty options", function()
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

  -- A create through a new truedy.resty client: { client = options, call = options }.
  local function create(client_options, call_options)
    local res = server:request("POST", "/options", { client = client_options or {}, call = call_options })
    assert.equal(200, res.status, res.body)
    return res.json
  end

  -- What the plain module raises for the same options (its message, without a position).
  local function plain_raises(client_options, call_options)
    local options = { api_key = emu.key, base_url = emu.url .. emu.PREFIX }
    for k, v in pairs(client_options or {}) do options[k] = v end
    local ok, message = pcall(function()
      local c = truedy.new(options)
      -- parameters refused before sending, should the options pass
      local _, res = pcall(c.create_call, c, {}, call_options)
      c:close()
      error(res, 0)
    end)
    assert.is_false(ok)
    return (tostring(message):gsub("^[^:]*:%d+: ", "")) -- where it was raised: not the same file
  end

  local function failing(count)
    emu.fault { method = "POST", path = "/calls", type = "status", status = 503, count = count }
  end

  local fast = { retry_base_delay = 0.01, retry_max_delay = 0.02 }
  local function with(extra)
    local t = {}
    for k, v in pairs(fast) do t[k] = v end
    for k, v in pairs(extra) do t[k] = v end
    return t
  end

  describe("retries and max_retries", function()
    for _, name in ipairs { "retries", "max_retries" } do
      it("a client's " .. name .. " is the count the worker retries", function()
        failing(5)
        local out = create(with { [name] = 1 })
        assert.is_table(out.error, app.json.encode(out))
        assert.equal(2, out.error.attempts)
        assert.equal(2, #app.posts())
      end)

      it("a call's " .. name .. " overrides the client's", function()
        failing(5)
        local out = create(with { retries = 3 }, { [name] = 0 })
        assert.equal(1, out.error.attempts)
        assert.equal(1, #app.posts())
        failing(5)
        out = create(with { max_retries = 0 }, { [name] = 2 })
        assert.equal(3, out.error.attempts)
        assert.matches(" after 3 attempts$", out.error.line)
      end)
    end

    it("without either, the plain module's default (2 retries)", function()
      failing(2)
      local out = create(fast)
      assert.is_table(out.ok, app.json.encode(out))
      assert.equal(3, #app.posts())
    end)

    it("raises when a client is given both spellings, as the plain module does", function()
      local out = create(with { retries = 1, max_retries = 1 })
      assert.is_string(out.raised, app.json.encode(out))
      assert.equal(plain_raises { retries = 1, max_retries = 1 }, out.raised:gsub("^[^:]*:%d+: ", ""))
      assert.matches("options 'retries' and 'max_retries' are the same option", out.raised, 1, true)
    end)
  end)

  describe("per call, both spellings at once raise before anything is sent", function()
    for _, pair in ipairs { { "retries", "max_retries", 1 }, { "attempt_timeout", "timeout", 5 },
      { "retry_max_wait", "max_retry_wait", 5 } } do
      it(pair[1] .. " and " .. pair[2], function()
        local options = { [pair[1]] = pair[3], [pair[2]] = pair[3] }
        local out = create(fast, options)
        assert.is_string(out.raised, app.json.encode(out))
        assert.equal(plain_raises(nil, options), out.raised)
        assert.equal(0, #app.posts())
      end)
    end

    it("and so do the same pairs given to the client", function()
      for _, pair in ipairs { { "attempt_timeout", "timeout" }, { "retry_max_wait", "max_retry_wait" } } do
        local options = { [pair[1]] = 5, [pair[2]] = 5 }
        local out = create(options)
        assert.equal(plain_raises(options), out.raised:gsub("^[^:]*:%d+: ", ""))
      end
    end)
  end)

  it("refuses a per-call retry setting out of range with the plain module's words", function()
    for _, options in ipairs { { retries = 11 }, { max_retries = 1.5 }, { retry_base_delay = -1 },
      { retry_max_delay = "8" }, { max_retry_wait = 3601 } } do
      local out = create(fast, options)
      assert.equal(plain_raises(nil, options), out.raised)
    end
    assert.equal(0, #app.posts())
  end)

  describe("attempt_timeout and timeout bound each attempt", function()
    for _, name in ipairs { "attempt_timeout", "timeout" } do
      it("per call: " .. name, function()
        -- an answer held until the client gives up, an attempt allowed 0.2 s: it times out (curl
        -- error 28)
        emu.fault { method = "POST", path = "/calls", type = "hold", seconds = 30, count = 1 }
        local out = create(fast, { [name] = 0.2, retries = 0 })
        assert.is_table(out.error, app.json.encode(out))
        assert.equal("network", out.error.kind)
        assert.equal(28, out.error.curl_code)
        assert.equal(1, out.error.attempts)
      end)

      it("for a client: " .. name, function()
        emu.fault { method = "POST", path = "/calls", type = "hold", seconds = 30, count = 1 }
        local out = create(with { [name] = 0.2, retries = 0 })
        assert.equal(28, out.error.curl_code)
      end)
    end
  end)

  describe("retry_max_wait and max_retry_wait bound a 429's wait", function()
    for i, name in ipairs { "retry_max_wait", "max_retry_wait" } do
      it("per call: " .. name .. ", also for the gate the 429 raised", function()
        -- a 429 that asks for 30 s: more than the call allows, so it comes back at once
        emu.fault { method = "POST", path = "/calls", type = "raw", status = 429, count = 1,
          headers = { ["Content-Type"] = "application/json", ["Retry-After"] = "30" },
          body = '{"error":{"code":"rate_limit_exceeded","message":"Rate limit exceeded"}}' }
        -- a configuration of its own: the thread VM's plain client of a configuration pauses
        -- for the 429 too, and /reset forgets only the gate
        local client_options = with { connect_timeout = 10 + i }
        local out = create(client_options, { [name] = 1 })
        assert.is_table(out.error, app.json.encode(out))
        assert.equal(429, out.error.status)
        assert.equal(1, out.error.attempts)
        assert.is_true(out.error.retry_after > 1)
        assert.equal(1, #app.posts())

        -- the next call meets the gate (30 s), more than its own limit: not sent
        out = create(client_options, { [name] = 1 })
        assert.equal(429, out.error.status)
        assert.equal(0, out.error.attempts)
        assert.matches("more than retry_max_wait; not sent", out.error.message, 1, true)
        assert.equal(1, #app.posts())
      end)
    end
  end)

  describe("follow", function()
    local function placed_call()
      local res = server:request("POST", "/dial", { agent_id = emu.agent.id, phone_number = emu.to })
      return res.json.ok.data.id
    end

    for _, form in ipairs { "", "&module=1" } do
      for _, name in ipairs { "wait_timeout", "timeout" } do
        it(("%s gives the call as it stands when the wait ends (%s)"):format(name,
          form == "" and "client:follow" or "truedy.follow"), function()
          local id = placed_call()
          local res = server:request("GET", ("/follow?%s=0.3&interval=0.1&id=%s%s"):format(name, id, form))
          assert.equal(200, res.status, res.body)
          assert.is_false(res.json.finished, res.body)
          assert.is_false(truedy.is_terminal(res.json.status), res.body) -- the call lasts minutes
        end)
      end
    end

    it("has no non-blocking form here: truedy.follow.start says what to use instead", function()
      local res = server:request("GET", "/follow?start=1&id=call_x")
      assert.is_string(res.json.raised, res.body)
      assert.matches("follow.start needs the plain module's engine", res.json.raised, 1, true)
      assert.matches("ngx.thread.spawn or ngx.timer.at", res.json.raised, 1, true)
      assert.equal(0, #emu.journal())
    end)

    it("raises when given both", function()
      local id = placed_call()
      local res = server:request("GET", "/follow?timeout=1&wait_timeout=1&id=" .. id)
      assert.is_string(res.json.raised, res.body)
      assert.matches("options 'wait_timeout' and 'timeout' are the same option", res.json.raised, 1, true)
    end)
  end)
end)
