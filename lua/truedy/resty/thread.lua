-- luacheck: std +ngx_lua
-- truedy.resty.thread: what runs inside nginx's thread pool (ngx.run_worker_thread).
--
-- lua-nginx-module gives each task one Lua VM from a per-worker pool; a VM runs one task at a
-- time and is kept between tasks, so the clients cached here (one per configuration) keep their
-- connections from one call to the next. Only data crosses into and out of this VM (copies:
-- no functions, no userdata but the JSON null, no metatables, at most 99 levels of tables),
-- so every answer is checked to fit before it is handed back.
--
-- Nothing here touches the nginx event loop: this is plain blocking truedy, in a thread.

local truedy = require "truedy"

local thread = {}

-- Configurations kept per VM. More than that (a client per tenant, say) closes the oldest.
local MAX_CLIENTS = 16
-- lua-nginx-module's copy gives up at a depth of 100 tables (LUA_COPY_MAX_DEPTH).
local MAX_DEPTH = 99

local clients, order = {}, {}

local function client_for(fingerprint, options)
  local client = clients[fingerprint]
  if client then return client end
  local err
  client, err = truedy.new(options)
  if not client then return nil, err end
  if #order >= MAX_CLIENTS then
    local oldest = table.remove(order, 1)
    clients[oldest]:close()
    clients[oldest] = nil
  end
  clients[fingerprint] = client
  order[#order + 1] = fingerprint
  return client
end

-- True if `value` has at most `left` levels of tables.
local function fits(value, left)
  if type(value) ~= "table" then return true end
  if left <= 0 then return false end
  for k, v in pairs(value) do
    if not fits(k, left - 1) or not fits(v, left - 1) then return false end
  end
  return true
end

local function too_deep_answer(res)
  local meta = type(res) == "table" and type(res.meta) == "table" and res.meta or {}
  return {
    kind = "response",
    message = ("the answer is nested more than %d levels deep: too deep to cross back from"
      .. " nginx's thread pool"):format(MAX_DEPTH),
    request_id = type(meta.request_id) == "string" and meta.request_id or nil,
    retryable = false,
    attempts = 1,
  }
end

-- The stand-ins for what truedy.resty marked as unable to cross (see crossable there).
local UNCROSSABLE = "\0truedy.resty.uncrossable"
local STAND_INS = {
  ["function"] = function() return function() end end,
  thread = function() return coroutine.create(function() end) end,
  userdata = function() return newproxy(false) end, -- luacheck: ignore 113 (LuaJIT's)
}

local function unmark(value)
  if type(value) ~= "table" then return value end
  local kind = value[UNCROSSABLE]
  if kind then return STAND_INS[kind]() end
  local out = {}
  for k, v in pairs(value) do out[unmark(k)] = unmark(v) end
  return out
end

local function attempt(fingerprint, options, method, arg, call_options, marked)
  if marked then arg, call_options = unmark(arg), unmark(call_options) end
  local client, err = client_for(fingerprint, options)
  if not client then return "err", err end
  local res
  if method == "create_call" then
    res, err = client:create_call(arg, call_options)
  elseif method == "get_call" then
    res, err = client:get_call(arg, call_options)
  else
    res, err = client:list_calls(arg, call_options)
  end
  if res then
    if fits(res, MAX_DEPTH) then return "ok", res end
    return "err", too_deep_answer(res)
  end
  if not fits(err, MAX_DEPTH) then
    err.details = nil
    err.message = tostring(err.message) .. " (details nested too deeply to cross back from the thread pool)"
  end
  return "err", err
end

-- The task: one attempt of one request (the caller in the nginx worker retries). Returns
--   "ok", envelope | "err", error table | "raise", message (a programmer error to raise there)
-- and, whatever happened, counts the task out of the worker's pending ones in the shared dict,
-- so the worker knows the queue has room again even when the request that posted it went away
-- meanwhile.
function thread.run(fingerprint, options, method, arg, call_options, dict_name, pending_key, marked)
  local ok, tag, value = pcall(attempt, fingerprint, options, method, arg, call_options, marked)
  local dict = ngx.shared[dict_name]
  if dict then dict:incr(pending_key, -1, 0) end
  if not ok then return "raise", tostring(tag) end
  return tag, value
end

return thread
