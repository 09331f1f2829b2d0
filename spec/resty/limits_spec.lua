-- truedy.resty where it cannot work, or is set up wrong (spec/resty/edges.conf): the phases,
-- the missing directives, what cannot cross to the thread pool.
local app = require "spec.resty.app"
local emu = app.emu

describe("truedy.resty limits", function()
  local server

  setup(function()
    server = app.start { conf = "spec/resty/edges.conf", key = false, env = { TRUEDY_EDGES_KEY = emu.key } }
  end)
  teardown(function() if server then server:stop() end end)
  before_each(function()
    emu.reset()
    server:request("POST", "/reset")
  end)

  local function config_error(res, expected)
    assert.equal(200, res.status, res.body)
    local err = res.json.error
    assert.is_table(err, res.body)
    assert.equal("config", err.kind)
    assert.is_true(err.metatable)
    assert.equal(0, err.attempts)
    assert.matches("^truedy: config: ", err.line)
    assert.truthy(err.message:find(expected, 1, true), err.message)
    return err
  end

  local function raised(res, expected)
    assert.equal(200, res.status, res.body)
    assert.is_string(res.json.raised, res.body)
    assert.truthy(res.json.raised:find(expected, 1, true), res.json.raised)
  end

  it("refuses to load outside nginx, naming the plain module", function()
    local ok, err = pcall(require, "truedy.resty")
    assert.is_false(ok)
    assert.matches("truedy.resty needs nginx with lua-nginx-module 0.10.21", err, 1, true)
    assert.matches('use require "truedy"', err, 1, true)
  end)

  describe("configuration", function()
    it("says which env directive is missing when nginx hides TRUEDY_API_KEY", function()
      local err = config_error(server:request("POST", "/default"), "`env TRUEDY_API_KEY;`")
      assert.is_false(err.retryable)
      assert.equal(0, #app.posts())
    end)

    it("names the thread_pool directive when the pool does not exist", function()
      config_error(server:request("POST", "/new?case=pool"), "`thread_pool absent threads=8 max_queue=64;`")
      assert.equal(0, #app.posts())
    end)

    it("names the lua_shared_dict directive when the dict does not exist", function()
      config_error(server:request("POST", "/new?case=dict"), "`lua_shared_dict absent 1m;`")
    end)

    it("raises for an option whose value is a function: only data crosses", function()
      raised(server:request("POST", "/new?case=function"), "truedy.new: option 'timeout' is a function")
      raised(server:request("POST", "/new?case=call_option"), "create_call: option 'timeout' is a function")
      assert.equal(0, #app.posts())
    end)

    it("raises for an unknown option, as the plain module does", function()
      raised(server:request("POST", "/new?case=unknown"), "truedy.new: unknown option 'timout'")
    end)

    it("raises when a closed client is used", function()
      raised(server:request("POST", "/new?case=closed"), "truedy: the client is closed")
    end)

    it("refuses what is not data in the parameters with the plain module's own error", function()
      -- a table that contains itself cannot be copied to the thread pool at all; the plain
      -- module stops at 32 levels
      local res = server:request("POST", "/cyclic", { agent_id = emu.agent.id, phone_number = emu.to })
      local err = res.json.error
      assert.is_table(err, res.body)
      assert.equal("invalid_params", err.kind)
      assert.equal("metadata" .. (".self"):rep(30), err.field)
      assert.equal("is nested more than 32 levels deep (a table that contains itself?)", err.message)
      assert.equal(0, err.attempts)
      assert.is_true(err.metatable)
      -- a function where a value goes
      res = server:request("POST", "/cyclic?with=function", { agent_id = emu.agent.id, phone_number = emu.to })
      err = res.json.error
      assert.is_table(err, res.body)
      assert.equal("invalid_params", err.kind)
      assert.equal("metadata.handler", err.field)
      assert.equal("cannot be sent as JSON (it is a function)", err.message)
      assert.equal(0, #app.posts())
    end)
  end)

  describe("phases", function()
    local body = function() return { agent_id = emu.agent.id, phone_number = emu.to } end

    it("works in rewrite_by_lua and access_by_lua", function()
      for _, phase in ipairs { "rewrite", "access" } do
        local res = server:request("POST", "/" .. phase, body())
        assert.equal(200, res.status, res.body)
        assert.equal(phase, res.json.phase)
        assert.is_table(res.json.outcome.ok, res.body)
        assert.matches("^call_", res.json.outcome.ok.data.id)
      end
      assert.equal(2, #app.posts())
    end)

    it("works in an ngx.timer callback", function()
      local res = server:request("POST", "/timer", body())
      assert.is_true(res.json.started, res.body)
      local result = emu.eventually(function()
        local r = server:request("GET", "/timer-result")
        return not r.json.pending and r.json
      end, 15)
      assert.is_table(result, "the timer never reported")
      assert.is_table(result.ok, app.json.encode(result))
      assert.matches("^call_", result.ok.data.id)
      assert.equal(1, #app.posts())
    end)

    it("raises anywhere else, naming the phase", function()
      -- init_worker tried at start; set, header_filter, body_filter and log try on /phases
      server:request("GET", "/phases")
      local errors = emu.eventually(function()
        local r = server:request("GET", "/phase-errors")
        return r.json.log and r.json
      end, 10)
      assert.is_table(errors, "the log phase never reported")
      for _, phase in ipairs { "init_worker", "set", "header_filter", "body_filter", "log" } do
        assert.is_string(errors[phase], phase)
        assert.truthy(errors[phase]:find("create_call cannot run in the " .. phase .. " phase", 1, true),
          phase .. ": " .. errors[phase])
      end
      assert.equal(0, #app.posts())
    end)
  end)
end)
