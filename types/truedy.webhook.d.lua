---@meta _
-- LuaLS annotations for `truedy.webhook`, a table of the C module (there is no
-- `require "truedy.webhook"`: hence `@meta _`, a file no require resolves to).
error("types/truedy.webhook.d.lua: LuaLS annotations for editors, not code (README, Editor support)", 2)

---Webhook signatures: `X-Truedy-Timestamp` (Unix seconds) and `X-Truedy-Signature`, the hex
---HMAC-SHA256 of `"<timestamp>.<raw body>"` keyed with the webhook secret.
---@class truedy.webhook
local webhook = {}

---Options of `truedy.webhook.verify` (unknown names raise).
---@class truedy.VerifyOptions
---@field tolerance? number seconds between the timestamp and now, past or future (default 300; exactly that is accepted)
---@field now? number Unix seconds to check against (default the system clock: for tests)

---A verified delivery, decoded like the API's answers.
---@class truedy.WebhookEvent
---@field id string `evt_...`: the same on every delivery of this event (dedupe on it)
---@field event "call.started"|"call.joined"|"call.ended"|"call.failed"|"call.billed"|string
---@field timestamp? string ISO 8601: when it happened (order by it, not by arrival)
---@field data? truedy.Call the call as it stood then

---Checks a delivery: the headers, the timestamp, the signature (constant time, every secret of
---a rotation), then the body. `nil, err` with `err.kind == "webhook"` and `err.code`
---(`missing_signature`, `bad_signature`, `stale_timestamp`, `bad_body`). Wrong argument types,
---an empty secret and unknown option names raise.
---@param raw_body string the exact bytes received
---@param headers table<string, string|string[]> names in any case (`ngx.req.get_headers()`, LuaSocket)
---@param secret string|string[] `whsec_...`, or several while you rotate it
---@param options? truedy.VerifyOptions
---@return truedy.WebhookEvent? event
---@return truedy.Error? err
function webhook.verify(raw_body, headers, secret, options) end

---The two header values for a body: for your own tests and senders.
---@param raw_body string
---@param secret string
---@param timestamp? integer|string Unix seconds (default now)
---@return string timestamp `X-Truedy-Timestamp`
---@return string signature `X-Truedy-Signature`, lower-case hex
function webhook.sign(raw_body, secret, timestamp) end

---HMAC-SHA256 of `message` keyed with `key`, lower-case hex (to check the MAC itself).
---@param key string
---@param message string
---@return string hex
function webhook.hmac_sha256(key, message) end
