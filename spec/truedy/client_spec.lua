-- The client object: options, configuration errors, lifetime, and the
-- promise that the API key never shows.
local helper = require "spec.support.helper"
local truedy = require "truedy"

describe("the module", function()
  it("exposes its version, the JSON null and the default base URL", function()
    assert.matches("^%d+%.%d+%.%d+$", truedy.VERSION)
    assert.equal("https://api.truedy.ai/api/public/v1", truedy.DEFAULT_BASE_URL)
    assert.equal(require("cjson").null, truedy.null)
    assert.is_string(truedy.LIBCURL_VERSION)
  end)

  it("makes random UUIDv4 idempotency keys", function()
    local seen = {}
    for _ = 1, 100 do
      local key = truedy.new_idempotency_key()
      assert.matches("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$", key)
      assert.is_nil(seen[key])
      seen[key] = true
    end
  end)
end)

describe("truedy.new", function()
  before_each(helper.reset)

  it("returns a config error without an API key", function()
    local status, output = helper.run_lua([[
      local truedy = require "truedy"
      local client, err = truedy.new{ base_url = "http://127.0.0.1:9/x" }
      print(client, err.kind, err.message)
    ]])
    assert.equal(0, status)
    assert.matches("^nil\tconfig\tno API key", output)
  end)

  it("takes the key and URL from the environment when not given", function()
    local status, output = helper.run_lua([[
      local truedy = require "truedy"
      local client = assert(truedy.new{ max_retries = 0 })
      print(tostring(client))
      local res, err = client:list_calls()
      print(res and #res.data or tostring(err))
    ]], { TRUEDY_API_KEY = helper.api_key, TRUEDY_BASE_URL = helper.base_url })
    assert.equal(0, status)
    assert.equal("truedy.client (" .. helper.base_url .. ")\n0\n", output)
  end)

  it("refuses plain http to a host that is not loopback", function()
    local client, err = truedy.new{ api_key = helper.api_key, base_url = "http://api.example.com/v1" }
    assert.is_nil(client)
    assert.equal("config", err.kind)
    assert.matches("unencrypted", err.message)
    -- opting in explicitly is allowed (no request is made here)
    assert.is_truthy(truedy.new{ api_key = helper.api_key, base_url = "http://api.example.com/v1",
                                 allow_insecure_http = true })
  end)

  it("accepts http to loopback names and https anywhere", function()
    for _, url in ipairs({ "http://127.0.0.1:8080/v1", "http://localhost/v1", "http://[::1]:80/v1",
                           "https://api.truedy.ai/api/public/v1", "https://self-hosted.example/v1/" }) do
      assert.is_truthy(truedy.new{ api_key = helper.api_key, base_url = url }, url)
    end
  end)

  it("refuses other schemes, credentials in the URL, and garbage", function()
    for _, url in ipairs({ "ftp://127.0.0.1/x", "file:///etc/passwd", "https://user:pw@api.truedy.ai/v1",
                           "https://api.truedy.ai/v1?x=1", "not a url", "https://api.truedy.ai/v1\r\nX: y" }) do
      local client, err = truedy.new{ api_key = helper.api_key, base_url = url }
      assert.is_nil(client, url)
      assert.equal("config", err.kind)
      assert.is_nil(err.message:find("pw", 1, true))
    end
  end)

  it("refuses a key with spaces or control characters", function()
    for _, key in ipairs({ "truedy_abc def", "truedy_abc\r\nX-Evil: 1", "truedy_\0abc" }) do
      local client, err = truedy.new{ api_key = key, base_url = helper.base_url }
      assert.is_nil(client)
      assert.equal("config", err.kind)
      assert.is_nil(err.message:find("truedy_abc", 1, true))
    end
  end)

  it("never shows the key in tostring(client)", function()
    local client = helper.client()
    assert.is_nil(tostring(client):find(helper.api_key, 1, true))
    assert.equal("truedy.client (" .. helper.base_url .. ")", tostring(client))
  end)

  it("can be closed, after which it refuses work", function()
    local client = helper.client()
    assert(client:create_call(helper.params()))
    client:close()
    client:close() -- twice is fine
    assert.equal("truedy.client (closed)", tostring(client))
    assert.has_error(function() client:create_call(helper.params()) end, "truedy: the client is closed")
  end)

  it("is garbage collected with its handles and connections", function()
    collectgarbage()
    collectgarbage()
    local before = helper.open_fds()
    for _ = 1, 50 do
      local client = helper.client()
      assert(client:list_calls()) -- each keeps a connection open
    end
    assert.is_true(helper.open_fds() >= before + 40) -- the sockets are there
    collectgarbage()
    collectgarbage()
    -- their connections closed with them
    assert.is_true(helper.open_fds() <= before + 1)
    -- still fully usable afterwards
    assert(helper.client():list_calls())
  end)

  it("closes at the end of a to-be-closed scope on Lua 5.4", function()
    if _VERSION ~= "Lua 5.4" then
      pending("to-be-closed variables are a Lua 5.4 feature")
      return
    end
    local run = load([[
      local helper = ...
      local captured
      do
        local client <close> = helper.client()
        captured = client
        assert(client:list_calls())
      end
      return tostring(captured)
    ]])
    assert.equal("truedy.client (closed)", run(helper))
  end)
end)

describe("the API key", function()
  before_each(helper.reset)

  it("never appears in any error, even when a server echoes it back", function()
    local key = helper.api_key
    local errors = {}
    local client = helper.client{ max_retries = 0 }
    local function collect(res, err) assert.is_nil(res); errors[#errors + 1] = err end

    collect(client:create_call(helper.params{ phone_number = "bad" }))
    collect(client:create_call(helper.params{ agent_id = "agt_missing" }))
    helper.fault{ method = "POST", path = "/calls", type = "raw", status = 500,
                  headers = { ["Content-Type"] = "application/json" },
                  body = '{"error":{"code":"internal_error","message":"bad key ' .. key .. '",'
                    .. '"details":{"echo":"Bearer ' .. key .. '"}}}' }
    collect(client:create_call(helper.params()))
    helper.fault{ method = "POST", path = "/calls", type = "raw", status = 502,
                  headers = { ["Content-Type"] = "text/html" },
                  body = "<html><body>Authorization: Bearer " .. key .. "</body></html>" }
    collect(client:create_call(helper.params()))
    helper.fault{ method = "POST", path = "/calls", type = "raw", status = 201,
                  headers = { ["Content-Type"] = "application/json" }, body = "not json " .. key }
    collect(client:create_call(helper.params()))
    helper.fault{ method = "POST", path = "/calls", type = "delay", seconds = 2 }
    collect(client:create_call(helper.params(), { timeout = 0.2 }))
    collect(helper.client{ base_url = "http://127.0.0.1:1/x", max_retries = 0 }:create_call(helper.params()))
    collect(helper.client{ api_key = "truedy_wrongwrongwrongwrongwrongwrong1", max_retries = 0 }
      :create_call(helper.params()))

    assert.equal(8, #errors)
    for _, err in ipairs(errors) do
      local line = tostring(err)
      assert.is_nil(line:find(key, 1, true), "key in: " .. line)
      for _, text in ipairs(helper.all_strings(err)) do
        assert.is_nil(text:find(key, 1, true), "key in a field: " .. text)
      end
    end
    -- the echoed text is still there, redacted
    assert.matches("bad key %[redacted%]", errors[3].message)
    assert.equal("Bearer [redacted]", errors[3].details.echo)
  end)

  it("is redacted from the debug trace", function()
    local status, output = helper.run_lua([[
      local truedy = require "truedy"
      local client = assert(truedy.new{ debug = true })
      assert(client:list_calls())
    ]], { TRUEDY_API_KEY = helper.api_key, TRUEDY_BASE_URL = helper.base_url })
    assert.equal(0, status)
    assert.matches("truedy > GET /api/public/v1/calls HTTP/1.1", output)
    assert.matches("truedy > Authorization: %[redacted%]", output)
    assert.matches("truedy < HTTP/1.1 200", output)
    assert.is_nil(output:find(helper.api_key, 1, true))
  end)

  it("is never written to the emulator's journal", function()
    assert(helper.client():create_call(helper.params()))
    for _, text in ipairs(helper.all_strings(helper.journal())) do
      assert.is_nil(text:find(helper.api_key, 1, true))
    end
  end)
end)
