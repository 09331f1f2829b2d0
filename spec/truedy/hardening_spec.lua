-- Regressions found in review and by the out-of-memory sweep: each one stays fixed.
local helper = require "spec.support.helper"
local truedy = require "truedy"
local cjson = require("cjson").new()

describe("hardening", function()
  before_each(helper.reset)

  describe("plain http", function()
    it("counts only loopback addresses as loopback, not names that start like one", function()
      for _, url in ipairs({ "http://127.evil.example/v1", "http://127.0.0.1.nip.io/v1",
                             "http://localhost.example/v1", "http://[::2]/v1", "http://10.0.0.1/v1" }) do
        local client, err = truedy.new{ api_key = helper.api_key, base_url = url }
        assert.is_nil(client, url)
        assert.equal("config", err.kind)
      end
      for _, url in ipairs({ "http://127.0.0.2:9/v1", "http://127.255.255.254/v1", "http://LOCALHOST/v1",
                             "http://[::1]/v1" }) do
        assert.is_truthy(truedy.new{ api_key = helper.api_key, base_url = url }, url)
      end
    end)

    it("never goes through a proxy from the environment", function()
      -- a proxy on a closed port: used, it would fail the call
      local status, output = helper.run_lua([[
        local truedy = require "truedy"
        local client = assert(truedy.new{ max_retries = 0 })
        local res, err = client:list_calls()
        print(res and "ok" or tostring(err))
      ]], { TRUEDY_API_KEY = helper.api_key, TRUEDY_BASE_URL = helper.base_url,
            http_proxy = "http://127.0.0.1:1", HTTP_PROXY = "http://127.0.0.1:1",
            ALL_PROXY = "http://127.0.0.1:1", all_proxy = "http://127.0.0.1:1" })
      assert.equal(0, status)
      assert.equal("ok\n", output)
    end)
  end)

  describe("the key in what a server sends back", function()
    local key = helper.api_key

    it("is redacted before an excerpt could cut it in half", function()
      local body = "<html><body>" .. string.rep("x", 130) .. " Bearer " .. key .. "</body></html>"
      helper.fault{ method = "POST", path = "/calls", type = "raw", status = 502,
                    headers = { ["Content-Type"] = "text/html" }, body = body }
      local _, err = helper.client{ max_retries = 0 }:create_call(helper.params())
      assert.equal(502, err.status)
      assert.is_nil(err.excerpt:find(key:sub(1, 12), 1, true), err.excerpt)
      assert.is_nil(tostring(err):find(key:sub(1, 12), 1, true))
    end)

    it("is redacted behind a NUL byte and inside nested details", function()
      helper.fault{ method = "POST", path = "/calls", type = "raw", status = 500,
                    headers = { ["Content-Type"] = "application/json", ["X-Request-Id"] = "req_" .. key },
                    body = cjson.encode{ error = { code = "internal_error",
                      message = "bad header\0 Bearer " .. key,
                      details = { echo = { "Bearer " .. key }, [key] = "as a key" } } } }
      local _, err = helper.client{ max_retries = 0 }:create_call(helper.params())
      assert.equal(500, err.status)
      for _, text in ipairs(helper.all_strings(err)) do
        assert.is_nil(text:find(key, 1, true), "key in: " .. text)
      end
      assert.equal("Bearer [redacted]", err.details.echo[1])
      assert.equal("req_[redacted]", err.request_id)
    end)

    it("is redacted from every line of the debug trace, headers in included", function()
      helper.fault{ method = "GET", path = "/calls", type = "raw", status = 200,
                    headers = { ["Content-Type"] = "application/json", ["X-Echo"] = "Bearer " .. key },
                    body = '{"data":[]}' }
      local status, output = helper.run_lua([[
        local truedy = require "truedy"
        assert(truedy.new{ debug = true, max_retries = 0 }:list_calls())
      ]], { TRUEDY_API_KEY = key, TRUEDY_BASE_URL = helper.base_url })
      assert.equal(0, status)
      assert.matches("truedy < X%-Echo: Bearer %[redacted%]", output)
      assert.is_nil(output:find(key, 1, true))
    end)
  end)

  describe("memory safety", function()
    it("encodes a weak table whose entries the collector may clear meanwhile", function()
      local client = helper.client{ base_url = "http://127.0.0.1:1/x", max_retries = 0 }
      local weak = setmetatable({}, { __mode = "v" })
      for round = 1, 300 do
        for j = 1, 20 do weak["k" .. j] = {} end -- collectable values: entries may vanish
        local _, err = client:create_call(helper.params{ phone_number = "bad", extra = weak })
        -- refused before sending, whatever the collector did to `extra`
        assert.equal("invalid_params", err.kind, "round " .. round)
        collectgarbage("step", 1)
      end
    end)

    it("keeps option strings made by an __index metamethod alive while it reads them", function()
      local options = setmetatable({}, { __index = function(_, name)
        if name == "api_key" then return "truedy_" .. string.rep("A", 60) .. tostring(os.clock()) end
        if name == "base_url" then return helper.base_url .. "" end
        if name == "allow_insecure_http" then collectgarbage(); collectgarbage() end
        return nil
      end })
      local client = assert(truedy.new(options))
      assert.equal("truedy.client (" .. helper.base_url .. ")", tostring(client))
    end)

    it("frees what it built when a filter name is not a string", function()
      local client = helper.client()
      for _ = 1, 20 do
        assert.has_error(function()
          client:list_calls{ status = "queued", agent_id = "x", direction = "outbound", [print] = 1 }
        end, "list_calls: filter names must be strings")
      end
      -- every request went back to the client's free list (make valgrind
      -- and make sanitize also prove that nothing else leaked)
      assert.equal(0, client:stats().live_requests)
      assert.equal(0, #helper.journal())
    end)

    it("formats an error table whatever its status holds", function()
      assert.equal("truedy: error: x", truedy.format_error{ kind = "api", status = 1e300, message = "x" })
      assert.equal("truedy: error: x", truedy.format_error{ kind = "api", status = -1 / 0, message = "x" })
      assert.equal("truedy: network: y", truedy.format_error{ kind = "network", message = "y",
                                                              attempts = 0 / 0 })
    end)

    it("puts the metatable back on an error copied without it", function()
      local _, err = helper.client():create_call{ agent_id = "agt_x" }
      local copy = {}
      for k, v in pairs(err) do copy[k] = v end
      assert.is_nil(getmetatable(copy))
      assert.equal(copy, truedy.restore_error(copy))
      assert.equal(tostring(err), tostring(copy))
      -- anything that is not an error comes back as it was
      local plain = { kind = 1 }
      assert.is_nil(getmetatable(truedy.restore_error(plain)))
      assert.equal(5, truedy.restore_error(5))
    end)
  end)

  describe("inputs", function()
    it("says the allowed range of an out-of-range option", function()
      assert.has_error(function() truedy.new{ api_key = "k", timeout = -1 } end,
        "truedy.new: option 'timeout' must be between 0.001 and 86400")
      assert.has_error(function() truedy.new{ api_key = "k", max_connections = 0 } end,
        "truedy.new: option 'max_connections' must be between 1 and 64")
    end)

    it("refuses an empty API key as configuration, not with a 401 round trip", function()
      local client, err = truedy.new{ api_key = "", base_url = helper.base_url }
      assert.is_nil(client)
      assert.equal("config", err.kind)
      assert.equal("the API key is empty", err.message)
    end)

    it("checks limit and offset given as strings too", function()
      local client = helper.client()
      for _, filters in ipairs({ { limit = "500" }, { limit = "0" }, { limit = "ten" }, { offset = "-1" },
                                 { offset = "1.5" } }) do
        local res, err = client:list_calls(filters)
        assert.is_nil(res)
        assert.equal("invalid_params", err.kind)
      end
      assert.equal(0, #helper.journal())
      assert(client:list_calls{ limit = "2", offset = "0" })
      assert.matches("limit=2", helper.journal("GET")[1].query)
    end)

    it("refuses a filter that is not a finite number instead of sending nan", function()
      local res, err = helper.client():list_calls{ agent_id = 0 / 0 }
      assert.is_nil(res)
      assert.equal("invalid_params", err.kind)
      assert.equal("agent_id", err.field)
      assert.equal(0, #helper.journal())
    end)

    it("writes number durations in fixed notation, and refuses absurd ones", function()
      local client = helper.client()
      assert(client:create_call(helper.params{ call_settings = { max_duration = 0.5, join_timeout = 1e-7 } }))
      local body = cjson.decode(helper.journal("POST")[1].body)
      assert.equal("0.5s", body.call_settings.max_duration)
      assert.equal("0.0000001s", body.call_settings.join_timeout)
      local _, err = client:create_call(helper.params{ call_settings = { max_duration = 1e300 } })
      assert.equal("invalid_params", err.kind)
      assert.equal("call_settings.max_duration", err.field)
    end)

    it("keeps the answer's content type on a transfer error", function()
      helper.fault{ method = "POST", path = "/calls", type = "truncate" }
      local _, err = helper.client{ max_retries = 0 }:create_call(helper.params())
      assert.equal("response", err.kind)
      assert.matches("^application/json", err.content_type)
    end)
  end)
end)
