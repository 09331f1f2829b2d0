-- The nginx entry points (init, init_worker, the API content handler) and the ways a response
-- can leave the server: normally, slowly, truncated, or not at all.
--
-- One API request goes:
--   read headers and body → authenticate → write the journal entry → take a matching fault →
--   [fault "before" that replaces: answer with the fault; a delay or hold waits] → api.process
--   (where a fault "inside" acts, see api.lua) → [fault "after" that replaces: answer with the
--   fault instead; a delay or hold waits] → record the status → send (normally, or shaped by a
--   slow_body / truncate fault).
--
-- `rec` below is what the journal records about the answer: { seq = journal entry, fault = the
-- fault that shaped it or nil, held = how a hold went or nil }.

local util = require "truedy_emulator.util"
local config = require "truedy_emulator.config"
local envelope = require "truedy_emulator.envelope"
local world = require "truedy_emulator.world"
local api = require "truedy_emulator.api"
local journal = require "truedy_emulator.journal"
local faults = require "truedy_emulator.faults"
local idempotency = require "truedy_emulator.idempotency"
local hold = require "truedy_emulator.hold"
local webhooks = require "truedy_emulator.webhooks"

local server = {}

-- Set by init() from the rendered nginx.conf: { instance = token, dir = state dir, port = n }
server.options = {}

function server.init(options)
  server.options = options or {}
  -- Fail at startup, not at the first request, if the fixtures are broken.
  assert(world.fixtures.organizations[1], "fixtures: no organization")
end

function server.init_worker()
  util.seed_random()
  -- On a fresh start no config is stored yet: store the defaults. (Two workers racing here
  -- store the same defaults; after a reload the shared dicts, config included, are kept.)
  if not ngx.shared.truedy_state:get("config") then config.reset() end
  webhooks.start("http://127.0.0.1:" .. tostring(server.options.port))
end

---------------------------------------------------------------------------------------------------
-- Sending
---------------------------------------------------------------------------------------------------

-- A response is { status, headers, body } and, for an oversized fault, also { padding = n,
-- tail = s }: its body is then body .. ("x"):rep(padding) .. tail, never built in memory.
local function length_of(res)
  return #res.body + (res.padding or 0) + (res.tail and #res.tail or 0)
end

-- Statuses that have no body (nginx sends none; a Content-Length would make clients wait for one).
local NO_BODY = { [204] = true, [304] = true }

local function set_headers(res)
  ngx.status = res.status
  -- Without this nginx would add its default_type; an "empty" or "raw" fault sends no type.
  if res.headers["Content-Type"] == nil then ngx.header["Content-Type"] = nil end
  for name, value in pairs(res.headers) do ngx.header[name] = value end
  if NO_BODY[res.status] then
    ngx.header["Content-Length"] = nil
  elseif res.headers["Content-Length"] == nil then
    ngx.header["Content-Length"] = length_of(res)
  end
end

-- Sets the status and headers of `res` and completes the journal entry with the status about to
-- be sent (before a byte goes out, so a client that has its answer finds it recorded). Should
-- nginx refuse a header, the client gets a 500 internal_error instead, and the journal says so.
-- Returns the response being sent.
local function start_response(res, rec, ctx)
  local ok, err = pcall(set_headers, res)
  if not ok then
    ngx.log(ngx.ERR, "emulator: cannot set the response's headers: ", err)
    for name in pairs(res.headers) do pcall(function() ngx.header[name] = nil end) end
    res = envelope.error(ctx, 500, "internal_error", "An internal error occurred")
    set_headers(res)
  end
  journal.finish(rec.seq, res.status, rec.fault, rec.held)
  return res
end

local PAD_CHUNK = string.rep("x", 64 * 1024)

-- The padding of an oversized response, in 64 KiB pieces, each flushed before the next is made:
-- the worker holds one piece at a time, whatever the size.
local function send_padding(n)
  while n > 0 do
    local piece = n >= #PAD_CHUNK and PAD_CHUNK or PAD_CHUNK:sub(1, n)
    ngx.print(piece)
    if not ngx.flush(true) then return end -- the client is gone
    n = n - #piece
  end
end

local function send(res, rec, ctx)
  res = start_response(res, rec, ctx)
  if NO_BODY[res.status] then return end
  if #res.body > 0 then ngx.print(res.body) end
  if res.padding then
    send_padding(res.padding)
    ngx.print(res.tail)
  end
end

