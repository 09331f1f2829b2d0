-- The `hold` fault: a matching request stays unanswered until a test releases it through the
-- control surface (or its `seconds` cap passes), so a spec can know a request is in flight
-- ("it reached the server") and decide when it ends, without guessing how long a delay is.
--
-- Shared dict `truedy_holds` holds one entry per request being held, held:<util.request_token()> →
-- JSON { seq (its journal entry), fault_id, method, path, when, since, seconds, worker }, and
-- nothing else, so listing it (get_keys) costs as much as there are held requests. (Not keyed by
-- seq: after the journal is cleared a new request can get the seq of one still held.)
-- A release deletes entries; the holder polls its own entry with ngx.sleep (which yields: the
-- worker serves other requests meanwhile) and goes on as soon as the entry is gone. The entry
-- outlives the cap by a few seconds only, so one left by a worker that died goes away by itself.
--
-- How a hold ended is the journal's `held`: "holding" while it lasts, then "released", "expired"
-- (the cap passed), "hung_up" (the client closed the connection meanwhile; status 499) or
-- "dropped" (a release with drop, or a reset: the connection is closed and the request never
-- processed; status 444).  lua-nginx-module sees a hang-up only when the close arrives after the
-- request was read: a client that closes right after sending may stay held until released, so
-- specs end their holds by dropping them, not by waiting for the hang-up.

local json = require "truedy_emulator.json"
local util = require "truedy_emulator.util"
local journal = require "truedy_emulator.journal"

local hold = {}

hold.DEFAULT_SECONDS = 30   -- the cap: a forgotten hold cannot hang a suite for longer
hold.MAX_SECONDS = 600
local STEP = 0.005          -- seconds between two looks at the entry (the release latency)
local SLACK = 5             -- seconds an entry outlives its cap

local FIELDS = { "seq", "fault_id", "method", "path", "when", "since", "seconds", "worker" }
local DROP = "drop"         -- an entry's value once a release asked to drop it

local function dict() return ngx.shared.truedy_holds end

-- Holds the current request (journal entry `r.seq`, r.method, r.path) under fault `f` until it is
-- released or f.seconds pass. Returns "released" or "expired". The journal shows "holding"
-- meanwhile; the caller records the final status with the returned word.
function hold.wait(f, r)
  local d = dict()
  local key = "held:" .. util.request_token()
  local since = util.now()
  local entry = json.ordered(FIELDS, {
    seq = r.seq, fault_id = f.id, method = r.method, path = r.path, when = f.when,
    since = util.iso8601(since), seconds = f.seconds, worker = ngx.worker.id(),
  })
  local ok, err = d:set(key, json.encode(entry), f.seconds + SLACK)
  if not ok then
    -- Nowhere to record it, so nothing could release it: do not hold at all, and say so.
    ngx.log(ngx.ERR, "emulator: cannot record a held request (", err, "); answering at once")
    return "expired"
  end
  ngx.ctx.truedy_held_key = key
  journal.finish(r.seq, nil, f, "holding")
  local deadline = since + f.seconds
  while true do
    local value = d:get(key)
    if value == nil then break end
    if value == DROP then
      d:delete(key)
      ngx.ctx.truedy_held_key = nil
      return "dropped"
    end
    if util.now() >= deadline then
      d:delete(key)
      ngx.ctx.truedy_held_key = nil
      return "expired"
    end
    ngx.sleep(STEP)
  end
  ngx.ctx.truedy_held_key = nil
  return "released"
end

-- Called when the client hangs up: forgets this request's entry. Returns true when the request
-- was being held.
function hold.abandon()
  local key = ngx.ctx.truedy_held_key
  if not key then return false end
  dict():delete(key)
  ngx.ctx.truedy_held_key = nil
  return true
end

-- The entries of the requests held now, decoded, oldest (lowest journal seq) first.
local function entries()
  local d = dict()
  local out = {}
  for _, key in ipairs(d:get_keys(0)) do
    local text = d:get(key)
    local e = text and text ~= DROP and json.decode(text)
    if e then out[#out + 1] = { key = key, entry = e } end
  end
  table.sort(out, function(a, b) return a.entry.seq < b.entry.seq end)
  return out
end

-- The requests held now, oldest first, as a JSON array.
function hold.list()
  local out = json.array()
  for i, e in ipairs(entries()) do out[i] = json.ordered(FIELDS, e.entry) end
  return out
end

-- Releases held requests: those of fault `fault_id` (nil: any), or the one of journal entry `seq`
-- (nil: any), at most `count` of them (nil: all), oldest first. Returns the released seqs (a JSON
-- array). A request whose hold ended otherwise (cap, hang-up) before the release is not in it.
-- With `drop`, they end without being processed instead (the connection closed, status 444).
function hold.release(fault_id, seq, count, drop)
  local d = dict()
  local released = json.array()
  for _, e in ipairs(entries()) do
    if count and #released >= count then break end
    if (fault_id == nil or e.entry.fault_id == fault_id) and (seq == nil or e.entry.seq == seq) then
      -- delete only what is still there, so the count is of requests that were really waiting
      if d:get(e.key) then
        if drop then d:set(e.key, DROP, SLACK) else d:delete(e.key) end
        released[#released + 1] = e.entry.seq
      end
    end
  end
  return released
end

return hold
