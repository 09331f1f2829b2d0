-- Schema checks of a POST /calls body, exactly as truedy-api.md states them.
--
-- Input: the decoded JSON object (json.lua: objects/arrays are marked, null is json.null).
-- Output: the normalised parameters, or nil and { field = ..., reason = ... } for a 422.
-- Unknown top-level fields and unknown call_settings fields are accepted and ignored: the real
-- API grows, and a client must be able to send fields this emulator does not know.
-- Business rules that need the agent (exists, active, owns from_number) live in api.lua.

local json = require "truedy_emulator.json"

local validate = {}

local E164 = "^%+[1-9]%d%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?$" -- ^\+[1-9]\d{1,14}$
local DURATION_PATTERNS = { "^(%d+)s$", "^(%d+%.%d+)s$" }        -- ^\d+(\.\d+)?s$

function validate.is_e164(s)
  return type(s) == "string" and s:find(E164) ~= nil
end

-- Seconds in a duration string such as "30s" or "1.5s", or nil.
function validate.parse_duration(s)
  if type(s) ~= "string" then return nil end
  for _, p in ipairs(DURATION_PATTERNS) do
    local n = s:match(p)
    if n then return tonumber(n) end
  end
  return nil
end

local function invalid(field, reason)
  return nil, { field = field, reason = reason }
end

local function absent(v)
  return v == nil or v == json.null
end

local function check_string(field, v, required)
  if v == nil then
    if required then return invalid(field, "Field required") end
    return true
  end
  if v == json.null then
    if required then return invalid(field, "Must not be null") end
    return true
  end
  if type(v) ~= "string" then return invalid(field, "Must be a string") end
  return true
end

local function check_e164(field, v, required)
  local ok, err = check_string(field, v, required)
  if not ok then return nil, err end
  if not absent(v) and not validate.is_e164(v) then return invalid(field, "Must be in E.164 format") end
  return true
end

local BOOLEAN_SETTINGS = { "recording_enabled", "transcription_enabled" }
local DURATION_SETTINGS = { "max_duration", "join_timeout" }

local function check_call_settings(cs)
  local out = { recording_enabled = true, transcription_enabled = true }
  if absent(cs) then return out end
  if not json.is_object(cs) then return invalid("call_settings", "Must be an object") end
  for _, name in ipairs(BOOLEAN_SETTINGS) do
    local v = cs[name]
    if not absent(v) then
      if type(v) ~= "boolean" then return invalid("call_settings." .. name, "Must be a boolean") end
      out[name] = v
    end
  end
  if not absent(cs.greeting) then
    if type(cs.greeting) ~= "string" then return invalid("call_settings.greeting", "Must be a string") end
    out.greeting = cs.greeting
  end
  for _, name in ipairs(DURATION_SETTINGS) do
    local v = cs[name]
    if not absent(v) then
      if type(v) ~= "string" then return invalid("call_settings." .. name, "Must be a string") end
      local seconds = validate.parse_duration(v)
      if not seconds then
        return invalid("call_settings." .. name, 'Must be a duration in seconds such as "30s"')
      end
      out[name] = seconds
    end
  end
  return out
end

local function check_variables(vars)
  local out = {}
  if absent(vars) then return out end
  if not json.is_object(vars) then return invalid("variables", "Must be an object") end
  -- Sorted so that, with several bad values, the reported one does not depend on hash order.
  local names = {}
  for name in pairs(vars) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local v = vars[name]
    local t = type(v)
    if t == "string" then
      out[name] = v
    elseif t == "number" or t == "boolean" then
      -- The API treats every value as a string; keep the JSON spelling of numbers.
      out[name] = json.encode(v)
    else
      return invalid("variables." .. name, "Must be a string, number or boolean")
    end
  end
  return out
end

-- body: the decoded JSON object. Returns params or nil, {field, reason}.
function validate.create_call(body)
  local ok, err = check_string("agent_id", body.agent_id, true)
  if not ok then return nil, err end
  if body.agent_id == "" then return invalid("agent_id", "Must not be empty") end

  ok, err = check_e164("phone_number", body.phone_number, true)
  if not ok then return nil, err end

  ok, err = check_e164("from_number", body.from_number, false)
  if not ok then return nil, err end

  local settings
  settings, err = check_call_settings(body.call_settings)
  if not settings then return nil, err end

  local variables
  variables, err = check_variables(body.variables)
  if not variables then return nil, err end

  return {
    agent_id = body.agent_id,
    phone_number = body.phone_number,
    from_number = not absent(body.from_number) and body.from_number or nil,
    settings = settings,
    variables = variables,
  }
end

return validate
