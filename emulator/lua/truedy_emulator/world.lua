-- The seeded world (fixtures.lua), checked once and indexed for lookups, plus the
-- Authorization header check.

local fixtures = require "truedy_emulator.fixtures"

local world = {}

world.fixtures = fixtures
world.KEY_PATTERN = "^truedy_" .. string.rep("[A-Za-z0-9]", 32) .. "$"

local org_by_key, org_by_name, agent_by_id = {}, {}, {}

-- Raises if the fixtures are inconsistent, so a bad edit fails nginx at startup, loudly.
local function index()
  for _, org in ipairs(fixtures.organizations) do
    assert(type(org.name) == "string" and not org_by_name[org.name], "fixtures: bad or duplicate org name")
    assert(type(org.api_key) == "string" and org.api_key:find(world.KEY_PATTERN),
      "fixtures: org " .. org.name .. " has a malformed api_key")
    assert(not org_by_key[org.api_key], "fixtures: duplicate api_key")
    org_by_key[org.api_key] = org
    org_by_name[org.name] = org
  end
  for _, agent in ipairs(fixtures.agents) do
    assert(type(agent.id) == "string" and agent.id ~= "" and not agent_by_id[agent.id],
      "fixtures: bad or duplicate agent id")
    assert(org_by_name[agent.org], "fixtures: agent " .. agent.id .. " has an unknown org")
    assert(agent.status == "active" or agent.status == "draft", "fixtures: agent " .. agent.id .. " bad status")
    assert(type(agent.outbound_numbers) == "table", "fixtures: agent " .. agent.id .. " lacks outbound_numbers")
    agent_by_id[agent.id] = agent
  end
  assert(type(fixtures.failing_prefix) == "string", "fixtures: failing_prefix missing")
  assert(type(fixtures.cancelling_prefix) == "string", "fixtures: cancelling_prefix missing")
end
index()

-- The agent `id` as seen by organization `org_name` (another org's agent does not exist for it).
function world.agent(org_name, id)
  local agent = agent_by_id[id]
  if agent and agent.org == org_name then return agent end
  return nil
end

function world.fails(to_number)
  return to_number:sub(1, #fixtures.failing_prefix) == fixtures.failing_prefix
end

function world.cancels(to_number)
  return to_number:sub(1, #fixtures.cancelling_prefix) == fixtures.cancelling_prefix
end

-- Classifies an Authorization header value (a string, a table when the header is repeated, or
-- nil). Returns { kind = "ok", org = name, api_key = key } or { kind = "missing" | "malformed" |
-- "unknown" }. "malformed": not `Bearer <token>`; "unknown": a token that is no seeded key.
function world.authenticate(header)
  if header == nil then return { kind = "missing" } end
  if type(header) ~= "string" then return { kind = "malformed" } end
  local scheme, token = header:match("^(%S+) +(%S+) *$")
  if not scheme or scheme:lower() ~= "bearer" then return { kind = "malformed" } end
  local org = org_by_key[token]
  if not org then return { kind = "unknown" } end
  return { kind = "ok", org = org.name, api_key = token }
end

return world
