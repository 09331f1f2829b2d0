-- The control surface under /__emulator/, for tests only: no auth, not journaled, not rate
-- limited, never faulted. JSON in, JSON out: {"data": ...} or {"error": {"code", "message"}}.
--
--   GET    /__emulator/health             liveness, and which instance answers
--   POST   /__emulator/reset              forget calls, idempotency records, rate windows,
--                                         journal, faults; config back to defaults
--   GET    /__emulator/config             the effective config
--   POST   /__emulator/config             change rate_limit, rate_window, clock_speed, variant
--   POST   /__emulator/clock/advance      {"seconds": n}: age every call by n emulated seconds
--   GET    /__emulator/journal[?since=n]  received API requests, oldest first
--   DELETE /__emulator/journal            clear the journal only
--   GET    /__emulator/faults             scripted faults, with their uses
--   POST   /__emulator/faults             add one (see faults.lua)
--   DELETE /__emulator/faults[/<id>]      remove all, or one (and release what they hold)
--   GET    /__emulator/held               requests a hold fault holds now, oldest first
--   POST   /__emulator/held/release       {"fault_id"?, "seq"?, "count"?}: let them go on
--   GET    /__emulator/fixtures           the seeded organizations (with keys) and agents
--   GET    /__emulator/recordings/<id>.wav  the "recording" of an ended call (1 s of silence)

local json = require "truedy_emulator.json"
local util = require "truedy_emulator.util"
local config = require "truedy_emulator.config"
local journal = require "truedy_emulator.journal"
local faults = require "truedy_emulator.faults"
local calls = require "truedy_emulator.calls"
local lifecycle = require "truedy_emulator.lifecycle"
local world = require "truedy_emulator.world"
local hold = require "truedy_emulator.hold"

local control = {}

local PREFIX = "/__emulator"
-- (Flushing truedy_holds releases every held request.)
local DICTS = { "truedy_state", "truedy_calls", "truedy_idempotency", "truedy_journal", "truedy_holds" }

local function reply(status, doc, content_type)
  ngx.status = status
  ngx.header["Content-Type"] = content_type or "application/json"
  local body = type(doc) == "string" and doc or json.encode(doc)
  ngx.header["Content-Length"] = #body
  ngx.print(body)
end

local function ok(data, status)
  return reply(status or 200, json.ordered({ "data" }, { data = data }))
end

local function fail(status, code, message, headers)
  for k, v in pairs(headers or {}) do ngx.header[k] = v end
  return reply(status, json.ordered({ "error" },
    { error = json.ordered({ "code", "message" }, { code = code, message = message }) }))
end

local function read_json()
  ngx.req.read_body()
  local body = ngx.req.get_body_data() or ""
  if body:find("^%s*$") then return setmetatable({}, json.object_mt) end
  local doc, err = json.decode(body)
  if doc == nil then return nil, "the body is not valid JSON: " .. err end
  return doc
end

---------------------------------------------------------------------------------------------------
-- Handlers
---------------------------------------------------------------------------------------------------

local handlers = {}

handlers["GET /health"] = function()
  local opts = require("truedy_emulator.server").options
  return ok(json.ordered({ "status", "instance", "dir", "pid", "worker", "workers" }, {
    status = "ok", instance = opts.instance, dir = opts.dir, pid = ngx.worker.pid(),
    worker = ngx.worker.id(), workers = ngx.worker.count(),
  }))
end

handlers["POST /reset"] = function()
  for _, name in ipairs(DICTS) do
    ngx.shared[name]:flush_all()
    ngx.shared[name]:flush_expired()
  end
  return ok(config.public(config.reset()))
end

handlers["GET /config"] = function()
  return ok(config.public(config.get()))
end

handlers["POST /config"] = function()
  local doc, err = read_json()
  if not doc then return fail(400, "bad_request", err) end
  local cfg, busy
  cfg, err, busy = config.update(doc)
  if busy then return fail(503, "busy", err) end
  if not cfg then return fail(400, "bad_request", err) end
  return ok(config.public(cfg))
end

handlers["POST /clock/advance"] = function()
  local doc, err = read_json()
  if not doc then return fail(400, "bad_request", err) end
  if not json.is_object(doc) or type(doc.seconds) ~= "number" or doc.seconds < 0 then
    return fail(400, "bad_request", 'expected {"seconds": n} with n >= 0')
  end
  local cfg, busy_err = config.advance_clock(doc.seconds)
  if not cfg then return fail(503, "busy", busy_err) end
  return ok(config.public(cfg))
end

handlers["GET /journal"] = function()
  local since = ngx.var.arg_since
  if since and not since:find("^%d+$") then return fail(400, "bad_request", "since must be an integer") end
  return reply(200, journal.list(tonumber(since)))
end

