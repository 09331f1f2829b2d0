-- Helpers for the truedy.resty specs: an nginx running an application configuration (the
-- example's, examples/openresty/nginx.conf, or spec/resty/edges.conf for what an example should
-- not show) against the emulator under test, started through the project's launcher
-- (emulator/truedy-emulator --conf), and plain HTTP to it. The truedy code under test runs
-- inside that nginx, in its LuaJIT; these specs only talk HTTP to it and read the emulator.
--
-- Every request has a timeout; every wait is bounded.

local emu = require "spec.emulator.emu"
local http = require "socket.http"
local ltn12 = require "ltn12"
local socket = require "socket"

local busted = require "busted"

local app = {}

app.emu = emu
app.json = emu.json
app.q = emu.quote
app.TIMEOUT = 20

-- The LuaJIT build of the module (built if needed), absolute: nginx's LuaJIT loads it.
local build_dir
function app.luajit_build()
  if build_dir then return build_dir end
  local make = "make --no-print-directory -s -C " .. app.q(emu.root) .. " LUA_VERSION=luajit "
  local out, status = emu.sh(make .. "all 2>&1")
  assert(status == 0, "the LuaJIT build failed: " .. out)
  out = emu.sh(make .. "print-BUILD")
  local dir = out:match("^%s*(%S+)")
  assert(dir, "make print-BUILD said nothing")
  build_dir = dir:sub(1, 1) == "/" and dir or (emu.root .. "/" .. dir)
  return build_dir
end

local running = {} -- state dirs of servers still running, stopped at the end whatever happens

busted.subscribe({ "suite", "end" }, function()
  for dir in pairs(running) do
    emu.launch("stop --dir " .. app.q(dir))
    emu.sh("rm -rf " .. app.q(dir))
  end
  return nil, true
end)

local Server = {}
Server.__index = Server

