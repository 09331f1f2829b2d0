-- The control surface under /__emulator/, for tests only: no auth, not journaled, not rate
-- limited, never faulted. JSON in, JSON out: {"data": ...} or {"error": {"code", "message"}}.
--
--   GET    /__emulator/health             liveness, and which instance answers
--   POST   /__emulator/reset              forget calls, idempotency records, rate windows,
--                                         journal, faults, holds (released), webhook endpoint,
--                                         deliveries and sink; config back to defaults
--   GET    /__emulator/config             the effective config
--   POST   /__emulator/config             change rate_limit, rate_window, clock_speed, variant
--   POST   /__emulator/clock/advance      {"seconds": n}: age every call by n emulated seconds
--   GET    /__emulator/journal[?since=n]  received API requests, oldest first
--   DELETE /__emulator/journal            clear the journal only
--   GET    /__emulator/faults             scripted faults, with their uses
--   POST   /__emulator/faults             add one (see faults.lua)
--   DELETE /__emulator/faults[/<id>]      remove all, or one (and release what they hold)
--   GET    /__emulator/held               requests a hold fault holds now, oldest first
--   POST   /__emulator/held/release       {"fault_id"?, "seq"?, "count"?, "drop"?}: let them go on
--                                         (drop: end them unprocessed, the connection closed)
--   GET    /__emulator/fixtures           the seeded organizations (with keys) and agents
--   GET    /__emulator/variants           the variant keys with their values, and the presets
--   GET|POST|DELETE /__emulator/webhook    the webhook endpoint {url, secret, ...} (see webhooks.lua)
--   GET|POST|DELETE /__emulator/webhook/faults  delivery faults: duplicate, out_of_order
--   GET    /__emulator/deliveries[?since=n]  webhook delivery attempts, oldest first
--   DELETE /__emulator/deliveries         clear them
--   POST   /__emulator/sink               a test webhook receiver: records body and headers
--   GET    /__emulator/sink[?since=n]     what it received; DELETE clears it
--   POST   /__emulator/sink/fail          {"count", "status", "delay"}: answer so, the next times
--   POST   /__emulator/hmac-sha256        {"key_hex", "data_hex"}: the signer's HMAC, for its spec
--   POST   /__emulator/calls/<id>/cancel  end a call that is not over yet as cancelled, now
--   GET    /__emulator/recordings/<id>.wav  the "recording" of an ended call (1 s of silence)
--   GET    /__emulator/transcripts/<id>.json  the transcript of an ended call (transcript_url)

local json = require "truedy_emulator.json"
local util = require "truedy_emulator.util"
local config = require "truedy_emulator.config"
local journal = require "truedy_emulator.journal"
local faults = require "truedy_emulator.faults"
local calls = require "truedy_emulator.calls"
local call_view = require "truedy_emulator.call_view"
local world = require "truedy_emulator.world"
local hold = require "truedy_emulator.hold"
local webhooks = require "truedy_emulator.webhooks"
local sink = require "truedy_emulator.sink"
local hmac = require "truedy_emulator.hmac"

local control = {}

local PREFIX = "/__emulator"
-- (truedy_holds is not flushed: that would release every held request into the new state;
-- a reset drops them instead.)
local DICTS = { "truedy_state", "truedy_calls", "truedy_idempotency", "truedy_journal", "truedy_webhooks" }

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
  hold.release(nil, nil, nil, true) -- held requests end unprocessed: nothing leaks into the next test
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

handlers["GET /variants"] = function()
  return ok(config.variants_public())
end

local function since_arg()
  local since = ngx.var.arg_since
  if since and not since:find("^%d+$") then return nil, "since must be an integer" end
  return tonumber(since) or 0
end

handlers["GET /webhook"] = function()
  return ok(webhooks.endpoint_public())
end

handlers["POST /webhook"] = function()
  local doc, err = read_json()
  if not doc then return fail(400, "bad_request", err) end
  local e
  e, err = webhooks.set_endpoint(doc)
  if not e then return fail(400, "bad_request", err) end
  return ok(e)
end

handlers["DELETE /webhook"] = function()
  webhooks.clear_endpoint()
  return ok(json.ordered({ "cleared" }, { cleared = true }))
end

handlers["GET /webhook/faults"] = function()
  return ok(webhooks.list_faults())
end

handlers["POST /webhook/faults"] = function()
  local doc, err = read_json()
  if not doc then return fail(400, "bad_request", err) end
  local f
  f, err = webhooks.add_fault(doc)
  if not f then return fail(400, "bad_request", err) end
  return ok(f, 201)
end

handlers["DELETE /webhook/faults"] = function()
  webhooks.clear_faults()
  return ok(json.ordered({ "cleared" }, { cleared = true }))
end

