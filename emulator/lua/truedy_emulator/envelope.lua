-- Response envelopes of the Truedy API, in the variant the config selects.
--
-- Default (the contract's consistent variant):
--   success  {"data": ..., "meta": {"request_id": "req_...", "ts": "...Z"}}   (+ "pagination")
--   error    {"error": {"code", "message", "details"?}, "meta": {"request_id", "ts"}}
-- Variants (config.variant): meta.timestamp instead of meta.ts; request_id/ts inside `error` and
-- no `meta` (older backends); a bare UUID as request_id.
--
-- A response is a plain table { status = n, headers = { name = value }, body = "..." } so that a
-- fault can replace or reshape it before it is sent (see server.lua).

local json = require "truedy_emulator.json"
local util = require "truedy_emulator.util"

local envelope = {}

-- Per-request context: the config in force, the request id and the time the request arrived.
function envelope.context(cfg)
  local now = util.now()
  local request_id
  if cfg.variant.request_id_style == "uuid" then
    request_id = util.uuid4()
  else
    request_id = "req_" .. util.random_hex(24)
  end
  return { cfg = cfg, request_id = request_id, now = now, ts = util.iso8601(now) }
end

function envelope.meta(ctx)
  local time_key = ctx.cfg.variant.meta_time_key
  return json.ordered({ "request_id", time_key }, { request_id = ctx.request_id, [time_key] = ctx.ts })
end

function envelope.json_response(status, body, headers)
  local h = { ["Content-Type"] = "application/json" }
  for k, v in pairs(headers or {}) do h[k] = v end
  return { status = status, headers = h, body = body }
end

function envelope.success(ctx, status, data, pagination)
  local doc = json.ordered({ "data", "meta", "pagination" }, {
    data = data,
    meta = envelope.meta(ctx),
    pagination = pagination,
  })
  return envelope.json_response(status, json.encode(doc))
end

-- The error body alone (also used by faults of type "status").
function envelope.error_body(ctx, code, message, details)
  local err = json.ordered({ "code", "message", "details", "request_id", "ts", "timestamp" }, {
    code = code,
    message = message,
    details = details,
  })
  if ctx.cfg.variant.error_meta == "inside_error" then
    err.request_id = ctx.request_id
    err[ctx.cfg.variant.meta_time_key] = ctx.ts
    return json.encode({ error = err })
  end
  return json.encode(json.ordered({ "error", "meta" }, { error = err, meta = envelope.meta(ctx) }))
end

function envelope.error(ctx, status, code, message, details, headers)
  return envelope.json_response(status, envelope.error_body(ctx, code, message, details), headers)
end

return envelope
