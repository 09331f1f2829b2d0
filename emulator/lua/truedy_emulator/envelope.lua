-- Response envelopes of the Truedy API, in the variant the config selects.
--
-- Default (the contract's consistent variant):
--   success  {"data": ..., "meta": {"request_id": "req_...", "ts": "...Z"}}   (+ "pagination")
--   error    {"error": {"code", "message", "details"?}, "meta": {"request_id", "ts"}}
-- Variants (config.variant): meta.timestamp instead of meta.ts; request_id/ts inside `error` and
-- no `meta` (older backends); a bare UUID as request_id; timestamps in whole seconds; a list's
-- counts in `meta` (count, or total/limit/offset) instead of `pagination`; `"details": {}` on an
-- error that has none.
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
  return { cfg = cfg, request_id = request_id, now = now,
    ts = util.iso8601(now, cfg.variant.time_precision == "seconds") }
end

local META_ORDER = { "request_id", "ts", "timestamp", "count", "total", "limit", "offset" }

-- extra: more meta fields (a list's counts), or nil.
function envelope.meta(ctx, extra)
  local meta = json.ordered(META_ORDER, { request_id = ctx.request_id, [ctx.cfg.variant.meta_time_key] = ctx.ts })
  for k, v in pairs(extra or {}) do meta[k] = v end
  return meta
end

function envelope.json_response(status, body, headers)
  local h = { ["Content-Type"] = "application/json" }
  for k, v in pairs(headers or {}) do h[k] = v end
  return { status = status, headers = h, body = body }
end

local function success_doc(ctx, data, meta_extra, pagination)
  return json.ordered({ "data", "meta", "pagination" },
    { data = data, meta = envelope.meta(ctx, meta_extra), pagination = pagination })
end

function envelope.success(ctx, status, data)
  return envelope.json_response(status, json.encode(success_doc(ctx, data)))
end

-- A page of a list: page (a JSON array), and p = { total, limit, offset } placed as the
-- `pagination` variant says.
function envelope.list(ctx, page, p)
  local style = ctx.cfg.variant.pagination
  local doc
  if style == "meta_count" then
    doc = success_doc(ctx, page, { count = #page })
  elseif style == "meta_fields" then
    doc = success_doc(ctx, page, { total = p.total, limit = p.limit, offset = p.offset })
  else
    doc = success_doc(ctx, page, nil, json.ordered({ "total", "limit", "offset", "has_more" },
      { total = p.total, limit = p.limit, offset = p.offset, has_more = p.offset + #page < p.total }))
  end
  return envelope.json_response(200, json.encode(doc))
end

-- The error body alone (also used by faults of type "status").
function envelope.error_body(ctx, code, message, details)
  if details == nil and ctx.cfg.variant.error_details == "empty" then details = {} end
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
