-- Helpers for the emulator's own specs: plain HTTP (LuaSocket, or curl where the transport
-- itself is under test), never the truedy module, so these specs stand on their own.
--
-- The emulator under test is the one at TRUEDY_EMULATOR_URL (the test runner starts it), or,
-- under plain `busted`, the one spec/support/session.lua started (global TRUEDY_TEST_EMULATOR_URL).
-- Every request goes to 127.0.0.1 with a timeout; every wait loop is bounded.

local http = require "socket.http"
local ltn12 = require "ltn12"
local socket = require "socket"
local cjson = require("cjson").new()

local emu = {}

emu.url = os.getenv("TRUEDY_EMULATOR_URL") or rawget(_G, "TRUEDY_TEST_EMULATOR_URL")
if not emu.url or emu.url == "" then
  error("TRUEDY_EMULATOR_URL is not set: the emulator specs need a running emulator. Run them with the"
    .. " project's test command, or: eval \"$(emulator/truedy-emulator start --dir /tmp/emu-dev)\";"
    .. " TRUEDY_EMULATOR_URL=$TRUEDY_EMULATOR_URL busted spec/emulator")
end
assert(emu.url:find("^http://127%.0%.0%.1:%d+$"), "TRUEDY_EMULATOR_URL must be http://127.0.0.1:PORT")

-- The repository root: this file is <root>/spec/emulator/emu.lua.
emu.root = (debug.getinfo(1, "S").source:match("^@(.*)/spec/emulator/[^/]*$") or ".")
if emu.root:sub(1, 1) ~= "/" then
  -- absolute, so that checks made as another user (launcher_spec) see the real path
  local pipe = io.popen("cd '" .. emu.root:gsub("'", "'\\''") .. "' && pwd")
  emu.root = pipe:read("*l") or emu.root
  pipe:close()
end
emu.launcher = emu.root .. "/emulator/truedy-emulator"
emu.fixtures = dofile(emu.root .. "/emulator/lua/truedy_emulator/fixtures.lua")
emu.key = emu.fixtures.organizations[1].api_key
emu.other_key = emu.fixtures.organizations[2].api_key
emu.PREFIX = "/api/public/v1"
emu.json = cjson
emu.null = cjson.null
emu.TIMEOUT = 10

-- Agents by role, found by what they are rather than by id.
for _, a in ipairs(emu.fixtures.agents) do
  local first_org = a.org == emu.fixtures.organizations[1].name
  if first_org and a.status == "active" and #a.outbound_numbers >= 2 then emu.agent = a
  elseif first_org and a.status == "active" and #a.outbound_numbers == 0 then emu.agent_without_numbers = a
  elseif first_org and a.status == "draft" then emu.draft_agent = a
  elseif not first_org then emu.other_agent = a end
end
emu.to = "+12125551234"
emu.failing_to = emu.fixtures.failing_prefix .. "1234"
emu.cancelling_to = emu.fixtures.cancelling_prefix .. "1234"

emu.ISO_US = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%d%d%d%dZ$"
emu.ISO_S = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$"
emu.UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

---------------------------------------------------------------------------------------------------
-- HTTP with LuaSocket
---------------------------------------------------------------------------------------------------

