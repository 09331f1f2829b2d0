-- Webhooks: as the lifecycle clock moves each call, the emulator POSTs signed events to the
-- endpoint a test set through the control surface, at least once, as the real service does.
--
--   ringing → call.started    in-progress → call.joined    failed → call.failed
--   ended or cancelled → call.ended, then call.billed (its data carries cost_credits)
--
-- Body {"event", "timestamp" (the transition's time on the call's emulated timeline, as the API
-- writes times), "data" (the call object as it stood then, in the variants in force), "id"
-- ("evt_...", the same on every delivery of one event)}. Headers X-Truedy-Timestamp (wall clock,
-- Unix seconds, whatever the emulated clock's speed) and X-Truedy-Signature (hex HMAC-SHA256 of
-- "<timestamp>.<raw body>" keyed with the secret), computed afresh for each attempt.
--
-- A timer runs in every worker every TICK seconds; a tick does something only with the lock (an
-- `add` in the shared dict), so one worker at a time generates and delivers: no event twice, and
-- one order. A tick (1) looks at the calls created while an endpoint was set (the `track` list),
-- queues the events of every transition their age has passed (a clock jump: all of them), ordered
-- by emulated time, then (2) delivers the queue in order. Delivery is first in, first out: an
-- event that gets a non-2xx answer or no answer (timeout, refused) is retried after
-- retry_base * 2^(attempt - 1) seconds (at most 30) up to max_attempts times, and the events
-- behind it wait. Faults (POST /__emulator/webhook/faults) deliver an event twice, or swap it with
-- the next one. Every attempt is recorded in the deliveries list (not in the request journal).
--
-- Shared dict `truedy_webhooks`: endpoint (JSON), generation, track (list of call ids),
-- cursor:<call id> (transitions already queued), queue (list of JSON items), delivery_seq,
-- delivery:<n>, fault_seq, fault:<n>, fault_uses:<n>, tick_lock; and the sink's keys (sink.lua).
-- `generation` is drawn when an endpoint is first set after a reset (or a DELETE): queued items
-- carry it, and a tick drops items of another generation, so a tick still running across a reset
-- cannot deliver its leftovers to the next test's endpoint.

local json = require "truedy_emulator.json"
local util = require "truedy_emulator.util"
local config = require "truedy_emulator.config"
local calls = require "truedy_emulator.calls"
local call_view = require "truedy_emulator.call_view"
local lifecycle = require "truedy_emulator.lifecycle"
local hmac = require "truedy_emulator.hmac"
local http_post = require "truedy_emulator.http_post"

local webhooks = {}

webhooks.TICK = 0.05           -- seconds between ticks
local LOCK_TTL = 60            -- a tick that died cannot hold the lock longer than this
local TICK_BUDGET = 2          -- seconds of delivering per tick, at most (then the next tick goes on)
local TRACK_PER_TICK = 5000    -- calls looked at per tick, at most
local MAX_BACKOFF = 30
local SWAP_WAIT = 5            -- seconds an out_of_order fault waits for a second event

local ENDPOINT_OPTIONS = {
  max_attempts = { 1, 10, 5, true },      -- min, max, default, integer
  retry_base = { 0.01, 60, 0.5, false },
  timeout = { 0.05, 60, 5, false },
}

local EVENTS = {
  ringing = { "call.started" },
  ["in-progress"] = { "call.joined" },
  ended = { "call.ended", "call.billed" },
  cancelled = { "call.ended", "call.billed" },
  failed = { "call.failed" },
}

local function dict() return ngx.shared.truedy_webhooks end

---------------------------------------------------------------------------------------------------
-- The endpoint
---------------------------------------------------------------------------------------------------

