-- truedy.pager: every call of a listing, page by page (client:each_call and
-- client:start_each_call load this module on first use).
--
--   for call in client:each_call{ status = "ended", limit = 100 } do print(call.id) end
--
--   local p = client:start_each_call({ status = "ended" }, {
--     on_call = function(call, p) ... end,
--     on_done = function(count, err, p) ... end })   -- driven by client:poll()
--
-- The API answers a page in one of three documented shapes; each says
-- "there is more" its own way, and the first rule that applies decides:
--   1. an empty page ends the listing (whatever the rest says);
--   2. pagination.has_more, a boolean, says it;
--   3. a total (pagination.total or meta.total): more while offset + page < total;
--   4. a page size (pagination.limit or meta.limit as answered, else the
--      limit sent): a page shorter than it ends the listing;
--   5. none of these (meta.count only, no limit sent): the page size is the
--      longest page seen, so a shorter page ends it (and an empty one).
-- offset moves by the length of each page as answered.  Newest calls come
-- first, so a call created while the listing runs pushes the others one place
-- on: a call already given on the previous page is not given again.
--
-- Failures: the blocking iterator raises the error object (a for loop cannot
-- hand back nil, err: the loop would just end, and the failure go unseen);
-- catch it with pcall.  err.offset is where the failed page started:
-- each_call{ ..., offset = err.offset } goes on from there.  The
-- non-blocking form gives nil, err to on_done and to p:result().
local truedy = require "truedy"

local pager = {}

local function name_set(...)
  local set = {}
  for _, list in ipairs { ... } do
    for _, name in ipairs(list) do set[name] = true end
  end
  return set
end

-- What list_calls takes per call, and what each form adds.
local LIST_OPTIONS = name_set(truedy.options("call"), truedy.options("list"))
local OWN_OPTIONS = { on_call = true, on_page = true, on_done = true }
-- list_calls' filters (checked in C), for a clearer message when one is given as an option
local FILTERS = { status = true, direction = true, agent_id = true, limit = true, offset = true,
  created_after = true, created_before = true }

local function fail(kind, message, extra)
  local err = { kind = kind, message = message, retryable = false, attempts = 0 }
  for k, v in pairs(extra or {}) do err[k] = v end
  return truedy.restore_error(err)
end

local function whole(value)
  local n = tonumber(value)
  if n and n == math.floor(n) then return n end
  return nil
end

-- Checks the arguments (programmer errors raise) and returns the state of a
-- listing: the filters to send, the offset, the page size sent, the options.
local function new_state(fname, filters, options, start)
  if filters ~= nil and type(filters) ~= "table" then
    error(("%s: filters must be a table, got %s"):format(fname, type(filters)), 3)
  end
  if options ~= nil and type(options) ~= "table" then
    error(("%s: options must be a table, got %s"):format(fname, type(options)), 3)
  end
  local st = { fname = fname, filters = {}, list_options = {}, offset = 0, pages = 0 }
  for k, v in pairs(filters or {}) do st.filters[k] = v end
  for name, value in pairs(options or {}) do
    if type(name) ~= "string" then error(fname .. ": option names must be strings", 3) end
    if LIST_OPTIONS[name] then
      st.list_options[name] = value
    elseif start and (OWN_OPTIONS[name] or name == "delay") then
      if name ~= "delay" and type(value) ~= "function" then
        error(("%s: option '%s' must be a function"):format(fname, name), 3)
      end
      st[name] = value
    elseif FILTERS[name] then
      error(("%s: '%s' is a filter, not an option: %s({ %s = ... } [, options])"):format(fname, name, fname, name), 3)
    else
      error(("%s: unknown option '%s'"):format(fname, name), 3)
    end
  end
  local query = st.list_options.query
  if type(query) == "table" and (query.offset ~= nil or query.limit ~= nil) then
    error(fname .. ": options.query may not set offset or limit: give them as filters (the pager moves offset)", 3)
  end
  -- list_calls checks limit and offset before sending; until a page is back
  -- they are only read here
  st.offset = whole(st.filters.offset) or 0
  st.limit = whole(st.filters.limit)
  return st
