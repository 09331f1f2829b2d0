-- luacheck: std +ngx_lua
-- The test application of spec/resty/edges.conf. Answers are JSON:
--   {"ok": <envelope>}                       a call that worked
--   {"error": {<fields>, "line": tostring(err), "metatable": true|false}}
--   {"raised": "<message>"}                  truedy.resty raised (a programmer error)
-- Clients are made from query arguments (pool, max_pending, per_minute, max_retry_wait,
-- max_retries) with the key nginx passes as TRUEDY_EDGES_KEY.
local truedy = require "truedy.resty"
local cjson = require("cjson").new()

local edges = {}

local function answer(body)
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(body))
end

local function error_fields(err)
  local fields = {}
  for k, v in pairs(err) do fields[k] = v end
  fields.line = tostring(err)
  fields.metatable = getmetatable(err) ~= nil
  return fields
end

local function report(res, err)
  if res then return answer { ok = res } end
  ngx.log(ngx.WARN, "edges: ", err)
  return answer { error = error_fields(err) }
end

-- Runs fn(...) and answers what came of it, a raise included.
local function run(fn, ...)
  local ok, res, err = pcall(fn, ...)
  if not ok then return answer { raised = tostring(res) } end
  return report(res, err)
end

local function params()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if body then return cjson.decode(body) end
  return { agent_id = "agt_f9447372", phone_number = "+12125551234" }
end

local clients = {}

local function client()
  local args = ngx.req.get_uri_args()
  local options = {
    api_key = os.getenv("TRUEDY_EDGES_KEY"),
    thread_pool = args.pool,
    max_pending = tonumber(args.max_pending),
    per_minute = tonumber(args.per_minute),
    max_retry_wait = tonumber(args.max_retry_wait),
    max_retries = tonumber(args.max_retries),
    retry_base_delay = 0.01,
    retry_max_delay = 0.05,
  }
  local id = ngx.encode_args(args)
  if not clients[id] then clients[id] = assert(truedy.new(options)) end
  return clients[id]
end

-- The default client: nginx.conf does not pass TRUEDY_API_KEY.
function edges.default()
  return run(truedy.create_call, params())
end

-- truedy.new with something wrong, then a call.
function edges.new()
  local case = ngx.var.arg_case
  local key = os.getenv("TRUEDY_EDGES_KEY")
  if case == "pool" then
    local c = assert(truedy.new { api_key = key, thread_pool = "absent" })
    return run(c.create_call, c, params())
  elseif case == "dict" then
    return run(truedy.new, { api_key = key, shared_dict = "absent" })
  elseif case == "function" then
    return run(truedy.new, { api_key = key, timeout = function() return 1 end })
  elseif case == "unknown" then
    return run(truedy.new, { api_key = key, timout = 3 })
  elseif case == "call_option" then
    local c = client()
    return run(c.create_call, c, params(), { timeout = function() return 1 end })
  elseif case == "closed" then
    local c = assert(truedy.new { api_key = key })
    c:close()
    return run(c.get_call, c, "call_x")
  end
  return answer { raised = "unknown case" }
end

function edges.dial()
  local c = client()
  return run(c.create_call, c, params(), { idempotency_key = ngx.var.http_idempotency_key })
end

-- Parameters with what is not data: a table that contains itself, or (?with=function) a
-- function.
function edges.cyclic()
  local p = params()
  local meta = { source = "edges" }
  if ngx.var.arg_with == "function" then
    meta.handler = function() end
  else
    meta.self = meta
  end
  p.metadata = meta
  local c = client()
  return run(c.create_call, c, p)
end

function edges.timer()
  local c, p = client(), params()
  ngx.shared.edges:delete("timer")
  local ok, err = ngx.timer.at(0, function(premature)
    if premature then return end
    local res, e = c:create_call(p)
    ngx.shared.edges:set("timer", cjson.encode(res and { ok = res } or { error = error_fields(e) }))
  end)
  return answer { started = ok ~= nil and ok ~= false, error = err }
end

function edges.timer_result()
  local result = ngx.shared.edges:get("timer")
  if not result then return answer { pending = true } end
  ngx.say(result)
end

-- ?id=&interval=, and the whole wait as ?wait_timeout= or by its older name ?timeout= (both:
-- truedy.follow raises). ?module=1 calls truedy.follow(client, ...) instead of client:follow;
-- ?start=1 tries truedy.follow.start (the plain module's non-blocking follower).
function edges.follow()
  local c = client()
  local options = { wait_timeout = tonumber(ngx.var.arg_wait_timeout), timeout = tonumber(ngx.var.arg_timeout),
    interval = tonumber(ngx.var.arg_interval) }
  local ok, call, finished_or_err
  if ngx.var.arg_start then
    ok, call = pcall(truedy.follow.start, c, ngx.var.arg_id, options)
    return answer { raised = not ok and tostring(call) or nil, returned = ok }
  elseif ngx.var.arg_module then
    ok, call, finished_or_err = pcall(truedy.follow, c, ngx.var.arg_id, options)
  else
    ok, call, finished_or_err = pcall(c.follow, c, ngx.var.arg_id, options)
  end
  if not ok then return answer { raised = tostring(call) } end
  if not call then return report(nil, finished_or_err) end
  return answer { status = call.status, finished = finished_or_err }
end

-- A client made with the options of the body's "client" (and the specs' key), then a create
-- with the body's "params" (default: a valid call) and "call" options. Every client is new.
function edges.options()
  ngx.req.read_body()
  local body = cjson.decode(ngx.req.get_body_data() or "{}")
  local options = body.client or {}
  options.api_key = os.getenv("TRUEDY_EDGES_KEY")
  local ok, c, err = pcall(truedy.new, options)
  if not ok then return answer { raised = tostring(c) } end
  if not c then return report(nil, err) end
  local call_params = body.params or { agent_id = "agt_f9447372", phone_number = "+12125551234" }
  return run(c.create_call, c, call_params, body.call)
end

function edges.pending()
  return answer { pending = client():pending() }
end

function edges.ping()
  return answer { pong = true }
end

-- Forgets the gate and the pace (not the counts of finished tasks: those must stay).
function edges.reset()
  for _, key in ipairs(ngx.shared.truedy:get_keys(0)) do
    if key:find("^truedy:gate:") or key:find("^truedy:pace") then ngx.shared.truedy:delete(key) end
  end
  ngx.shared.edges:delete("timer")
  return answer { reset = true }
end

-- rewrite and access: a call placed there, its outcome kept for the content phase.
function edges.in_phase(phase)
  local ok, res, err = pcall(client().create_call, client(), params())
  ngx.ctx.outcome = not ok and { raised = tostring(res) } or res and { ok = res } or { error = error_fields(err) }
  ngx.ctx.phase = phase
end

function edges.phase_result(phase)
  return answer { phase = ngx.ctx.phase, expected = phase, outcome = ngx.ctx.outcome }
end

-- Phases where truedy.resty cannot run: what a call there did, kept in the edges dict.
function edges.try_phase(phase)
  local ok, err = pcall(truedy.create_call, { agent_id = "agt_f9447372", phone_number = "+12125551234" })
  ngx.shared.edges:set("phase:" .. phase, ok and "no error" or tostring(err))
  return "tried"
end

function edges.phase_errors()
  local out = {}
  for _, phase in ipairs { "init_worker", "set", "header_filter", "body_filter", "log" } do
    out[phase] = ngx.shared.edges:get("phase:" .. phase)
  end
  return answer(out)
end

function edges.init_worker()
  edges.try_phase("init_worker")
end

return edges