-- Headers at once, then the body in about 20 flushed pieces spread over `seconds`.
local function send_slowly(res, seconds, rec, ctx)
  res = start_response(res, rec, ctx)
  ngx.send_headers()
  ngx.flush(true)
  local body = res.body
  local pieces = math.max(1, math.min(#body, 20))
  local size = math.ceil(#body / pieces)
  for i = 0, pieces - 1 do
    ngx.sleep(seconds / pieces)
    ngx.print(body:sub(i * size + 1, (i + 1) * size))
    ngx.flush(true)
  end
end

-- Content-Length of the whole body, then only `bytes` of it (default: half), then the connection
-- closes: the client sees a short read.
local function send_truncated(res, bytes, rec, ctx)
  res = start_response(res, rec, ctx)
  local full = #res.body
  local n = bytes or math.floor(full / 2)
  if n >= full then n = full - 1 end
  if n < 0 then n = 0 end
  ngx.send_headers()
  if n > 0 then ngx.print(res.body:sub(1, n)) end
  ngx.flush(true)
  return ngx.exit(444)
end

-- Closes the connection without a byte of response (nginx's special status 444).
local function close_without_response()
  return ngx.exit(444)
end

---------------------------------------------------------------------------------------------------
-- The API handler
---------------------------------------------------------------------------------------------------

local function read_body()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if body then return body end
  local file = ngx.req.get_body_file() -- bodies over client_body_buffer_size land in a file
  if file then
    local f = io.open(file, "rb")
    if f then
      body = f:read("*a")
      f:close()
    end
  end
  return body or ""
end

local function last_value(v)
  if type(v) == "table" then return v[#v] end
  return v
end

local function process(req, ctx)
  local ok, res = xpcall(api.process, debug.traceback, req, ctx)
  if ok then return res end
  if res == faults.DROPPED then return nil end -- a held request dropped inside the handler
  ngx.log(ngx.ERR, "emulator error: ", res)
  return envelope.error(ctx, 500, "internal_error", "An internal error occurred")
end

local function answer_with_fault(rec, ctx, cfg)
  local fault = rec.fault
  if fault.type == "reset" then
    journal.finish(rec.seq, 444, fault, rec.held)
    return close_without_response()
  end
  if fault.seconds and fault.seconds > 0 then ngx.sleep(fault.seconds) end
  return send(faults.response(fault, ctx, cfg), rec, ctx)
end

-- A fault that does not replace the answer but makes it wait: a delay sleeps, a hold waits
-- for its release (recorded in req.held).
local function wait_for(fault, req)
  if fault.type == "delay" then
    ngx.sleep(fault.seconds)
  elseif fault.type == "hold" then
    req.held = hold.wait(fault, req)
  end
end

function server.handle_api()
  local method = ngx.req.get_method()
  local path = ngx.var.uri
  local headers = ngx.req.get_headers(200)
  local body = read_body()
  local auth = world.authenticate(headers.authorization)
  local cfg = config.get()
  local ctx = envelope.context(cfg)

  local seq = journal.begin {
    method = method, path = path, query = ngx.var.args, headers = headers, body = body,
    auth = auth.kind == "ok" and auth.org or auth.kind,
  }
  local rel = api.relative_path(path)
  local fault = rel and faults.take(method, rel, false)
  local req = {
    seq = seq, method = method, path = path, args = ngx.req.get_uri_args(200), body = body, auth = auth,
    idempotency_key = last_value(headers["x-idempotency-key"]),
    recording_base = "http://" .. ngx.var.server_addr .. ":" .. ngx.var.server_port,
    may_take_inside = rel ~= nil and not fault,
  }

  -- A client that hangs up (e.g. during a delay or a hold) is recorded as nginx logs it: 499.
  ngx.on_abort(function()
    idempotency.abandon()
    local was_holding = hold.abandon()
    journal.finish(seq, 499, fault or req.inside_fault, was_holding and "hung_up" or req.held)
    return ngx.exit(499)
  end)

  -- A held request that was dropped ends here: never processed (or, after, never answered).
  local function dropped()
    idempotency.abandon()
    journal.finish(seq, 444, fault or req.inside_fault, "dropped")
    return close_without_response()
  end

  if fault and fault.when == "before" then
    if faults.replaces(fault) then return answer_with_fault({ seq = seq, fault = fault }, ctx, cfg) end
    wait_for(fault, req)
    if req.held == "dropped" then return dropped() end
  end

  local res = process(req, ctx)
  if res == nil then return dropped() end
  fault = fault or req.inside_fault
  local rec = { seq = seq, fault = fault, held = req.held }

  if fault and fault.when == "after" then
    if faults.replaces(fault) then return answer_with_fault(rec, ctx, cfg) end
    wait_for(fault, req)
    if req.held == "dropped" then return dropped() end
    rec.held = req.held
  end

  if fault and fault.type == "slow_body" then return send_slowly(res, fault.seconds, rec, ctx) end
  if fault and fault.type == "truncate" then return send_truncated(res, fault.bytes, rec, ctx) end
  return send(res, rec, ctx)
end

return server
