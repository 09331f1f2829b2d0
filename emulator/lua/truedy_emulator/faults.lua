-- Scripted faults: "for the next N requests matching METHOD and PATH, misbehave like THIS".
--
-- A fault: { id, type, method ("POST" | ... | "*"), path ("/calls", relative to the API prefix,
-- exact; or "*"), count (uses, default 1), when ("before" | "after" | "inside"), options of its type }.
--
-- when = "before": the API never sees the request (no call, no rate count); the fault answers.
-- when = "after":  the API processes the request normally (call created, idempotency record
--                  stored, rate counted), then the fault replaces the response actually sent.
-- when = "inside": (status, delay and hold only) the request passes routing, auth and the rate
--                  limit (counted), then the fault acts where the endpoint's handler runs, as the
--                  API's own behaviour: a keyed POST /calls holds its idempotency lock meanwhile,
--                  and a status fault's answer is the API's answer (a non-5xx one is stored and
--                  replayed like any other; a 5xx is not). A delay sleeps, a hold waits for its
--                  release, then the handler runs.
-- Four types shape the API's own response instead of replacing it, so the request is always
-- processed: `delay` (sleeps before the headers; with "before" the sleep comes before processing,
-- and a client that gives up meanwhile leaves nothing behind), `hold` (the same, but until the
-- control surface releases it or its `seconds` cap passes: see hold.lua), `slow_body` and
-- `truncate`.
--
-- Storage (`truedy_state`): fault_seq (ids), fault:<id> (JSON), fault_uses:<id> (atomic counter).
-- A matching request takes a use with `incr`, so N uses are N requests even across workers; the
-- first-added matching fault with uses left wins.

local json = require "truedy_emulator.json"
local envelope = require "truedy_emulator.envelope"
local util = require "truedy_emulator.util"
local hold = require "truedy_emulator.hold"
local ratelimit = require "truedy_emulator.ratelimit"

local faults = {}

local MIB = 1024 * 1024

local function dict() return ngx.shared.truedy_state end

---------------------------------------------------------------------------------------------------
-- Option checking
---------------------------------------------------------------------------------------------------

local function integer_in(min, max)
  return function(v)
    return type(v) == "number" and v == math.floor(v) and v >= min and v <= max,
      "an integer in " .. min .. ".." .. max
  end
end
local function number_in(min, max)
  return function(v) return type(v) == "number" and v >= min and v <= max, "a number in " .. min .. ".." .. max end
end
local function is_string(v) return type(v) == "string", "a string" end
local function is_object(v) return json.is_object(v), "an object" end
local function one_of(...)
  local allowed = { ... }
  return function(v)
    for _, a in ipairs(allowed) do
      if v == a then return true end
    end
    return false, "one of " .. table.concat(allowed, ", ")
  end
end
local function string_headers(v)
  if not json.is_object(v) then return false, "an object of header values" end
  for name, value in pairs(v) do
    if not name:find("^[!#$%%&'*+%-.^_`|~%w]+$") then return false, "an object with valid header names" end
    if type(value) ~= "string" and type(value) ~= "number" then return false, "an object of string header values" end
    if tostring(value):find("[%z\1-\8\10-\31\127]") then
      return false, "an object of header values without control characters"
    end
  end
  return true
end

-- 1xx answers are interim (the client waits for another), so no fault sends one.
local STATUS = integer_in(200, 599)
local NO_BODY = { [204] = true, [304] = true }

-- What a raw fault may send without breaking HTTP's framing (nginx frames the body itself).
local function check_raw(f)
  local body = f.body or ""
  if NO_BODY[f.status] and body ~= "" then return nil, "a " .. f.status .. " response has no body" end
  for name, value in pairs(f.headers or {}) do
    local lname = name:lower()
    if lname == "transfer-encoding" then
      return nil, "headers must not set Transfer-Encoding: the body is sent with a Content-Length"
    elseif lname == "content-length" then
      if NO_BODY[f.status] then return nil, "a " .. f.status .. " response has no Content-Length" end
      if not tostring(value):find("^%d+$") or tonumber(value) ~= #body then
        return nil, "headers.Content-Length must be the body's length (" .. #body .. "), or left out;"
          .. " a truncate fault sends a short body"
      end
    end
  end
  return true
