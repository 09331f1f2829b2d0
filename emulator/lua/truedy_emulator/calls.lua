-- The call store and the call object the API shows.
--
-- Shared dict `truedy_calls`:
--   call:<id>            the call record (JSON), see calls.create
--   idx:<org>:<n>        id of the org's n-th call (n from the counter below)
-- Shared dict `truedy_state`:
--   calls_seq:<org>      how many calls the org has created (atomic incr: right with many workers)
-- Listing walks idx:<org>:n from the newest down, so GET /calls is newest first.

local json = require "truedy_emulator.json"
local util = require "truedy_emulator.util"
local config = require "truedy_emulator.config"
local lifecycle = require "truedy_emulator.lifecycle"

local calls = {}

local function calls_dict() return ngx.shared.truedy_calls end
local function state_dict() return ngx.shared.truedy_state end

-- Fills {{name}} placeholders from the call's variables (missing ones become empty).
local function render(template, variables)
  return (template:gsub("{{%s*([%w_%.%-]+)%s*}}", function(name) return variables[name] or "" end))
end

-- Stores a new call and returns its record.
-- p: { org, agent, to_number, from_number, settings, variables } (validated by the caller).
function calls.create(p)
  local dict = calls_dict()
  local now = util.now()
  local cfg = p.cfg or config.get()
  local record = {
    org = p.org,
    agent_id = p.agent.id,
    from_number = p.from_number,
    to_number = p.to_number,
    created_at = now,
    created_emulated = config.emulated_now(cfg, now),
    recording_enabled = p.settings.recording_enabled,
    transcription_enabled = p.settings.transcription_enabled,
    talk_seconds = lifecycle.talk_seconds(p.settings.max_duration),
    fails = p.fails,
    greeting = render(p.settings.greeting or p.agent.greeting or "Hello.", p.variables),
  }
  -- Ids are random; `add` fails if one is already taken, so two workers can never hand out the
  -- same id.
  for _ = 1, 10 do
    record.id = "call_" .. util.random_hex(16)
    local ok, err = dict:add("call:" .. record.id, json.encode(record))
    if ok then break end
    if err ~= "exists" then error("cannot store call: " .. tostring(err)) end
    record.id = nil
  end
  if not record.id then error("cannot allocate a unique call id") end
  local n = state_dict():incr("calls_seq:" .. p.org, 1, 0)
  dict:set("idx:" .. p.org .. ":" .. n, record.id)
  return record
end

-- The record of call `id`, whoever owns it (for the control surface only).
function calls.get_any(id)
  local text = calls_dict():get("call:" .. id)
  return text and json.decode(text) or nil
end

-- The record of call `id` if it belongs to `org`, else nil (another org's call is "not found").
function calls.get(org, id)
  local text = calls_dict():get("call:" .. id)
  if not text then return nil end
  local record = json.decode(text)
  if not record or record.org ~= org then return nil end
  return record
end

-- Calls `fn(id)` for each of the org's calls, newest first, until fn returns false.
-- (Ids only: a caller that needs no more than a count or one page decodes nothing else.)
function calls.each_id_newest_first(org, fn)
  local dict = calls_dict()
  local n = state_dict():get("calls_seq:" .. org) or 0
  for i = n, 1, -1 do
    local id = dict:get("idx:" .. org .. ":" .. i)
    -- a call the shared dict evicted (it is full: LRU) is skipped
    if id and dict:get("call:" .. id) and fn(id) == false then return end
  end
end

local function transcript(record, s)
  local base = record.created_at + s.started
  local lines = {
    { "agent", record.greeting },
    { "customer", "Hi, yes, speaking." },
    { "agent", "Great, thank you for your time. Goodbye!" },
  }
  local out = json.array()
  for i, line in ipairs(lines) do
    -- spread over the conversation, never past its end
    local at = base + math.min((i - 1) * 3, record.talk_seconds)
    out[i] = json.ordered({ "speaker", "text", "timestamp" },
      { speaker = line[1], text = line[2], timestamp = util.iso8601(at) })
  end
  return out
end

local CALL_FIELDS = {
  to_from = { "id", "agent_id", "status", "from_number", "to_number", "direction", "created_at", "updated_at",
    "started_at", "ended_at", "duration_seconds", "recording_url", "transcript" },
  phone_number = { "id", "agent_id", "phone_number", "direction", "status", "created_at", "updated_at",
    "started_at", "ended_at", "duration_seconds", "recording_url", "transcript" },
}

-- The status the call has now, on the emulated clock.
function calls.state(record, cfg, now)
  local age = config.emulated_now(cfg, now) - record.created_emulated
  return lifecycle.at(record, age)
end

-- The call object of the API. Timestamps of events lie on the call's own emulated timeline:
-- started_at = created_at + 5 s, whatever the clock speed, so durations add up.
-- recording_base: "http://host:port" for recording_url.
function calls.present(record, cfg, now, recording_base)
  local s = calls.state(record, cfg, now)
  local function at(offset) return offset and util.iso8601(record.created_at + offset) or json.null end
  local ended_normally = s.status == "ended"
  local obj = {
    id = record.id,
    agent_id = record.agent_id,
    status = s.status,
    direction = "outbound",
    created_at = util.iso8601(record.created_at),
    updated_at = at(s.updated),
    started_at = at(s.started),
    ended_at = at(s.ended),
    duration_seconds = s.ended and (s.started and s.ended - s.started or 0) or json.null,
    recording_url = json.null,
    transcript = json.null,
  }
  if ended_normally and record.recording_enabled then
    obj.recording_url = recording_base .. "/__emulator/recordings/" .. record.id .. ".wav"
  end
  if ended_normally and record.transcription_enabled then
    obj.transcript = transcript(record, s)
  end
  if cfg.variant.call_shape == "phone_number" then
    obj.phone_number = record.to_number
  else
    obj.from_number = record.from_number
    obj.to_number = record.to_number
  end
  return json.ordered(CALL_FIELDS[cfg.variant.call_shape] or CALL_FIELDS.to_from, obj)
end

return calls
