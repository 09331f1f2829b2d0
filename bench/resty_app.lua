-- luacheck: std +ngx_lua
-- The application of bench/resty.conf.in: what examples/openresty/app.lua does for POST /dial
-- and GET /ping, with max_pending from nginx.conf (the example's 8 is too few to hold 50 calls);
-- and GET /hop, a thread pool round trip doing nothing.
local truedy = require "truedy.resty"
local cjson = require("cjson").new()

local app = {}
local client

local function answer(status, body)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(body))
  return ngx.exit(status)
end

function app.dial()
  ngx.req.read_body()
  local ok, params = pcall(cjson.decode, ngx.req.get_body_data() or "")
  if not ok or type(params) ~= "table" then return answer(400, { error = "a JSON object, please" }) end
  if not client then
    client = assert(truedy.new { attempt_timeout = 300, max_pending = tonumber(ngx.var.max_pending) })
  end
  local res, err = client:create_call(params)
  if not res then
    ngx.log(ngx.WARN, "dial failed: ", err)
    return answer(502, { error = tostring(err) })
  end
  return answer(201, { id = res.data.id, status = res.data.status })
end

function app.hop()
  local ok, tag = ngx.run_worker_thread("truedy", "resty_noop", "run") -- luacheck: ignore 143
  if not (ok and tag == "ok") then return answer(500, { error = tostring(tag) }) end
  return answer(200, { hop = true })
end

function app.ping()
  return answer(200, { pong = true, pending = client and client:pending() or 0 })
end

return app