end

faults.OVERSIZED_MAX = 64 * MIB
local function oversized_bytes(v)
  return integer_in(64, faults.OVERSIZED_MAX)(v), "an integer in 64.." .. faults.OVERSIZED_MAX .. " (64 MiB)"
end

-- Per type: its options (checker, default), whether it replaces the API's response, and whether it
-- can act "inside" the API.
faults.TYPES = {
  status = { replaces = true, inside = true, options = { status = { STATUS }, code = { is_string },
    message = { is_string }, details = { is_object }, seconds = { number_in(0, 600), 0 } }, required = { "status" } },
  html = { replaces = true, options = { status = { STATUS, 502 } } },
  empty = { replaces = true, options = { status = { STATUS, 502 } } },
  reset = { replaces = true, options = {} },
  malformed_json = { replaces = true, options = { status = { STATUS, 201 }, body = { is_string } } },
  oversized = { replaces = true,
    options = { status = { STATUS, 201 }, bytes = { oversized_bytes, 8 * MIB } } },
  redirect = { replaces = true, options = { status = { one_of(301, 302, 303, 307, 308), 302 },
    location = { is_string } } },
  raw = { replaces = true, options = { status = { STATUS }, headers = { string_headers }, body = { is_string, "" } },
    required = { "status" }, check = check_raw },
  delay = { replaces = false, inside = true, options = { seconds = { number_in(0, 600), 1 } } },
  hold = { replaces = false, inside = true,
    options = { seconds = { number_in(0, hold.MAX_SECONDS), hold.DEFAULT_SECONDS } } },
  slow_body = { replaces = false, options = { seconds = { number_in(0, 600), 2 } } },
  truncate = { replaces = false, options = { bytes = { integer_in(0, 512 * MIB) } } },
}

local COMMON = { type = true, method = true, path = true, count = true, when = true }
local FIELD_ORDER = { "id", "type", "method", "path", "count", "when", "status", "code", "message", "details",
  "seconds", "bytes", "location", "headers", "body", "used", "remaining" }

