-- Receive Truedy webhooks: verify each delivery's signature, drop redeliveries.
--
-- No server needed: this script plays both sides.  It signs a call's events the way
-- Truedy (and the bundled emulator) sends them, then hands each one to `receive`,
-- the function a web handler would run for one POST (in OpenResty:
-- receive(ngx.req.get_body_data(), ngx.req.get_headers())).
--
--   TRUEDY_WEBHOOK_SECRET   the endpoint's secret (whsec_...); a sample one otherwise
--
-- Run:  LUA_CPATH='build/5.4/?.so;;' lua5.4 examples/webhook.lua
local truedy = require "truedy"
local cjson = require "cjson"

local secret = os.getenv("TRUEDY_WEBHOOK_SECRET") or "whsec_example_0123456789abcdefABCDEF"

-- ---- the receiver ------------------------------------------------------------

-- Delivery is at least once: the same event can arrive again (a retry after a
-- lost answer, a timeout).  Its `id` says so.  In production keep the ids
-- somewhere shared with an expiry longer than Truedy's retries (an
-- ngx.shared dict, Redis); here a table.
local handled_ids = {}
local counts = { handled = 0, redeliveries = 0, refused = 0 }

-- An event's data is the call object, as get_call returns it.
local function handle(event)
  local call = event.data or {}
  if event.event == "call.ended" then
    print(string.format("  call %s %s after %d s", call.id, call.status, call.duration_seconds or 0))
  elseif event.event == "call.billed" then
    print(string.format("  call %s billed %.2f credits", call.id, call.cost_credits or 0))
  else
    print(string.format("  call %s: %s (%s)", call.id, event.event, call.status))
  end
end

-- Returns the HTTP status to answer.
local function receive(raw_body, headers)
  local event, err = truedy.webhook.verify(raw_body, headers, secret)
  if not event then
    counts.refused = counts.refused + 1
    print(string.format("  refused, %s: %s", err.code, err.message))
    -- 401 for a signature or timestamp that does not hold, 400 for a body that is no event
    return err.code == "bad_body" and 400 or 401
  end
  if event.id and handled_ids[event.id] then
    counts.redeliveries = counts.redeliveries + 1
    print(string.format("  %s (%s) was handled already: a redelivery, dropped", event.id, event.event))
    return 200 -- a 2xx, so the sender stops retrying
  end
  handle(event)
  -- marked once handled: had handling failed, the retry would get its turn
  if event.id then handled_ids[event.id] = true end
  counts.handled = counts.handled + 1
  return 200
end

-- ---- the sender, as Truedy does it -------------------------------------------

local function envelope(id, name, data)
  return { id = id, event = name, timestamp = os.date("!%Y-%m-%dT%H:%M:%SZ"), data = data }
end

-- POST one event: the body is signed as sent, byte for byte.
local function deliver(what, event, options)
  options = options or {}
  local body = cjson.encode(event)
  local timestamp, signature = truedy.webhook.sign(body, options.secret or secret, options.timestamp)
  if options.change then body = options.change(body) end
  -- header names as ngx.req.get_headers() and LuaSocket give them: lower case
  local headers = { ["content-type"] = "application/json",
                    ["x-truedy-timestamp"] = timestamp, ["x-truedy-signature"] = signature }
  print(string.format("%s: %s %s", what, event.event, event.id))
  print("  -> " .. receive(body, headers))
end

local call = "call_7f3a9c"
local started = envelope("evt_001", "call.started", { id = call, status = "ringing" })
local joined = envelope("evt_002", "call.joined", { id = call, status = "in-progress" })
local ended = envelope("evt_003", "call.ended", { id = call, status = "ended", duration_seconds = 42 })
local billed = envelope("evt_004", "call.billed", { id = call, status = "ended", cost_credits = 0.35 })

deliver("delivery", started)
deliver("delivery", joined)
deliver("delivery", ended)
deliver("retry (our answer was lost)", ended) -- the same event again: new timestamp, same id
deliver("delivery", billed)

-- What an attacker can try, and what verify says to it.
deliver("forged (another secret)", envelope("evt_666", "call.ended", { id = call }),
  { secret = "whsec_not_the_right_one" })
deliver("changed after signing", billed,
  { change = function(body) return (body:gsub('"cost_credits":0%.35', '"cost_credits":0.01')) end })
deliver("replayed from 10 minutes ago", billed, { timestamp = os.time() - 600 })

print(string.format("handled %d events, dropped %d redelivery, refused %d deliveries",
  counts.handled, counts.redeliveries, counts.refused))
