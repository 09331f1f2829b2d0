-- luacheck: std +ngx_lua
-- The example application of examples/openresty/nginx.conf, with truedy.resty:
--
--   POST /dial        a JSON body of create_call parameters; an Idempotency-Key header, if any,
--                     becomes the call's key. 201 {"id": ..., "status": ...} or the error.
--   GET  /calls/{id}  200 with the call, or the error.
--   GET  /ping        200 {"pong": true}: answers while calls are in flight (nothing blocks).
--
-- Errors are answered as {"error": {...the error's fields..., "line": tostring(err)}} and logged
-- with ngx.log (which prints the error's one line).

local truedy = require "truedy.resty"
local cjson = require("cjson").new()

local app = {}

-- One client per worker, made on first use (in a worker, where `env` decides what it sees).
local client

local function get_client()
  if client then return client end
  local err
  client, err = truedy.new { attempt_timeout = 10, max_pending = 8 }
  return client, err
end

local function answer(status, body)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(body))
  return ngx.exit(status)
end

-- The HTTP status that tells our own caller what happened.
local function status_of(err)
  if err.kind == "invalid_params" then return 422 end
  if err.kind == "api" and err.status and err.status < 500 then return err.status end
  if err.kind == "config" then return err.retryable and 503 or 500 end
  if err.kind == "network" and err.curl_code == 28 then return 504 end
  return 502
end

local function fail(what, err)
  -- ngx.log prints the error's line; ngx.say and cjson need plain text: tostring(err)
  ngx.log(ngx.WARN, what, " failed: ", err)
  local fields = {}
  for k, v in pairs(err) do fields[k] = v end
  fields.line = tostring(err)
  return answer(status_of(err), { error = fields })
end

function app.dial()
  if ngx.req.get_method() ~= "POST" then return answer(405, { error = { message = "use POST" } }) end
  ngx.req.read_body()
  local ok, params = pcall(cjson.decode, ngx.req.get_body_data() or "")
  if not ok or type(params) ~= "table" then
    return answer(400, { error = { message = "the body must be a JSON object of create_call parameters" } })
  end
  local c, err = get_client()
  if not c then return fail("dial", err) end
  local res
  res, err = c:create_call(params, { idempotency_key = ngx.var.http_idempotency_key })
  if not res then return fail("dial", err) end
  return answer(201, { id = res.data.id, status = res.data.status, request_id = res.meta.request_id })
end

function app.get_call(call_id)
  local c, err = get_client()
  if not c then return fail("get_call", err) end
  local res
  res, err = c:get_call(call_id)
  if not res then return fail("get_call", err) end
  return answer(200, res.data)
end

function app.ping()
  return answer(200, { pong = true, pending = client and client:pending() or 0 })
end

return app