-- Starts an application nginx. opts: conf (path from the repository root; default the example),
-- workers (1), env (more environment for nginx, a table), key (the API key nginx gets as
-- TRUEDY_API_KEY; false for none), health (/health).
function app.start(opts)
  opts = opts or {}
  local dir = emu.tmpdir()
  local env = {
    TRUEDY_BASE_URL = emu.url .. emu.PREFIX,
    TRUEDY_API_KEY = opts.key == nil and emu.key or opts.key or nil,
  }
  for k, v in pairs(opts.env or {}) do env[k] = v end
  local assignments = { "env -u TRUEDY_API_KEY -u TRUEDY_BASE_URL" }
  for k, v in pairs(env) do assignments[#assignments + 1] = k .. "=" .. app.q(v) end
  local args = table.concat({
    "start", "--dir", app.q(dir .. "/app"),
    "--conf", app.q(emu.root .. "/" .. (opts.conf or "examples/openresty/nginx.conf")),
    "--health", app.q(opts.health or "/health"),
    "--workers", tostring(opts.workers or 1),
    "--set", app.q("LUA_CPATH=" .. app.luajit_build() .. "/?.so"),
  }, " ")
  local out, err, status = emu.launch(args, table.concat(assignments, " "))
  assert(status == 0, "the application nginx did not start: " .. err)
  local url = emu.parse_env(out).TRUEDY_SERVER_URL
  assert(url, "no TRUEDY_SERVER_URL in: " .. out)
  running[dir .. "/app"] = true
  return setmetatable({ url = url, dir = dir .. "/app", tmp = dir }, Server)
end

function Server:stop()
  emu.launch("stop --dir " .. app.q(self.dir))
  running[self.dir] = nil
  emu.sh("rm -rf " .. app.q(self.tmp))
end

function Server:error_log()
  return emu.read_file(self.dir .. "/logs/error.log") or ""
end

-- The pids of this nginx's worker processes (from /proc: children of the master).
function Server:worker_pids()
  local master = tonumber((emu.read_file(self.dir .. "/nginx.pid") or ""):match("%d+"))
  assert(master, "no nginx.pid in " .. self.dir)
  -- the master's children, read from /proc (coreutils only: procps may be missing)
  local out = emu.sh("cat /proc/[0-9]*/stat 2>/dev/null")
  local pids = {}
  for pid, ppid in out:gmatch("(%d+) %b() %a (%d+)") do
    if tonumber(ppid) == master then pids[#pids + 1] = tonumber(pid) end
  end
  table.sort(pids)
  assert(#pids > 0, "nginx " .. master .. " has no workers")
  return pids
end

-- One request. Returns { status, headers (lower-case), body, json, worker }.
function Server:request(method, path, body, headers)
  local chunks = {}
  local h = {}
  for k, v in pairs(headers or {}) do h[k:lower()] = v end
  if type(body) == "table" then body = app.json.encode(body) end
  if body then
    h["content-length"] = tostring(#body)
    h["content-type"] = h["content-type"] or "application/json"
  end
  local ok, status, resp_headers = http.request {
    url = self.url .. path, method = method, headers = h,
    source = body and ltn12.source.string(body) or nil,
    sink = ltn12.sink.table(chunks), redirect = false,
    create = function()
      local s = socket.tcp()
      s:settimeout(app.TIMEOUT)
      return s
    end,
  }
  assert(ok, ("%s %s failed: %s"):format(method, path, tostring(status)))
  local res = { status = status, headers = resp_headers or {}, body = table.concat(chunks) }
  local decoded_ok, decoded = pcall(app.json.decode, res.body)
  if decoded_ok then res.json = decoded end
  res.worker = tonumber(res.headers["x-worker-id"])
  return res
end

function Server:dial(params, headers) return self:request("POST", "/dial", params, headers) end

-- Sends `requests` ({ method, path, body? (table or string) }) at once, each on its own
-- connection (curl --parallel). Returns a list of { status, worker, body, json }, in order,
-- and the time they were sent (socket.gettime() just before).
function Server:parallel(requests)
  local dir = emu.tmpdir()
  local conf = {}
  local function s(v) return '"' .. tostring(v):gsub('[\\"]', "\\%0") .. '"' end
  for i, r in ipairs(requests) do
    if i > 1 then conf[#conf + 1] = "next" end
    conf[#conf + 1] = "url = " .. s(self.url .. r.path)
    conf[#conf + 1] = "request = " .. s(r.method or "GET")
    conf[#conf + 1] = "output = " .. s(dir .. "/out." .. i)
    conf[#conf + 1] = "dump-header = " .. s(dir .. "/headers." .. i)
    conf[#conf + 1] = "write-out = " .. s(i .. " %{http_code}\\n")
    if r.body then
      emu.write_file(dir .. "/body." .. i, type(r.body) == "table" and app.json.encode(r.body) or r.body)
      conf[#conf + 1] = "header = " .. s("Content-Type: application/json")
      conf[#conf + 1] = "data-binary = " .. s("@" .. dir .. "/body." .. i)
    end
  end
  emu.write_file(dir .. "/curl.conf", table.concat(conf, "\n") .. "\n")
  local sent = socket.gettime()
  emu.sh(("curl -s --max-time %d --parallel --parallel-immediate --parallel-max %d -K %s >%s 2>/dev/null"):format(
    app.TIMEOUT, #requests, app.q(dir .. "/curl.conf"), app.q(dir .. "/codes")))
  local results = {}
  for i, code in (emu.read_file(dir .. "/codes") or ""):gmatch("(%d+) (%d+)") do
    i = tonumber(i)
    local body = emu.read_file(dir .. "/out." .. i) or ""
    local headers = emu.read_file(dir .. "/headers." .. i) or ""
    local ok, decoded = pcall(app.json.decode, body)
    results[i] = { status = tonumber(code), body = body, json = ok and decoded or nil,
      worker = tonumber(headers:match("[Xx]%-[Ww]orker%-[Ii]d: *(%d+)")) }
  end
  for i = 1, #requests do results[i] = results[i] or { status = 0, body = "" } end
  emu.sh("rm -rf " .. app.q(dir))
  return results, sent
end

-- Starts one request in the background and returns at once; the returned waiter's wait() waits
-- for it (bounded) and returns { status, worker, body, json }; done() says whether it has ended.
-- max_time: seconds before curl gives up (and hangs up).
function Server:background(method, path, body, max_time)
  local dir = emu.tmpdir()
  local d = app.q(dir)
  local data = ""
  if body then
    emu.write_file(dir .. "/body", type(body) == "table" and app.json.encode(body) or body)
    data = " -H 'Content-Type: application/json' --data-binary @" .. app.q(dir .. "/body")
  end
  emu.sh(("(curl -s --max-time %d -X %s%s -o %s/out -D %s/headers -w '%%{http_code}' %s >%s/code 2>/dev/null;"
    .. " echo $? >%s/exit.tmp; mv %s/exit.tmp %s/exit) </dev/null >/dev/null 2>&1 &"):format(
    max_time or app.TIMEOUT, method, data, d, d, app.q(self.url .. path), d, d, d, d))
  local waiter = {}
  function waiter.done() return emu.read_file(dir .. "/exit") ~= nil end
  function waiter.wait()
    assert(emu.eventually(waiter.done, app.TIMEOUT + 5), "the background request never ended")
    local out = emu.read_file(dir .. "/out") or ""
    local headers = emu.read_file(dir .. "/headers") or ""
    local ok, decoded = pcall(app.json.decode, out)
    local r = { status = tonumber(emu.read_file(dir .. "/code") or ""), body = out, json = ok and decoded or nil,
      worker = tonumber(headers:match("[Xx]%-[Ww]orker%-[Ii]d: *(%d+)")) }
    emu.sh("rm -rf " .. d)
    return r
  end
  return waiter
end

-- A kept-alive connection to the server, which stays with the worker that accepted it:
-- conn:send(method, path, body) writes a request and returns at once; conn:receive() reads its
-- answer ({ status, worker, body, json }).
local Connection = {}
Connection.__index = Connection

function Connection:send(method, path, body)
  if type(body) == "table" then body = app.json.encode(body) end
  local request = { method .. " " .. path .. " HTTP/1.1", "Host: 127.0.0.1", "Connection: keep-alive" }
  if body then
    request[#request + 1] = "Content-Type: application/json"
    request[#request + 1] = "Content-Length: " .. #body
  end
  assert(self.sock:send(table.concat(request, "\r\n") .. "\r\n\r\n" .. (body or "")))
end

function Connection:receive()
  local sock = self.sock
  local status = tonumber(assert(sock:receive("*l")):match("^HTTP/1%.1 (%d+)"))
  local headers = {}
  while true do
    local line = assert(sock:receive("*l"))
    if line == "" then break end
    local name, value = line:match("^([^:]+):%s*(.*)$")
    headers[name:lower()] = value
  end
  local body
  if headers["content-length"] then
    body = assert(sock:receive(tonumber(headers["content-length"])))
  else -- chunked
    local chunks = {}
    while true do
      local size = tonumber(assert(sock:receive("*l")):match("^(%x+)"), 16)
      if size == 0 then
        assert(sock:receive("*l"))
        break
      end
      chunks[#chunks + 1] = assert(sock:receive(size))
      assert(sock:receive("*l"))
    end
    body = table.concat(chunks)
  end
  local ok, decoded = pcall(app.json.decode, body)
  return { status = status, worker = tonumber(headers["x-worker-id"]), body = body, json = ok and decoded or nil }
end

function Connection:close() self.sock:close() end

-- One kept-alive connection to each of `workers` workers (found with GET /ping on new
-- connections, at most `tries` of them): a table worker id -> connection.
function Server:connections(workers, tries)
  local port = tonumber(self.url:match(":(%d+)$"))
  local found, count, spare = {}, 0, {}
  for _ = 1, tries or 100 do
    local sock = socket.tcp()
    sock:settimeout(app.TIMEOUT)
    assert(sock:connect("127.0.0.1", port))
    local conn = setmetatable({ sock = sock }, Connection)
    conn:send("GET", "/ping")
    local worker = conn:receive().worker
    if found[worker] == nil then
      found[worker], count = conn, count + 1
      if count == workers then break end
    else
      spare[#spare + 1] = conn -- kept open meanwhile, so the next one may land elsewhere
    end
  end
  for _, conn in ipairs(spare) do conn:close() end
  assert(count == workers, ("connections reached %d of %d workers"):format(count, workers))
  return found
end

-- The journal's POST /calls entries, oldest first.
function app.posts()
  local out = {}
  for _, e in ipairs(emu.journal()) do
    if e.method == "POST" and e.path == emu.PREFIX .. "/calls" then out[#out + 1] = e end
  end
  return out
end

-- The value of a header in a journal entry (names are lower-case; a repeated one is an array).
function app.header(entry, name)
  local v = entry.headers[name]
  if type(v) == "table" then return v[1] end
  return v
end

return app
