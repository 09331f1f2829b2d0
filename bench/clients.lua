-- The Lua clients of the benchmark (bench/registry.lua says what each one is).
--
--   lua5.4 bench/clients.lua CLIENT URL WARMUP N
--
-- URL is the full POST /calls URL.  Makes WARMUP untimed calls, then N timed ones, and prints
-- "calls N seconds S"; a client that cannot run here prints "unavailable <why>" and exits 3.
-- Every client checks every answer (status 201, the decoded call "queued").
-- Environment (bench/run and bench/instr set it from what truedy itself sent):
--   BENCH_API_KEY      the key (the bench server does not check it)
--   BENCH_USER_AGENT   truedy's User-Agent value, for the baselines to send the same
--   BENCH_BODY         truedy's JSON body, for the baselines to check that theirs is the same
local which, url, warmup, n = arg[1], arg[2], tonumber(arg[3]), tonumber(arg[4])
if not (which and url and warmup and n) then
  io.stderr:write("usage: lua5.4 bench/clients.lua CLIENT URL WARMUP N\n")
  os.exit(2)
end

local PARAMS = { agent_id = "agt_f9447372", phone_number = "+12125551234" }
local key = assert(os.getenv("BENCH_API_KEY"), "BENCH_API_KEY is not set")
local clock = require("socket").gettime -- loaded by every client alike: its cost is not per call

local function unavailable(why)
  print("unavailable " .. why)
  os.exit(3)
end

local function check_call(doc)
  if not (doc and doc.data and doc.data.status == "queued") then
    error("unexpected answer: " .. tostring(doc and doc.data and doc.data.status))
  end
end

-- lua-cjson writes a table's keys in Lua's hash order, which Lua 5.4 seeds afresh in every
-- process; truedy writes them sorted.  So that both send the same bytes, the same two-key
-- table is built with a different hash-part size or insertion order until cjson's order is
-- truedy's.  Every call still runs cjson.encode on this two-key table.
local function params_encoded_as(cjson, expected)
  for pad = 0, 16 do
    for _, first in ipairs { "agent_id", "phone_number" } do
      local t = {}
      for i = 1, pad do t["pad" .. i] = true end
      t[first] = PARAMS[first]
      for k, v in pairs(PARAMS) do t[k] = v end
      for i = 1, pad do t["pad" .. i] = nil end
      if cjson.encode(t) == expected then return t end
    end
  end
  error("cjson.encode never gives truedy's body " .. expected)
end

local function baseline_env()
  local ua, body = os.getenv("BENCH_USER_AGENT"), os.getenv("BENCH_BODY")
  assert(ua and body, "BENCH_USER_AGENT and BENCH_BODY must be set (bench/run sets them)")
  return ua, body
end

-- A random UUIDv4 from the OS, the way Lua code without a C helper makes one.
local urandom
local function uuid4()
  urandom = urandom or assert(io.open("/dev/urandom", "rb"))
  local b = { urandom:read(16):byte(1, 16) }
  b[7] = (b[7] & 0x0f) | 0x40
  b[9] = (b[9] & 0x3f) | 0x80
  return string.format("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                       table.unpack(b))
end

local clients = {}

function clients.truedy()
  local truedy = require "truedy"
  local client = assert(truedy.new { api_key = key, base_url = url:gsub("/calls$", ""), max_retries = 0 })
  return function()
    check_call(assert(client:create_call(PARAMS)))
  end
end

function clients.binding()
  local ua, body = baseline_env()
  local cjson = require "cjson"
  local minicurl = require "minicurl"
  local params = params_encoded_as(cjson, body)
  local h = minicurl.new(url, key, ua)
  return function()
    local status, answer = h:post(cjson.encode(params))
    if status ~= 201 then error("minicurl: " .. tostring(status) .. " " .. tostring(answer)) end
    check_call(cjson.decode(answer))
  end
end

function clients.luasocket()
  local ua, body = baseline_env()
  local cjson = require "cjson"
  local http = require "socket.http"
  local ltn12 = require "ltn12"
  local params = params_encoded_as(cjson, body)
  return function()
    local json = cjson.encode(params)
    local chunks = {}
    local ok, status = http.request {
      url = url, method = "POST",
      headers = {
        authorization = "Bearer " .. key, ["user-agent"] = ua, accept = "application/json",
        ["content-type"] = "application/json", ["x-idempotency-key"] = uuid4(),
        ["content-length"] = #json,
      },
      source = ltn12.source.string(json), sink = ltn12.sink.table(chunks),
    }
    if not ok or status ~= 201 then error("luasocket: " .. tostring(status)) end
    check_call(cjson.decode(table.concat(chunks)))
  end
end

-- 16 calls in flight on one truedy client, through the asynchronous API of issue 7
-- (client:start_call, client:poll, h:done, h:result).  Runs its own loop: returns nothing.
local IN_FLIGHT = 16
local function truedy_async()
  local truedy = require "truedy"
  local client = assert(truedy.new { api_key = key, base_url = url:gsub("/calls$", ""), max_retries = 0,
                                     max_connections = IN_FLIGHT })
  if client.start_call == nil or client.poll == nil then
    unavailable("truedy has no client:start_call / client:poll yet (issue 7)")
  end
  local total, started, completed, t0 = warmup + n, 0, 0, nil
  local inflight = {}
  local function start()
    started = started + 1
    return assert(client:start_call(PARAMS))
  end
  if warmup == 0 then t0 = clock() end
  for i = 1, math.min(IN_FLIGHT, total) do inflight[i] = start() end
  while completed < total do
    if client:poll(1) > 0 then
      local i = 1
      while i <= #inflight do
        local h = inflight[i]
        if h:done() then
          check_call(assert(h:result()))
          completed = completed + 1
          if completed == warmup then t0 = clock() end
          if started < total then
            inflight[i] = start()
            i = i + 1
          else
            table.remove(inflight, i)
          end
        else
          i = i + 1
        end
      end
    end
  end
  print(string.format("calls %d seconds %.6f", n, clock() - t0))
end

if which == "truedy-async16" then
  truedy_async()
  os.exit(0)
end
local make = clients[which]
if not make then
  io.stderr:write("clients.lua: unknown client '", which, "'\n")
  os.exit(2)
end
local call = make()
for _ = 1, warmup do call() end
local started = clock()
for _ = 1, n do call() end
print(string.format("calls %d seconds %.6f", n, clock() - started))
