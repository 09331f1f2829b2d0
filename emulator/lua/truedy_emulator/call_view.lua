-- The call object the API shows, in the variants the config selects (config.VARIANTS):
-- status spellings, which number fields, the end time's name, the extra fields, the transcript's
-- form and when it appears, and the precision of timestamps.

local json = require "truedy_emulator.json"
local util = require "truedy_emulator.util"
local calls = require "truedy_emulator.calls"
local lifecycle = require "truedy_emulator.lifecycle"

local call_view = {}

-- transcript_timing = "delayed": the transcript (and its URL and the summary) stay null for this
-- many emulated seconds after the call ends, as while the real service is still processing it.
call_view.TRANSCRIPT_DELAY = 10

local SPELLINGS = {
  hyphen = { ["in-progress"] = "in-progress", ended = "ended" },
  underscore = { ["in-progress"] = "in_progress", ended = "completed" },
}

-- `status` (lifecycle's spelling) as the variants in force spell it.
function call_view.status(status, variant)
  if status == "cancelled" then return variant.cancelled_spelling end
  return SPELLINGS[variant.status_spelling][status] or status
end

-- A timestamp as the API writes it (microseconds, or whole seconds).
function call_view.time(t, cfg)
  return util.iso8601(t, cfg.variant.time_precision == "seconds")
end

local LINES = {
  { "agent", nil }, -- the greeting
  { "contact", "Hi, yes, speaking." },
  { "agent", "Great, thank you for your time. Goodbye!" },
}
local SUMMARY = "The agent greeted the contact, who confirmed; the call ended politely."

-- The transcript of an ended call, or nil while there is none (not ended normally, transcription
-- off, or still "processing" under transcript_timing = "delayed").
function call_view.transcript(record, cfg, s, age)
  if s.status ~= "ended" or not record.transcription_enabled then return nil end
  if cfg.variant.transcript_timing == "delayed" and age < s.ended + call_view.TRANSCRIPT_DELAY then return nil end
  local offsets = cfg.variant.transcript_style == "offsets"
  local out = json.array()
  for i, line in ipairs(LINES) do
    -- spread over the conversation, never past its end
    local offset = math.min((i - 1) * 3, record.talk_seconds)
    local speaker = line[1]
    if speaker == "contact" and not offsets then speaker = "customer" end
    out[i] = json.ordered({ "speaker", "text", "timestamp" }, {
      speaker = speaker,
      text = line[2] or record.greeting,
      timestamp = offsets and offset or call_view.time(record.created_at + s.started + offset, cfg),
    })
  end
  return out
end

-- Credits a finished call costs: a credit a minute, to the cent; nil while it runs.
local function cost(s)
  if not lifecycle.is_terminal(s.status) then return nil end
  local seconds = s.started and (s.ended - s.started) or 0
  return math.floor(seconds / 60 * 100 + 0.5) / 100
end

local COMMON_HEAD = { "id", "agent_id" }
local SHAPE_FIELDS = {
  numbers = { "status", "from_number", "to_number", "direction" },
  phone_number = { "phone_number", "direction", "status" },
  to_from = { "status", "from", "to", "direction" },
}
local ORDERS = {}
for shape, middle in pairs(SHAPE_FIELDS) do
  for _, end_key in ipairs { "ended_at", "completed_at" } do
    local order = { COMMON_HEAD[1], COMMON_HEAD[2] }
    for _, f in ipairs(middle) do order[#order + 1] = f end
    for _, f in ipairs { "created_at", "updated_at", "started_at", end_key, "duration_seconds", "recording_url",
      "transcript_url", "transcript", "summary", "cost_credits", "metadata" } do
      order[#order + 1] = f
    end
    ORDERS[shape .. ":" .. end_key] = order
  end
end

-- The call object of the API, as it stands at emulated age s.age (s: calls.state's table).
-- Timestamps of events lie on the call's own emulated timeline: started_at = created_at + 5 s,
-- whatever the clock speed, so durations add up.
-- recording_base: "http://host:port" for recording_url and transcript_url.
function call_view.present_state(record, cfg, s, recording_base)
  local age = s.age
  local v = cfg.variant
  local function at(offset) return offset and call_view.time(record.created_at + offset, cfg) or json.null end
  local transcript = call_view.transcript(record, cfg, s, age)
  local obj = {
    id = record.id,
    agent_id = record.agent_id,
    status = call_view.status(s.status, v),
    direction = "outbound",
    created_at = call_view.time(record.created_at, cfg),
    updated_at = at(s.updated),
    started_at = at(s.started),
    [v.end_time_key] = at(s.ended),
    duration_seconds = s.ended and (s.started and s.ended - s.started or 0) or json.null,
    recording_url = json.null,
    transcript = transcript or json.null,
  }
  if s.status == "ended" and record.recording_enabled then
    obj.recording_url = recording_base .. "/__emulator/recordings/" .. record.id .. ".wav"
  end
  if v.call_extras == "all" then
    obj.transcript_url = transcript and (recording_base .. "/__emulator/transcripts/" .. record.id .. ".json")
      or json.null
    obj.summary = transcript and SUMMARY or json.null
    obj.cost_credits = cost(s) or json.null
    obj.metadata = json.ordered({}, util.copy(record.variables or {}))
  end
  local from = record.from_number or json.null
  if v.call_shape == "phone_number" then
    obj.phone_number = record.to_number
  elseif v.call_shape == "to_from" then
    obj.from, obj.to = from, record.to_number
  else
    obj.from_number, obj.to_number = from, record.to_number
  end
  return json.ordered(ORDERS[v.call_shape .. ":" .. v.end_time_key], obj)
end

-- The call object as it stands now (wall time `now`).
function call_view.present(record, cfg, now, recording_base)
  return call_view.present_state(record, cfg, calls.state(record, cfg, now), recording_base)
end

-- The call object as it stood at emulated `age` (seconds after its creation).
function call_view.present_at(record, cfg, age, recording_base)
  local s = lifecycle.at(record, age)
  s.age = age
  return call_view.present_state(record, cfg, s, recording_base)
end

-- What the call costs once over (credits), whatever call_extras says; nil while it runs.
function call_view.cost(record, age)
  return cost(lifecycle.at(record, age))
end

return call_view
