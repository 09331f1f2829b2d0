-- A task that does nothing, for bench/resty's /hop: what one round trip through nginx's thread
-- pool (ngx.run_worker_thread) costs by itself.
local noop = {}
function noop.run() return "ok" end
return noop
