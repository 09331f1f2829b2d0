-- truedy.resty: truedy for nginx (OpenResty, or nginx + lua-nginx-module >= 0.10.21), without
-- blocking the worker.
--
--   local truedy = require "truedy.resty"
--   local res, err = truedy.create_call{ agent_id = "agt_...", phone_number = "+12125551234" }
--   if not res then ngx.log(ngx.ERR, err) end   -- err prints its one line
--
-- The same API, envelopes and error objects as require "truedy", and the same bytes on the
-- wire, but every request runs in nginx's thread pool (ngx.run_worker_thread), so the event
-- loop serves other requests meanwhile. The libcurl engine runs one attempt per task, in a
-- pooled thread VM that keeps its client and connections (truedy.resty.thread); this side, in
-- the worker, waits for it, retries with ngx.sleep (the engine's wait, truedy.retry_delay, with the
-- settings the plain module resolved; one idempotency key for every attempt of a
-- create), holds requests while any worker's 429 says so (truedy.resty.gate), and bounds its
-- own tasks in flight, because on lua-nginx-module 0.10.23 a full thread-pool queue kills the
-- worker (a failed post frees a wrong pointer).
--
-- README.md, "OpenResty", says which nginx directives this needs and how to size them.

local truedy = require "truedy"
local follow = require "truedy.follow"
local gate = require "truedy.resty.gate"

local ngx = rawget(_G, "ngx")
if not (ngx and ngx.run_worker_thread) then
  error("truedy.resty needs nginx with lua-nginx-module 0.10.21 or later on Linux (ngx.run_worker_thread);"
    .. " outside nginx, use require \"truedy\"", 2)
end

local resty = {
  VERSION = truedy.VERSION,
  LIBCURL_VERSION = truedy.LIBCURL_VERSION,
  DEFAULT_BASE_URL = truedy.DEFAULT_BASE_URL,
  null = truedy.null,
  new_idempotency_key = truedy.new_idempotency_key,
  is_terminal = truedy.is_terminal,
  format_error = truedy.format_error,
  restore_error = truedy.restore_error,
  webhook = truedy.webhook, -- verify, sign, hmac_sha256: no I/O, they run in the worker
  DEFAULT_THREAD_POOL = "truedy",
  DEFAULT_SHARED_DICT = "truedy",
  DEFAULT_MAX_PENDING = 8,
}