handlers["GET /deliveries"] = function()
  local since, err = since_arg()
  if not since then return fail(400, "bad_request", err) end
  return ok(webhooks.deliveries(since))
end

handlers["DELETE /deliveries"] = function()
  webhooks.clear_deliveries()
  return ok(json.ordered({ "cleared" }, { cleared = true }))
end

handlers["POST /sink"] = function()
  local status = sink.receive()
  return reply(status, json.ordered({ "data" }, { data = json.ordered({ "received" }, { received = true }) }))
end

handlers["GET /sink"] = function()
  local since, err = since_arg()
  if not since then return fail(400, "bad_request", err) end
  return ok(sink.list(since))
end

handlers["DELETE /sink"] = function()
  sink.clear()
  return ok(json.ordered({ "cleared" }, { cleared = true }))
end

handlers["POST /sink/fail"] = function()
  local doc, err = read_json()
  if not doc then return fail(400, "bad_request", err) end
  local plan
  plan, err = sink.fail(doc)
  if not plan then return fail(400, "bad_request", err) end
  return ok(plan)
end

local function from_hex(s)
  if type(s) ~= "string" or #s % 2 ~= 0 or s:find("[^%x]") then return nil end
  return (s:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
end

handlers["POST /hmac-sha256"] = function()
  local doc, err = read_json()
  if not doc then return fail(400, "bad_request", err) end
  local key, data = json.is_object(doc) and from_hex(doc.key_hex), json.is_object(doc) and from_hex(doc.data_hex)
  if not key or not data then
    return fail(400, "bad_request", 'expected {"key_hex": "...", "data_hex": "..."} (even-length hex strings)')
  end
  return ok(json.ordered({ "hmac_sha256" }, { hmac_sha256 = hmac.sha256_hex(key, data) }))
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
    if name == "drop" then
      if type(v) ~= "boolean" then return fail(400, "bad_request", "drop must be true or false") end
    elseif name ~= "fault_id" and name ~= "seq" and name ~= "count" then
      return fail(400, "bad_request", "unknown field: " .. tostring(name) .. " (expected fault_id, seq, count, drop)")
    elseif not positive_integer(v) then
      return fail(400, "bad_request", name .. " must be an integer >= 1")
    end
  end
  local released = hold.release(doc.fault_id, doc.seq, doc.count, doc.drop == true)
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
  return ok(json.ordered({ "organizations", "agents", "failing_prefix", "cancelling_prefix" },
    { organizations = orgs, agents = agents, failing_prefix = f.failing_prefix,
      cancelling_prefix = f.cancelling_prefix }))
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
  if not record or not record.recording_enabled or calls.state(record, config.get(), util.now()).status ~= "ended" then
    return fail(404, "not_found", "Recording not found: " .. id)
  end
  return reply(200, silent_wav(), "audio/wav")
end

-- What transcript_url points at: the transcript as the call object would show it now.
local function transcript(id)
  local record = calls.get_any(id)
  local cfg = config.get()
  local s = record and calls.state(record, cfg, util.now())
  local lines = s and call_view.transcript(record, cfg, s, s.age)
  if not lines then return fail(404, "not_found", "Transcript not found: " .. id) end
  return ok(lines)
end

local function base_url()
  return "http://" .. ngx.var.server_addr .. ":" .. ngx.var.server_port
end

local function cancel(id)
  local cfg = config.get()
  local now = util.now()
  local record, why, status = calls.cancel(id, cfg, now)
  if why == "not_found" then return fail(404, "not_found", "Call not found: " .. id) end
  if why == "over" then
    return fail(409, "conflict", "Call " .. id .. " is over already (" .. status .. "): nothing to cancel")
  end
  return ok(call_view.present(record, cfg, now, base_url()))
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
  local transcript_id = rel:match("^/transcripts/([%w_]+)%.json$")
  if transcript_id and method == "GET" then return transcript(transcript_id) end
  local cancel_id = rel:match("^/calls/([%w_]+)/cancel$")
  if cancel_id and method == "POST" then return cancel(cancel_id) end

  -- Known path, wrong method → 405 with Allow; else 404.
  local allowed = {}
  for key in pairs(handlers) do
    local m, p = key:match("^(%S+) (.*)$")
    if p == rel then allowed[#allowed + 1] = m end
  end
  if fault_id then allowed[#allowed + 1] = "DELETE" end
  if call_id or transcript_id then allowed[#allowed + 1] = "GET" end
  if cancel_id then allowed[#allowed + 1] = "POST" end
  if #allowed > 0 then
    table.sort(allowed)
    local allow = table.concat(allowed, ", ")
    return fail(405, "method_not_allowed", "Method " .. method .. " not allowed; allowed: " .. allow,
      { Allow = allow })
  end
  return fail(404, "not_found", "No control endpoint " .. method .. " " .. ngx.var.uri)
end

return control
