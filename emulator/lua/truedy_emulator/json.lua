-- A small, strict JSON codec for the emulator.
--
-- Why not lua-cjson: the emulator must tell `[]` from `{}` and `null` from an absent key
-- (`"variables": []` is a type error, `"from_number": null` is allowed), must refuse what a
-- strict server refuses (trailing commas, lone surrogates, invalid UTF-8), and must write
-- empty arrays as `[]` and object fields in a stable, readable order. Debian's lua-cjson 2.1.0
-- can do none of that. Bodies are small, so a plain Lua codec is fast enough.
--
-- Decoded objects carry the metatable `json.object_mt`, arrays `json.array_mt`; JSON null is the
-- sentinel `json.null`. No ngx API is used here: the module also loads in plain Lua.

local json = {}

local byte, char, find, format, sub, concat = string.byte, string.char, string.find, string.format, string.sub,
  table.concat
local floor, huge = math.floor, math.huge

json.null = setmetatable({}, { __tostring = function() return "null" end })
json.array_mt = { __name = "json.array" }
json.object_mt = { __name = "json.object" }

-- Marks a Lua table as a JSON array (so an empty one encodes as `[]`).
function json.array(t)
  return setmetatable(t or {}, json.array_mt)
end

-- Marks a Lua table as a JSON object whose keys are written in the given order first
-- (keys whose value is nil are skipped; json.null writes `null`). Other keys follow, sorted.
function json.ordered(keys, t)
  return setmetatable(t or {}, { __jsonorder = keys })
end

function json.is_array(v)
  return type(v) == "table" and getmetatable(v) == json.array_mt
end

function json.is_object(v)
  return type(v) == "table" and getmetatable(v) == json.object_mt
end

---------------------------------------------------------------------------------------------------
-- UTF-8
---------------------------------------------------------------------------------------------------

-- Returns true when s is well-formed UTF-8 (no overlong forms, no surrogates, <= U+10FFFF).
function json.valid_utf8(s)
  local i, n = 1, #s
  while i <= n do
    -- skip a run of ASCII quickly
    local j = find(s, "[\128-\255]", i)
    if not j then return true end
    i = j
    local c = byte(s, i)
    local len, min
    if c >= 0xC2 and c <= 0xDF then len, min = 2, 0x80
    elseif c >= 0xE0 and c <= 0xEF then len, min = 3, 0x800
    elseif c >= 0xF0 and c <= 0xF4 then len, min = 4, 0x10000
    else return false end
    if i + len - 1 > n then return false end
    local cp = c % (2 ^ (7 - len))
    for k = 1, len - 1 do
      local cc = byte(s, i + k)
      if cc < 0x80 or cc > 0xBF then return false end
      cp = cp * 64 + (cc - 0x80)
    end
    if cp < min or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then return false end
    i = i + len
  end
  return true
end

