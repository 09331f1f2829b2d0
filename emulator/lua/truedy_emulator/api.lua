-- The Truedy public API under /api/public/v1: routing, auth, rate limit and the call endpoints.
--
-- api.process(req, ctx) turns a request into a response table and sends nothing itself, so a
-- scripted fault can still replace the response (server.lua does the sending).
--
-- Order of checks, like a typical web framework in front of the real API:
--   route (404 unknown path, 405 wrong method) → auth (401) → rate limit (429) → handler.

local json = require "truedy_emulator.json"
local envelope = require "truedy_emulator.envelope"
local validate = require "truedy_emulator.validate"
local world = require "truedy_emulator.world"
local calls = require "truedy_emulator.calls"
local ratelimit = require "truedy_emulator.ratelimit"
local idempotency = require "truedy_emulator.idempotency"
local faults = require "truedy_emulator.faults"

local api = {}

api.PREFIX = "/api/public/v1"

-- The path relative to the API prefix ("/calls"), or nil when the path lies outside it.
function api.relative_path(path)
  if path == api.PREFIX then return "/" end
  if path:sub(1, #api.PREFIX + 1) == api.PREFIX .. "/" then return path:sub(#api.PREFIX + 1) end
  return nil
end

local function details(field, reason)
  return json.ordered({ "field", "reason" }, { field = field, reason = reason })
end

local function validation_error(ctx, field, reason)
  return envelope.error(ctx, 422, "validation_error", "Invalid " .. field .. ": " .. reason,
    details(field, reason))
end

local function bad_request(ctx, message)
  return envelope.error(ctx, 400, "bad_request", message)
end

---------------------------------------------------------------------------------------------------
-- POST /calls
---------------------------------------------------------------------------------------------------

local function contains(list, v)
  for _, x in ipairs(list) do
    if x == v then return true end
  end
  return false
end

-- Omitted from_number: the API picks one of the agent's numbers; round-robin across all workers.
local function pick_number(agent)
  local n = ngx.shared.truedy_state:incr("rr:" .. agent.id, 1, 0)
  return agent.outbound_numbers[(n - 1) % #agent.outbound_numbers + 1]
end

local function create_call(req, ctx)
  local doc, err = json.decode(req.body)
  if doc == nil then
    if req.body:find("^%s*$") then return bad_request(ctx, "Request body must be a JSON object") end
    return bad_request(ctx, "Request body is not valid JSON: " .. err)
  end
  if not json.is_object(doc) then return bad_request(ctx, "Request body must be a JSON object") end

  local p, problem = validate.create_call(doc)
  if not p then return validation_error(ctx, problem.field, problem.reason) end

  local agent = world.agent(req.auth.org, p.agent_id)
  if not agent then
    return envelope.error(ctx, 404, "not_found", "Agent not found: " .. p.agent_id)
  end
  if agent.status ~= "active" then
    return validation_error(ctx, "agent_id", "Agent is not active (status: " .. agent.status .. ")")
  end

  local from = p.from_number
  if from then
    if not contains(agent.outbound_numbers, from) then
      return validation_error(ctx, "from_number", "Not an outbound number of agent " .. agent.id)
    end
  elseif #agent.outbound_numbers == 0 then
    return envelope.error(ctx, 422, "no_phone_number_configured",
      "Agent " .. agent.id .. " has no outbound phone number configured")
  else
    from = pick_number(agent)
  end

  local record = calls.create {
    cfg = ctx.cfg,
    org = req.auth.org,
    agent = agent,
    from_number = from,
    to_number = p.phone_number,
    settings = p.settings,
    variables = p.variables,
    fails = world.fails(p.phone_number),
  }
  return envelope.success(ctx, 201, calls.present(record, ctx.cfg, record.created_at, req.recording_base))
end

-- Runs an endpoint's handler, unless a fault with when = "inside" takes the request here (only
-- when no other fault took it on arrival): then the fault acts in the handler's place.
local function run_handler(req, ctx, handler, id)
  local f = req.may_take_inside and faults.take(req.method, api.relative_path(req.path), true)
  if not f then return handler(req, ctx, id) end
  req.inside_fault = f -- for the journal
  -- A keyed POST /calls holds its idempotency lock meanwhile: make it outlast the fault's sleep
  -- (or a hold's cap).
  if f.seconds > 0 then idempotency.extend(f.seconds) end
  return faults.act_inside(f, ctx, req, function() return handler(req, ctx, id) end)
end

local function create_call_idempotent(req, ctx)
  local key = req.idempotency_key
  if not key or key == "" then return run_handler(req, ctx, create_call) end
  local res = idempotency.run(req.auth.org, key, req.body, function() return run_handler(req, ctx, create_call) end)
  if not res then
    return envelope.error(ctx, 409, "conflict", "A request with this idempotency key is still being processed")
  end
  return res
end

---------------------------------------------------------------------------------------------------
-- GET /calls/{id} and GET /calls
---------------------------------------------------------------------------------------------------

local function get_call(req, ctx, id)
  local record = calls.get(req.auth.org, id)
  if not record then return envelope.error(ctx, 404, "not_found", "Call not found: " .. id) end
  return envelope.success(ctx, 200, calls.present(record, ctx.cfg, ctx.now, req.recording_base))
end

-- One value of a query parameter: the last one when repeated, "" for a bare `?limit`.
local function arg(args, name)
  local v = args[name]
  if type(v) == "table" then v = v[#v] end
  if v == true then v = "" end
  return v
end

local function integer_arg(args, name, default, min, max)
  local v = arg(args, name)
  if v == nil then return default end
  local n = v:find("^%d+$") and tonumber(v)
  if not n or n < min or (max and n > max) then return nil end
  return n
end

local function list_calls(req, ctx)
  local limit = integer_arg(req.args, "limit", 50, 1, 100)
  if not limit then return validation_error(ctx, "limit", "Must be an integer between 1 and 100") end
  local offset = integer_arg(req.args, "offset", 0, 0, nil)
  if not offset then return validation_error(ctx, "offset", "Must be an integer >= 0") end
  -- Filters; an empty value (`?status=`) filters nothing.
  local function filter(name)
    local v = arg(req.args, name)
    if v ~= "" then return v end
  end
  local want_status, want_direction, want_agent = filter("status"), filter("direction"), filter("agent_id")

  local page, total = json.array(), 0
  if want_direction == nil or want_direction == "outbound" then -- every emulated call is outbound
    calls.each_id_newest_first(req.auth.org, function(id)
      local record
      if want_status or want_agent then
        record = calls.get(req.auth.org, id)
        if not record then return end
        if want_status and calls.state(record, ctx.cfg, ctx.now).status ~= want_status then return end
        if want_agent and record.agent_id ~= want_agent then return end
      end
      total = total + 1
      if total > offset and #page < limit then
        record = record or calls.get(req.auth.org, id)
        if record then page[#page + 1] = calls.present(record, ctx.cfg, ctx.now, req.recording_base) end
      end
    end)
  end
  local pagination = json.ordered({ "total", "limit", "offset", "has_more" },
    { total = total, limit = limit, offset = offset, has_more = offset + #page < total })
  return envelope.success(ctx, 200, page, pagination)
end

---------------------------------------------------------------------------------------------------
-- Routing
---------------------------------------------------------------------------------------------------

-- `wrapped`: the handler runs an "inside" fault itself (inside the idempotency lock).
local ROUTES = {
  { pattern = "^/calls$", allow = "GET, POST", methods = { GET = list_calls, POST = create_call_idempotent },
    wrapped = { POST = true } },
  { pattern = "^/calls/([^/]+)$", allow = "GET", methods = { GET = get_call } },
}

-- req: { seq (journal entry), method, path, args, body, auth (world.authenticate), idempotency_key,
--        recording_base, may_take_inside (no fault took the request on arrival) }; sets
--        req.inside_fault when a fault with when = "inside" took it (and req.held for a hold).
-- ctx: envelope.context(cfg). Returns a response table.
function api.process(req, ctx)
  local rel = api.relative_path(req.path)
  local route, captures
  if rel then
    for _, r in ipairs(ROUTES) do
      captures = { rel:match(r.pattern) }
      if captures[1] then
        route = r
        break
      end
    end
  end
  if not route then
    return envelope.error(ctx, 404, "not_found", "Route not found: " .. req.method .. " " .. req.path)
  end
  local handler = route.methods[req.method]
  if not handler then
    return envelope.error(ctx, 405, "method_not_allowed",
      "Method " .. req.method .. " not allowed on " .. req.path, nil, { Allow = route.allow })
  end

  if req.auth.kind ~= "ok" then
    return envelope.error(ctx, 401, "unauthorized", "Invalid or missing API key")
  end

  local allowed, limit, reset_at = ratelimit.hit(req.auth.api_key, ctx.cfg, ctx.now)
  if not allowed then
    return envelope.error(ctx, 429, "rate_limit_exceeded", "Rate limit exceeded",
      json.ordered({ "limit", "reset_at" }, { limit = limit, reset_at = reset_at }))
  end

  -- captures[1] is the call id for /calls/{id}; handlers without a parameter ignore it
  if route.wrapped and route.wrapped[req.method] then return handler(req, ctx, captures[1]) end
  return run_handler(req, ctx, handler, captures[1])
end

return api
