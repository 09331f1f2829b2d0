-- The workload of the allocation-failure sweep (spec/oom/oom_sweep.c runs it
-- once per N, under an allocator that starts failing at the N-th growing
-- request).  A realistic mix of everything the module does.
--
-- Arguments: oom (the harness's control table), module_dir, base_url, api_key.
--   oom.step(name)          what is running now (for the report; copies, never allocates)
--   oom.injected()          has the allocator refused anything yet in this run?
--   oom.fault(json)         add a scripted emulator fault (false when the emulator said no)
--   oom.note(step, kind, message)
--                           an outcome other than the expected one, after an injected
--                           failure: an out-of-memory error that came back as something else
--   oom.fail(step, what)    an outcome other than the expected one with NO injected
--                           failure: the harness fails the sweep
--
-- Out of memory may end the run anywhere with a Lua error; that is fine.
-- Anything else going wrong is reported, so every result is checked without
-- assuming the previous step worked (no "attempt to index a nil value").
local oom, module_dir, base_url, api_key = ...

local function errfield(err, k)
  if type(err) == "table" then return rawget(err, k) end
  return nil
end

-- cond: the result is the one expected.  Otherwise classify it.
local function expect(step, cond, err, what)
  if cond then return true end
  if oom.injected() then
    if type(err) == "table" then
      oom.note(step, tostring(errfield(err, "kind")), tostring(errfield(err, "message")))
    else
      oom.note(step, "result", what or "unexpected result")
    end
  else
    oom.fail(step, what or (type(err) == "table" and tostring(errfield(err, "message"))) or "unexpected result")
  end
  return false
end

local function data_of(res)
  return type(res) == "table" and type(res.data) == "table" and res.data or nil
end

oom.step("require")
package.cpath = module_dir .. "/?.so;" .. package.cpath
local truedy = require "truedy"

oom.step("truedy.new")
local client = truedy.new {
  api_key = api_key, base_url = base_url, max_retries = 1, retry_base_delay = 0.01,
  timeout = 10, connect_timeout = 5,
}
expect("truedy.new", type(client) == "userdata", nil, "truedy.new did not give a client")
oom.step("tostring(client)")
local shown = tostring(client)
expect("tostring(client)", shown:find(base_url, 1, true) and not shown:find(api_key, 1, true), nil,
  "tostring(client) is wrong")

local params = {
  agent_id = "agt_f9447372",
  phone_number = "+12125551234",
  from_number = "+12125551235",
  call_settings = { recording_enabled = false, transcription_enabled = true,
                    greeting = "Hi {{first_name}}", max_duration = "600s", join_timeout = 30 },
  variables = { first_name = "Ada", order = 1234567890123, vip = true, ratio = 0.25 },
  metadata = { source = "oom-sweep", tags = { "a", "b" } },
}

-- 1. a successful create
oom.step("create_call")
local res, err = client:create_call(params)
local call = data_of(res)
expect("create_call", call and type(call.id) == "string" and call.status == "queued", err)
local call_id = call and call.id or "call_unknown"

-- 2. refused before sending
oom.step("create_call(bad phone)")
res, err = client:create_call { agent_id = "agt_f9447372", phone_number = "555-1234" }
expect("create_call(bad phone)", res == nil and errfield(err, "kind") == "invalid_params"
  and errfield(err, "field") == "phone_number", err)
oom.step("tostring(invalid_params)")
local line = tostring(err)
expect("tostring(invalid_params)", line:find("^truedy: ") ~= nil, nil, "tostring(err): " .. line)

-- 3. a 503, then the retry (same key) succeeds
oom.step("fault 503")
expect("fault 503", oom.fault('{"method":"POST","path":"/calls","type":"status","status":503,"count":1}'),
  nil, "the emulator refused the fault")
oom.step("create_call(503 then retry)")
res, err = client:create_call(params, { idempotency_key = "oom-sweep-retry" })
call = data_of(res)
expect("create_call(503 then retry)", call and type(call.id) == "string", err)

-- 4. a 429 with reset_at in the past, not retried: decoded in the engine
oom.step("fault 429")
expect("fault 429", oom.fault('{"method":"POST","path":"/calls","type":"status","status":429,'
  .. '"code":"rate_limit_exceeded","message":"Rate limit exceeded",'
  .. '"details":{"limit":100,"reset_at":"2000-01-01T00:00:00Z"},"count":1}'),
  nil, "the emulator refused the fault")
oom.step("create_call(429)")
res, err = client:create_call(params, { max_retries = 0 })
expect("create_call(429)", res == nil and errfield(err, "kind") == "api" and errfield(err, "status") == 429
  and errfield(err, "code") == "rate_limit_exceeded" and errfield(err, "retry_after") == 0, err)

-- 5. an HTML 502 page from a proxy: excerpt, scrubbing
oom.step("fault html")
expect("fault html", oom.fault('{"method":"GET","type":"html","status":502,"count":1}'),
  nil, "the emulator refused the fault")
oom.step("get_call(502 html)")
res, err = client:get_call(call_id, { max_retries = 0 })
expect("get_call(502 html)", res == nil and errfield(err, "status") == 502
  and errfield(err, "code") == "bad_gateway" and type(errfield(err, "excerpt")) == "string", err)

-- 6. reads
oom.step("get_call")
res, err = client:get_call(call_id)
call = data_of(res)
expect("get_call", call and call.id == call_id, err)

oom.step("list_calls")
res, err = client:list_calls({ status = "queued", direction = "outbound", agent_id = "agt_f9447372",
                               limit = 5, offset = 0 }, { timeout = 10 })
local list = data_of(res)
expect("list_calls", list and type(res.pagination) == "table" and #list >= 1, err)

oom.step("get_call(unknown)")
res, err = client:get_call("call_does_not_exist")
expect("get_call(unknown)", res == nil and errfield(err, "code") == "not_found", err)
oom.step("tostring(api error)")
line = tostring(err)
expect("tostring(api error)", line:find("^truedy: 404 not_found") ~= nil, nil, "tostring(err): " .. line)
oom.step("format_error/concat")
line = truedy.format_error(err) .. " / " .. ("[" .. err .. "]")
expect("format_error/concat", line:find("not_found", 1, true) ~= nil, nil, "format_error: " .. line)

oom.step("list_calls(bad limit)")
res, err = client:list_calls { limit = 1000 }
expect("list_calls(bad limit)", res == nil and errfield(err, "kind") == "invalid_params", err)

-- 7. programmer errors raise (and must leave nothing behind)
-- (lua_next order depends on the string hash seed: several tables, so that in
-- nearly every run some string filter comes before the bad name)
oom.step("list_calls(non-string filter name)")
local ok, msg
for _, names in ipairs { { "status", "agent_id" }, { "direction", "status" }, { "agent_id", "direction" },
                         { "created_after", "status" }, { "created_before", "agent_id" } } do
  ok, msg = pcall(client.list_calls, client, { [names[1]] = "x", [names[2]] = "y", [2.5] = "z" })
  if not expect("list_calls(non-string filter name)",
      not ok and tostring(msg):find("filter names must be strings", 1, true) or (not ok and oom.injected()),
      nil, "list_calls did not raise: " .. tostring(msg)) then
    break
  end
end
oom.step("create_call(unknown option)")
ok, msg = pcall(client.create_call, client, params, { idempotency_kye = "x" })
expect("create_call(unknown option)", not ok and tostring(msg):find("unknown option", 1, true)
  or (not ok and oom.injected()), nil, "create_call did not raise: " .. tostring(msg))

-- 8. the default client (from TRUEDY_API_KEY / TRUEDY_BASE_URL), left to lua_close
oom.step("truedy.list_calls")
res, err = truedy.list_calls { limit = 1 }
expect("truedy.list_calls", data_of(res) ~= nil, err)

-- 9. a to-be-closed client, and a client left to the garbage collector with
--    handles in its pool
do
  oom.step("<close> client")
  local scoped <close> = assert(truedy.new { api_key = api_key, base_url = base_url, max_retries = 0 })
  res, err = scoped:get_call(call_id)
  expect("<close> client", data_of(res) ~= nil, err)
end
oom.step("abandoned client")
local abandoned = truedy.new { api_key = api_key, base_url = base_url, max_retries = 0 }
res, err = abandoned:list_calls { limit = 2 }
expect("abandoned client", data_of(res) ~= nil, err)
abandoned = nil -- luacheck: ignore 311
collectgarbage()

-- 10. the asynchronous engine: started calls, callbacks, a handle dropped
--     in flight, cancel, a client closed from a callback and from __index
oom.step("start_call")
local finished = {}
local h1, h1err = client:start_call(params, { on_done = function(r, e) finished[#finished + 1] = r or e end })
expect("start_call", h1 ~= nil, h1err)
oom.step("start_get_call")
local h2 = client:start_get_call(call_id)
oom.step("start_list_calls (dropped in flight)")
client:start_list_calls({ limit = 1 }) -- nobody keeps it: the client anchors it
collectgarbage()
oom.step("poll")
for _ = 1, 200 do
  client:poll(0.05)
  if client:pending() == 0 then break end
end
expect("poll", client:pending() == 0, nil, "calls still pending after the poll loop")
oom.step("handle results")
if h1 then
  res, err = h1:result()
  expect("handle results", data_of(res) ~= nil and #finished == 1, err)
end
if h2 then
  res, err = h2:wait(5)
  expect("handle results", data_of(res) ~= nil, err)
end
oom.step("cancel (queued)")
local h3 = client:start_call(params, { delay = 60 })
if h3 then
  expect("cancel (queued)", h3:state() == "queued" and h3:cancel() == true, nil, "cancel of a queued call")
  res, err = h3:result()
  expect("cancel (queued)", res == nil and errfield(err, "kind") == "cancelled", err)
end
oom.step("close from on_done")
do
  local c4 = truedy.new { api_key = api_key, base_url = base_url, max_retries = 0 }
  local a = c4:start_get_call(call_id, { on_done = function() c4:close() end })
  local b = c4:start_call(params, { delay = 30 })
  for _ = 1, 200 do
    c4:poll(0.05) -- an error raised in the callback (out of memory) comes out here
    if a and a:done() then break end
  end
  expect("close from on_done", tostring(c4) == "truedy.client (closed)" and (b == nil or b:done()),
    nil, "the client was not closed by the callback")
end
oom.step("close from __index")
do
  local c5 = truedy.new { api_key = api_key, base_url = base_url, max_retries = 0 }
  res, err = c5:get_call(call_id, setmetatable({}, { __index = function() c5:close() end }))
  expect("close from __index", res == nil and errfield(err, "kind") == "cancelled", err)
end

-- 11. close
oom.step("client:close")
client:close()
expect("client:close", tostring(client) == "truedy.client (closed)", nil, "tostring of a closed client")
ok, msg = pcall(client.get_call, client, call_id)
expect("client:close", not ok and tostring(msg):find("closed", 1, true) or (not ok and oom.injected()), nil,
  "a closed client did not raise: " .. tostring(msg))
oom.step("done")
