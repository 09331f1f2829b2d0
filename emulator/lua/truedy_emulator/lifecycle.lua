-- The life of an emulated call, as a pure function of its age on the emulated clock.
--
--   age (emulated seconds)   0        2         5                      5 + talk
--   normal call              queued → ringing → in-progress ---------→ ended
--   failing destination      queued → ringing → failed
--   cancelling destination   queued → ringing → cancelled
--   cancelled at age c       whatever it was at c, unless already over → cancelled at c
--
-- `talk` is 30 s, or less when call_settings.max_duration asks for less. The emulated clock runs
-- `clock_speed` times faster than the wall clock (see config.lua), so a test at speed 100 sees a
-- call end after 0.35 s. Statuses here have one spelling (in-progress, ended, cancelled); the
-- variants in force respell them when the call is shown (call_view.lua). No ngx here: this file
-- can be read and reasoned about on its own.

local lifecycle = {}

lifecycle.RINGING_AT = 2       -- queued → ringing
lifecycle.ANSWERED_AT = 5      -- ringing → in-progress (or → failed, → cancelled)
lifecycle.TALK_SECONDS = 30    -- default length of the conversation

-- Seconds of conversation for a call whose max_duration is `max_duration` (nil: no cap).
function lifecycle.talk_seconds(max_duration)
  if max_duration and max_duration < lifecycle.TALK_SECONDS then return max_duration end
  return lifecycle.TALK_SECONDS
end

function lifecycle.is_terminal(status)
  return status == "ended" or status == "failed" or status == "cancelled"
end

-- Where a call left to itself stands at `age`.
local function natural(call, age)
  local s = { status = "queued", updated = 0 }
  if age < lifecycle.RINGING_AT then return s end
  s.status, s.updated = "ringing", lifecycle.RINGING_AT
  if age < lifecycle.ANSWERED_AT then return s end
  if call.fails or call.cancels then
    s.status = call.fails and "failed" or "cancelled"
    s.updated, s.ended = lifecycle.ANSWERED_AT, lifecycle.ANSWERED_AT
    return s
  end
  s.status, s.updated, s.started = "in-progress", lifecycle.ANSWERED_AT, lifecycle.ANSWERED_AT
  local ends = lifecycle.ANSWERED_AT + call.talk_seconds
  if age < ends then return s end
  s.status, s.updated, s.ended = "ended", ends, ends
  return s
end

-- Where a call stands at emulated age `age`.
-- call: { fails = boolean, cancels = boolean, talk_seconds = number, cancel_at = age or nil }.
-- Returns { status, updated, started?, ended? }: the status, and the emulated offsets (seconds
-- after creation) of the last transition, of the answer, and of the end.
function lifecycle.at(call, age)
  local cut = call.cancel_at
  if cut and age >= cut then
    local before = natural(call, cut)
    if not lifecycle.is_terminal(before.status) then
      before.status, before.updated, before.ended = "cancelled", cut, cut
      return before
    end
  end
  return natural(call, age)
end

-- The ages (emulated seconds after creation) at which the call changes status, with the status
-- it takes, in order: { { age, status }, ... } up to its end.
function lifecycle.transitions(call)
  local out, last = {}, "queued"
  local ages = { lifecycle.RINGING_AT, lifecycle.ANSWERED_AT, lifecycle.ANSWERED_AT + call.talk_seconds }
  if call.cancel_at then ages[#ages + 1] = call.cancel_at end
  table.sort(ages)
  for _, age in ipairs(ages) do
    local s = lifecycle.at(call, age)
    if s.status ~= last then
      out[#out + 1] = { age = s.updated, status = s.status }
      last = s.status
    end
    if lifecycle.is_terminal(last) then break end
  end
  return out
end

return lifecycle
