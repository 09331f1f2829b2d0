-- X-Idempotency-Key for POST /calls, as the docs describe it:
--   * the response to the first request is stored under (organization, key, hash of the raw body);
--   * the same key with the same body gets the stored status and body back, byte for byte, and
--     no second call is created;
--   * the same key with a different body is simply a new request (no conflict error is documented);
--   * records expire (TTL below).
--
-- Concurrent requests with one key and one body (a client retrying while the first attempt is
-- still in flight, on another connection, maybe another worker) must still create one call: the
-- first takes a lock with an atomic `add`, the others wait for its record and replay it. The
-- holder stores its record before it lets the lock go, and whoever takes the lock reads the record
-- again before processing, so no interleaving of workers processes one request twice. When the
-- holder fails with a 5xx (not stored), a waiter takes the lock and processes the request itself.

local idempotency = {}

idempotency.TTL = 24 * 3600
local LOCK_TTL = 30          -- a crashed holder cannot block the key for longer than this
local WAIT_SECONDS = 10      -- how long a concurrent duplicate waits for the first one's record
local WAIT_STEP = 0.005

local function dict() return ngx.shared.truedy_idempotency end

local function record_key(org, key, body)
  return "idem:" .. org .. ":" .. ngx.md5(key) .. ":" .. ngx.md5(body)
end

local function decode(text)
  local status, body = text:match("^(%d+)\n(.*)$")
  return { status = tonumber(status), headers = { ["Content-Type"] = "application/json" }, body = body }
end

-- Runs `process()` (which returns a response table) at most once per (org, key, body).
-- Returns the response and whether it is a replay; nil when another request with the same key
-- and body held the key for longer than WAIT_SECONDS.
function idempotency.run(org, key, body, process)
  local d = dict()
  local rk = record_key(org, key, body)
  local lock = rk .. ":lock"
  local waited = 0
  while true do
    local stored = d:get(rk)
    if stored then return decode(stored), true end
    if d:add(lock, true, LOCK_TTL) then break end
    -- Another request with the same key and body is being processed: wait until it stores its
    -- answer (replayed above) or lets the lock go without one (a 5xx: then this one takes it).
    if waited >= WAIT_SECONDS then return nil, false end
    ngx.sleep(WAIT_STEP)
    waited = waited + WAIT_STEP
  end
  -- The lock is ours. The previous holder may have stored its answer and let the lock go between
  -- our read and our add (in another worker): read again, under the lock, before processing.
  local stored = d:get(rk)
  if stored then
    d:delete(lock)
    return decode(stored), true
  end

  ngx.ctx.truedy_idempotency_lock = lock
  local ok, res = pcall(process)
  if ok and res.status < 500 then
    -- Store what the client was told. Server errors are not stored: a retry should try again.
    local stored_ok, err = d:set(rk, res.status .. "\n" .. res.body, idempotency.TTL)
    if not stored_ok then ngx.log(ngx.ERR, "cannot store idempotency record: ", err) end
  end
  d:delete(lock)
  ngx.ctx.truedy_idempotency_lock = nil
  if not ok then error(res, 0) end
  return res, false
end

-- Makes the lock this request holds, if any, last `seconds` more: process() is about to sleep that
-- long on purpose (a fault with when = "inside").
function idempotency.extend(seconds)
  local lock = ngx.ctx.truedy_idempotency_lock
  if lock then dict():set(lock, true, LOCK_TTL + seconds) end
end

-- Lets go of the lock this request holds, if any: called when the client hangs up while the
-- request is inside (the request's thread ends there, before run() could release it).
function idempotency.abandon()
  local lock = ngx.ctx.truedy_idempotency_lock
  if lock then
    dict():delete(lock)
    ngx.ctx.truedy_idempotency_lock = nil
  end
end

return idempotency
