-- Shared by the pager and variant specs: making calls in bulk and reading what was listed.
local helper = require "spec.support.helper"
local emu = require "spec.emulator.emu"

local listing = {}

local LIST_PATH = emu.PREFIX .. "/calls"

-- The list requests truedy sent (not the specs' own raw reads), oldest first: each one's
-- query string decoded into a table.
function listing.queries()
  local out = {}
  for _, entry in ipairs(helper.journal("GET", LIST_PATH)) do
    if entry.headers["user-agent"]:find("^truedy%-lua/") then
      local q = {}
      for k, v in (entry.query or ""):gmatch("([^&=]+)=([^&]*)") do q[k] = v end
      out[#out + 1] = q
    end
  end
  return out
end

-- Creates n calls on the client's engine, all in flight at once; their ids, oldest first.
function listing.create_calls(client, n, overrides)
  local handles = {}
  for i = 1, n do handles[i] = assert(client:start_call(helper.params(overrides))) end
  local ids = {}
  for i, h in ipairs(handles) do
    local res = assert(h:wait(10))
    ids[i] = res.data.id
  end
  return ids
end

-- The ids of every call the API lists (newest first), read raw from the emulator.
function listing.listed_ids()
  local ids = {}
  for i, call in ipairs(helper.list_calls_raw()) do ids[i] = call.id end
  return ids
end

function listing.ids_of(calls)
  local ids = {}
  for i, call in ipairs(calls) do ids[i] = call.id end
  return ids
end

-- Every value a for-loop iterator gives.
function listing.collect(iterator)
  local calls = {}
  for call in iterator do calls[#calls + 1] = call end
  return calls
end

-- Drives the client until the emulator holds a request (a hold fault): the sign it arrived.
function listing.poll_until_held(client)
  return emu.eventually(function()
    client:poll(0.01)
    return #emu.held() >= 1
  end, 10, 0)
end

-- An ISO 8601 UTC time as the API writes it: microseconds, or whole seconds (truncated).
function listing.iso8601(t, whole_seconds)
  local sec = math.floor(t)
  if whole_seconds then return os.date("!%Y-%m-%dT%H:%M:%SZ", sec) end
  local usec = math.floor((t - sec) * 1e6 + 0.5)
  if usec >= 1000000 then sec, usec = sec + 1, usec - 1000000 end
  return os.date("!%Y-%m-%dT%H:%M:%S", sec) .. string.format(".%06dZ", usec)
end

return listing
