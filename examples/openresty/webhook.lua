-- luacheck: std +ngx_lua
-- The webhook receiver of examples/openresty/nginx.conf (POST /truedy/webhook): Truedy POSTs a
-- signed event as each call moves (call.started, call.joined, call.ended, call.failed,
-- call.billed), at least once.
--
--   1. verify the signature (truedy.webhook.verify) over the exact bytes received: the body must
--      be in memory (client_body_buffer_size = client_max_body_size in nginx.conf);
--   2. drop a redelivery: the event's id is claimed in a lua_shared_dict (atomic across
--      workers), marked done once handled, and let go if handling failed (so the retry is
--      handled);
--   3. handle it (here: log each call's end), and answer: 200 handled or already handled,
--      400/401 refused (a bad body; a signature that does not hold, or none, or a stale
--      timestamp), 409 the same event being handled right now by another request, 500
--      handling failed. Any non-2xx makes Truedy deliver again later.
--
-- The secret comes from TRUEDY_WEBHOOK_SECRET (nginx.conf: `env TRUEDY_WEBHOOK_SECRET;`); while
-- you rotate it, give the old and the new one separated by a space: either is accepted.

local truedy = require "truedy.resty"
local cjson = require("cjson").new()

local webhook = {}

-- The shared dict of ids (nginx.conf: lua_shared_dict webhooks ...).
local DICT = "webhooks"
-- An id is remembered this long once handled: longer than the sender keeps retrying one event.
local SEEN_TTL = 24 * 3600
-- A claim lasts at most this long, should the request handling it die on the way.
local HANDLING_TTL = 60
-- The receiver's record (what became of the latest deliveries), for people and specs.
local RECENT = 200

local function dict() return ngx.shared[DICT] end

local function answer(status, body)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(body))
  return ngx.exit(status)
end

local function secrets()
  local list = {}
  for s in (os.getenv("TRUEDY_WEBHOOK_SECRET") or ""):gmatch("%S+") do list[#list + 1] = s end
  return #list > 0 and list or nil
end

-- One line of the record: { outcome, status (answered), id, event, call_id, code }.
local function record(entry)
  local d = dict()
  local n = d:incr("recent:seq", 1, 0)
  d:set("recent:" .. n, cjson.encode(entry))
  d:delete("recent:" .. (n - RECENT))
end

-- What to do with an event. Here: log how each call ended. Raise if handling failed (a
-- database down...): the id is then let go and the sender gets a 500, so it delivers again.
local function handle(event)
  local call = type(event.data) == "table" and event.data or {}
  if event.event == "call.ended" or event.event == "call.failed" then
    ngx.log(ngx.NOTICE, "webhook: call ", tostring(call.id), " ", event.event == "call.failed" and "failed" or "ended",
      " (status ", tostring(call.status), ", ", tostring(call.duration_seconds or 0), " s, event ", event.id, ")")
  end
end

-- testing.conf's switch: how many of the next new events fail as if handling had failed.
local function forced_failure()
  local left = dict():get("fail_next")
  return left ~= nil and left > 0 and dict():incr("fail_next", -1) >= 0
end

function webhook.receive()
  if ngx.req.get_method() ~= "POST" then return answer(405, { error = "use POST" }) end
  local keys = secrets()
  if not keys then
    ngx.log(ngx.ERR, "webhook: no secret: set TRUEDY_WEBHOOK_SECRET and add `env TRUEDY_WEBHOOK_SECRET;` to nginx.conf")
    return answer(500, { error = "not configured" })
  end
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if not body and ngx.req.get_body_file() then
    -- nginx wrote it to a file: client_body_buffer_size is smaller than client_max_body_size
    ngx.log(ngx.ERR, "webhook: the body went to a file: make client_body_buffer_size equal to client_max_body_size")
    return answer(500, { error = "body not in memory" })
  end

  local event, err = truedy.webhook.verify(body or "", ngx.req.get_headers(), keys)
  if not event then
    ngx.log(ngx.WARN, "webhook: refused: ", err) -- the error's line: never the secret
    local status = err.code == "bad_body" and 400 or 401
    record { outcome = "refused", status = status, code = err.code }
    return answer(status, { error = err.code })
  end

  local id = event.id
  local call_id = type(event.data) == "table" and event.data.id or nil
  local entry = { id = id, event = event.event, call_id = call_id }
  local key = type(id) == "string" and id ~= "" and "event:" .. id or nil
  if key then
    -- add() is atomic across workers: one request at a time owns an event
    local ok, add_err = dict():add(key, "handling", HANDLING_TTL)
    if not ok and add_err == "exists" then
      if dict():get(key) == "done" then
        ngx.log(ngx.INFO, "webhook: ", id, " (", event.event, ") was handled already: a redelivery, dropped")
        entry.outcome, entry.status = "redelivery", 200
        record(entry)
        return answer(200, { duplicate = true })
      end
      entry.outcome, entry.status = "busy", 409
      record(entry)
      return answer(409, { error = "being handled" })
    elseif not ok then
      ngx.log(ngx.ERR, "webhook: shared dict '", DICT, "': ", add_err)
      return answer(500, { error = "cannot record the event" })
    end
  end

  local handled, why = pcall(function()
    if forced_failure() then error("handling failed (testing.conf's switch)", 0) end
    handle(event)
  end)
  if not handled then
    if key then dict():delete(key) end -- the retry will be handled
    ngx.log(ngx.ERR, "webhook: ", tostring(id), " (", event.event, "): ", why)
    entry.outcome, entry.status = "failed", 500
    record(entry)
    return answer(500, { error = "handling failed" })
  end
  if key then dict():set(key, "done", SEEN_TTL) end
  entry.outcome, entry.status = "handled", 200
  record(entry)
  return answer(200, { ok = true })
end

---------------------------------------------------------------------------------------------------
-- For testing.conf only
---------------------------------------------------------------------------------------------------

-- GET: the record, oldest first.
function webhook.recent()
  local d = dict()
  local last = d:get("recent:seq") or 0
  local out = {}
  for n = math.max(1, last - RECENT + 1), last do
    out[#out + 1] = d:get("recent:" .. n) -- nil (skipped) while another request writes it
  end
  ngx.header["Content-Type"] = "application/json"
  ngx.say('{"data":[', table.concat(out, ","), "]}")
end

-- POST {"count": N}: the next N new events fail as if handling had failed (answered 500).
function webhook.fail_next()
  ngx.req.read_body()
  local ok, doc = pcall(cjson.decode, ngx.req.get_body_data() or "")
  local count = ok and type(doc) == "table" and tonumber(doc.count) or 1
  dict():set("fail_next", count)
  return answer(200, { fail_next = count })
end

-- POST: forget every id, the record and the switch.
function webhook.forget()
  dict():flush_all()
  return answer(200, { forgotten = true })
end

return webhook
