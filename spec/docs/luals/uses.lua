-- Correct uses of the API, for spec/docs/luals_spec.lua: lua-language-server, with types/ as
-- its library, must find nothing wrong here. Never run (it is checked, not executed).
local truedy = require "truedy"
local follow = require "truedy.follow"
local resty = require "truedy.resty"

local client = assert(truedy.new { api_key = "truedy_x", attempt_timeout = 30, retries = 2, max_connections = 4 })
local res, err = client:create_call({ agent_id = "agt_1", phone_number = "+12125551234",
  call_settings = { max_duration = "600s", join_timeout = 30 }, variables = { n = 1 } },
  { idempotency_key = truedy.new_idempotency_key(), retry_max_wait = 10 })
if res then print(res.data.id, res.data.status, res.data.to_number or res.data.to, res.meta and res.meta.request_id) end
if err then print(err.kind, err.message, err.status, err.code, err.retryable, err.attempts, err.maybe_sent) end
if err then print("failed: " .. err, err.request_id, err.retry_after, err.details and err.details.reason) end

local h = assert(client:start_get_call("call_1", { delay = 1, on_done = function(r, e, handle)
  print(r and r.data.ended_at, e and e.kind, handle:state())
end }))
while not h:done() do client:poll(0.1) end
local read = h:result()
print(read and read.data.transcript and read.data.transcript[1].speaker)
local page = assert(client:start_list_calls({ status = "ended", limit = 10 }, { query = { x = 1 } })):wait(5)
if page then
  for _, call in ipairs(page.data) do print(call.id, truedy.is_terminal(call)) end
  print(page.pagination and page.pagination.has_more, page.meta and page.meta.count)
end
for call in client:each_call { limit = 10 } do print(call.id) end
local p = assert(client:start_each_call(nil, { on_call = function(call, pager) print(call.id, pager:state()) end }))
print(p:wait(1))
local b = client:start_calls({ { agent_id = "a", phone_number = "+12125551234" },
  { params = { agent_id = "a", phone_number = "+12125551235" }, idempotency_key = "k" } },
  { concurrency = 2, on_result = function(i, r, e) print(i, r and r.data.id, e and e.kind) end })
print(b:progress())
for i, r in ipairs(b:results()) do print(i, r.res and r.res.data.id or tostring(r.err)) end
local f = follow.start(client, "call_1", { interval = 1, on_done = function(call, finished) print(call, finished) end })
print(f:state(), f:cancel())
local call, finished = truedy.follow(client, "call_1",
  { wait_timeout = 10, on_change = function(c) print(c.status) end })
print(call and call.status, finished)
local event, werr = truedy.webhook.verify("{}", { ["X-Truedy-Timestamp"] = "1" }, { "whsec_a", "whsec_b" },
  { tolerance = 10 })
print(event and event.event, werr and werr.code, truedy.webhook.sign("{}", "whsec_a", 1700000000))
print(truedy.VERSION, truedy.null, truedy.now(), client:config().retry_max_wait, client:stats().live_requests,
  client:timeout(), client:pending(), truedy.options("call")[1], truedy.format_error(truedy.restore_error({})))
for fd, what in pairs(client:sockets()) do print(fd, what) end
client:close()
local rc = assert(resty.new { max_pending = 4, thread_pool = "truedy", retries = 1 })
print(rc:follow("call_1", { interval = 1 }), resty.DEFAULT_MAX_PENDING, rc:pending())
