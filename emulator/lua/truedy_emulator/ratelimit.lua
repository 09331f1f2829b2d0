-- The per-key rate limit: fixed windows of `rate_window` seconds (default 60) aligned to the
-- epoch, `rate_limit` requests per window (default 100; 0 disables it), as the real API does.
--
-- One counter per (key, window) in `truedy_state`, bumped with an atomic incr whose TTL outlives
-- the window: exact with several workers, and nothing to clean up.
-- The key itself is never stored, only its MD5, so it cannot leak through the shared dict.

local util = require "truedy_emulator.util"

local ratelimit = {}

-- Counts one request for `api_key`. Returns allowed (boolean), limit, reset_at (ISO 8601).
function ratelimit.hit(api_key, cfg, now)
  local limit, window = cfg.rate_limit, cfg.rate_window
  if limit == 0 then return true end
  local window_start = math.floor(now / window) * window
  local key = "rate:" .. ngx.md5(api_key) .. ":" .. window .. ":" .. window_start
  local count, err = ngx.shared.truedy_state:incr(key, 1, 0, window + 5)
  if not count then
    ngx.log(ngx.ERR, "rate limit counter failed: ", err)
    return true
  end
  return count <= limit, limit, util.iso8601(window_start + window)
end

return ratelimit
