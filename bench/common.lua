-- What the harness scripts share: running one client, shell quoting, files, small statistics.
local M = {}

M.clients = require "registry"

function M.client(name)
  for _, c in ipairs(M.clients) do
    if c.name == name then return c end
  end
  return nil
end

function M.quote(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end

function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

function M.write(path, s)
  local f = assert(io.open(path, "wb"))
  assert(f:write(s))
  assert(f:close())
end

-- The environment the baselines need to send truedy's bytes (written by likeforlike.lua).
function M.wire_env(work)
  local ua, body = M.read(work .. "/user_agent"), M.read(work .. "/body")
  assert(ua and body, "no captured truedy request in " .. work .. " (likeforlike.lua runs first)")
  return { BENCH_USER_AGENT = ua, BENCH_BODY = body }
end

-- The number of calls and warm-up calls client c makes when the others make n and warmup.
function M.counts(c, warmup, n)
  return c.warmup and c.warmup(warmup) or warmup, c.calls and c.calls(n) or n
end

-- Runs client c: URL WARMUP N, behind `prefix` (a list of words: taskset, valgrind), with
-- `env` added to the environment.  Returns { calls, seconds } or { unavailable = why } or
-- { failed = what }.  The client's standard error goes to ours.
function M.run_client(c, url, warmup, n, env, prefix)
  local words = { "env" }
  for k, v in pairs(env or {}) do words[#words + 1] = k .. "=" .. M.quote(v) end
  for _, w in ipairs(prefix or {}) do words[#words + 1] = M.quote(w) end
  for _, w in ipairs(c.argv) do words[#words + 1] = M.quote(w) end
  for _, w in ipairs { url, warmup, n } do words[#words + 1] = M.quote(w) end
  local p = assert(io.popen(table.concat(words, " ")))
  local out = p:read("a")
  local _, _, code = p:close()
  local why = out:match("unavailable ([^\n]*)")
  if why and code == 3 then return { unavailable = why } end
  local calls, seconds = out:match("calls (%d+) seconds ([%d.]+)")
  if code ~= 0 or not calls then
    return { failed = string.format("exit status %s, output %q", tostring(code), out:sub(1, 200)) }
  end
  return { calls = tonumber(calls), seconds = tonumber(seconds) }
end

function M.sorted(list)
  local t = table.move(list, 1, #list, 1, {})
  table.sort(t)
  return t
end

-- min, median, max of a non-empty list of numbers.
function M.spread(list)
  local t = M.sorted(list)
  local m = #t // 2
  local median = #t % 2 == 1 and t[m + 1] or (t[m] + t[m + 1]) / 2
  return t[1], median, t[#t]
end

-- 12345.6 -> "12,346"
function M.thousands(x)
  local s = string.format("%.0f", x)
  repeat
    local n
    s, n = s:gsub("^(%d+)(%d%d%d)", "%1,%2")
  until n == 0
  return s
end

return M
