---@meta truedy
-- LuaLS (lua-language-server) annotations for `require "truedy"`, the C module (truedy.so).
-- Definitions only: running it raises. This directory is never on package.path; point LuaLS
-- at it with `workspace.library` (README, "Editor support"). spec/docs/types_spec.lua checks
-- that every public key of the live module has an annotation here.
error("types/truedy.d.lua: LuaLS annotations for editors, not code (README, Editor support)", 2)

---@alias truedy.json_null lightuserdata JSON null: `truedy.null` (the same value as `cjson.null` and `ngx.null`).

-- ---- the module ------------------------------------------------------------------------

---The Truedy API client: places AI phone calls (`create_call`), reads them (`get_call`,
---`list_calls`), checks webhook signatures (`truedy.webhook`).
---Programmer errors raise (a wrong type, an unknown option); everything else returns `nil, err`.
---@class truedy
local truedy = {}

---The module's version, e.g. `"0.1.0"`.
---@type string
truedy.VERSION = nil

---The version of the libcurl the module runs with, e.g. `"7.88.1"`.
---@type string
truedy.LIBCURL_VERSION = nil

---`"https://api.truedy.ai/api/public/v1"`: the base URL when neither `base_url` nor
---`TRUEDY_BASE_URL` says another.
---@type string
truedy.DEFAULT_BASE_URL = nil

---JSON null: sent as `null` (e.g. `from_number = truedy.null`); kept as this value inside
---arrays of answers (absent keys inside objects). The same light userdata as `cjson.null`.
---@type truedy.json_null
truedy.null = nil

---Makes a client. `nil, err` (`err.kind == "config"`) for a missing or malformed API key or
---base URL; unknown option names and wrong types raise.
---@param options? truedy.ClientOptions
---@return truedy.Client? client
---@return truedy.Error? err
---@nodiscard
function truedy.new(options) end

---The default client: made on first use from `TRUEDY_API_KEY` / `TRUEDY_BASE_URL`, kept, and
---made again if it was closed. `nil, err` when it cannot be made (no key).
---@return truedy.Client? client
---@return truedy.Error? err
function truedy.default_client() end

---`client:create_call` on the default client.
---@param params truedy.CreateParams
---@param options? truedy.CreateOptions
---@return truedy.CallEnvelope? res
---@return truedy.Error? err
function truedy.create_call(params, options) end

---`client:get_call` on the default client.
---@param call_id string
---@param options? truedy.CallOptions
---@return truedy.CallEnvelope? res
---@return truedy.Error? err
function truedy.get_call(call_id, options) end

---`client:list_calls` on the default client.
---@param filters? truedy.ListFilters
---@param options? truedy.ListOptions
---@return truedy.ListEnvelope? res
---@return truedy.Error? err
function truedy.list_calls(filters, options) end

---A random UUIDv4 from the OS's CSPRNG: store it with your own record, then pass it as
---`idempotency_key`, so a retry after a crash replays instead of dialing again.
---@return string key
function truedy.new_idempotency_key() end

---`true` for `ended`, `completed`, `failed`, `cancelled`/`canceled`, `busy`,
---`no-answer`/`no_answer` (any case); unknown statuses are not terminal.
---@param status_or_call string|truedy.Call|nil a status, or a call object (its `status`)
---@return boolean
function truedy.is_terminal(status_or_call) end

---The option names of one scope, current names and older aliases (for tools and editors).
---@param scope? truedy.OptionScope default `"client"`
---@return string[] names
function truedy.options(scope) end

---Seconds on a monotonic clock (for timeouts and frame timing).
---@return number seconds
function truedy.now() end

---Blocks the thread for `seconds` (at most a day; a signal ends it early). For scripts:
---truedy.follow's default sleep outside nginx.
---@param seconds number 0 or more
function truedy.sleep(seconds) end

---The engine's wait before the next attempt (exponential backoff with jitter, or the server's
---`retry_after`), or `nil` for no further attempt: for layers that retry themselves
---(truedy.resty).
---@param err truedy.Error the last attempt's error (`retryable`, `retry_after`)
---@param attempts integer attempts made so far
---@param config truedy.Config `client:config()`
---@return number? seconds
function truedy.retry_delay(err, attempts, config) end

---The one-line text of an error (what `tostring(err)` gives), also for a copy that lost its
---metatable. Anything that is not an error table is shown as `tostring` would.
---@param err truedy.Error|table|string
---@return string line
function truedy.format_error(err) end