local THREAD_MODULE = "truedy.resty.thread"
-- ngx.run_worker_thread works in these (lua-nginx-module 0.10.23: rewrite, access, content and
-- ngx.timer callbacks).
local PHASES = { rewrite = true, access = true, content = true, timer = true }
-- Options of this module; the others are the plain client's.
local OWN_OPTIONS = { thread_pool = true, shared_dict = true, max_pending = true, per_minute = true }
-- The options with two spellings (csrc/options.c): current name -> older one.
local SPELLINGS = { retries = "max_retries", attempt_timeout = "timeout", retry_max_wait = "max_retry_wait" }
-- The retry settings, applied here between attempts since each task makes one, with the ranges
-- csrc/options.c allows per call (the thread's plain client checks all but `retries` again).
local RETRY_SETTINGS = {
  { name = "retries", min = 0, max = 10, whole = true },
  { name = "retry_base_delay", min = 0, max = 3600 },
  { name = "retry_max_delay", min = 0, max = 3600 },
  { name = "retry_max_wait", min = 0, max = 3600 },
}
-- When a task finds no free VM (one just finished but nginx has not taken it back yet), look
-- again this many times, a millisecond apart, before calling it a configuration problem.
local VM_ROUNDS = 20

---------------------------------------------------------------------------------------------------
-- Errors made on this side (the same shape as the plain module's)
---------------------------------------------------------------------------------------------------

local function new_error(fields)
  fields.retryable = fields.retryable or false
  fields.attempts = fields.attempts or 0
  return truedy.restore_error(fields)
end

local function config_error(message, retryable)
  return new_error { kind = "config", message = message, retryable = retryable }
end

-- A request held back here: the wait for a 429 seen by any worker, or for the pace, is longer
-- than retry_max_wait. Nothing was sent (attempts counts earlier attempts of this call only).
local function held_error(seconds, reason, attempts)
  local message
  if reason == "pace" then
    message = ("Rate limit pace (per_minute): the next free slot is in %.1f s, more than retry_max_wait;"
      .. " not sent"):format(seconds)
  else
    message = ("Rate limit exceeded: a 429 for this key (seen by this or another nginx worker) holds requests"
      .. " for %.1f s more, more than retry_max_wait; not sent"):format(seconds)
  end
  return new_error { kind = "api", status = 429, code = "rate_limit_exceeded", message = message,
    retryable = true, retry_after = seconds, attempts = attempts }
end

---------------------------------------------------------------------------------------------------
-- Checks
---------------------------------------------------------------------------------------------------

local function check_phase(fname)
  local phase = ngx.get_phase()
  if not PHASES[phase] then
    error(("truedy.resty: %s cannot run in the %s phase: it waits for nginx's thread pool"
      .. " (ngx.run_worker_thread), which works in rewrite, access, content and ngx.timer callbacks"
      .. " (from the %s phase, start an ngx.timer.at and call it there)"):format(fname, phase, phase), 0)
  end
end

-- Only data crosses to the thread pool: a function (or userdata, or coroutine) as an option value
-- is a programmer error, raised here rather than failing in the copy.
local function check_data_options(fname, options)
  for k, v in pairs(options) do
    local t = type(v)
    if t == "function" or t == "thread" or t == "userdata" then
      error(("%s: option '%s' is a %s: only data (strings, numbers, booleans, tables) crosses to nginx's"
        .. " thread pool"):format(fname, tostring(k), t), 0)
    end
  end
end

local function check_table_or_nil(value, fname, position)
  if value ~= nil and type(value) ~= "table" then
    error(("bad argument #%d to '%s' (table expected, got %s)"):format(position, fname, type(value)), 0)
  end
end

-- A number in [min, max] (whole if asked), raising with the plain module's words; `given` is
-- the option's name as the caller spelled it.
local function checked_number(fname, given, v, min, max, whole)
  if type(v) ~= "number" then
    error(("%s: option '%s' must be a number, got %s"):format(fname, given, type(v)), 0)
  end
  if not (v >= min and v <= max) then
    error(("%s: option '%s' must be between %s and %s"):format(fname, given, min, max), 0)
  end
  if whole and v ~= math.floor(v) then
    error(("%s: option '%s' must be a whole number"):format(fname, given), 0)
  end
  return v
end

local function number_option(fname, options, name, default, min, max, whole)
  local v = options[name]
  if v == nil then return default end
  return checked_number(fname, name, v, min, max, whole)
end

-- The value of an option given under either spelling, and the spelling used; both at once
-- raises, as in the plain module.
local function either_spelling(fname, options, name)
  local older = SPELLINGS[name]
  local v = options[name]
  if older == nil or options[older] == nil then return v, name end
  if v ~= nil then
    error(("%s: options '%s' and '%s' are the same option: give one of them"):format(fname, name, older), 0)
  end
  return options[older], older
end

local function env(name)
  local v = os.getenv(name)
  if v == "" then return nil end
  return v
end

-- A copy of `value` that crosses to a thread VM, for when the plain one did not: a function,
-- coroutine or userdata (but the JSON null) becomes a marker that truedy.resty.thread turns
-- back into a stand-in of the same type, and tables deeper than the plain module ever looks
-- (it refuses 32 levels) are cut, a table that contains itself included. So the plain module
-- sees the same thing wrong at the same place, and gives the same error.
local UNCROSSABLE = "\0truedy.resty.uncrossable"
local CUT_DEPTH = 40

local function crossable(value, depth)
  local t = type(value)
  if t == "table" then
    if depth > CUT_DEPTH then return {} end
    local out = {}
    for k, v in pairs(value) do out[crossable(k, depth + 1)] = crossable(v, depth + 1) end
    return out
  elseif t == "function" or t == "thread" or (t == "userdata" and value ~= truedy.null) then
    return { [UNCROSSABLE] = t }
  end
  return value
end

---------------------------------------------------------------------------------------------------
-- Tasks in flight, per worker and pool
---------------------------------------------------------------------------------------------------

-- This worker's tasks in a pool: counted up here when posted, down by the thread side when the
-- task ends (truedy.resty.thread), also for a request that went away meanwhile (a client that
-- hung up, ngx.exit in another light thread), whose coroutine never resumes. The count lives in
-- the shared dict, keyed by the worker's pid, so it holds whatever the Lua VM of the request
-- (lua_code_cache off gives each request its own).
local function pending_key(pool)
  return "truedy:pending:" .. pool .. ":" .. ngx.worker.pid()
end

local function in_flight(self)
  return self.dict:get(pending_key(self.pool)) or 0
end

---------------------------------------------------------------------------------------------------
-- The client
---------------------------------------------------------------------------------------------------

local Client = {}
Client.__index = Client

-- One attempt, in the thread pool. Returns res | nil, err (err.attempts: 1 if it was sent).
function Client:attempt(method, arg, call_options)
  local ok, tag, value
  local marked = false
  for round = 1, VM_ROUNDS do
    -- checked right before the post (no yield in between): the bound that keeps nginx's queue
    -- from being full
    local pending = in_flight(self)
    if pending >= self.max_pending then
      return nil, config_error(("%d requests of this nginx worker are already in thread pool '%s'"
        .. " (max_pending = %d): try again later, or raise max_pending together with the pool's"
        .. " max_queue and lua_worker_thread_vm_pool_size"):format(pending, self.pool, self.max_pending), true)
    end
    local key = pending_key(self.pool)
    self.dict:incr(key, 1, 0)
    ok, tag, value = ngx.run_worker_thread(self.pool, THREAD_MODULE, "run", self.fingerprint, self.options,
      method, arg, call_options, self.dict_name, key, marked)
    if ok then break end
    -- tag is lua-nginx-module's message. Only a failed copy of the answer comes after the task
    -- ran; every other failure happens before anything is posted.
    if tag:find(" in the return value", 1, true) then
      return nil, new_error { kind = "response", attempts = 1, message = "the answer could not cross back from"
        .. " nginx's thread pool: " .. tag }
    end
    self.dict:incr(key, -1, 0) -- nothing was posted
    if tag:find(" in the argument", 1, true) and not marked then
      -- something that is not data: let the plain module say what, in the thread
      arg, call_options, marked = crossable(arg, 1), crossable(call_options, 1), true
    elseif tag ~= "no available Lua vm" or round == VM_ROUNDS then
      break
    else
      ngx.sleep(0.001)
    end
  end
  if not ok then
    if tag:find("^thread pool .* not found$") then
      return nil, config_error(("nginx has no thread pool '%s': add `thread_pool %s threads=8 max_queue=64;`"
        .. " to the main context of nginx.conf (or name yours with the thread_pool option)")
        :format(self.pool, self.pool))
    elseif tag == "no available Lua vm" then
      return nil, config_error(("no Lua VM free for nginx's thread pool: lua_worker_thread_vm_pool_size must be"
        .. " at least max_pending (%d); on lua-nginx-module 0.10.23 this also shows when lua-resty-core cannot be"
        .. " loaded in a thread VM"):format(self.max_pending), true)
    end
    return nil, config_error("ngx.run_worker_thread failed: " .. tag
      .. " (is truedy's lua/ directory in lua_package_path, and truedy.so in lua_package_cpath?)")
  end
  if tag == "ok" then return value end
  if tag == "raise" then error(value, 0) end
  return nil, truedy.restore_error(value)
end

-- A request with its retries: the gate before every attempt, one attempt per task, and between
-- attempts the engine's own wait (truedy.retry_delay: policy.c's rule, CSPRNG jitter). `config`
-- holds this call's retries, retry_base_delay, retry_max_delay and retry_max_wait.
function Client:perform(method, arg, call_options, config)
  local attempts = 0
  while true do
    local wait, reason = gate.wait(self.dict, self.scope, self.per_minute, config.retry_max_wait)
    if wait then return nil, held_error(wait, reason, attempts) end
    local res, err = self:attempt(method, arg, call_options)
    if res then return res end
    local sent = (err.attempts or 0) > 0
    attempts = attempts + (err.attempts or 0)
    err.attempts = attempts
    if err.status == 429 and err.kind == "api" and type(err.retry_after) == "number" then
      gate.pause(self.dict, self.scope, err.retry_after)
    end
    -- nothing sent (max_pending, a refused parameter): nothing to retry
    if not sent then return nil, err end
    local delay = truedy.retry_delay(err, attempts, config)
    if not delay then return nil, err end
    ngx.sleep(delay)
  end
end

local function check_open(self, fname)
  if getmetatable(self) ~= Client then
    error(("bad argument #0 to '%s' (a truedy.resty client expected: use client:%s(...))"):format(fname, fname), 0)
  end
  if self.closed then error("truedy: the client is closed", 0) end
  check_phase(fname)
end

-- The per-call options for the task, and the call's retry settings. The task gets the caller's
-- options (checked for data) with `retries = 0`, since this side retries; the settings are the
-- client's with the call's own over them, under either spelling.
function Client:call_options(fname, options, position)
  check_table_or_nil(options, fname, position)
  local out = {}
  if options then
    check_data_options(fname, options)
    for k, v in pairs(options) do out[k] = v end
  end
  local config = {}
  for _, setting in ipairs(RETRY_SETTINGS) do
    local v, given = either_spelling(fname, out, setting.name)
    if v == nil then
      config[setting.name] = self.config[setting.name]
    else
      config[setting.name] = checked_number(fname, given, v, setting.min, setting.max, setting.whole)
    end
  end
  either_spelling(fname, out, "attempt_timeout") -- raises for both spellings before anything waits
  out.max_retries, out.retries = nil, 0
  return out, config
end

function Client:create_call(params, options)
  check_open(self, "create_call")
  if type(params) ~= "table" then
    error(("bad argument #1 to 'create_call' (table expected, got %s)"):format(type(params)), 0)
  end
  local call_options, config = self:call_options("create_call", options, 2)
  -- one key for every attempt, so a retry can never dial twice (the caller's, checked there)
  if call_options.idempotency_key == nil then call_options.idempotency_key = truedy.new_idempotency_key() end
  return self:perform("create_call", params, call_options, config)
end

function Client:get_call(call_id, options)
  check_open(self, "get_call")
  if type(call_id) ~= "string" and type(call_id) ~= "number" then
    error(("bad argument #1 to 'get_call' (string expected, got %s)"):format(type(call_id)), 0)
  end
  local call_options, config = self:call_options("get_call", options, 2)
  return self:perform("get_call", tostring(call_id), call_options, config)
end

function Client:list_calls(filters, options)
  check_open(self, "list_calls")
  check_table_or_nil(filters, "list_calls", 1)
  local call_options, config = self:call_options("list_calls", options, 2)
  return self:perform("list_calls", filters, call_options, config)
end

-- Polls until the call ends: truedy.follow, whose options it takes (wait_timeout, or its older
-- name timeout; interval; on_change; sleep), sleeping with ngx.sleep (the event loop goes on).
function Client:follow(call_id, options)
  return follow(self, call_id, options)
end

-- truedy.follow(client, call_id [, options]): the same, as the plain module spells it. Its
-- non-blocking form is the plain module's only: it runs on the plain client's engine, which
-- nginx does not drive.
resty.follow = setmetatable({
  start = function()
    error("truedy.resty: follow.start needs the plain module's engine (client:poll); in nginx, call"
      .. " truedy.follow (it sleeps with ngx.sleep) in an ngx.thread.spawn or ngx.timer.at instead", 2)
  end,
}, { __call = function(_, client, call_id, options) return follow(client, call_id, options) end })

-- The thread VMs keep their clients (shared by every client object of the same configuration)
-- until the worker exits; close() stops this object from being used.
function Client:close()
  self.closed = true
end

-- Requests of this worker in this client's thread pool now (posted, not yet finished).
function Client:pending()
  return in_flight(self)
end

Client.__tostring = function(self)
  if self.closed then return "truedy.resty.client (closed)" end
  return ("truedy.resty.client (%s, thread pool '%s')"):format(self.base_url, self.pool)
end

-- A canonical text of the options: the thread VMs cache one client per distinct text.
local function fingerprint(options)
  local names = {}
  for k in pairs(options) do names[#names + 1] = k end
  table.sort(names)
  local parts = {}
  for _, k in ipairs(names) do
    local v = options[k]
    parts[#parts + 1] = k .. "=" .. type(v) .. ":" .. tostring(v)
  end
  return table.concat(parts, "\n")
end

-- truedy.new([options]) -> client | nil, err
function resty.new(options)
  if options ~= nil and type(options) ~= "table" then
    error(("bad argument #1 to 'new' (table expected, got %s)"):format(type(options)), 0)
  end
  local client_options, own = {}, {}
  for k, v in pairs(options or {}) do
    if OWN_OPTIONS[k] then own[k] = v else client_options[k] = v end
  end
  check_data_options("truedy.new", client_options)
  for _, name in ipairs { "thread_pool", "shared_dict" } do
    if own[name] ~= nil and (type(own[name]) ~= "string" or own[name] == "") then
      error(("truedy.new: option '%s' must be a non-empty string, got %s"):format(name, type(own[name])), 0)
    end
  end
  local max_pending = number_option("truedy.new", own, "max_pending", resty.DEFAULT_MAX_PENDING, 1, 65536, true)
  local per_minute = number_option("truedy.new", own, "per_minute", nil, 0.001, 1e6, false)

  -- A key nginx does not pass to its workers is the usual first trouble: say which directive.
  -- (The key and base URL are read here, once, and given to the thread VMs with the options.)
  client_options.api_key = client_options.api_key or env("TRUEDY_API_KEY")
  client_options.base_url = client_options.base_url or env("TRUEDY_BASE_URL")
  if client_options.api_key == nil then
    return nil, config_error("no API key: nginx passes no environment variable to its workers unless"
      .. " nginx.conf names it: add `env TRUEDY_API_KEY;` (and `env TRUEDY_BASE_URL;` if you set it) to the"
      .. " main context, or pass api_key to truedy.new{...}")
  end
  -- Every option is checked now, by the plain module itself (it makes its libcurl handles and
  -- nothing else), so mistakes raise or come back here as they would from require "truedy".
  -- Its resolved settings (under their current names, whatever spelling was given) are the
  -- retry settings this side applies.
  local probe, err = truedy.new(client_options)
  if not probe then return nil, err end
  local resolved = probe:config()
  probe:close()

  local dict_name = own.shared_dict or resty.DEFAULT_SHARED_DICT
  local dict = ngx.shared[dict_name]
  if not dict then
    return nil, config_error(("nginx has no lua_shared_dict '%s' (the rate gate every worker shares): add"
      .. " `lua_shared_dict %s 1m;` to the http block of nginx.conf (or name yours with the shared_dict option)")
      :format(dict_name, dict_name))
  end
  local pool = own.thread_pool or resty.DEFAULT_THREAD_POOL
  local base_url = (client_options.base_url or truedy.DEFAULT_BASE_URL):gsub("/+$", "")
  local self = setmetatable({
    options = client_options,
    fingerprint = fingerprint(client_options),
    pool = pool,
    dict_name = dict_name,
    dict = dict,
    max_pending = max_pending,
    per_minute = per_minute,
    base_url = base_url,
    scope = ngx.md5(base_url .. "\n" .. client_options.api_key),
    config = {},
  }, Client)
  for _, setting in ipairs(RETRY_SETTINGS) do self.config[setting.name] = resolved[setting.name] end
  return self
end

---------------------------------------------------------------------------------------------------
-- Module functions: a default client, made on first use in each worker
---------------------------------------------------------------------------------------------------

local default_client

local function with_default(fname, ...)
  check_phase(fname)
  if not default_client then
    local client, err = resty.new()
    if not client then return nil, err end
    default_client = client
  end
  return default_client[fname](default_client, ...)
end

function resty.create_call(params, options)
  if type(params) ~= "table" then
    error(("bad argument #1 to 'create_call' (table expected, got %s)"):format(type(params)), 0)
  end
  return with_default("create_call", params, options)
end

function resty.get_call(call_id, options) return with_default("get_call", call_id, options) end
function resty.list_calls(filters, options) return with_default("list_calls", filters, options) end

return resty
