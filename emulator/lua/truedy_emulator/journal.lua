-- The journal: every request the API side received, in arrival order, for tests to inspect
-- (what was sent, on which connection, what was answered).
--
-- An entry is written when the request arrives (so a request still stuck in a `delay` fault is
-- already visible) and completed with the response status just before the response goes out (so
-- a client that has its answer finds the status recorded).
--
-- Shared dicts: `truedy_state` journal_seq (atomic counter giving the order across workers);
-- `truedy_journal` entry:<seq> (the JSON object without its result), result:<seq>, and
-- owner:<seq> (util.request_token() of the request that wrote the entry): a request still running
-- when the journal is cleared (one held or delayed across a reset) must not write its result over
-- the entry of a newer request that got the same seq.
--
-- Secrets: the Authorization value is redacted to its scheme word ("Bearer <redacted>"), and the
-- bearer token is scrubbed from the whole entry wherever else it might appear; so are every seeded
-- key and anything shaped like a key (`truedy_` and 32 letters or digits, `_` also as `%5F`),
-- wherever a client put it: another header, the query string, the path, the body (scrubbed before
-- body_base64 is made from it).

local json = require "truedy_emulator.json"
local util = require "truedy_emulator.util"
local world = require "truedy_emulator.world"

local journal = {}

journal.BODY_CAP = 1024 * 1024 -- bodies are kept up to this many bytes (body_truncated beyond)

local ENTRY_FIELDS = { "seq", "ts", "method", "path", "query", "headers", "auth", "body", "body_base64",
  "body_length", "body_truncated", "connection", "connection_requests", "worker" }
local NO_RESULT = '"status":null,"fault":null,"fault_id":null,"held":null'

local function entries() return ngx.shared.truedy_journal end

local function redact_authorization(value)
  local scheme = value:match("^(%S+)%s")
  return scheme and (scheme .. " <redacted>") or "<redacted>"
end

-- Plain (non-pattern) replacement of every occurrence of `needle`.
local function replace_plain(s, needle, repl)
  local out, i = {}, 1
  while true do
    local a, b = s:find(needle, i, true)
    if not a then break end
    out[#out + 1] = s:sub(i, a - 1)
    out[#out + 1] = repl
    i = b + 1
  end
  if i == 1 then return s end
  out[#out + 1] = s:sub(i)
  return table.concat(out)
end

local REDACTED = "<redacted>"
local KEY_SHAPES = { "truedy_" .. ("%w"):rep(32), "truedy%%5[Ff]" .. ("%w"):rep(32) }

-- `s` with every seeded key and everything shaped like a key replaced by <redacted>.
local function scrub_keys(s)
  if not s:find("truedy", 1, true) then return s end
  for _, org in ipairs(world.fixtures.organizations) do s = replace_plain(s, org.api_key, REDACTED) end
  for _, shape in ipairs(KEY_SHAPES) do s = s:gsub(shape, REDACTED) end
  return s
end

-- The request's headers, names lower-case, a repeated header as an array of its values.
local function headers_of(raw)
  local h = {}
  for name, value in pairs(raw) do
    if type(value) == "table" then
      local list = json.array()
      for i, v in ipairs(value) do list[i] = name == "authorization" and redact_authorization(v) or v end
      h[name] = list
    else
      h[name] = name == "authorization" and redact_authorization(value) or value
    end
  end
  return h
end

-- The bearer token(s) of the request, to scrub. Short strings are left alone: scrubbing "a"
-- would mangle the entry for nothing.
local function tokens_of(authorization)
  local values = type(authorization) == "table" and authorization or { authorization }
  local tokens = {}
  for _, v in ipairs(values) do
    local token = v:match("^%S+%s+(.-)%s*$") or v
    if #token >= 8 then tokens[#tokens + 1] = token end
  end
  return tokens
end

-- Records an arriving request. r: { method, path, query, headers (ngx.req.get_headers()),
-- auth (a word), body }. Returns the entry's sequence number.
function journal.begin(r)
  local seq = ngx.shared.truedy_state:incr("journal_seq", 1, 0)
  -- Scrubbed before it is capped or base64-encoded, so no part of a key survives in either.
  local body = scrub_keys(r.body)
  local entry = {
    seq = seq,
    ts = util.iso8601(util.now()),
    method = r.method,
    path = r.path,
    query = r.query or json.null,
    headers = headers_of(r.headers),
    auth = r.auth,
    connection = tonumber(ngx.var.connection),
    connection_requests = tonumber(ngx.var.connection_requests),
    worker = ngx.worker.id(),
  }
  if #body > journal.BODY_CAP then
    entry.body_truncated = true
    entry.body_length = #r.body
    body = body:sub(1, journal.BODY_CAP)
  end
  entry.body = json.sanitize_utf8(body)
  if entry.body ~= body then
    -- Not UTF-8: `body` is readable text, body_base64 the exact bytes.
    entry.body_base64 = ngx.encode_base64(body)
  end
  local text = scrub_keys(json.encode(json.ordered(ENTRY_FIELDS, entry)))
  if r.headers.authorization then
    for _, token in ipairs(tokens_of(r.headers.authorization)) do
      text = replace_plain(text, json.encode_string(token):sub(2, -2), REDACTED)
    end
  end
  local ok, err = entries():set("entry:" .. seq, text)
  if not ok then ngx.log(ngx.WARN, "journal entry ", seq, " not stored: ", err) end
  entries():set("owner:" .. seq, util.request_token())
  return seq
end

-- Records the response status (nil: none yet) of entry `seq`, the fault that shaped it, if any,
-- and for a held request how its hold went ("holding", "released", "expired", "hung_up").
function journal.finish(seq, status, fault, held)
  local result = '"status":' .. (status and string.format("%d", status) or "null")
    .. ',"fault":' .. (fault and json.encode_string(fault.type) or "null")
    .. ',"fault_id":' .. (fault and string.format("%d", fault.id) or "null")
    .. ',"held":' .. (held and json.encode_string(held) or "null")
  local d = entries()
  if d:get("owner:" .. seq) ~= util.request_token() then return end -- the journal was cleared since
  d:set("result:" .. seq, result)
end

-- The entries with seq > since, oldest first, as a JSON document {"data": [...]}.
function journal.list(since)
  local d = entries()
  local last = ngx.shared.truedy_state:get("journal_seq") or 0
  local out = {}
  for seq = (since or 0) + 1, last do
    local text = d:get("entry:" .. seq)
    if text then
      out[#out + 1] = text:sub(1, -2) .. "," .. (d:get("result:" .. seq) or NO_RESULT) .. "}"
    end
  end
  return '{"data":[' .. table.concat(out, ",") .. '],"last_seq":' .. string.format("%d", last) .. "}"
end

function journal.clear()
  entries():flush_all()
  entries():flush_expired()
  ngx.shared.truedy_state:delete("journal_seq")
end

return journal