---Gives a copy of an error that lost its metatable (a thread pool, a serializer) its metatable
---back, so `tostring` prints its line again. Returns its argument; a table without a string
---`kind`, or anything else, is returned untouched.
---@generic T
---@param err T
---@return T err
function truedy.restore_error(err) end

---`truedy.follow(client, call_id [, options])` (blocking) and `truedy.follow.start(...)`
---(non-blocking): read a call until it ends. Loaded on first use (`require "truedy.follow"`).
---@type truedy.follow
truedy.follow = nil

---Webhook signatures: `verify`, `sign`, `hmac_sha256`.
---@type truedy.webhook
truedy.webhook = nil

-- ---- options --------------------------------------------------------------------------

---@alias truedy.OptionScope
---| "client" # options of truedy.new
---| "call"   # options every call takes (and truedy.new, as the client's defaults)
---| "create" # options of create_call / start_call only
---| "list"   # options of list_calls / start_list_calls only
---| "start"  # options of the start_* methods only

---Options every call takes (`get_call`'s options), and `truedy.new`'s defaults for them.
---Unknown names and wrong types raise; an option and its older spelling together raise.
---@class truedy.CallOptions
---@field attempt_timeout? number seconds for one attempt: connect, send, receive (default 30; 0.001 to 86400)
---@field retries? integer retries after the first attempt, 0 to 10 (default 2); 0 disables them
---@field retry_base_delay? number backoff: the first wait, doubled each retry, with jitter (default 0.5; 0 to 3600)
---@field retry_max_delay? number backoff cap, seconds (default 8; 0 to 3600)
---@field retry_max_wait? number longest server-requested wait honoured (429 `reset_at`, `Retry-After`); longer: the error at once, with `retry_after` (default 60; 0 to 3600)
local CallOptions = {}

---Older spelling of `attempt_timeout` (still accepted; not both).
---@deprecated
---@type number?
CallOptions.timeout = nil

---Older spelling of `retries` (still accepted; not both).
---@deprecated
---@type integer?
CallOptions.max_retries = nil

---Older spelling of `retry_max_wait` (still accepted; not both).
---@deprecated
---@type number?
CallOptions.max_retry_wait = nil

---Options of `truedy.new`. `api_key` and `base_url` fall back to `TRUEDY_API_KEY` and
---`TRUEDY_BASE_URL`.
---@class truedy.ClientOptions: truedy.CallOptions
---@field api_key? string the `truedy_...` key (default `$TRUEDY_API_KEY`); missing: `nil, err` with `kind = "config"`
---@field base_url? string default `$TRUEDY_BASE_URL`, else `truedy.DEFAULT_BASE_URL`
---@field user_agent? string appended to `truedy-lua/<version> (<Lua>; libcurl/<version>)`
---@field ca_file? string CA bundle for private CAs
---@field ca_path? string CA directory for private CAs
---@field allow_insecure_http? boolean allow plain `http://` to a non-loopback host (default false)
---@field debug? boolean trace headers to stderr, the `Authorization` value redacted (default false)
---@field connect_timeout? number seconds to establish a connection (default 10)
---@field max_connections? integer 1 to 64 (default 8): connections kept, and transfers in flight, per client
---@field max_response_bytes? integer larger answers are refused, `kind = "response"` (default 4194304)

---Options of `create_call`.
---@class truedy.CreateOptions: truedy.CallOptions
---@field idempotency_key? string 1 to 255 printable ASCII characters, no spaces (default: a fresh UUIDv4); the same on every retry

---Options of `list_calls`.
---@class truedy.ListOptions: truedy.CallOptions
---@field query? table<string, string|number|boolean> extra query parameters, sent untouched (for filters the server adds later)

---What the `start_*` methods add to their blocking method's options.
---@class truedy.StartOptions
---@field on_done? fun(res: truedy.CallEnvelope|truedy.ListEnvelope|nil, err: truedy.Error|nil, h: truedy.Handle) runs from `client:poll()` / `h:wait()`, never from inside libcurl; for a success `err` is nil
---@field delay? number seconds before the first attempt (0 to 86400)

---Options of `start_call`.
---@class truedy.StartCallOptions: truedy.CreateOptions, truedy.StartOptions
---@field on_done? fun(res: truedy.CallEnvelope|nil, err: truedy.Error|nil, h: truedy.CallHandle)

---Options of `start_get_call`.
---@class truedy.StartGetOptions: truedy.CallOptions, truedy.StartOptions
---@field on_done? fun(res: truedy.CallEnvelope|nil, err: truedy.Error|nil, h: truedy.CallHandle)

---Options of `start_list_calls`.
---@class truedy.StartListOptions: truedy.ListOptions, truedy.StartOptions
---@field on_done? fun(res: truedy.ListEnvelope|nil, err: truedy.Error|nil, h: truedy.ListHandle)

---The settings a client resolved (`client:config()`), under their current names.
---@class truedy.Config
---@field attempt_timeout number
---@field connect_timeout number
---@field retries integer
---@field retry_base_delay number
---@field retry_max_delay number
---@field retry_max_wait number
---@field max_connections integer
---@field max_response_bytes integer
---@field base_url string

---`client:stats()`: diagnostics and leak checks.
---@class truedy.Stats
---@field closed boolean the client was closed
---@field released boolean its libcurl objects are freed
---@field running integer transfers in libcurl now
---@field live_requests integer requests alive (0 once every handle is done and collected)
---@field pooled_handles integer easy handles kept warm
---@field sockets integer sockets watched

-- ---- parameters -------------------------------------------------------------------------

---A duration: a number of seconds (0.5, 30) or a string like `"30s"`, `"1.5s"`.
---@alias truedy.Duration number|string

---`call_settings` of a create.
---@class truedy.CallSettings
---@field recording_enabled? boolean
---@field transcription_enabled? boolean
---@field greeting? string replaces the agent's greeting (mustache variables allowed)
---@field max_duration? truedy.Duration sent as `"600s"`
---@field join_timeout? truedy.Duration sent as `"30s"`
---@field [string] any passed through as JSON

---The parameters of `create_call`. Other keys are passed through as JSON, untouched.
---@class truedy.CreateParams
---@field agent_id string required: `agt_...` or a bare UUID
---@field phone_number string required, E.164: `+`, then 2 to 15 digits, the first not 0
---@field from_number? string|truedy.json_null E.164, one of the agent's numbers; omitted: the API picks one
---@field call_settings? truedy.CallSettings|truedy.json_null
---@field variables? table<string, string|number|boolean>|truedy.json_null mustache variables, sent as text (`1234567890123` as `"1234567890123"`)
---@field [string] any passed through as JSON

---The filters of `list_calls` (unknown names raise; others go in `options.query`).
---@class truedy.ListFilters
---@field status? string sent as given: use the server's spelling
---@field direction? string
---@field agent_id? string
---@field limit? integer|string 1 to 100 (page size)
---@field offset? integer|string 0 or more
---@field created_after? string ISO 8601
---@field created_before? string ISO 8601

-- ---- answers ----------------------------------------------------------------------------

---A call's status. Spellings vary by deployment; unknown ones are possible.
---@alias truedy.CallStatus
---| "queued"
---| "ringing"
---| "in-progress"
---| "in_progress"
---| "ended"
---| "completed"
---| "failed"
---| "cancelled"
---| "canceled"
---| "busy"
---| "no-answer"
---| "no_answer"
---| string

---One line of a transcript.
---@class truedy.TranscriptEntry
---@field speaker "agent"|"customer"|"contact"|string
---@field text string
---@field timestamp string|number ISO 8601, or seconds from the start of the call

---A call object, as the server sent it (JSON null inside objects becomes an absent key).
---Deployments spell some fields differently: read `call.to_number or call.to or call.phone_number`
---and `call.ended_at or call.completed_at`.
---@class truedy.Call
---@field id string `call_...`
---@field status truedy.CallStatus
---@field direction? "outbound"|"inbound"|string
---@field agent_id? string
---@field to_number? string the number called
---@field from_number? string the number calling
---@field phone_number? string the number called (another deployment's spelling)
---@field to? string the number called (another deployment's spelling)
---@field from? string the number calling (another deployment's spelling)
---@field created_at? string ISO 8601
---@field updated_at? string ISO 8601
---@field started_at? string ISO 8601, once answered
---@field ended_at? string ISO 8601, once over
---@field completed_at? string ISO 8601, once over (another deployment's spelling)
---@field duration_seconds? number
---@field recording_url? string
---@field transcript? truedy.TranscriptEntry[] absent for a few seconds after the end on some deployments
---@field transcript_url? string
---@field summary? string
---@field cost_credits? number
---@field metadata? table

---`meta` of an answer.
---@class truedy.Meta
---@field request_id? string `req_...` or a bare UUID
---@field ts? string the server's time, ISO 8601
---@field timestamp? string the server's time (another deployment's spelling)
---@field count? integer lists, some deployments: this page's length
---@field total? integer lists, some deployments: matches in all
---@field limit? integer lists, some deployments: the page size
---@field offset? integer lists, some deployments: where this page starts

---`pagination` of a list answer.
---@class truedy.Pagination
---@field total? integer
---@field limit? integer
---@field offset? integer
---@field has_more? boolean

---The answer to `create_call` / `get_call`.
---@class truedy.CallEnvelope
---@field data truedy.Call
---@field meta? truedy.Meta

---The answer to `list_calls`: the counts are in `pagination`, or in `meta` on some deployments.
---@class truedy.ListEnvelope
---@field data truedy.Call[] an array (JSON null entries stay as `truedy.null`)
---@field meta? truedy.Meta
---@field pagination? truedy.Pagination

-- ---- the error object -------------------------------------------------------------------

---@alias truedy.ErrorKind
---| "invalid_params" # refused before sending (a field and its rule)
---| "api"            # the server answered with an error status
---| "network"        # connect, TLS, timeout, reset
---| "response"       # the answer could not be read: not JSON, truncated, too large
---| "config"         # no or bad API key or base URL; truedy.resty: nginx configuration
---| "cancelled"      # h:cancel(), b:cancel(), client:close() stopped it
---| "webhook"        # a delivery refused by truedy.webhook.verify

---The one error object: a table with stable fields; `tostring(err)` and `"..." .. err` give
---one readable line (`truedy.format_error`).
---@class truedy.Error
---@field kind truedy.ErrorKind
---@field message string
---@field retryable boolean trying again later (with the same key) may work
---@field attempts integer attempts made (0: refused before sending)
---@field status? integer the HTTP status received
---@field code? string `api`: the API's `error.code` (or one from the status: `"bad_gateway"`, `"http_418"`); `webhook`: `"missing_signature"`, `"bad_signature"`, `"stale_timestamp"`, `"bad_body"`
---@field details? table the API's `error.details` (`{ field =, reason = }`, `{ limit =, reset_at = }`)
---@field field? string the field at fault (`"call_settings.max_duration"`)
---@field request_id? string the server's, from `meta`, `error` or `X-Request-Id`
---@field idempotency_key? string creates: the key every attempt carried (retry by hand with it, safely)
---@field retry_after? number seconds the server said to wait (`reset_at` or `Retry-After`)
---@field curl_code? integer `network`, `response`: libcurl's error number (28 timeout, 7 refused)
---@field excerpt? string a non-JSON answer: a short, single-line, tag-free excerpt of its body
---@field content_type? string a non-JSON answer: its Content-Type
---@field maybe_sent? boolean `cancelled`: whether the request may have reached the server
---@field offset? integer `each_call` / `start_each_call`: where the failed (or cancelled) page started
---@operator concat(string): string

-- ---- the client -------------------------------------------------------------------------

---A client (`truedy.new`): one libcurl engine, its connections and its requests.
---`tostring(client)` shows the base URL, never the key. Closed by `client:close()`, the garbage
---collector, or `<close>` (Lua 5.4); a closed client raises when used (`stats` excepted).
---@class truedy.Client
local Client = {}

---Places a call: checks `params` (refused: `nil, err` with `kind = "invalid_params"`, nothing
---sent), sends them with an idempotency key that every retry repeats, gives the envelope.
---@param params truedy.CreateParams
---@param options? truedy.CreateOptions
---@return truedy.CallEnvelope? res
---@return truedy.Error? err
function Client:create_call(params, options) end

---Reads one call (`err.code == "not_found"` for an unknown id).
---@param call_id string no `/` or `\`
---@param options? truedy.CallOptions
---@return truedy.CallEnvelope? res
---@return truedy.Error? err
function Client:get_call(call_id, options) end

---Reads one page of calls.
---@param filters? truedy.ListFilters
---@param options? truedy.ListOptions
---@return truedy.ListEnvelope? res
---@return truedy.Error? err
function Client:list_calls(filters, options) end

---`create_call` without blocking: a handle at once (or `nil, err` for invalid params, nothing
---sent); nothing is sent until the client is driven (`poll`, `h:wait()`, a blocking call).
---@param params truedy.CreateParams
---@param options? truedy.StartCallOptions
---@return truedy.CallHandle? h
---@return truedy.Error? err
function Client:start_call(params, options) end

---`get_call` without blocking.
---@param call_id string
---@param options? truedy.StartGetOptions
---@return truedy.CallHandle? h
---@return truedy.Error? err
function Client:start_get_call(call_id, options) end

---`list_calls` without blocking.
---@param filters? truedy.ListFilters
---@param options? truedy.StartListOptions
---@return truedy.ListHandle? h
---@return truedy.Error? err
function Client:start_list_calls(filters, options) end

---Moves every transfer on, judges finished attempts, runs queued `on_done` callbacks (an error
---one raises comes out of here, unchanged). `poll(0)` never sleeps; with a timeout it returns
---as soon as something finished, at the timeout, or at once when nothing is in flight.
---@param timeout? number seconds, default 0
---@return integer finished handles that finished during it
function Client:poll(timeout) end

---Seconds an event loop may sleep before calling `poll(0)`, or `nil` when nothing is in flight.
---@return number? seconds
function Client:timeout() end

---The sockets libcurl wants watched, and for what; re-read after every `poll`.
---@return table<integer, "r"|"w"|"rw"> sockets
function Client:sockets() end

---Requests in flight (not done).
---@return integer
function Client:pending() end

---Diagnostics (also on a closed client).
---@return truedy.Stats
function Client:stats() end

---The settings in force, under their current names.
---@return truedy.Config
function Client:config() end

---Closes the client: later use raises; everything in flight ends with a `cancelled` error;
---queued `on_done` callbacks are dropped.
function Client:close() end

---Places many calls, a few at a time (`truedy.batch`); one result per row, in input order.
---@param rows truedy.BatchRow[]
---@param options? truedy.BatchOptions
---@return truedy.BatchResult[] results
function Client:create_calls(rows, options) end

---`create_calls` without blocking: the batch object (nothing sent until the client is driven).
---@param rows truedy.BatchRow[]
---@param options? truedy.BatchOptions
---@return truedy.Batch b
function Client:start_calls(rows, options) end

---Every call `list_calls(filters)` matches, page by page, for a generic `for`
---(`truedy.pager`). A failed page raises its error object (`err.offset`: where it started).
---@param filters? truedy.ListFilters `limit` is the page size; `offset` where to start
---@param options? truedy.ListOptions
---@return fun(): truedy.Call? iterator
function Client:each_call(filters, options) end

---`each_call` without blocking: the pager (or `nil, err` for filters refused, nothing sent).
---@param filters? truedy.ListFilters
---@param options truedy.PagerOptions at least `on_call` or `on_page`
---@return truedy.Pager? p
---@return truedy.Error? err
function Client:start_each_call(filters, options) end

-- ---- handles ----------------------------------------------------------------------------

---@alias truedy.HandleState
---| "queued"  # waiting for its start time, a free connection, or the client's 429 pause
---| "running" # in libcurl
---| "waiting" # between attempts: backoff or a server-requested wait
---| "done"

---What the `start_*` methods return. In flight, it is held by its client (dropping it never
---stops the call); once done it is yours, and stays readable after `client:close()`.
---@class truedy.Handle
local Handle = {}

---`true` once finished.
---@return boolean
function Handle:done() end

---@return truedy.HandleState
function Handle:state() end

---The envelope, or `nil, err`; raises if not done yet.
---@return truedy.CallEnvelope|truedy.ListEnvelope|nil res
---@return truedy.Error? err
function Handle:result() end

---Drives the client (and runs callbacks) until done, then the result; returns nothing when
---`timeout` seconds passed first (the call goes on).
---@param timeout? number seconds
---@return truedy.CallEnvelope|truedy.ListEnvelope|nil res
---@return truedy.Error? err
function Handle:wait(timeout) end

---Stops the request: `true`, or `false` when already done. The result becomes a `cancelled`
---error (`maybe_sent` says whether the server may have seen it); `on_done` still runs, at the
---next poll or wait. The API cannot hang up a call.
---@return boolean
function Handle:cancel() end

---A handle of `start_call` or `start_get_call`.
---@class truedy.CallHandle: truedy.Handle
local CallHandle = {}

---@return truedy.CallEnvelope? res
---@return truedy.Error? err
function CallHandle:result() end

---@param timeout? number
---@return truedy.CallEnvelope? res
---@return truedy.Error? err
function CallHandle:wait(timeout) end

---A handle of `start_list_calls`.
---@class truedy.ListHandle: truedy.Handle
local ListHandle = {}

---@return truedy.ListEnvelope? res
---@return truedy.Error? err
function ListHandle:result() end

---@param timeout? number
---@return truedy.ListEnvelope? res
---@return truedy.Error? err
function ListHandle:wait(timeout) end

return truedy