-- Replaces every byte that is not part of well-formed UTF-8 by U+FFFD (for display only).
function json.sanitize_utf8(s)
  if json.valid_utf8(s) then return s end
  local out, i, n = {}, 1, #s
  while i <= n do
    local c = byte(s, i)
    if c < 0x80 then
      out[#out + 1] = char(c)
      i = i + 1
    else
      local len = (c >= 0xC2 and c <= 0xDF and 2) or (c >= 0xE0 and c <= 0xEF and 3)
        or (c >= 0xF0 and c <= 0xF4 and 4) or nil
      local piece = len and sub(s, i, i + len - 1)
      if piece and #piece == len and json.valid_utf8(piece) then
        out[#out + 1] = piece
        i = i + len
      else
        out[#out + 1] = "\239\191\189"
        i = i + 1
      end
    end
  end
  return concat(out)
end

local function utf8_encode(cp)
  if cp < 0x80 then
    return char(cp)
  elseif cp < 0x800 then
    return char(0xC0 + floor(cp / 64), 0x80 + cp % 64)
  elseif cp < 0x10000 then
    return char(0xE0 + floor(cp / 4096), 0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
  else
    return char(0xF0 + floor(cp / 262144), 0x80 + floor(cp / 4096) % 64, 0x80 + floor(cp / 64) % 64,
      0x80 + cp % 64)
  end
end

---------------------------------------------------------------------------------------------------
-- Decoding
---------------------------------------------------------------------------------------------------

local MAX_DEPTH = 64

local ESCAPES = {
  [byte('"')] = '"', [byte("\\")] = "\\", [byte("/")] = "/", [byte("b")] = "\b",
  [byte("f")] = "\f", [byte("n")] = "\n", [byte("r")] = "\r", [byte("t")] = "\t",
}

local decode_value -- forward declaration

local function fail(pos, what)
  error({ json_error = format("%s at byte %d", what, pos) }, 0)
end

local function skip_ws(s, pos)
  return find(s, "[^ \t\r\n]", pos) or #s + 1
end

local function decode_string(s, pos)
  -- pos is at the opening quote
  local parts, i = {}, pos + 1
  while true do
    local j = find(s, '[%c"\\]', i)
    if not j then fail(pos, "unterminated string") end
    local c = byte(s, j)
    if c == 127 then -- DEL is %c in C, but JSON allows it raw
      parts[#parts + 1] = sub(s, i, j)
      i = j + 1
    elseif c == 34 then -- closing quote
      parts[#parts + 1] = sub(s, i, j - 1)
      return concat(parts), j + 1
    elseif c == 92 then -- backslash
      parts[#parts + 1] = sub(s, i, j - 1)
      local e = byte(s, j + 1)
      if e == 117 then -- \uXXXX
        local hex = sub(s, j + 2, j + 5)
        if not find(hex, "^%x%x%x%x$") then fail(j, "bad \\u escape") end
        local cp = tonumber(hex, 16)
        local nexti = j + 6
        if cp >= 0xD800 and cp <= 0xDBFF then
          local hex2 = sub(s, j + 6, j + 11)
          local lo = find(hex2, "^\\u%x%x%x%x$") and tonumber(sub(hex2, 3), 16)
          if not lo or lo < 0xDC00 or lo > 0xDFFF then fail(j, "lone surrogate in \\u escape") end
          cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
          nexti = j + 12
        elseif cp >= 0xDC00 and cp <= 0xDFFF then
          fail(j, "lone surrogate in \\u escape")
        end
        parts[#parts + 1] = utf8_encode(cp)
        i = nexti
      elseif e and ESCAPES[e] then
        parts[#parts + 1] = ESCAPES[e]
        i = j + 2
      else
        fail(j, "bad escape")
      end
    else
      fail(j, "control character in string")
    end
  end
end

local function decode_number(s, pos)
  local _, e = find(s, "^-?0", pos)
  if not e then
    _, e = find(s, "^-?[1-9]%d*", pos)
    if not e then fail(pos, "unexpected character") end
  end
  local _, fe = find(s, "^%.%d+", e + 1)
  if fe then e = fe end
  local _, xe = find(s, "^[eE][-+]?%d+", e + 1)
  if xe then e = xe end
  local n = tonumber(sub(s, pos, e))
  if not n or n == huge or n == -huge then fail(pos, "number out of range") end
  return n, e + 1
end

local function decode_array(s, pos, depth)
  local arr, n = setmetatable({}, json.array_mt), 0
  pos = skip_ws(s, pos + 1)
  if byte(s, pos) == 93 then return arr, pos + 1 end
  while true do
    local v
    v, pos = decode_value(s, pos, depth)
    n = n + 1
    arr[n] = v
    pos = skip_ws(s, pos)
    local c = byte(s, pos)
    if c == 93 then return arr, pos + 1 end
    if c ~= 44 then fail(pos, "expected ',' or ']'") end
    pos = skip_ws(s, pos + 1)
  end
end

local function decode_object(s, pos, depth)
  local obj = setmetatable({}, json.object_mt)
  pos = skip_ws(s, pos + 1)
  if byte(s, pos) == 125 then return obj, pos + 1 end
  while true do
    if byte(s, pos) ~= 34 then fail(pos, "expected a string key") end
    local k
    k, pos = decode_string(s, pos)
    pos = skip_ws(s, pos)
    if byte(s, pos) ~= 58 then fail(pos, "expected ':'") end
    local v
    v, pos = decode_value(s, skip_ws(s, pos + 1), depth)
    obj[k] = v -- a duplicate key: the last one wins, as in most servers
    pos = skip_ws(s, pos)
    local c = byte(s, pos)
    if c == 125 then return obj, pos + 1 end
    if c ~= 44 then fail(pos, "expected ',' or '}'") end
    pos = skip_ws(s, pos + 1)
  end
end

function decode_value(s, pos, depth)
  local c = byte(s, pos)
  if c == 123 or c == 91 then
    if depth >= MAX_DEPTH then fail(pos, "nesting too deep") end
    if c == 123 then return decode_object(s, pos, depth + 1) end
    return decode_array(s, pos, depth + 1)
  elseif c == 34 then
    return decode_string(s, pos)
  elseif c == 116 and sub(s, pos, pos + 3) == "true" then
    return true, pos + 4
  elseif c == 102 and sub(s, pos, pos + 4) == "false" then
    return false, pos + 5
  elseif c == 110 and sub(s, pos, pos + 3) == "null" then
    return json.null, pos + 4
  elseif c == nil then
    fail(pos, "unexpected end of input")
  end
  return decode_number(s, pos)
end

-- Decodes a complete JSON text. Returns the value, or nil and a message.
function json.decode(s)
  if type(s) ~= "string" then return nil, "not a string" end
  if not json.valid_utf8(s) then return nil, "invalid UTF-8" end
  local ok, value, pos = pcall(function()
    local v, p = decode_value(s, skip_ws(s, 1), 0)
    return v, skip_ws(s, p)
  end)
  if not ok then
    if type(value) == "table" and value.json_error then return nil, value.json_error end
    error(value, 0)
  end
  if pos <= #s then return nil, format("trailing data at byte %d", pos) end
  return value
end

---------------------------------------------------------------------------------------------------
-- Encoding
---------------------------------------------------------------------------------------------------

-- Replacement of every character JSON requires to be escaped (DEL, though matched by %c, is
-- absent, so gsub leaves it as it is).
local ESCAPE_OUT = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n", ["\r"] = "\\r",
  ["\t"] = "\\t",
}
for c = 0, 31 do
  local ch = char(c)
  if not ESCAPE_OUT[ch] then ESCAPE_OUT[ch] = format("\\u%04x", c) end
end

local function encode_string(s)
  if not find(s, '[%c"\\]') then return '"' .. s .. '"' end -- the common case, without gsub
  return '"' .. s:gsub('[%c"\\]', ESCAPE_OUT) .. '"'
end
json.encode_string = encode_string

local function encode_number(n)
  if n ~= n or n == huge or n == -huge then error("cannot encode NaN or infinity in JSON") end
  if n == floor(n) and n > -1e15 and n < 1e15 then return format("%d", n) end
  local s = format("%.14g", n)
  if tonumber(s) ~= n then s = format("%.17g", n) end
  return s
end

local encode_value -- forward declaration

local function is_sequence(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  for i = 1, n do
    if t[i] == nil then return false end
  end
  return true
end

-- The key order of an ordered object as a set, computed once per order list.
local order_sets = setmetatable({}, { __mode = "k" })
local function order_set(order)
  local set = order_sets[order]
  if not set then
    set = {}
    for _, k in ipairs(order) do set[k] = true end
    order_sets[order] = set
  end
  return set
end

local function encode_table(t, out, depth)
  if depth > MAX_DEPTH then error("cannot encode: nesting too deep (or a cycle)") end
  local mt = getmetatable(t)
  if mt == json.array_mt or (mt == nil and t[1] ~= nil and is_sequence(t)) then
    out[#out + 1] = "["
    for i = 1, #t do
      if i > 1 then out[#out + 1] = "," end
      encode_value(t[i], out, depth + 1)
    end
    out[#out + 1] = "]"
    return
  end
  -- Keys: those of the declared order first (if any), then the others sorted.
  local keys, n = {}, 0
  local order = mt and mt.__jsonorder
  local declared = order and order_set(order)
  if order then
    for _, k in ipairs(order) do
      if t[k] ~= nil then
        n = n + 1
        keys[n] = k
      end
    end
  end
  local first_rest = n + 1
  for k in pairs(t) do
    if type(k) ~= "string" then error("cannot encode a table with non-string keys as a JSON object") end
    if not (declared and declared[k]) then
      n = n + 1
      keys[n] = k
    end
  end
  if n > first_rest then
    local rest = {}
    for i = first_rest, n do rest[#rest + 1] = keys[i] end
    table.sort(rest)
    for i, k in ipairs(rest) do keys[first_rest + i - 1] = k end
  end
  out[#out + 1] = "{"
  for i = 1, n do
    local k = keys[i]
    if i > 1 then out[#out + 1] = "," end
    out[#out + 1] = encode_string(k)
    out[#out + 1] = ":"
    encode_value(t[k], out, depth + 1)
  end
  out[#out + 1] = "}"
end

function encode_value(v, out, depth)
  local tv = type(v)
  if v == json.null or v == nil then
    out[#out + 1] = "null"
  elseif tv == "string" then
    out[#out + 1] = encode_string(v)
  elseif tv == "number" then
    out[#out + 1] = encode_number(v)
  elseif tv == "boolean" then
    out[#out + 1] = v and "true" or "false"
  elseif tv == "table" then
    encode_table(v, out, depth)
  else
    error("cannot encode a " .. tv .. " in JSON")
  end
end

-- Encodes a Lua value as compact JSON text.
function json.encode(v)
  local out = {}
  encode_value(v, out, 0)
  return concat(out)
end

return json