end

-- The filters of the next page.
local function page_filters(st)
  local f = {}
  for k, v in pairs(st.filters) do f[k] = v end
  if st.pages > 0 or st.filters.offset ~= nil then f.offset = st.offset end
  return f
end

local function number(v)
  return type(v) == "number" and v or nil
end

-- Is there more after this page of n calls (at st.offset)?  The rules at the top.
local function has_more(st, res, n)
  if n == 0 then return false end
  local p = type(res.pagination) == "table" and res.pagination or {}
  local meta = type(res.meta) == "table" and res.meta or {}
  if type(p.has_more) == "boolean" then return p.has_more end
  local total = number(p.total) or number(meta.total)
  if total then return st.offset + n < total end
  local size = number(p.limit) or number(meta.limit) or st.limit
  if size then return n >= size end
  st.longest = math.max(st.longest or 0, n)
  return n >= st.longest
end

-- Reads one page: the calls to give (those not on the previous page) and
-- whether to ask for another, or nil, err.  Moves the offset on.
local function take_page(st, res)
  local data = type(res) == "table" and res.data
  if type(data) ~= "table" or (next(data) ~= nil and data[1] == nil) then
    return nil, fail("response", "the answer to list_calls has no list of calls (data is not an array)",
      { offset = st.offset })
  end
  local n = #data
  local ids, fresh, same = {}, {}, n > 0 and n == st.previous_n
  local seen = st.previous_set or {}
  for i = 1, n do
    local call = data[i]
    local id = type(call) == "table" and call.id or nil
    ids[i] = id
    if same and (id == nil or id ~= st.previous[i]) then same = false end
    if id == nil or not seen[id] then fresh[#fresh + 1] = call end
  end
  if same then
    return nil, fail("response", ("list_calls answered offset %d with the same calls as offset %d:"
      .. " the server seems to ignore offset; the listing stopped"):format(st.offset, st.previous_offset),
      { offset = st.offset })
  end
  local more = has_more(st, res, n)
  local set = {}
  for i = 1, n do
    if ids[i] ~= nil then set[ids[i]] = true end
  end
  st.previous, st.previous_n, st.previous_set, st.previous_offset = ids, n, set, st.offset
  st.offset = st.offset + n
  st.pages = st.pages + 1
  return fresh, more
end

-- A failed page's error says where that page started.
local function at_offset(st, err)
  if type(err) == "table" and err.offset == nil then err.offset = st.offset end
  return err
end

-- client:each_call([filters [, options]]) -> an iterator for a generic for.
function pager.each_call(client, filters, options)
  local st = new_state("each_call", filters, options, false)
  local queue, given, finished = {}, 0, false
  return function()
    while true do
      if given < #queue then
        given = given + 1
        return queue[given]
      end
      if finished then return nil end
      local res, err = client:list_calls(page_filters(st), st.list_options)
      local calls, more
      if res then calls, more = take_page(st, res) end
      if not calls then
        finished, queue = true, {}
        error(at_offset(st, err or more), 0)
      end
      queue, given, finished = calls, 0, not more
    end
  end
end

-- The non-blocking form: a pager with the methods of a handle.
local Pager = {}
Pager.__index = Pager

function Pager:done() return self.finished end

function Pager:state()
  if self.finished then return "done" end
  return self.handle and self.handle:state() or "running"
end

-- p:result() -> the number of calls given | nil, err; raises when not finished.
function Pager:result()
  if not self.finished then
    error("truedy: the listing is not finished yet (p:done() is false; drive it with client:poll() or p:wait())", 2)
  end
  if self.err ~= nil then return nil, self.err end
  return self.count
end

-- p:wait([timeout]) -> as p:result(); nothing when timeout passed first.
function Pager:wait(timeout)
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout or timeout < 0) then
    error("p:wait: timeout must be a number of seconds, 0 or more", 2)
  end
  if self.delivering then
    error("p:wait: called from inside the pager's own on_call/on_page (it would wait for itself)", 2)
  end
  local deadline = timeout and truedy.now() + timeout
  while not self.finished do
    local left = deadline and deadline - truedy.now() or 1
    self.client:poll(math.max(0, math.min(left, 1)))
    if not self.finished and deadline and truedy.now() >= deadline then return end
  end
  if self.done_pending then self.client:poll(0) end -- a cancel's on_done, queued behind its handle
  return self:result()