-- Checks and normalises a POST /__emulator/faults body. Returns the fault or nil, message.
local function normalise(spec)
  if not json.is_object(spec) then return nil, "the body must be a JSON object" end
  local t = faults.TYPES[spec.type]
  if not t then
    local names = {}
    for name in pairs(faults.TYPES) do names[#names + 1] = name end
    table.sort(names)
    return nil, "type must be one of: " .. table.concat(names, ", ")
  end
  local f = { type = spec.type }

  local method = spec.method == nil and "*" or spec.method
  if type(method) ~= "string" or not method:find("^[%a*]+$") then return nil, "method must be a method name or *" end
  f.method = method:upper()

  local path = spec.path == nil and "*" or spec.path
  if type(path) ~= "string" or not (path == "*" or path:sub(1, 1) == "/") then
    return nil, 'path must be "*" or a path relative to /api/public/v1, such as "/calls"'
  end
  f.path = path

  local count = spec.count == nil and 1 or spec.count
  if not integer_in(1, 1e9)(count) then return nil, "count must be an integer >= 1" end
  f.count = count

  local when = spec.when == nil and "before" or spec.when
  if when ~= "before" and when ~= "after" and when ~= "inside" then
    return nil, 'when must be "before", "after" or "inside"'
  end
  if when == "inside" and not t.inside then
    return nil, 'when "inside" is for status, delay and hold faults only'
  end
  f.when = when

  for name, value in pairs(spec) do
    if not COMMON[name] then
      local opt = t.options[name]
      if not opt then return nil, "unknown option for a " .. f.type .. " fault: " .. name end
      local ok, what = opt[1](value)
      if not ok then return nil, name .. " must be " .. what end
      f[name] = value
    end
  end
  for name, opt in pairs(t.options) do
    if f[name] == nil then f[name] = opt[2] end
  end
  for _, name in ipairs(t.required or {}) do
    if f[name] == nil then return nil, "a " .. f.type .. " fault needs " .. name end
  end
  if t.check then
    local ok, err = t.check(f)
    if not ok then return nil, err end
  end
  return f
end

---------------------------------------------------------------------------------------------------
-- Store
---------------------------------------------------------------------------------------------------

local function present(f, uses)
  local shown = util.copy(f)
  shown.used = math.min(uses or 0, f.count)
  shown.remaining = f.count - shown.used
  return json.ordered(FIELD_ORDER, shown)
end

function faults.add(spec)
  local f, err = normalise(spec)
  if not f then return nil, err end
  local d = dict()
  f.id = d:incr("fault_seq", 1, 0)
  local ok, serr = d:set("fault:" .. f.id, json.encode(f))
  if not ok then return nil, "cannot store the fault: " .. tostring(serr) end
  return present(f, 0)
end

local function each(fn)
  local d = dict()
  for id = 1, d:get("fault_seq") or 0 do
    local text = d:get("fault:" .. id)
    local f = text and json.decode(text)
    if f and fn(f, d) then return f end
  end
  return nil
end

function faults.list()
  local out = json.array()
  each(function(f, d)
    out[#out + 1] = present(f, d:get("fault_uses:" .. f.id))
  end)
  return out
end

-- Removes every fault; the requests they hold go on.
function faults.clear()
  local d = dict()
  for id = 1, d:get("fault_seq") or 0 do
    d:delete("fault:" .. id)
    d:delete("fault_uses:" .. id)
  end
  hold.release()
end

-- Removes fault `id`; the requests it holds go on.
function faults.delete(id)
  dict():delete("fault:" .. id)
  hold.release(id)
end

-- The fault that takes this request, or nil. Consumes one use of it.
-- rel_path: the path relative to the API prefix. inside: true to take only faults with
-- when = "inside" (where the handler runs), false to take only the others (on arrival).
function faults.take(method, rel_path, inside)
  return each(function(f, d)
    if (f.when == "inside") == inside and (f.method == "*" or f.method == method)
      and (f.path == "*" or f.path == rel_path) then
      return d:incr("fault_uses:" .. f.id, 1, 0) <= f.count
    end
    return false
  end)
end

function faults.replaces(f)
  return faults.TYPES[f.type].replaces
end

---------------------------------------------------------------------------------------------------
-- Responses of the replacing types
---------------------------------------------------------------------------------------------------

local DEFAULT_ERRORS = {
  [400] = { "bad_request", "Bad request" },
  [401] = { "unauthorized", "Invalid or missing API key" },
  [402] = { "payment_required", "Payment required" },
  [403] = { "forbidden", "Forbidden" },
  [404] = { "not_found", "Not found" },
  [409] = { "conflict", "Conflict" },
  [422] = { "validation_error", "Validation error" },
  [429] = { "rate_limit_exceeded", "Rate limit exceeded" },
  [500] = { "internal_error", "An internal error occurred" },
  [502] = { "provider_error", "Upstream telephony provider failed" },
  [503] = { "service_unavailable", "Service temporarily unavailable" },
  [504] = { "gateway_timeout", "Gateway timeout" },
}

local REASONS = {
  [301] = "Moved Permanently", [302] = "Found", [303] = "See Other", [307] = "Temporary Redirect",
  [308] = "Permanent Redirect", [400] = "Bad Request", [403] = "Forbidden", [404] = "Not Found",
  [429] = "Too Many Requests", [500] = "Internal Server Error", [502] = "Bad Gateway",
  [503] = "Service Temporarily Unavailable", [504] = "Gateway Time-out",
}

-- The kind of page nginx or a load balancer sends for its own errors.
local function html_page(status)
  local title = status .. " " .. (REASONS[status] or "Error")
  return "<html>\r\n<head><title>" .. title .. "</title></head>\r\n<body>\r\n<center><h1>" .. title
    .. "</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
end

local BUILDERS = {}

function BUILDERS.status(f, ctx, cfg)
  local default = DEFAULT_ERRORS[f.status] or { "error", "Error" }
  local details, headers = f.details, nil
  if f.status == 429 then
    -- As the API's own 429 would say it: reset at the end of the current window.
    local window = cfg.rate_window
    local reset = (math.floor(ctx.now / window) + 1) * window
    if details == nil then
      details = json.ordered({ "limit", "reset_at" },
        { limit = cfg.rate_limit, reset_at = util.iso8601(reset, cfg.variant.time_precision == "seconds") })
    end
    if cfg.variant.rate_limit_headers == "x_ratelimit" then
      headers = ratelimit.headers({ allowed = false, limit = cfg.rate_limit, remaining = 0, reset = reset }, ctx.now)
    end
  end
  return envelope.error(ctx, f.status, f.code or default[1], f.message or default[2], details, headers)
end

function BUILDERS.html(f)
  return { status = f.status, headers = { ["Content-Type"] = "text/html" }, body = html_page(f.status) }
end

function BUILDERS.empty(f)
  return { status = f.status, headers = {}, body = "" }
end

function BUILDERS.malformed_json(f, ctx)
  local body = f.body or ('{"data":{"id":"call_' .. util.random_hex(16) .. '","status":queued,},"meta":{"request_id":"'
    .. ctx.request_id .. '"')
  return envelope.json_response(f.status, body)
end

-- Valid JSON of exactly f.bytes bytes: a call envelope whose data.padding is that many "x" less
-- the rest, or for a size too small for the envelope {"data":{"padding":"x…"}}. The padding is
-- not built here: the response carries its length, the sender streams it (see server.lua).
function BUILDERS.oversized(f, ctx)
  local data = json.ordered({ "id", "status", "padding" },
    { id = "call_" .. util.random_hex(16), status = "queued", padding = "" })
  local body = envelope.success(ctx, f.status, data).body
  local cut = body:find('"padding":""', 1, true) + #'"padding":"' - 1
  local head, tail = body:sub(1, cut), body:sub(cut + 1)
  if #head + #tail > f.bytes then head, tail = '{"data":{"padding":"', '"}}' end
  local res = envelope.json_response(f.status, head)
  res.padding, res.tail = f.bytes - #head - #tail, tail
  return res
end

function BUILDERS.redirect(f)
  local location = f.location
    or ("http://127.0.0.2:" .. ngx.var.server_port .. "/api/public/v1/calls")
  return { status = f.status, headers = { ["Content-Type"] = "text/html", Location = location },
    body = html_page(f.status) }
end

function BUILDERS.raw(f)
  local headers = {}
  for name, value in pairs(f.headers or {}) do headers[name] = tostring(value) end
  return { status = f.status, headers = headers, body = f.body }
end

-- A fault with when = "inside", where the endpoint's handler runs: sleeps its `seconds` (a hold
-- waits for its release instead, recording how in req.held), then answers for the handler (status)
-- or lets it run (delay, hold). run: the handler, returning a response.
-- What a dropped held request raises from inside a handler: it ends unprocessed.
faults.DROPPED = setmetatable({}, { __tostring = function() return "held request dropped" end })

function faults.act_inside(f, ctx, req, run)
  if f.type == "hold" then
    req.held = hold.wait(f, req)
    -- dropped: the request ends unprocessed (server.lua closes the connection; the idempotency
    -- lock is let go on the way out)
    if req.held == "dropped" then error(faults.DROPPED, 0) end
  elseif f.seconds > 0 then
    ngx.sleep(f.seconds)
  end
  if f.type == "status" then return faults.response(f, ctx, ctx.cfg) end
  return run()
end

-- The response a replacing fault sends (reset has none: the server closes the connection).
function faults.response(f, ctx, cfg)
  local build = BUILDERS[f.type]
  return build and build(f, ctx, cfg) or nil
end

return faults