-- Sets the endpoint from a control body { url, secret, max_attempts?, retry_base?, timeout? }.
-- Returns the endpoint as shown, or nil and a message.
function webhooks.set_endpoint(doc)
  if not json.is_object(doc) then return nil, "the body must be a JSON object" end
  local _, err = http_post.parse_url(doc.url)
  if err then return nil, err end
  if type(doc.secret) ~= "string" or doc.secret == "" or #doc.secret > 4096 then
    return nil, "secret must be a non-empty string (such as whsec_...)"
  end
  local e = { url = doc.url, secret = doc.secret }
  for name, value in pairs(doc) do
    local opt = ENDPOINT_OPTIONS[name]
    if opt then
      if type(value) ~= "number" or value < opt[1] or value > opt[2] or (opt[4] and value ~= math.floor(value)) then
        return nil, name .. " must be " .. (opt[4] and "an integer" or "a number") .. " in " .. opt[1] .. ".." .. opt[2]
      end
      e[name] = value
    elseif name ~= "url" and name ~= "secret" then
      return nil, "unknown field: " .. tostring(name) .. " (expected url, secret, max_attempts, retry_base, timeout)"
    end
  end
  for name, opt in pairs(ENDPOINT_OPTIONS) do
    if e[name] == nil then e[name] = opt[3] end
  end
  local d = dict()
  d:add("generation", util.random_hex(16))
  local ok, serr = d:set("endpoint", json.encode(e))
  if not ok then return nil, "cannot store the endpoint: " .. tostring(serr) end
  return webhooks.endpoint_public()
end

local function endpoint()
  local text = dict():get("endpoint")
  return text and json.decode(text)
end

-- The endpoint as the control surface shows it: never the secret.
function webhooks.endpoint_public()
  local e = endpoint()
  if not e then return json.null end
  return json.ordered({ "url", "secret_set", "max_attempts", "retry_base", "timeout" },
    { url = e.url, secret_set = true, max_attempts = e.max_attempts, retry_base = e.retry_base, timeout = e.timeout })
end

-- Forgets the endpoint and what it had pending (tracked calls, queued events).
function webhooks.clear_endpoint()
  local d = dict()
  d:delete("endpoint")
  d:delete("generation")
  while true do
    local id = d:lpop("track")
    if not id then break end
    d:delete("cursor:" .. id)
  end
  while d:lpop("queue") do end
end

-- Follows a newly created call, when an endpoint is set (calls created meanwhile send nothing).
function webhooks.track(record)
  local d = dict()
  if not d:get("endpoint") then return end
  local ok, err = d:rpush("track", record.id)
  if not ok then ngx.log(ngx.ERR, "emulator: cannot track call for webhooks: ", err) end
end

---------------------------------------------------------------------------------------------------
-- Faults of delivery
---------------------------------------------------------------------------------------------------

local FAULT_TYPES = { duplicate = true, out_of_order = true }

function webhooks.add_fault(doc)
  if not json.is_object(doc) then return nil, "the body must be a JSON object" end
  if not FAULT_TYPES[doc.type] then return nil, "type must be one of: duplicate, out_of_order" end
  local count = doc.count == nil and 1 or doc.count
  if type(count) ~= "number" or count ~= math.floor(count) or count < 1 or count > 1e6 then
    return nil, "count must be an integer >= 1"
  end
  for name in pairs(doc) do
    if name ~= "type" and name ~= "count" then return nil, "unknown field: " .. tostring(name) end
  end
  local d = dict()
  local f = { id = d:incr("fault_seq", 1, 0), type = doc.type, count = count }
  d:set("fault:" .. f.id, json.encode(f))
  return json.ordered({ "id", "type", "count", "remaining" },
    { id = f.id, type = f.type, count = f.count, remaining = f.count })
end

function webhooks.list_faults()
  local d = dict()
  local out = json.array()
  for id = 1, d:get("fault_seq") or 0 do
    local text = d:get("fault:" .. id)
    local f = text and json.decode(text)
    if f then
      local used = math.min(d:get("fault_uses:" .. id) or 0, f.count)
      out[#out + 1] = json.ordered({ "id", "type", "count", "remaining" },
        { id = f.id, type = f.type, count = f.count, remaining = f.count - used })
    end
  end
  return out
end

function webhooks.clear_faults()
  local d = dict()
  for id = 1, d:get("fault_seq") or 0 do
    d:delete("fault:" .. id)
    d:delete("fault_uses:" .. id)
  end
end

