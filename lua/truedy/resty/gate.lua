-- luacheck: std +ngx_lua
-- truedy.resty.gate: the rate gate every nginx worker shares, in a lua_shared_dict.
--
-- One API key has one rate limit, whichever worker sends. So when one worker is told 429 with a
-- reset time, every worker holds its new requests until then (ngx.sleep: the event loop goes
-- on), instead of each finding out with a 429 of its own. An optional pace (`per_minute`)
-- spaces requests evenly, so a burst does not reach the limit at all.
--
-- Keys in the dict (`scope` is an MD5 of the base URL and the key, never the key itself):
--   truedy:gate:<scope>       the time (ngx.now()) until which requests wait
--   truedy:pace:<scope>       the time of the next free slot of the pace
--   truedy:pace-lock:<scope>  taken while one request picks its slot
-- Every wait is bounded by the caller's `max_wait` (the call's retry_max_wait): beyond it the
-- caller gets the wait back at once, as the plain module does with a long 429 reset.

local truedy = require "truedy"

local gate = {}

-- The gate can move while a request sleeps (another 429): look again at most this often.
local MAX_ROUNDS = 8
-- Tries to take the pace's lock, a millisecond apart.
local LOCK_ROUNDS = 1000

local function now()
  ngx.update_time()
  return ngx.now()
end

local function gate_key(scope) return "truedy:gate:" .. scope end

-- After a 429 with a known reset: hold every worker's requests for `seconds` from now.
-- A later reset already recorded is kept (a read and a write, not atomic: two workers writing
-- at once keep one of two resets of the same window, which are equal or nearly so).
function gate.pause(dict, scope, seconds)
  if not (seconds and seconds > 0) then return end
  local key = gate_key(scope)
  local until_time = now() + seconds
  local current = dict:get(key)
  if not current or current < until_time then
    dict:set(key, until_time, seconds + 5)
  end
end

-- Seconds until the gate opens (0 when open).
function gate.remaining(dict, scope)
  local until_time = dict:get(gate_key(scope))
  if not until_time then return 0 end
  local left = until_time - now()
  return left > 0 and left or 0
end

-- The engine's sleep for a wait the server asked for (truedy.retry_delay, policy.c): a little
-- past it, with jitter, so the workers do not all arrive a hair early, or at the same instant;
-- nil when the wait is longer than max_wait.
local function server_wait(seconds, max_wait)
  return truedy.retry_delay({ retryable = true, retry_after = seconds }, 1,
    { retries = 1, retry_base_delay = 0, retry_max_delay = 0, retry_max_wait = max_wait })
end

-- Waits until the gate is open. nil when it is; else the seconds still to wait when that is
-- more than max_wait (nothing waited then).
local function wait_gate(dict, scope, max_wait)
  for _ = 1, MAX_ROUNDS do
    local left = gate.remaining(dict, scope)
    if left <= 0 then return nil end
    local delay = server_wait(left, max_wait)
    if not delay then return left end
    ngx.sleep(delay)
  end
  local left = gate.remaining(dict, scope)
  return left > 0 and left or nil
end

-- Reserves this request's slot in the pace and sleeps until it: slots are 60 / per_minute
-- seconds apart, each after the last one given out or now, whichever is later (no burst for
-- slots left unused). nil when done; else the seconds to the next free slot when that is more
-- than max_wait (no slot taken then).
local function wait_pace(dict, scope, per_minute, max_wait)
  local key, lock = "truedy:pace:" .. scope, "truedy:pace-lock:" .. scope
  local interval = 60 / per_minute
  for _ = 1, LOCK_ROUNDS do
    -- the lock is held across no yield; it expires by itself should its holder die
    if dict:add(lock, true, 1) then
      local t = now()
      local slot = math.max(dict:get(key) or 0, t)
      local left = slot - t
      if left <= max_wait then dict:set(key, slot + interval, left + interval + 60) end
      dict:delete(lock)
      if left > max_wait then return left end
      if left > 0 then ngx.sleep(left) end
      return nil
    end
    ngx.sleep(0.001)
  end
  return nil -- the lock stayed taken: no pace rather than no calls
end

-- Before each request: the pace (when per_minute is set), then the gate. Returns nil when the
-- request may go; else seconds, reason ("rate_limit" or "pace") when the wait is over max_wait.
function gate.wait(dict, scope, per_minute, max_wait)
  local left = wait_gate(dict, scope, max_wait)
  if left then return left, "rate_limit" end
  if per_minute then
    left = wait_pace(dict, scope, per_minute, max_wait)
    if left then return left, "pace" end
    -- a 429 may have arrived while this request waited for its slot
    left = wait_gate(dict, scope, max_wait)
    if left then return left, "rate_limit" end
  end
  return nil
end

return gate
