-- The Lua side of the benchmark: N sequential create_call with truedy, or
-- the same request the way Lua code does it today (LuaSocket + lua-cjson).
-- Usage: lua5.4 bench/clients.lua truedy|luasocket BASE_URL N
-- Prints "calls_per_second <x>".
local which, base_url, n = arg[1], arg[2], tonumber(arg[3])
local clock = require("socket").gettime
local params = { agent_id = "agt_f9447372", phone_number = "+12125551234" }
local key = "truedy_benchbenchbenchbenchbenchbench12"
local run

if which == "truedy" then
  local truedy = require "truedy"
  local client = assert(truedy.new{ api_key = key, base_url = base_url, max_retries = 0 })
  run = function()
    local res = assert(client:create_call(params))
    assert(res.data.status == "queued")
  end
elseif which == "luasocket" then
  local http = require "socket.http"
  local ltn12 = require "ltn12"
  local cjson = require "cjson"
  run = function()
    local body = cjson.encode(params)
    local chunks = {}
    local ok, status = http.request {
      url = base_url .. "/calls", method = "POST",
      headers = { authorization = "Bearer " .. key, ["content-type"] = "application/json",
                  ["content-length"] = #body, ["x-idempotency-key"] = "k" },
      source = ltn12.source.string(body), sink = ltn12.sink.table(chunks),
    }
    assert(ok and status == 201)
    assert(cjson.decode(table.concat(chunks)).data.status == "queued")
  end
else
  error("usage: clients.lua truedy|luasocket BASE_URL N")
end

for _ = 1, math.min(200, n) do run() end -- warm up: connection, caches
local started = clock()
for _ = 1, n do run() end
print(string.format("calls_per_second %.1f", n / (clock() - started)))