-- Whether a fault of `type` has a use left; takes it when `take`.
local function fault_left(type, take)
  local d = dict()
  for id = 1, d:get("fault_seq") or 0 do
    local text = d:get("fault:" .. id)
    local f = text and json.decode(text)
    if f and f.type == type and (d:get("fault_uses:" .. id) or 0) < f.count then
      if take then d:incr("fault_uses:" .. id, 1, 0) end
      return true
    end
  end
  return false
end

---------------------------------------------------------------------------------------------------
-- Deliveries
---------------------------------------------------------------------------------------------------

local DELIVERY_FIELDS = { "seq", "event_id", "event", "call_id", "attempt", "duplicate", "url", "timestamp", "status",
  "error", "outcome", "at" }

local function record_delivery(r)
  local d = dict()
  r.seq = d:incr("delivery_seq", 1, 0)
  r.at = util.iso8601(util.now())
  local ok, err = d:set("delivery:" .. r.seq, json.encode(json.ordered(DELIVERY_FIELDS, r)))
  if not ok then ngx.log(ngx.WARN, "emulator: delivery ", r.seq, " not recorded: ", err) end
end

-- The delivery attempts with seq > since, oldest first, as a JSON array.
function webhooks.deliveries(since)
  local d = dict()
  local out = json.array()
  for seq = (since or 0) + 1, d:get("delivery_seq") or 0 do
    local text = d:get("delivery:" .. seq)
    if text then out[#out + 1] = json.ordered(DELIVERY_FIELDS, json.decode(text)) end
  end
  return out
end

function webhooks.clear_deliveries()
  local d = dict()
  for seq = 1, d:get("delivery_seq") or 0 do d:delete("delivery:" .. seq) end
  d:delete("delivery_seq")
end

local function wall_seconds()
  ngx.update_time()
  return ngx.time()
end

-- One POST of queued item `item` to endpoint `e`. Returns true when answered 2xx. Records it.
local function post(e, item, duplicate)
  local target = http_post.parse_url(e.url)
  local timestamp = string.format("%d", wall_seconds())
  local headers = {
    ["Content-Type"] = "application/json",
    ["User-Agent"] = "truedy-emulator-webhooks",
    ["X-Truedy-Timestamp"] = timestamp,
    ["X-Truedy-Signature"] = hmac.sha256_hex(e.secret, timestamp .. "." .. item.body),
  }
  local status, err
  if target then
    status, err = http_post.send(target, headers, item.body, e.timeout)
  else
    err = "bad url"
  end
  local ok = status ~= nil and status >= 200 and status < 300
  if not ok and not err then err = "answered " .. status end
  local outcome = ok and "delivered" or ((duplicate or item.attempt >= e.max_attempts) and "gave_up" or "retry")
  record_delivery { event_id = item.id, event = item.event, call_id = item.call_id, attempt = item.attempt,
    duplicate = duplicate or false, url = e.url, timestamp = tonumber(timestamp), status = status or json.null,
    error = err or json.null, outcome = outcome }
  return ok
end

-- Delivers the head of the queue (already popped: `item`). Returns false when the queue must wait
-- (the item goes back to the head, due later).
local function deliver(e, item)
  local d = dict()
  item.attempt = item.attempt + 1
  if post(e, item, false) then
    if fault_left("duplicate", true) then post(e, item, true) end
    return true
  end
  if item.attempt < e.max_attempts then
    item.due = util.now() + math.min(e.retry_base * 2 ^ (item.attempt - 1), MAX_BACKOFF)
    d:lpush("queue", json.encode(item))
    return false
  end
  return true -- given up: the next event goes
end

local function deliver_queue(e)
  local d = dict()
  local deadline = util.now() + TICK_BUDGET
  local generation = d:get("generation")
  while util.now() < deadline do
    local text = d:lpop("queue")
    if not text then return end
    local item = json.decode(text)
    if item.generation ~= generation then
      -- queued before a reset: drop it
      item = nil
    elseif item.due > util.now() then
      d:lpush("queue", text)
      return
    end
    if item and fault_left("out_of_order", false) then
      local second = d:lpop("queue")
      if second then
        -- the one behind goes first; this one stays at the head for the next round
        fault_left("out_of_order", true)
        d:lpush("queue", text)
        item = json.decode(second)
      elseif not item.waiting_since or util.now() - item.waiting_since < SWAP_WAIT then
        item.waiting_since = item.waiting_since or util.now()
        d:lpush("queue", json.encode(item))
        return -- wait (a little) for an event to swap it with
      end
    end
    if item and not deliver(e, item) then return end
  end
end

---------------------------------------------------------------------------------------------------
-- Events
---------------------------------------------------------------------------------------------------

local ENVELOPE = { "event", "timestamp", "data", "id" }

local function event_body(name, record, cfg, age, base, id)
  local data = call_view.present_at(record, cfg, age, base)
  if name == "call.billed" then data.cost_credits = call_view.cost(record, age) or 0 end
  return json.encode(json.ordered(ENVELOPE, {
    event = name, timestamp = call_view.time(record.created_at + age, cfg), data = data, id = id,
  }))
end

-- Queues the events every tracked call has passed by emulated time `emulated`, oldest first.
local function generate(cfg, emulated, base)
  local d = dict()
  local generation = d:get("generation")
  local pending = {}
  for _ = 1, math.min(d:llen("track") or 0, TRACK_PER_TICK) do
    local id = d:lpop("track")
    if not id then break end
    local record = calls.get_any(id)
    if record then
      local age = emulated - record.created_emulated
      local transitions = lifecycle.transitions(record)
      local done = d:get("cursor:" .. id) or 0
      while done < #transitions and transitions[done + 1].age <= age do
        done = done + 1
        local t = transitions[done]
        for k, name in ipairs(EVENTS[t.status] or {}) do
          pending[#pending + 1] = { at = record.created_emulated + t.age, created = record.created_at, index = done,
            sub = k, name = name, record = record, age = t.age }
        end
      end
      if done < #transitions then
        d:set("cursor:" .. id, done)
        d:rpush("track", id)
      else
        d:delete("cursor:" .. id)
      end
    end
  end
  table.sort(pending, function(a, b)
    if a.at ~= b.at then return a.at < b.at end
    if a.created ~= b.created then return a.created < b.created end
    if a.record.id ~= b.record.id then return a.record.id < b.record.id end
    if a.index ~= b.index then return a.index < b.index end
    return a.sub < b.sub
  end)
  for _, p in ipairs(pending) do
    local id = "evt_" .. util.random_hex(24)
    local item = { id = id, generation = generation, event = p.name, call_id = p.record.id, attempt = 0, due = 0,
      body = event_body(p.name, p.record, cfg, p.age, base, id) }
    local ok, err = d:rpush("queue", json.encode(item))
    if not ok then ngx.log(ngx.ERR, "emulator: webhook event dropped: ", err) end
  end
end

---------------------------------------------------------------------------------------------------
-- The timer
---------------------------------------------------------------------------------------------------

local function tick(premature, base)
  if premature then return end
  local d = dict()
  if not d:get("endpoint") then return end
  if (d:llen("track") or 0) == 0 and (d:llen("queue") or 0) == 0 then return end
  local token = util.random_hex(16)
  if not d:add("tick_lock", token, LOCK_TTL) then return end
  local ok, err = pcall(function()
    local cfg = config.get()
    generate(cfg, config.emulated_now(cfg, util.now()), base)
    local e = endpoint()
    if e then deliver_queue(e) end
  end)
  -- (a reset meanwhile may have let another tick take the lock: leave that one's alone)
  if d:get("tick_lock") == token then d:delete("tick_lock") end
  if not ok then ngx.log(ngx.ERR, "emulator: webhook tick failed: ", err) end
end

-- Starts this worker's timer. base: "http://127.0.0.1:PORT" (for recording URLs in event data).
function webhooks.start(base)
  local ok, err = ngx.timer.every(webhooks.TICK, tick, base)
  if not ok then ngx.log(ngx.ERR, "emulator: cannot start the webhook timer: ", err) end
end

return webhooks