end

-- p:cancel() -> true, or false when already finished.  The result becomes a
-- `cancelled` error at once; on_done runs at the next poll or wait.
function Pager:cancel()
  if self.finished then return false end
  self.finished = true
  self.err = fail("cancelled", ("cancelled: the listing stopped after %d calls (offset %d)")
    :format(self.count, self.st.offset), { retryable = true, offset = self.st.offset })
  self.done_pending = true
  local handle = self.handle
  if handle then handle:cancel() end -- its on_done runs next poll, and ours from there
  return true
end

function Pager:__tostring()
  return ("truedy.pager (%d calls, %s)"):format(self.count, self:state())
end

-- Runs the user's on_done once.
local function run_on_done(p)
  p.done_pending = false
  if p.on_done then
    if p.err ~= nil then p.on_done(nil, p.err, p) else p.on_done(p.count, nil, p) end
  end
end

local function finish(p, err)
  p.finished, p.err = true, err
  run_on_done(p)
end

-- Gives one page's calls to on_page / on_call.  A callback that raises stops
-- the listing (p:result() gives nil and that error); the error goes on up
-- through the poll or wait that ran it, unchanged, as a handle's on_done's does.
local function deliver(p, calls, res)
  p.delivering = true
  local ok, e = pcall(function()
    if p.on_page then p.on_page(calls, res, p) end
    for i = 1, #calls do
      if p.finished then return end -- cancelled from a callback
      p.count = p.count + 1
      if p.on_call then p.on_call(calls[i], p) end
    end
  end)
  p.delivering = false
  if not ok then
    p.done_pending = false
    if not p.finished then p.finished, p.err = true, e end
    error(e, 0)
  end
end

local start_page

local function on_page_done(p, res, err)
  p.handle = nil
  if p.finished then -- cancelled meanwhile: this page is dropped
    if p.done_pending then run_on_done(p) end
    return
  end
  if not res then return finish(p, at_offset(p.st, err)) end
  local calls, more = take_page(p.st, res)
  if not calls then return finish(p, more) end
  deliver(p, calls, res)
  if p.finished then -- cancelled from a callback: no handle in flight, so on_done runs now
    if p.done_pending then run_on_done(p) end
    return
  end
  if not more then return finish(p, nil) end
  local ok, start_err = start_page(p, nil)
  if not ok then return finish(p, at_offset(p.st, start_err)) end
end

-- Starts the next page's request; true, or nil, err.
start_page = function(p, delay)
  local opts = {}
  for k, v in pairs(p.st.list_options) do opts[k] = v end
  opts.delay = delay
  opts.on_done = function(res, err) return on_page_done(p, res, err) end
  local handle, err = p.client:start_list_calls(page_filters(p.st), opts)
  if not handle then return nil, err end
  p.handle = handle
  return true
end

-- client:start_each_call([filters [, options]]) -> pager | nil, err (filters
-- refused before anything was sent).  options: on_call(call, p),
-- on_page(calls, page, p) (at least one), on_done(count | nil, err, p),
-- delay (before the first page), and list_calls' per-call options.
function pager.start_each_call(client, filters, options)
  local st = new_state("start_each_call", filters, options, true)
  if not st.on_call and not st.on_page then
    error("start_each_call: give on_call or on_page (they receive the calls)", 2)
  end
  local p = setmetatable({ client = client, st = st, finished = false, count = 0,
    on_call = st.on_call, on_page = st.on_page, on_done = st.on_done }, Pager)
  local ok, err = start_page(p, st.delay)
  if not ok then return nil, err end
  return p
end

return pager
