-- A webhook receiver for tests, on the control surface: POST /__emulator/sink records what it
-- receives (raw body and headers, exactly), so specs can check deliveries and their signatures
-- with a tool of their own, without running another server. It answers 200, or, for the next
-- `count` deliveries after POST /__emulator/sink/fail, that `status` after `delay` seconds (a
-- delay longer than the sender's timeout makes the sender time out).
--
-- Shared dict `truedy_webhooks`: sink_seq, sink:<n> (JSON), sink_fail_left (atomic counter),
-- sink_fail (JSON { status, delay }).

local json = require "truedy_emulator.json"
local util = require "truedy_emulator.util"

local sink = {}

local BODY_CAP = 1024 * 1024

local function dict() return ngx.shared.truedy_webhooks end

local FIELDS = { "seq", "at", "method", "path", "headers", "body", "body_base64", "status" }

-- Handles a delivery. Returns the status answered.
function sink.receive()
  local d = dict()
  ngx.req.read_body()
  local body = ngx.req.get_body_data() or ""
  local headers = {}
  for name, value in pairs(ngx.req.get_headers(100)) do headers[name] = value end
  -- Taken with one atomic step, so `count` failures are exactly `count` deliveries, across workers.
  local left = d:get("sink_fail_left") and d:incr("sink_fail_left", -1) or -1
  local plan = left >= 0 and json.decode(d:get("sink_fail") or "{}") or nil
  local status = plan and plan.status or 200
  local entry = { seq = d:incr("sink_seq", 1, 0), at = util.iso8601(util.now()), method = ngx.req.get_method(),
    path = ngx.var.uri, headers = headers, body = json.sanitize_utf8(body:sub(1, BODY_CAP)), status = status }
  if entry.body ~= body then entry.body_base64 = ngx.encode_base64(body:sub(1, BODY_CAP)) end
  local ok, err = d:set("sink:" .. entry.seq, json.encode(json.ordered(FIELDS, entry)))
  if not ok then ngx.log(ngx.WARN, "emulator: sink entry not stored: ", err) end
  if plan and plan.delay and plan.delay > 0 then ngx.sleep(plan.delay) end
  return status
end

-- What the sink received with seq > since, oldest first (a JSON array).
function sink.list(since)
  local d = dict()
  local out = json.array()
  for seq = (since or 0) + 1, d:get("sink_seq") or 0 do
    local text = d:get("sink:" .. seq)
    if text then out[#out + 1] = json.ordered(FIELDS, json.decode(text)) end
  end
  return out
end

-- Makes the next `count` deliveries get `status` after `delay` seconds. Returns the plan shown, or
-- nil and a message.
function sink.fail(doc)
  if not json.is_object(doc) then return nil, "the body must be a JSON object" end
  local count = doc.count == nil and 1 or doc.count
  local status = doc.status == nil and 500 or doc.status
  local delay = doc.delay == nil and 0 or doc.delay
  if type(count) ~= "number" or count ~= math.floor(count) or count < 0 or count > 1e6 then
    return nil, "count must be an integer >= 0"
  end
  if type(status) ~= "number" or status ~= math.floor(status) or status < 200 or status > 599 then
    return nil, "status must be an integer in 200..599"
  end
  if type(delay) ~= "number" or delay < 0 or delay > 60 then return nil, "delay must be a number in 0..60" end
  for name in pairs(doc) do
    if name ~= "count" and name ~= "status" and name ~= "delay" then
      return nil, "unknown field: " .. tostring(name) .. " (expected count, status, delay)"
    end
  end
  local d = dict()
  d:set("sink_fail", json.encode({ status = status, delay = delay }))
  d:set("sink_fail_left", count)
  return json.ordered({ "count", "status", "delay" }, { count = count, status = status, delay = delay })
end

function sink.clear()
  local d = dict()
  for seq = 1, d:get("sink_seq") or 0 do d:delete("sink:" .. seq) end
  d:delete("sink_seq")
  d:delete("sink_fail")
  d:delete("sink_fail_left")
end

return sink
