-- The life of an emulated call, as a pure function of its age on the emulated clock.
--
--   age (emulated seconds)   0        2         5                      5 + talk
--   normal call              queued → ringing → in-progress ---------→ ended
--   failing destination      queued → ringing → failed
--
-- `talk` is 30 s, or less when call_settings.max_duration asks for less. The emulated clock runs
-- `clock_speed` times faster than the wall clock (see config.lua), so a test at speed 100 sees a
-- call end after 0.35 s. No ngx here: this file can be read and reasoned about on its own.

local lifecycle = {}

lifecycle.RINGING_AT = 2       -- queued → ringing
lifecycle.ANSWERED_AT = 5      -- ringing → in-progress (or → failed)
lifecycle.TALK_SECONDS = 30    -- default length of the conversation

-- Seconds of conversation for a call whose max_duration is `max_duration` (nil: no cap).
function lifecycle.talk_seconds(max_duration)
  if max_duration and max_duration < lifecycle.TALK_SECONDS then return max_duration end
  return lifecycle.TALK_SECONDS
end

-- Where a call stands at emulated age `age`.
-- call: { fails = boolean, talk_seconds = number }.
-- Returns { status, updated, started?, ended? }: the status, and the emulated offsets (seconds
-- after creation) of the last transition, of the answer, and of the end.
function lifecycle.at(call, age)
  local s = { status = "queued", updated = 0 }
  if age < lifecycle.RINGING_AT then return s end
  s.status, s.updated = "ringing", lifecycle.RINGING_AT
  if age < lifecycle.ANSWERED_AT then return s end
  if call.fails then
    s.status, s.updated, s.ended = "failed", lifecycle.ANSWERED_AT, lifecycle.ANSWERED_AT
    return s
  end
  s.status, s.updated, s.started = "in-progress", lifecycle.ANSWERED_AT, lifecycle.ANSWERED_AT
  local ends = lifecycle.ANSWERED_AT + call.talk_seconds
  if age < ends then return s end
  s.status, s.updated, s.ended = "ended", ends, ends
  return s
end

function lifecycle.is_terminal(status)
  return status == "ended" or status == "failed"
end

return lifecycle
