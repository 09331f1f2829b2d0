-- Shared by the truedy module specs: where the emulator is, its seeded world,
-- its control surface (through LuaSocket, independent of truedy), and a
-- client configured for tests (short retry delays).  The emulator's own spec
-- helper (plain HTTP, no truedy) does the talking.
local emu = require "spec.emulator.emu"
local cjson = emu.json

local helper = {}

helper.emulator_url = emu.url
helper.base_url = emu.url .. emu.PREFIX
helper.fixtures = emu.fixtures
helper.api_key = emu.key
helper.other_api_key = emu.other_key
helper.agent = emu.agent
helper.agent_without_numbers = emu.agent_without_numbers
helper.draft_agent = emu.draft_agent
helper.other_org_agent = emu.other_agent
helper.to_number = emu.to
helper.failing_number = emu.failing_to

local lua_version = rawget(_G, "jit") and "luajit" or _VERSION:match("%d+%.%d+")
helper.root = os.getenv("PWD") or "."
helper.lua = os.getenv("TRUEDY_TEST_LUA") or (lua_version == "luajit" and "luajit" or "lua" .. lua_version)
-- LuaJIT's _VERSION is "Lua 5.1": it loads the 5.1-ABI build
helper.module_dir = os.getenv("TRUEDY_TEST_MODULE_DIR") or ("build/" .. _VERSION:match("%d+%.%d+"))

-- JSON nulls in objects become absent keys, as truedy does for its results.
function helper.strip_nulls(value)
  if type(value) == "table" then
    for k, v in pairs(value) do
      if v == cjson.null and type(k) == "string" then value[k] = nil else helper.strip_nulls(v) end
    end
  end
  return value
end

function helper.control(method, path, body) return helper.strip_nulls(emu.control(method, path, body)) end
function helper.reset() emu.reset() end
function helper.configure(config) return emu.config(config) end
function helper.fault(fault) return emu.fault(fault) end

