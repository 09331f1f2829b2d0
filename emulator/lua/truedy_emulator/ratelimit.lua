-- The per-key rate limit: fixed windows of `rate_window` seconds (default 60) aligned to the
-- epoch, `rate_limit` requests per window (default 100; 0 disables it), as the real API does.
--
-- One counter per (key, window) in `truedy_state`, bumped with an atomic incr whose TTL outlives
-- the window: exact with several workers, and nothing to clean up.
-- The key itself is never stored, only its MD5, so it cannot leak through the shared dict.

local ratelimit = {}

-- Counts one request for `api_key`. Returns nil when the limit is off, else { allowed, limit,
-- remaining (after this request), reset (Unix time the window ends) }.
function ratelimit.hit(api_key, cfg, now)
  local limit, window = cfg.rate_limit, cfg.rate_window
  if limit == 0 then return nil end
  local window_start = math.floor(now / window) * window
  local key = "rate:" .. ngx.md5(api_key) .. ":" .. window .. ":" .. window_start
  local count, err = ngx.shared.truedy_state:incr(key, 1, 0, window + 5)
  if not count then
    ngx.log(ngx.ERR, "rate limit counter failed: ", err)
    return nil
  end
  return { allowed = count <= limit, limit = limit, remaining = math.max(limit - count, 0),
    reset = window_start + window }
end

-- The X-RateLimit-* headers (and Retry-After on a refusal) an older docs page describes, for
-- rate_limit_headers = "x_ratelimit": Reset is a Unix time, Retry-After whole seconds to wait.
function ratelimit.headers(r, now)
  local h = {
    ["X-RateLimit-Limit"] = string.format("%d", r.limit),
    ["X-RateLimit-Remaining"] = string.format("%d", r.remaining),
    ["X-RateLimit-Reset"] = string.format("%d", r.reset),
  }
  if not r.allowed then h["Retry-After"] = string.format("%d", math.max(math.ceil(r.reset - now), 1)) end
  return h
end

return ratelimit
