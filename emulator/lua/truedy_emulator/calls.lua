-- The call store (the call object the API shows is call_view.lua's).
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
-- p: { cfg, org, agent, to_number, from_number (nil: none), settings, variables, fails, cancels }
-- (validated by the caller).
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
    cancels = p.cancels,
    variables = p.variables,
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

-- Where the call stands now, on the emulated clock: lifecycle.at's table, plus `age`.
function calls.state(record, cfg, now)
  local age = config.emulated_now(cfg, now) - record.created_emulated
  local s = lifecycle.at(record, age)
  s.age = age
  return s
end

-- Cancels call `id` (any organization's) now, on the emulated clock. Returns the record, or nil
-- and "not_found" | "over" (it had ended already: nothing to cancel).
function calls.cancel(id, cfg, now)
  local record = calls.get_any(id)
  if not record then return nil, "not_found" end
  local s = calls.state(record, cfg, now)
  if lifecycle.is_terminal(s.status) then return nil, "over", s.status end
  record.cancel_at = config.emulated_now(cfg, now) - record.created_emulated
  local ok, err = calls_dict():set("call:" .. id, json.encode(record))
  if not ok then error("cannot store call: " .. tostring(err)) end
  return record
end

return calls