handlers["DELETE /journal"] = function()
  journal.clear()
  return ok(json.ordered({ "cleared" }, { cleared = true }))
end

handlers["GET /faults"] = function()
  return ok(faults.list())
end

handlers["POST /faults"] = function()
  local doc, err = read_json()
  if not doc then return fail(400, "bad_request", err) end
  local f
  f, err = faults.add(doc)
  if not f then return fail(400, "bad_request", err) end
  return ok(f, 201)
end

handlers["DELETE /faults"] = function()
  faults.clear()
  return ok(json.ordered({ "cleared" }, { cleared = true }))
end

handlers["GET /held"] = function()
  return ok(hold.list())
end

local function positive_integer(v)
  return type(v) == "number" and v == math.floor(v) and v >= 1 and v <= 2 ^ 53
end

handlers["POST /held/release"] = function()
  local doc, err = read_json()
  if not doc then return fail(400, "bad_request", err) end
  if not json.is_object(doc) then return fail(400, "bad_request", "the body must be a JSON object") end
  for name, v in pairs(doc) do
    if name ~= "fault_id" and name ~= "seq" and name ~= "count" then
      return fail(400, "bad_request", "unknown field: " .. tostring(name) .. " (expected fault_id, seq, count)")
    end
    if not positive_integer(v) then return fail(400, "bad_request", name .. " must be an integer >= 1") end
  end
  local released = hold.release(doc.fault_id, doc.seq, doc.count)
  return ok(json.ordered({ "released" }, { released = released }))
end

handlers["GET /fixtures"] = function()
  local f = world.fixtures
  local orgs, agents = json.array(), json.array()
  for i, org in ipairs(f.organizations) do
    orgs[i] = json.ordered({ "name", "api_key" }, { name = org.name, api_key = org.api_key })
  end
  for i, a in ipairs(f.agents) do
    agents[i] = json.ordered({ "id", "org", "status", "name", "outbound_numbers", "greeting" }, {
      id = a.id, org = a.org, status = a.status, name = a.name,
      outbound_numbers = json.array(util.copy(a.outbound_numbers)), greeting = a.greeting,
    })
  end
  return ok(json.ordered({ "organizations", "agents", "failing_prefix" },
    { organizations = orgs, agents = agents, failing_prefix = f.failing_prefix }))
end

-- 1 s of silence, 8 kHz 8-bit mono PCM: enough to be a real, playable file.
local function silent_wav()
  local function le(n, bytes)
    local out = {}
    for i = 1, bytes do
      out[i] = string.char(n % 256)
      n = math.floor(n / 256)
    end
    return table.concat(out)
  end
  local samples = 8000
  return "RIFF" .. le(36 + samples, 4) .. "WAVE" .. "fmt " .. le(16, 4) .. le(1, 2) .. le(1, 2)
    .. le(8000, 4) .. le(8000, 4) .. le(1, 2) .. le(8, 2) .. "data" .. le(samples, 4)
    .. string.rep("\128", samples)
end

local function recording(id)
  local record = calls.get_any(id)
  local cfg = config.get()
  if not record or not record.recording_enabled
    or lifecycle.at(record, config.emulated_now(cfg, util.now()) - record.created_emulated).status ~= "ended" then
    return fail(404, "not_found", "Recording not found: " .. id)
  end
  return reply(200, silent_wav(), "audio/wav")
end

---------------------------------------------------------------------------------------------------
-- Routing
---------------------------------------------------------------------------------------------------

function control.handle()
  local method = ngx.req.get_method()
  local rel = ngx.var.uri:sub(#PREFIX + 1)

  local handler = handlers[method .. " " .. rel]
  if handler then return handler() end

  local fault_id = rel:match("^/faults/(%d+)$")
  if fault_id and method == "DELETE" then
    faults.delete(tonumber(fault_id))
    return ok(json.ordered({ "deleted" }, { deleted = tonumber(fault_id) }))
  end
  local call_id = rel:match("^/recordings/([%w_]+)%.wav$")
  if call_id and (method == "GET" or method == "HEAD") then return recording(call_id) end

  -- Known path, wrong method → 405 with Allow; else 404.
  local allowed = {}
  for key in pairs(handlers) do
    local m, p = key:match("^(%S+) (.*)$")
    if p == rel then allowed[#allowed + 1] = m end
  end
  if fault_id then allowed[#allowed + 1] = "DELETE" end
  if call_id then allowed[#allowed + 1] = "GET" end
  if #allowed > 0 then
    table.sort(allowed)
    local allow = table.concat(allowed, ", ")
    return fail(405, "method_not_allowed", "Method " .. method .. " not allowed; allowed: " .. allow,
      { Allow = allow })
  end
  return fail(404, "not_found", "No control endpoint " .. method .. " " .. ngx.var.uri)
end

return control
