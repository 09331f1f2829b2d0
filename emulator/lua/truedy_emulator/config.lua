-- The emulator's runtime settings, shared by all workers, changed through the control surface.
--
-- The whole configuration is one JSON value under one key of the `truedy_state` shared dict, so a
-- reader never sees half an update. Changes (read, modify, store) take a lock in the same dict,
-- so concurrent changes in several workers all apply (without it, two advances of the clock
-- read the same value and one is lost). It holds:
--   rate_limit   requests per window per API key (0 disables the limit)
--   rate_window  window length in seconds; windows are aligned to the epoch
--   clock_speed  how many emulated seconds pass per wall-clock second (0 freezes calls)
--   variant      which documented alternative of the API to serve (see VARIANTS, PRESETS)
--   clock        the anchor of the emulated clock: { real = wall time, emulated = emulated time }
--                at the last change of speed; emulated_now() extrapolates from it.

local json = require "truedy_emulator.json"
local util = require "truedy_emulator.util"

local config = {}

local KEY = "config"
local LOCK = "config_lock"
local LOCK_EXPIRY = 2     -- seconds: a holder that died cannot block changes for longer
local LOCK_STEP = 0.001   -- seconds between attempts to take the lock
local LOCK_TRIES = 3000   -- attempts before a change gives up (about 3 s or more)

-- Documented alternatives; the first value of each is the default (the consistent variant).
-- Each one is a place where the Truedy docs contradict themselves (see truedy-api.md).
config.VARIANTS = {
  meta_time_key = { "ts", "timestamp" },            -- meta.ts or meta.timestamp
  call_shape = { "numbers", "phone_number", "to_from" }, -- from_number/to_number, phone_number, to/from
  error_meta = { "meta", "inside_error" },          -- request_id/ts in meta, or inside error
  request_id_style = { "req", "uuid" },             -- req_<hex> or a bare UUID
  status_spelling = { "hyphen", "underscore" },     -- in-progress/ended, or in_progress/completed
  cancelled_spelling = { "cancelled", "canceled" }, -- the status of a cancelled call
  end_time_key = { "ended_at", "completed_at" },    -- the call's end time field
  call_extras = { "none", "all" },                  -- + transcript_url, summary, cost_credits, metadata
  transcript_style = { "iso", "offsets" },          -- agent/customer + ISO time, or agent/contact + seconds
  transcript_timing = { "immediate", "delayed" },   -- ready when the call ends, or null for 10 s more
  time_precision = { "microseconds", "seconds" },   -- ...T10:22:00.123456Z or ...T10:22:00Z
  pagination = { "object", "meta_count", "meta_fields" }, -- where a list says how many there are
  default_limit = { 50, 20 },                       -- GET /calls without ?limit
  no_number = { "error_422", "failed_call" },       -- agent without outbound number: a 422, or a call that fails
  rate_limit_headers = { "none", "x_ratelimit" },   -- + X-RateLimit-Limit/Remaining/Reset, Retry-After on 429
  error_details = { "omitted", "empty" },           -- an error without details: no key, or "details": {}
}
local VARIANT_ORDER = { "meta_time_key", "call_shape", "error_meta", "request_id_style", "status_spelling",
  "cancelled_spelling", "end_time_key", "call_extras", "transcript_style", "transcript_timing", "time_precision",
  "pagination", "default_limit", "no_number", "rate_limit_headers", "error_details" }
config.VARIANT_ORDER = VARIANT_ORDER

-- Named sets of variants: "default" sets every one to its default, "alternate" every one to its
-- second value (a documented alternative of everything at once).
config.PRESETS = { "default", "alternate" }
local function preset(name)
  local variant = {}
  for key, values in pairs(config.VARIANTS) do
    variant[key] = name == "alternate" and values[2] or values[1]
  end
  return variant
end

local function dict()
  return ngx.shared.truedy_state
end

local function defaults(now)
  local variant = preset("default")
  return {
    rate_limit = 100,
    rate_window = 60,
    clock_speed = 1,
    variant = variant,
    clock = { real = now, emulated = now },
  }
end

local function store(cfg)
  local ok, err = dict():set(KEY, json.encode(cfg))
  if not ok then error("cannot store the emulator config: " .. tostring(err)) end
end

function config.reset()
  local cfg = defaults(util.now())
  store(cfg)
  return cfg
end

-- Each worker keeps the last config it decoded, with the text it came from: a request only
-- decodes when the stored text changed (comparing interned strings is cheap).
local cached_text, cached_cfg

local function load(copy)
  local text = dict():get(KEY)
  if not text then return config.reset() end
  if text == cached_text and not copy then return cached_cfg end
  local cfg = json.decode(text)
  if not cfg then return config.reset() end
  -- A config stored by an older emulator (kept across a reload) lacks the newer variants.
  for name, values in pairs(config.VARIANTS) do
    if cfg.variant[name] == nil then cfg.variant[name] = values[1] end
  end
  if not copy then cached_text, cached_cfg = text, cfg end
  return cfg