-- opts: { method, url | path (from the emulator root), headers, body, timeout }
-- Returns { status, headers (lower-case names), body, json (decoded or nil) }.
function emu.request(opts)
  local chunks = {}
  local headers = {}
  for k, v in pairs(opts.headers or {}) do headers[k:lower()] = v end
  if opts.body then headers["content-length"] = tostring(#opts.body) end
  local ok, status, resp_headers = http.request {
    url = opts.url or (emu.url .. opts.path),
    method = opts.method or "GET",
    headers = headers,
    source = opts.body and ltn12.source.string(opts.body) or nil,
    sink = ltn12.sink.table(chunks),
    redirect = false,
    create = function()
      local sock = socket.tcp()
      sock:settimeout(opts.timeout or emu.TIMEOUT)
      return sock
    end,
  }
  assert(ok, "HTTP request failed: " .. tostring(status))
  local res = { status = status, headers = resp_headers or {}, body = table.concat(chunks) }
  local decoded_ok, decoded = pcall(cjson.decode, res.body)
  if decoded_ok then res.json = decoded end
  return res
end

-- An API request. path is relative to /api/public/v1. body: a string, or a table to encode.
-- opts.key: the API key (default: the first org's); false sends no Authorization;
-- opts.authorization: the raw header value; opts.headers: more headers.
function emu.api(method, path, body, opts)
  opts = opts or {}
  local headers = {}
  if opts.authorization then
    headers.authorization = opts.authorization
  elseif opts.key ~= false then
    headers.authorization = "Bearer " .. (opts.key or emu.key)
  end
  if body ~= nil then headers["content-type"] = "application/json" end
  for k, v in pairs(opts.headers or {}) do headers[k] = v end
  if type(body) == "table" then body = cjson.encode(body) end
  return emu.request { method = method, path = emu.PREFIX .. path, headers = headers, body = body,
    timeout = opts.timeout }
end

-- The body of a valid create_call request, with fields overridden.
function emu.call_body(overrides)
  local body = { agent_id = emu.agent.id, phone_number = emu.to }
  for k, v in pairs(overrides or {}) do body[k] = v end
  return body
end

function emu.create_call(overrides, opts)
  local res = emu.api("POST", "/calls", emu.call_body(overrides), opts)
  assert(res.status == 201, "create_call answered " .. res.status .. ": " .. res.body)
  return res.json.data, res
end

-- A control request; asserts a 2xx answer and returns the decoded body.
function emu.control(method, path, body)
  if type(body) == "table" then body = cjson.encode(body) end
  local res = emu.request { method = method, path = "/__emulator" .. path, body = body,
    headers = body and { ["content-type"] = "application/json" } or nil }
  assert(res.status >= 200 and res.status < 300,
    ("control %s %s answered %d: %s"):format(method, path, res.status, res.body))
  return res.json
end

function emu.reset() return emu.control("POST", "/reset") end
function emu.config(changes) return emu.control("POST", "/config", changes).data end
function emu.fault(spec) return emu.control("POST", "/faults", spec).data end
function emu.advance(seconds) return emu.control("POST", "/clock/advance", { seconds = seconds }) end
function emu.held() return emu.control("GET", "/held").data end
function emu.release(which) return emu.control("POST", "/held/release", which or {}).data.released end

-- Waits (bounded) until `n` requests are held (and returns them), the sign that they reached the
-- server; nil if they did not within `timeout` seconds (default 10).
function emu.wait_held(n, timeout)
  return emu.eventually(function()
    local held = emu.held()
    return #held >= n and held
  end, timeout or 10, 0.02)
end

function emu.journal(since)
  return emu.control("GET", "/journal" .. (since and ("?since=" .. string.format("%d", since)) or "")).data
end

-- The calls an org sees (GET /calls?limit=100): the decoded list.
function emu.list_calls(key, query)
  local res = emu.api("GET", "/calls?limit=100" .. (query or ""), nil, { key = key })
  assert(res.status == 200, "list answered " .. res.status .. ": " .. res.body)
  return res.json.data, res.json.pagination
end

---------------------------------------------------------------------------------------------------
-- Shell and curl
---------------------------------------------------------------------------------------------------

function emu.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Runs a shell command; returns stdout, and the exit status (number).
function emu.sh(cmd)
  local p = assert(io.popen(cmd .. "\necho \"__exit=$?\""))
  local out = p:read("*a")
  p:close()
  local status = tonumber(out:match("__exit=(%d+)%s*$"))
  return out:gsub("__exit=%d+%s*$", ""), status
end

-- Directories made for a spec; whatever a spec left (a failure, a background request never
-- waited for) goes when the busted run ends.
local made = {}

local function remove_made()
  for _, dir in ipairs(made) do os.execute("rm -rf " .. emu.quote(dir)) end
  made = {}
  return nil, true
end

do
  local ok, busted = pcall(require, "busted")
  if ok and type(busted) == "table" and busted.subscribe then
    busted.subscribe({ "suite", "end" }, remove_made)
  end
end

function emu.tmpdir()
  local out = emu.sh("mktemp -d \"${TMPDIR:-/tmp}/truedy-emu-spec.XXXXXX\"")
  local dir = out:match("^(%S+)")
  assert(dir and dir:find("truedy%-emu%-spec"), "mktemp failed")
  made[#made + 1] = dir
  return dir
end

function emu.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

function emu.write_file(path, content)
  local f = assert(io.open(path, "wb"))
  f:write(content)
  f:close()
end

-- One curl run against the API. args: extra curl arguments (strings). Returns
-- { exit, status, size, time_total, time_starttransfer, content_type, redirect_url, body, headers }.
-- The curl command line of emu.curl and emu.background: output options first, then the key,
-- the body (through a file in dir), extra args and the URL.
local function curl_command(method, path, body, args, opts, dir, output_args)
  local cmd = { "curl", "-sS", "--max-time", tostring(opts.max_time or emu.TIMEOUT), "-X", method }
  for _, a in ipairs(output_args) do cmd[#cmd + 1] = a end
  if opts.key ~= false then
    cmd[#cmd + 1] = "-H " .. emu.quote("Authorization: Bearer " .. (opts.key or emu.key))
  end
  if body then
    if type(body) == "table" then body = cjson.encode(body) end
    emu.write_file(dir .. "/request", body)
    cmd[#cmd + 1] = "-H 'Content-Type: application/json' --data-binary @" .. emu.quote(dir .. "/request")
  end
  for _, a in ipairs(args or {}) do cmd[#cmd + 1] = emu.quote(a) end
  cmd[#cmd + 1] = emu.quote((opts.url or emu.url) .. (opts.raw_path and path or (emu.PREFIX .. path)))
  return table.concat(cmd, " ")
end

function emu.curl(method, path, body, args, opts)
  opts = opts or {}
  local dir = emu.tmpdir()
  local command = curl_command(method, path, body, args, opts, dir, {
    "-o", emu.quote(dir .. "/body"), "-D", emu.quote(dir .. "/headers"),
    "-w", emu.quote("%{http_code} %{size_download} %{time_total} %{time_starttransfer} %{redirect_url}\n") })
  local out, exit = emu.sh(command .. " 2>/dev/null")
  local code, size, total, start, redirect = out:match("^(%d+) (%d+) ([%d%.]+) ([%d%.]+) ?(%S*)")
  local r = {
    exit = exit, status = tonumber(code), size = tonumber(size), time_total = tonumber(total),
    time_starttransfer = tonumber(start), redirect_url = redirect,
    body = emu.read_file(dir .. "/body") or "", headers = emu.read_file(dir .. "/headers") or "",
  }
  r.content_type = r.headers:match("[Cc]ontent%-[Tt]ype: ([^\r\n]*)")
  emu.sh("rm -rf " .. emu.quote(dir))
  return r
end

-- Starts one curl against the API in the background and returns at once. The returned function
-- waits for it (bounded) and returns { exit, status, body }; the second one tells, without
-- waiting, whether curl has finished. args, opts: as emu.curl.
function emu.background(method, path, body, args, opts)
  opts = opts or {}
  local dir = emu.tmpdir()
  local command = curl_command(method, path, body, args, opts, dir,
    { "-o", emu.quote(dir .. "/body"), "-w", "'%{http_code}'" })
  local d = emu.quote(dir)
  emu.sh("(" .. command .. " >" .. d .. "/code 2>/dev/null; echo $? >" .. d .. "/exit.tmp; mv "
    .. d .. "/exit.tmp " .. d .. "/exit) </dev/null >/dev/null 2>&1 &")
  return function()
    local exit = emu.eventually(function() return emu.read_file(dir .. "/exit") end, (opts.max_time or emu.TIMEOUT) + 5)
    local r = { exit = tonumber(exit), status = tonumber(emu.read_file(dir .. "/code") or ""),
      body = emu.read_file(dir .. "/body") or "" }
    emu.sh("rm -rf " .. d)
    return r
  end, function()
    return emu.read_file(dir .. "/exit") ~= nil
  end
end

-- Sends many API requests truly at once: `opts.processes` (default 4) curl processes started
-- together, each running its share with `--parallel --parallel-immediate` (a connection per
-- request, up to `opts.per_process` (default 50) at a time). requests: a list of
-- { method, path, body? (string or table), headers? (list of "Name: value"), raw? }: path is
-- relative to /api/public/v1 and sent with emu.key, or with raw = true relative to the emulator's
-- root and sent without a key. Returns at once a function that waits for them all (bounded by
-- curl's --max-time of 30 s) and returns a list of { status, body }, in the order of `requests`.
function emu.blast_start(requests, opts)
  opts = opts or {}
  local processes = opts.processes or 4
  local dir = emu.tmpdir()
  local function conf_string(s) return '"' .. s:gsub('[\\"]', "\\%0") .. '"' end
  local confs = {}
  for i, r in ipairs(requests) do
    local p = (i - 1) % processes + 1
    confs[p] = confs[p] or {}
    local c = confs[p]
    if #c > 0 then c[#c + 1] = "next" end
    c[#c + 1] = "url = " .. conf_string(emu.url .. (r.raw and "" or emu.PREFIX) .. r.path)
    c[#c + 1] = "request = " .. conf_string(r.method or "GET")
    c[#c + 1] = "output = " .. conf_string(dir .. "/out." .. i)
    if not r.raw then c[#c + 1] = "header = " .. conf_string("Authorization: Bearer " .. emu.key) end
    for _, h in ipairs(r.headers or {}) do c[#c + 1] = "header = " .. conf_string(h) end
    if r.body then
      local body = type(r.body) == "table" and cjson.encode(r.body) or r.body
      emu.write_file(dir .. "/request." .. i, body)
      c[#c + 1] = "header = " .. conf_string("Content-Type: application/json")
      c[#c + 1] = "data-binary = " .. conf_string("@" .. dir .. "/request." .. i)
    end
    c[#c + 1] = "write-out = " .. conf_string(i .. " %{http_code}\\n")
  end
  local script = {}
  for p, c in ipairs(confs) do
    emu.write_file(dir .. "/curl." .. p, table.concat(c, "\n") .. "\n")
    script[#script + 1] = ("curl -s --max-time 30 --parallel --parallel-immediate --parallel-max %d -K %s >%s"
      .. " 2>/dev/null &"):format(opts.per_process or 50, emu.quote(dir .. "/curl." .. p),
      emu.quote(dir .. "/codes." .. p))
  end
  script[#script + 1] = "wait"
  script[#script + 1] = ": >" .. emu.quote(dir .. "/done")
  emu.sh("(" .. table.concat(script, "\n") .. "\n) </dev/null >/dev/null 2>&1 &")
  return function()
    emu.eventually(function() return emu.read_file(dir .. "/done") end, 40)
    local results = {}
    for p = 1, #confs do
      for i, code in (emu.read_file(dir .. "/codes." .. p) or ""):gmatch("(%d+) (%d+)") do
        results[tonumber(i)] = { status = tonumber(code), body = emu.read_file(dir .. "/out." .. i) }
      end
    end
    for i = 1, #requests do results[i] = results[i] or { status = 0, body = "" } end
    emu.sh("rm -rf " .. emu.quote(dir))
    return results
  end
end

-- emu.blast_start, then wait for the results.
function emu.blast(requests, opts)
  return emu.blast_start(requests, opts)()
end

do
  local _, status = emu.sh("command -v wrk >/dev/null 2>&1")
  emu.has_wrk = status == 0
end

-- GET `path` (with emu.key) as hard as possible from many connections at once, so that workers
-- really act at the same moment: for a second with wrk (2 threads, 64 connections: thousands of
-- requests) when it is installed, else 1200 requests with emu.blast. Start from an empty journal:
-- returns how many requests the server journaled with each status (exact, whatever the client
-- gave up at the end), and their total.
function emu.hammer(path)
  local url = emu.url .. emu.PREFIX .. path
  if emu.has_wrk then
    emu.sh("wrk -t2 -c64 -d1s -H " .. emu.quote("Authorization: Bearer " .. emu.key) .. " " .. emu.quote(url)
      .. " >/dev/null 2>&1")
  else
    local requests = {}
    for i = 1, 1200 do requests[i] = { method = "GET", path = path } end
    emu.blast(requests, { processes = 8, per_process = 150 })
  end
  local counts, total = {}, 0
  for _, e in ipairs(emu.journal()) do
    counts[e.status] = (counts[e.status] or 0) + 1
    total = total + 1
  end
  return counts, total
end

-- How many results of emu.blast (or any list of { status }) have each status.
function emu.count_status(results)
  local counts = {}
  for _, r in ipairs(results) do counts[r.status] = (counts[r.status] or 0) + 1 end
  return counts
end

-- Polls fn() every `step` seconds until it returns a truthy value or `timeout` passes.
function emu.eventually(fn, timeout, step)
  local deadline = socket.gettime() + (timeout or 5)
  repeat
    local v = fn()
    if v then return v end
    socket.sleep(step or 0.05)
  until socket.gettime() > deadline
  return nil
end

emu.sleep = socket.sleep
emu.now = socket.gettime

---------------------------------------------------------------------------------------------------
-- The launcher
---------------------------------------------------------------------------------------------------

-- Runs `truedy-emulator ARGS` (args: already quoted shell words), with optional env assignments.
-- Returns stdout, stderr, exit status.
function emu.launch(args, env)
  local errfile = os.tmpname()
  local out, status = emu.sh((env and (env .. " ") or "") .. emu.quote(emu.launcher) .. " " .. args .. " 2>"
    .. emu.quote(errfile) .. " </dev/null")
  local err = emu.read_file(errfile) or ""
  os.remove(errfile)
  return out, err, status
end

-- The KEY=VALUE lines of the launcher's stdout, as a table.
function emu.parse_env(out)
  local env = {}
  for k, v in out:gmatch("([%w_]+)=([^\n]*)") do env[k] = v end
  return env
end

-- True if process `pid` exists and is not a zombie.
function emu.alive(pid)
  local stat = emu.read_file("/proc/" .. pid .. "/stat")
  if not stat then return false end
  local state = stat:match("^%d+ %(.*%) (%a)")
  return state ~= nil and state ~= "Z" and state ~= "X"
end

-- The state directory of the emulator under test (from its health endpoint).
function emu.dir()
  return emu.control("GET", "/health").data.dir
end

return emu
