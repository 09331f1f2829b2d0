-- truedy.resty inside nginx (the example, examples/openresty/): calls placed with POST /dial and
-- read with GET /calls/{id}, the bytes on the wire, retries with one idempotency key.
local app = require "spec.resty.app"
local emu = app.emu

describe("truedy.resty in the example nginx", function()
  local server

  setup(function() server = app.start { workers = 2 } end)
  teardown(function() if server then server:stop() end end)
  before_each(emu.reset)

  it("places a call with POST /dial and reads it with GET /calls/{id}", function()
    local placed = server:dial { agent_id = emu.agent.id, phone_number = emu.to }
    assert.equal(201, placed.status, placed.body)
    assert.matches("^call_", placed.json.id)
    assert.equal("queued", placed.json.status)
    assert.is_number(placed.worker)

    local read = server:request("GET", "/calls/" .. placed.json.id)
    assert.equal(200, read.status, read.body)
    assert.equal(placed.json.id, read.json.id)
    assert.equal(emu.agent.id, read.json.agent_id)
    assert.is_number(read.worker)

    -- exactly one call on the server, and the journal saw one POST and one GET
    local posts = app.posts()
    assert.equal(1, #posts)
    assert.equal(201, posts[1].status)
    assert.equal(1, #emu.list_calls())
  end)

  it("sends the bytes and headers the plain module sends", function()
    local truedy = require "truedy" -- the plain module, in the Lua running the specs
    local client = assert(truedy.new { api_key = emu.key, base_url = emu.url .. emu.PREFIX })
    local params = {
      agent_id = emu.agent.id, phone_number = emu.to, from_number = emu.agent.outbound_numbers[2],
      call_settings = { recording_enabled = false, greeting = "Hi {{first_name}}", max_duration = "600s",
        join_timeout = 30 },
      variables = { first_name = "Ada", order = 1234567890123, vip = true },
      metadata = { source = "spec", tags = { "a", "b" } },
    }
    local key = truedy.new_idempotency_key()
    local plain = assert(client:create_call(params, { idempotency_key = key }))
    client:close()

    local dialed = server:dial(params, { ["Idempotency-Key"] = key })
    assert.equal(201, dialed.status, dialed.body)
    -- the same key and the same body: the API replays the first call
    assert.equal(plain.data.id, dialed.json.id)

    local posts = app.posts()
    assert.equal(2, #posts)
    assert.equal(posts[1].body, posts[2].body)
    assert.matches('"order":"1234567890123"', posts[2].body, 1, true)
    assert.matches('"join_timeout":"30s"', posts[2].body, 1, true)
    for _, name in ipairs { "authorization", "content-type", "accept", "x-idempotency-key", "content-length" } do
      assert.equal(app.header(posts[1], name), app.header(posts[2], name), name)
    end
    assert.equal(key, app.header(posts[2], "x-idempotency-key"))
    -- only the Lua named in the User-Agent differs
    local ua = app.header(posts[2], "user-agent")
    assert.matches("^truedy%-lua/" .. truedy.VERSION:gsub("%p", "%%%0") .. " %(LuaJIT 2%.1", ua)
    assert.equal(app.header(posts[1], "user-agent"):gsub("%(Lua [%d.]+;", "(LuaJIT;"),
      (ua:gsub("%(LuaJIT [^;]+;", "(LuaJIT;")))
    local names_plain, names_resty = {}, {}
    for name in pairs(posts[1].headers) do names_plain[#names_plain + 1] = name end
    for name in pairs(posts[2].headers) do names_resty[#names_resty + 1] = name end
    table.sort(names_plain)
    table.sort(names_resty)
    assert.same(names_plain, names_resty)
  end)

  it("retries a 503 with one idempotency key and the same body, sleeping in between", function()
    emu.fault { method = "POST", path = "/calls", type = "status", status = 503, count = 2 }
    local dialed = server:dial { agent_id = emu.agent.id, phone_number = emu.to }
    assert.equal(201, dialed.status, dialed.body)

    local posts = app.posts()
    assert.equal(3, #posts)
    assert.same({ 503, 503, 201 }, { posts[1].status, posts[2].status, posts[3].status })
    local key = app.header(posts[1], "x-idempotency-key")
    assert.matches(emu.UUID, key)
    for i = 2, 3 do
      assert.equal(key, app.header(posts[i], "x-idempotency-key"))
      assert.equal(posts[1].body, posts[i].body)
    end
    assert.equal(1, #emu.list_calls())
  end)

  it("gives the last error back after max_retries, with the attempts and the key", function()
    emu.fault { method = "POST", path = "/calls", type = "status", status = 503, count = 3 }
    local dialed = server:dial { agent_id = emu.agent.id, phone_number = emu.to }
    assert.equal(502, dialed.status, dialed.body)
    local err = dialed.json.error
    assert.equal("api", err.kind)
    assert.equal(503, err.status)
    assert.equal(3, err.attempts)
    assert.is_true(err.retryable)
    assert.matches(" after 3 attempts$", err.line)
    local posts = app.posts()
    assert.equal(3, #posts)
    assert.equal(app.header(posts[1], "x-idempotency-key"), err.idempotency_key)
  end)

  it("does not retry what will not get better (a 422)", function()
    local dialed = server:dial { agent_id = emu.draft_agent.id, phone_number = emu.to }
    assert.equal(422, dialed.status, dialed.body)
    assert.equal(1, dialed.json.error.attempts)
    assert.equal(1, #app.posts())
  end)
end)