-- The journal of API requests, oldest first; optionally only one method + path.
function helper.journal(method, path)
  local entries = helper.strip_nulls(emu.journal())
  if not method then return entries end
  local out = {}
  for _, entry in ipairs(entries) do
    if entry.method == method and (path == nil or entry.path == path) then
      out[#out + 1] = entry
    end
  end
  return out
end

-- The calls an organization can see, straight from the API (raw HTTP).
function helper.list_calls_raw(api_key)
  return (emu.list_calls(api_key))
end

-- A truedy client on the emulator with test-sized retry delays.
function helper.client(options)
  local truedy = require "truedy"
  local merged = {
    api_key = helper.api_key,
    base_url = helper.base_url,
    retry_base_delay = 0.01,
    retry_max_delay = 0.05,
    timeout = 10,
  }
  for k, v in pairs(options or {}) do merged[k] = v end
  return assert(truedy.new(merged))
end

-- Valid create_call parameters, with overrides.
function helper.params(overrides)
  local params = { agent_id = helper.agent.id, phone_number = helper.to_number }
  for k, v in pairs(overrides or {}) do params[k] = v end
  return params
end

-- Run a Lua snippet in a fresh interpreter with the given environment;
-- returns its exit status and everything it printed (stdout + stderr).
function helper.run_lua(code, env)
  local tmp = os.tmpname()
  local file = assert(io.open(tmp, "w"))
  file:write(code)
  file:close()
  local assignments = { "env -u TRUEDY_API_KEY -u TRUEDY_BASE_URL" }
  for k, v in pairs(env or {}) do
    assignments[#assignments + 1] = string.format("%s='%s'", k, tostring(v):gsub("'", "'\\''"))
  end
  -- under `make valgrind` the child runs under memcheck too (a leak or an
  -- invalid access fails it with status 97); under `make sanitize` it
  -- inherits the preloaded sanitizer runtime
  local wrapper = ""
  if os.getenv("TRUEDY_TEST_WRAPPER") == "valgrind" then
    wrapper = "valgrind --quiet --error-exitcode=97 --leak-check=full --show-leak-kinds=definite "
      .. "--errors-for-leak-kinds=definite "
  end
  -- the exit status is echoed: Lua 5.1's pipe:close() does not return it
  local command = string.format("%s LUA_CPATH='%s/?.so;;' LUA_PATH='%s/lua/?.lua;;' %s%s %s 2>&1; echo \"__exit=$?\"",
    table.concat(assignments, " "), helper.module_dir, helper.root, wrapper, helper.lua, tmp)
  local pipe = assert(io.popen(command))
  local output = pipe:read("*a")
  pipe:close()
  os.remove(tmp)
  local status = tonumber(output:match("__exit=(%d+)%s*$"))
  return status, (output:gsub("__exit=%d+%s*$", ""))
end

-- A child script (for helper.run_lua) with a prelude: `truedy`, `params`
-- (valid create_call params), `client([options])` (a client on the emulator
-- with test-sized retry delays) and `on_collect(fn)` (an object whose
-- collection runs fn, on every Lua), then `body`.
function helper.child_script(body)
  return string.format([[
    local truedy = require "truedy"
    local KEY, URL = %q, %q
    local params = { agent_id = %q, phone_number = %q }
    local function client(options)
      options = options or {}
      options.api_key, options.base_url = options.api_key or KEY, options.base_url or URL
      options.retry_base_delay = options.retry_base_delay or 0.01
      return assert(truedy.new(options))
    end
    local newproxy = rawget(_G, "newproxy")
    -- an object whose collection runs fn (5.1 and LuaJIT: userdata only)
    local function on_collect(fn)
      if newproxy then getmetatable(newproxy(true)).__gc = fn
      else setmetatable({}, { __gc = fn }) end
    end
  ]], helper.api_key, helper.base_url, helper.agent.id, helper.to_number) .. body
end

-- Every string inside a value (deeply), for "the key never appears" checks.
function helper.all_strings(value, out, seen)
  out = out or {}
  seen = seen or {}
  if type(value) == "string" then
    out[#out + 1] = value
  elseif type(value) == "table" and not seen[value] then
    seen[value] = true
    for k, v in pairs(value) do
      helper.all_strings(k, out, seen)
      helper.all_strings(v, out, seen)
    end
  end
  return out
end

-- Seconds since the epoch of an ISO 8601 UTC time such as the journal's ts.
function helper.epoch(iso)
  local y, mo, d, h, mi, sec = iso:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):([%d.]+)Z$")
  assert(y, "not an ISO 8601 UTC time: " .. tostring(iso))
  y, mo = tonumber(y), tonumber(mo)
  -- days from the civil date (proleptic Gregorian calendar)
  if mo <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * (mo + (mo > 2 and -3 or 9)) + 2) / 5) + tonumber(d) - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  local days = era * 146097 + doe - 719468
  return days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec)
end

-- Is v a whole number the way the integer rule promises?  On 5.3+ the
-- subtype says it; on 5.1, 5.2 and LuaJIT every number is a double, so the
-- check is that it holds a whole value exactly (below 2^53).
function helper.is_integer(v)
  if math.type then return math.type(v) == "integer" end
  return type(v) == "number" and v == math.floor(v) and math.abs(v) < 2 ^ 53
end

-- Open file descriptors of this process (Linux): sockets a client keeps
-- show up here, so "closed and collected" is observable without valgrind.
function helper.open_fds()
  local stat = assert(io.open("/proc/self/stat")):read("*l")
  local pid = stat:match("^(%d+)")
  local pipe = assert(io.popen("ls /proc/" .. pid .. "/fd | wc -l"))
  local n = tonumber(pipe:read("*a"))
  pipe:close()
  return n
end

-- An object whose collection runs fn: tables take __gc from 5.2 on; 5.1
-- and LuaJIT run __gc on userdata only (newproxy).
function helper.on_collect(fn)
  local newproxy = rawget(_G, "newproxy")
  if newproxy then
    local proxy = newproxy(true)
    getmetatable(proxy).__gc = function() fn() end
    return proxy
  end
  return setmetatable({}, { __gc = function() fn() end })
end

function helper.now()
  return require("socket").gettime()
end

return helper
