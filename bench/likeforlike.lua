-- Like for like: every client's requests, captured byte for byte by the capture server
-- (bench/capture.conf.in appends each request, length-prefixed, to WORK/capture/captured), compared
-- with truedy's.  The X-Idempotency-Key value is set aside after checking that it is a UUIDv4
-- and different on every call.  Writes what truedy sent (WORK/user_agent, WORK/body) for the
-- baselines to send the same, and each client's verdict to WORK/likeforlike.
--   lua5.4 bench/likeforlike.lua CAPTURE_CALLS_URL WORK
local common = require "common"

local url, work = arg[1], arg[2]
local CALLS = 3
local UUID4 = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89abAB]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"
local KEY_SHOWN = "<fresh UUIDv4>"

local function records(data)
  local out, pos = {}, 1
  while pos <= #data do
    local len, start = data:match("^(%d+)\n()", pos)
    if not len then error("capture file is not length-prefixed at byte " .. pos) end
    out[#out + 1] = data:sub(start, start + tonumber(len) - 1)
    pos = start + tonumber(len)
  end
  return out
end

-- A request as { line, headers = { "Name: value", ... }, body, key, size }, with the key's
-- value replaced by KEY_SHOWN.
local function parse(raw)
  local head, body = raw:match("^(.-)\r\n\r\n(.*)$")
  assert(head, "a captured request without a blank line")
  local req = { headers = {}, body = body, size = #raw }
  for line in (head .. "\r\n"):gmatch("(.-)\r\n") do
    if not req.line then
      req.line = line
    else
      local name, value = line:match("^([^:]*):%s*(.-)%s*$")
      if name and name:lower() == "x-idempotency-key" then
        req.key = value
        line = line:sub(1, #line - #value) .. KEY_SHOWN
      end
      req.headers[#req.headers + 1] = line
    end
  end
  return req
end

local function shown(line) -- never print a key, even the bench's
  return (line:gsub("^([Aa]uthorization:%s*%S+%s+).*$", "%1[redacted]"))
end

local function header(req, name)
  for _, line in ipairs(req.headers) do
    local n, v = line:match("^([^:]*):%s*(.-)%s*$")
    if n and n:lower() == name then return v end
  end
end

-- What differs between request b and the reference a, as a list of phrases (empty: identical).
local function differences(a, b)
  local out = {}
  if a.line ~= b.line then out[#out + 1] = "request line " .. string.format("%q", b.line) end
  local in_a, in_b = {}, {}
  for _, l in ipairs(a.headers) do in_a[l] = true end
  for _, l in ipairs(b.headers) do in_b[l] = true end
  for _, l in ipairs(a.headers) do
    if not in_b[l] then out[#out + 1] = "lacks " .. string.format("%q", shown(l)) end
  end
  for _, l in ipairs(b.headers) do
    if not in_a[l] then out[#out + 1] = "adds " .. string.format("%q", shown(l)) end
  end
  if #out == 0 and table.concat(a.headers, "\n") ~= table.concat(b.headers, "\n") then
    out[#out + 1] = "header order"
  end
  if a.body ~= b.body then out[#out + 1] = "body " .. string.format("%q", b.body) end
  return out
end

local function capture(c, env)
  os.remove(work .. "/capture/captured")
  local r = common.run_client(c, url, 0, CALLS, env)
  if not r.calls then return nil, r.unavailable and "not available: " .. r.unavailable or "FAILED: " .. r.failed end
  local raws = records(common.read(work .. "/capture/captured") or "")
  if #raws ~= CALLS then return nil, string.format("FAILED: %d requests captured, %d made", #raws, CALLS) end
  local reqs, keys = {}, {}
  for i, raw in ipairs(raws) do
    reqs[i] = parse(raw)
    local k = reqs[i].key
    if not (k and k:match(UUID4)) then return nil, "DIFFERS: no UUIDv4 X-Idempotency-Key" end
    if keys[k] then return nil, "DIFFERS: the same X-Idempotency-Key on two calls" end
    keys[k] = true
  end
  return reqs
end

local verdicts = {}
local truedy = common.client("truedy")
local ref, why = capture(truedy, {})
if not ref then
  io.stderr:write("likeforlike: truedy's request could not be captured: ", why, "\n")
  os.exit(1)
end
ref = ref[1]
common.write(work .. "/user_agent", assert(header(ref, "user-agent"), "truedy sent no User-Agent"))
common.write(work .. "/body", ref.body)
local env = common.wire_env(work)

print(string.format("Like for like: each client's first %d requests captured byte for byte and compared "
                    .. "with truedy's (the X-Idempotency-Key value aside, checked to be a fresh UUIDv4 "
                    .. "on every call).", CALLS))
print(string.format("  truedy's request: %d bytes; the body is %d bytes: %s", ref.size, #ref.body, ref.body))
print("    " .. ref.line)
for _, l in ipairs(ref.headers) do print("    " .. shown(l)) end
verdicts[#verdicts + 1] = "truedy\treference\t" .. ref.size

for _, c in ipairs(common.clients) do
  if c.name ~= "truedy" then
    local reqs, problem = capture(c, env)
    local verdict
    if reqs then
      local diff = {}
      for _, req in ipairs(reqs) do
        local d = differences(ref, req)
        if #d > 0 then diff = d end
      end
      verdict = #diff == 0 and "identical" or "DIFFERS: " .. table.concat(diff, "; ")
      verdicts[#verdicts + 1] = c.name .. "\t" .. (#diff == 0 and "identical" or "differs") .. "\t" .. reqs[1].size
    else
      verdict = problem
      local kind = problem:match("^not available") and "unavailable"
                   or problem:match("^DIFFERS") and "differs" or "failed"
      verdicts[#verdicts + 1] = c.name .. "\t" .. kind .. "\t0"
    end
    print(string.format("  %-15s %s", c.name, verdict))
  end
end
common.write(work .. "/likeforlike", table.concat(verdicts, "\n") .. "\n")
