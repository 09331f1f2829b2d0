---@meta truedy.resty
-- LuaLS annotations for `require "truedy.resty"` (lua/truedy/resty.lua): the same API for nginx,
-- each request in nginx's thread pool. Works in rewrite, access, content and ngx.timer
-- callbacks; elsewhere a call raises, naming the phase.
error("types/truedy.resty.d.lua: LuaLS annotations for editors, not code (README, Editor support)", 2)

---Options of `truedy.resty.new`: the plain client's (values must be data: no functions) and
---these.
---@class truedy.resty.ClientOptions: truedy.ClientOptions
---@field thread_pool? string the `thread_pool` the requests run in (default `"truedy"`)
---@field shared_dict? string the `lua_shared_dict` of the rate gate (default `"truedy"`)
---@field max_pending? integer this worker's requests in the pool at once (default 8; at most the pool's `max_queue`); beyond: `nil, err` (`kind = "config"`, `retryable = true`)
---@field per_minute? number a pace for one API key across all workers (retries included)

---@class truedy.resty
local resty = {}

---@type string
resty.VERSION = nil
---@type string
resty.LIBCURL_VERSION = nil
---@type string
resty.DEFAULT_BASE_URL = nil
---@type truedy.json_null
resty.null = nil
---`"truedy"`
---@type string
resty.DEFAULT_THREAD_POOL = nil
---`"truedy"`
---@type string
resty.DEFAULT_SHARED_DICT = nil
---`8`
---@type integer
resty.DEFAULT_MAX_PENDING = nil
---The plain module's.
---@type truedy.webhook
resty.webhook = nil

---The plain module's.
---@return string key
function resty.new_idempotency_key() end

---The plain module's.
---@param status_or_call string|truedy.Call|nil
---@return boolean
function resty.is_terminal(status_or_call) end

---The plain module's.
---@param err truedy.Error|table|string
---@return string line
function resty.format_error(err) end

---The plain module's.
---@generic T
---@param err T
---@return T err
function resty.restore_error(err) end

---Makes a client: checks every option as the plain module does; `nil, err` (`kind = "config"`)
---naming the nginx directive that is missing (`env TRUEDY_API_KEY;`, `lua_shared_dict`, ...).
---@param options? truedy.resty.ClientOptions
---@return truedy.resty.Client? client
---@return truedy.Error? err
---@nodiscard
function resty.new(options) end

---`client:create_call` on this worker's default client.
---@param params truedy.CreateParams
---@param options? truedy.CreateOptions
---@return truedy.CallEnvelope? res
---@return truedy.Error? err
function resty.create_call(params, options) end

---`client:get_call` on this worker's default client.
---@param call_id string
---@param options? truedy.CallOptions
---@return truedy.CallEnvelope? res
---@return truedy.Error? err
function resty.get_call(call_id, options) end

---`client:list_calls` on this worker's default client.
---@param filters? truedy.ListFilters
---@param options? truedy.ListOptions
---@return truedy.ListEnvelope? res
---@return truedy.Error? err
function resty.list_calls(filters, options) end

---`truedy.follow(client, call_id [, options])`, sleeping with `ngx.sleep`; `follow.start`
---raises here (it needs the plain client's engine).
---@type truedy.resty.follow
resty.follow = nil

---@class truedy.resty.follow
---@overload fun(client: truedy.resty.Client, call_id: string, options?: truedy.FollowOptions): truedy.Call|nil, boolean|truedy.Error
local resty_follow = {}

---Raises: the non-blocking follower runs on the plain client's engine, which nginx does not
---drive. In nginx, call `truedy.follow` in an `ngx.thread.spawn` or `ngx.timer.at` instead.
---@deprecated
function resty_follow.start() end

---A truedy.resty client: the plain client's blocking methods, run in nginx's thread pool.
---@class truedy.resty.Client
local Client = {}

---@param params truedy.CreateParams
---@param options? truedy.CreateOptions
---@return truedy.CallEnvelope? res
---@return truedy.Error? err
function Client:create_call(params, options) end

---@param call_id string
---@param options? truedy.CallOptions
---@return truedy.CallEnvelope? res
---@return truedy.Error? err
function Client:get_call(call_id, options) end

---@param filters? truedy.ListFilters
---@param options? truedy.ListOptions
---@return truedy.ListEnvelope? res
---@return truedy.Error? err
function Client:list_calls(filters, options) end

---`truedy.follow(client, call_id, options)`.
---@param call_id string
---@param options? truedy.FollowOptions
---@return truedy.Call|nil call
---@return boolean|truedy.Error finished_or_err
function Client:follow(call_id, options) end

---This worker's requests in the client's thread pool now.
---@return integer
function Client:pending() end

---Stops this object from being used (the thread VMs keep their clients until the worker exits).
function Client:close() end

---Internal: one attempt in the thread pool.
---@private
---@param method string
---@param arg any
---@param call_options table
---@return table? res
---@return truedy.Error? err
function Client:attempt(method, arg, call_options) end

---Internal: a request with its retries.
---@private
---@param method string
---@param arg any
---@param call_options table
---@param config table
---@return table? res
---@return truedy.Error? err
function Client:perform(method, arg, call_options, config) end

---Internal: a call's options for the task, and its retry settings.
---@private
---@param fname string
---@param options? table
---@param position integer
---@return table call_options
---@return table config
function Client:call_options(fname, options, position) end

return resty