end

-- The current configuration. Shared by the requests of this worker: read it, never change it.
function config.get()
  return load(false)
end

-- Emulated time (seconds) at wall-clock time `now`.
function config.emulated_now(cfg, now)
  return cfg.clock.emulated + (now - cfg.clock.real) * cfg.clock_speed
end

local function is_integer(v)
  return type(v) == "number" and v == math.floor(v)
end

-- Applies the changes of a POST /__emulator/config body to cfg. Returns cfg, or nil and a message
-- naming the offending field. Unknown fields are refused so a typo in a test shows up.
local function apply(cfg, changes)
  for k, v in pairs(changes) do
    if k == "rate_limit" then
      if not is_integer(v) or v < 0 then return nil, "rate_limit must be an integer >= 0" end
      cfg.rate_limit = v
    elseif k == "rate_window" then
      if not is_integer(v) or v < 1 or v > 86400 then
        return nil, "rate_window must be an integer number of seconds in 1..86400"
      end
      cfg.rate_window = v
    elseif k == "clock_speed" then
      if type(v) ~= "number" or v < 0 or v > 1e6 then return nil, "clock_speed must be a number in 0..1e6" end
      -- Re-anchor the clock so emulated time stays continuous across the change.
      local now = util.now()
      cfg.clock = { real = now, emulated = config.emulated_now(cfg, now) }
      cfg.clock_speed = v
    elseif k == "variant" and type(v) == "string" then
      local known = false
      for _, name in ipairs(config.PRESETS) do known = known or name == v end
      if not known then return nil, "variant must be an object, or one of: " .. table.concat(config.PRESETS, ", ") end
      cfg.variant = preset(v)
    elseif k == "variant" then
      if not json.is_object(v) then return nil, "variant must be an object, or a preset name" end
      for name, value in pairs(v) do
        local allowed = config.VARIANTS[name]
        if not allowed then return nil, "unknown variant: " .. tostring(name) end
        local ok = false
        for _, a in ipairs(allowed) do ok = ok or a == value end
        if not ok then
          local shown = {}
          for i, a in ipairs(allowed) do shown[i] = json.encode(a) end
          return nil, "variant." .. name .. " must be one of: " .. table.concat(shown, ", ")
        end
        cfg.variant[name] = value
      end
    else
      return nil, "unknown config field: " .. tostring(k)
    end
  end
  return cfg
end

-- Runs modify(cfg) on a private copy of the current config under the lock, and stores the copy
-- unless modify returns nil, message. Returns the stored config, or nil, message, busy (true when
-- the lock could not be taken).
local function change(modify)
  local d = dict()
  local tries = 0
  while not d:add(LOCK, true, LOCK_EXPIRY) do
    tries = tries + 1
    if tries > LOCK_TRIES then return nil, "the config is busy (another change holds its lock); try again", true end
    ngx.sleep(LOCK_STEP)
  end
  local ok, cfg, err = pcall(function()
    local c, e = modify(load(true))
    if c then store(c) end
    return c, e
  end)
  d:delete(LOCK)
  if not ok then error(cfg, 0) end
  return cfg, err
end

-- Applies the changes of a POST /__emulator/config body. Returns the new config, or nil and a
-- message (and true when the config was busy rather than the body wrong).
function config.update(changes)
  if not json.is_object(changes) then return nil, "the body must be a JSON object" end
  return change(function(cfg) return apply(cfg, changes) end)
end

-- Moves the emulated clock forward by `seconds` (calls age at once). Returns the new config, or
-- nil, message, true when the config was busy.
function config.advance_clock(seconds)
  return change(function(cfg)
    cfg.clock.emulated = cfg.clock.emulated + seconds
    return cfg
  end)
end

-- The variants and presets as the control surface shows them: each key with its values, the
-- default first.
function config.variants_public()
  local keys = json.ordered(VARIANT_ORDER, {})
  for name, values in pairs(config.VARIANTS) do keys[name] = json.array(util.copy(values)) end
  return json.ordered({ "variants", "presets" }, { variants = keys, presets = json.array(util.copy(config.PRESETS)) })
end

-- The configuration as the control surface shows it.
function config.public(cfg)
  local variant = json.ordered(VARIANT_ORDER, util.copy(cfg.variant))
  return json.ordered({ "rate_limit", "rate_window", "clock_speed", "variant", "emulated_now" }, {
    rate_limit = cfg.rate_limit,
    rate_window = cfg.rate_window,
    clock_speed = cfg.clock_speed,
    variant = variant,
    emulated_now = util.iso8601(config.emulated_now(cfg, util.now())),
  })
end

return config
