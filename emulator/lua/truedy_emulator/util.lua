-- Small helpers shared by the emulator modules: wall-clock time with microseconds, ISO 8601
-- timestamps, random identifiers.

local util = {}

local floor, format = math.floor, string.format

-- Wall-clock time in seconds, with real microseconds. ngx.now() has only millisecond resolution
-- (and is cached per event-loop turn); the API's timestamps carry six fractional digits, so ask
-- the kernel through the FFI, falling back to ngx.now() if that is not possible.
local gettimeofday
do
  local ok_ffi, ffi = pcall(require, "ffi")
  if ok_ffi then
    pcall(ffi.cdef, [[
      struct truedy_emulator_timeval { long tv_sec; long tv_usec; };
      int gettimeofday(struct truedy_emulator_timeval *tv, void *tz);
    ]])
    local ok_new, tv = pcall(ffi.new, "struct truedy_emulator_timeval")
    if ok_new and pcall(function() return ffi.C.gettimeofday end) then
      gettimeofday = function()
        ffi.C.gettimeofday(tv, nil)
        return tonumber(tv.tv_sec) + tonumber(tv.tv_usec) / 1e6
      end
    end
  end
end

function util.now()
  if gettimeofday then return gettimeofday() end
  ngx.update_time()
  return ngx.now()
end

-- ISO 8601 in UTC with microseconds and a `Z`, e.g. 2026-03-03T20:30:21.310278Z.
function util.iso8601(t)
  local sec = floor(t)
  local usec = floor((t - sec) * 1e6 + 0.5)
  if usec >= 1000000 then sec, usec = sec + 1, usec - 1000000 end
  return os.date("!%Y-%m-%dT%H:%M:%S", sec) .. format(".%06dZ", usec)
end

-- Random hex digits from math.random, which each worker seeds from the kernel's CSPRNG
-- (see seed_random). Uniqueness where it matters (call ids) is enforced by the store.
function util.random_hex(n)
  local out = {}
  for i = 1, math.ceil(n / 8) do out[i] = format("%08x", math.random(0, 0xffffffff)) end
  return table.concat(out):sub(1, n)
end

function util.uuid4()
  local h = util.random_hex(32)
  local variant = format("%x", 8 + math.random(0, 3))
  return h:sub(1, 8) .. "-" .. h:sub(9, 12) .. "-4" .. h:sub(14, 16) .. "-" .. variant .. h:sub(18, 20)
    .. "-" .. h:sub(21, 32)
end

function util.seed_random()
  local seed
  local f = io.open("/dev/urandom", "rb")
  if f then
    local bytes = f:read(6)
    f:close()
    if bytes and #bytes == 6 then
      seed = 0
      for i = 1, 6 do seed = seed * 256 + bytes:byte(i) end
    end
  end
  if not seed then seed = floor(util.now() * 1e6) + (ngx and ngx.worker.pid() or 0) end
  math.randomseed(seed)
end

-- A random token naming the current request, the same wherever it is asked for during the request.
-- (Not nginx's $request_id: read from Lua without the config naming it, it is new at each read.)
function util.request_token()
  local token = ngx.ctx.truedy_request_token
  if not token then
    token = util.random_hex(24)
    ngx.ctx.truedy_request_token = token
  end
  return token
end

-- Copies a table one level deep.
function util.copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

return util
