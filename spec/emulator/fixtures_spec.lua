-- The seeded world: one readable file, loadable without nginx, shaped like the real thing.
local emu = require "spec.emulator.emu"

describe("emulator fixtures", function()
  local fixtures = dofile(emu.root .. "/emulator/lua/truedy_emulator/fixtures.lua")

  it("load with plain dofile, outside nginx", function()
    assert.is_table(fixtures.organizations)
    assert.is_table(fixtures.agents)
    assert.is_string(fixtures.failing_prefix)
    assert.is_string(fixtures.cancelling_prefix)
  end)

  it("seed two organizations whose keys look like real keys", function()
    assert.is_true(#fixtures.organizations >= 2)
    local seen = {}
    for _, org in ipairs(fixtures.organizations) do
      assert.is_string(org.name)
      assert.matches("^truedy_" .. ("[A-Za-z0-9]"):rep(32) .. "$", org.api_key)
      assert.is_nil(seen[org.api_key])
      seen[org.api_key] = true
    end
  end)

  it("seed an active agent with two numbers, one with none, and a draft, in both id styles", function()
    assert.is_table(emu.agent)
    assert.are.equal(2, #emu.agent.outbound_numbers)
    assert.is_table(emu.agent_without_numbers)
    assert.is_table(emu.draft_agent)
    assert.is_table(emu.other_agent)
    local styles = {}
    for _, a in ipairs(fixtures.agents) do
      if a.id:find("^agt_") then styles.agt = true end
      if a.id:find(emu.UUID) then styles.uuid = true end
      for _, n in ipairs(a.outbound_numbers) do
        assert.matches("^%+[1-9]%d+$", n)
        assert.is_true(#n <= 16)
      end
    end
    assert.is_true(styles.agt, "an agt_ id")
    assert.is_true(styles.uuid, "a bare UUID id")
  end)

  it("are what the running emulator serves (GET /__emulator/fixtures)", function()
    emu.reset()
    local served = emu.control("GET", "/fixtures").data
    assert.are.equal(#fixtures.organizations, #served.organizations)
    for i, org in ipairs(fixtures.organizations) do
      assert.are.equal(org.name, served.organizations[i].name)
      assert.are.equal(org.api_key, served.organizations[i].api_key)
    end
    for i, a in ipairs(fixtures.agents) do
      assert.are.equal(a.id, served.agents[i].id)
      assert.are.same(a.outbound_numbers, served.agents[i].outbound_numbers)
    end
    assert.are.equal(fixtures.failing_prefix, served.failing_prefix)
    assert.are.equal(fixtures.cancelling_prefix, served.cancelling_prefix)
  end)

  it("are the ones the README lists", function()
    local readme = assert(emu.read_file(emu.root .. "/README.md"))
    for _, org in ipairs(fixtures.organizations) do
      assert.is_truthy(readme:find(org.api_key, 1, true), org.name .. "'s key in the README")
    end
    for _, a in ipairs(fixtures.agents) do
      assert.is_truthy(readme:find("`" .. a.id .. "`", 1, true), a.id .. " in the README")
      for _, n in ipairs(a.outbound_numbers) do
        assert.is_truthy(readme:find(n, 1, true), n .. " in the README")
      end
    end
    assert.is_truthy(readme:find("`" .. fixtures.failing_prefix .. "`", 1, true))
    assert.is_truthy(readme:find("`" .. fixtures.cancelling_prefix .. "`", 1, true))
  end)
end)
