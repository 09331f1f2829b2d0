-- The LuaLS annotations (types/*.d.lua) against the live module: every public key of the
-- module table, of a client's and a handle's method tables (read from the registry: their
-- metatables are protected), of the batch, pager and follower objects and of their modules,
-- every option name the C table and the Lua modules accept (older spellings marked
-- ---@deprecated), every field of the error objects and envelopes the module gives, has an
-- annotation; and nothing is annotated that the module lacks. A public function added without
-- an annotation fails here. Runs under Lua 5.4 only: the annotations are one text for every
-- Lua, and the module registers the same keys under each.
local helper = require "spec.support.helper"
local annotations = require "spec.support.annotations"
local truedy = require "truedy"

local TYPES = "types"
local classes, aliases, files = annotations.read(TYPES)

local function read_file(path)
  local file = assert(io.open(path, "rb"))
  local text = file:read("*a")
  file:close()
  return text
end

local function sorted(set)
  local list = {}
  for k in pairs(set) do list[#list + 1] = k end
  table.sort(list)
  return list
end

-- The string keys of a table that are not metamethods, as a set.
local function public_keys(t)
  local set = {}
  for k in pairs(t) do
    if type(k) == "string" and not k:match("^__") then set[k] = true end
  end
  return set
end

local function set_of(list)
  local set = {}
  for _, v in ipairs(list) do set[v] = true end
  return set
end

local function union(...)
  local out = {}
  for _, set in ipairs { ... } do
    for k in pairs(set) do out[k] = true end
  end
  return out
end

-- The members of a class (its parents' too unless own_only), as a set.
local function annotated(class_name, own_only)
  local members = own_only and assert(classes[class_name], "no ---@class " .. class_name).members
    or annotations.members(classes, class_name)
  local set = {}
  for name in pairs(members) do set[name] = true end
  return set
end

-- `live` (what the module has) and what `class_name` annotates must be the same names.
local function assert_annotated(what, live, class_name, own_only)
  local have = annotated(class_name, own_only)
  local missing, stale = {}, {}
  for name in pairs(live) do
    if not have[name] then missing[#missing + 1] = name end
  end
  for name in pairs(have) do
    if not live[name] then stale[#stale + 1] = name end
  end
  table.sort(missing)
  table.sort(stale)
  assert(#missing == 0, ("%s: no annotation for %s: add them to class %s in %s/"):format(what,
    table.concat(missing, ", "), class_name, TYPES))
  assert(#stale == 0, ("%s: class %s in %s/ annotates %s, which the module does not have"):format(what,
    class_name, TYPES, table.concat(stale, ", ")))
end

-- The value of the upvalue `name` of fn, or of a function among its upvalues (depth first):
-- the option sets the Lua modules check against are locals of theirs.
local function upvalue(fn, name, seen)
  seen = seen or {}
  if seen[fn] then return nil end
  seen[fn] = true
  for i = 1, math.huge do
    local n, v = debug.getupvalue(fn, i)
    if n == nil then return nil end
    if n == name then return v end
    if type(v) == "function" then
      local found = upvalue(v, name, seen)
      if found ~= nil then return found end
    end
  end
end

local function option_set(fn, name)
  local set = upvalue(fn, name)
  assert(type(set) == "table", ("no upvalue %s reachable from the entry point: this spec reads the"
    .. " module's option set by that name; update it with the module"):format(name))
  return public_keys(set)
end

describe("types/, the LuaLS annotations", function()
  local client

  before_each(function()
    client = helper.client()
  end)

  after_each(function()
    if client then client:close() end
  end)

  it("are definition files: ---@meta, *.d.lua, never found by require, raising when run", function()
    assert.is_true(#files >= 6, "the files of types/")
    for _, path in ipairs(files) do
      assert.matches("%.d%.lua$", path, "a name no `?.lua` template turns a module name into")
      assert.matches("^%-%-%-@meta ", read_file(path), path .. " starts with ---@meta")
      local ok, err = pcall(dofile, path)
      assert.is_false(ok, path .. " must not run")
      assert.matches("LuaLS annotations for editors, not code", tostring(err))
    end
    -- the module itself is the C one, and no search path template finds an annotation file
    assert.are.equal("C", debug.getinfo(truedy.new, "S").what)
    for _, name in ipairs { "truedy", "truedy.follow", "truedy.batch", "truedy.pager", "truedy.resty" } do
      for template in (package.path .. ";" .. package.cpath):gmatch("[^;]+") do
        local path = template:gsub("%?", (name:gsub("%.", "/")))
        local file = io.open(path, "rb")
        if file then
          local head = file:read(8) or ""
          file:close()
          assert.are_not.equal("---@meta", head, path .. " is found by require " .. name)
        end
      end
    end
  end)

  it("annotate every key of the module table and of truedy.webhook", function()
    assert.is_table(truedy.follow) -- loaded on first read: now a key like the others
    assert_annotated("require \"truedy\"", public_keys(truedy), "truedy", true)
    assert_annotated("truedy.webhook", public_keys(truedy.webhook), "truedy.webhook", true)
  end)

  it("annotate every method of a client and of a handle (from the registry)", function()
    local registry = debug.getregistry()
    assert_annotated("client methods", public_keys(registry["truedy.client"].__index), "truedy.Client", true)
    assert_annotated("handle methods", public_keys(registry["truedy.handle"].__index), "truedy.Handle", true)
    -- the narrowed handle classes only redefine the base's methods
    for _, name in ipairs { "truedy.CallHandle", "truedy.ListHandle" } do
      for member in pairs(annotated(name, true)) do
        assert.is_true(annotated("truedy.Handle", true)[member], name .. "." .. member)
      end
    end
  end)

  it("annotate every method of the batch, pager and follower objects, and of their modules", function()
    local batch, pager, follow = require "truedy.batch", require "truedy.pager", require "truedy.follow"
    assert_annotated("require \"truedy.batch\"", public_keys(batch), "truedy.batch", true)
    assert_annotated("require \"truedy.pager\"", public_keys(pager), "truedy.pager", true)
    assert_annotated("require \"truedy.follow\"", public_keys(follow), "truedy.follow", true)
    -- live objects; nothing is sent: the client is never driven, and closed after
    local b = client:start_calls({})
    assert_annotated("batch methods", public_keys(getmetatable(b).__index), "truedy.Batch", true)
    local p = assert(client:start_each_call(nil, { on_call = function() end }))
    assert_annotated("pager methods", public_keys(getmetatable(p).__index), "truedy.Pager", true)
    local f = follow.start(client, "call_types_spec")
    assert_annotated("follower methods", public_keys(getmetatable(f).__index), "truedy.Follower", true)
    assert.are.equal(0, client:stats().running, "nothing went to libcurl")
  end)

  it("annotate every public function and method of truedy.resty (from its source: it loads only in nginx)",
    function()
    local source = read_file("lua/truedy/resty.lua")
    local module, methods, own_options = {}, {}, {}
    local table_block = source:match("\nlocal resty = (%b{})")
    for key in table_block:gmatch("\n%s*([%a_][%w_]*)%s*=") do module[key] = true end
    for key in source:gmatch("\nfunction resty%.([%a_][%w_]*)%s*%(") do module[key] = true end
    for key in source:gmatch("\nresty%.([%a_][%w_]*)%s*=") do module[key] = true end
    for key in source:gmatch("\nfunction Client[.:]([%a_][%w_]*)%s*%(") do methods[key] = true end
    for key in source:match("\nlocal OWN_OPTIONS = (%b{})"):gmatch("([%a_][%w_]*)%s*=") do own_options[key] = true end
    assert.is_true(module.new and methods.create_call and own_options.max_pending, "the reader found them")
    assert_annotated("require \"truedy.resty\"", module, "truedy.resty", true)
    assert_annotated("truedy.resty client methods", methods, "truedy.resty.Client", true)
    assert_annotated("truedy.new's own options in truedy.resty", own_options, "truedy.resty.ClientOptions", true)
    assert.is_true(annotations.members(classes, "truedy.resty.ClientOptions").api_key ~= nil,
      "and the plain client's")
  end)

  it("annotate every option of truedy.options(scope), each older spelling ---@deprecated", function()
    local scope = {}
    for _, name in ipairs { "client", "call", "create", "list", "start" } do
      scope[name] = set_of(truedy.options(name))
    end
    assert_annotated("options(\"client\")", scope.client, "truedy.ClientOptions")
    assert_annotated("options(\"call\")", scope.call, "truedy.CallOptions")
    assert_annotated("options(\"create\")", scope.create, "truedy.CreateOptions", true)
    assert_annotated("options(\"list\")", scope.list, "truedy.ListOptions", true)
    assert_annotated("options(\"start\")", scope.start, "truedy.StartOptions", true)
    -- what each method takes: csrc/calls.c reads the call scope, the endpoint's, and start's
    assert_annotated("create_call's options", union(scope.call, scope.create), "truedy.CreateOptions")
    assert_annotated("list_calls' options", union(scope.call, scope.list), "truedy.ListOptions")
    assert_annotated("start_call's options", union(scope.call, scope.create, scope.start), "truedy.StartCallOptions")
    assert_annotated("start_get_call's options", union(scope.call, scope.start), "truedy.StartGetOptions")
    assert_annotated("start_list_calls' options", union(scope.call, scope.list, scope.start),
      "truedy.StartListOptions")

    -- the older spellings, found by asking the module: two spellings of one option raise
    local names, older = sorted(scope.client), {}
    for i = 1, #names do
      for j = i + 1, #names do
        local ok, err = pcall(truedy.new, { [names[i]] = true, [names[j]] = true })
        if ok and err then err:close() end
        local current, alias = tostring(err):match("options '([%w_]+)' and '([%w_]+)' are the same option")
        if not ok and current then older[alias] = current end
      end
    end
    assert.is_true(next(older) ~= nil, "the module has older spellings")
    local members = annotations.members(classes, "truedy.ClientOptions")
    for alias, current in pairs(older) do
      assert.is_true(members[alias].deprecated, alias .. " is annotated ---@deprecated")
      assert.is_false(members[current].deprecated, current .. " is not")
      assert.truthy(members[alias].description:find("`" .. current .. "`", 1, true),
        alias .. "'s description names " .. current)
    end
    for name, info in pairs(members) do
      assert.is_true(not info.deprecated or older[name] ~= nil, name .. " is deprecated but not an older spelling")
    end
  end)

  it("annotate the options the Lua modules check: follow, batch, pager, webhook.verify", function()
    local follow, batch, pager = require "truedy.follow", require "truedy.batch", require "truedy.pager"
    assert_annotated("truedy.follow.start's options", option_set(follow.start, "start_options"),
      "truedy.FollowStartOptions")
    assert_annotated("truedy.follow's options", option_set(getmetatable(follow).__call, "blocking_options"),
      "truedy.FollowOptions")
    for _, class in ipairs { "truedy.FollowOptions", "truedy.FollowStartOptions" } do
      local members = annotations.members(classes, class)
      assert.is_true(members.timeout.deprecated and not members.wait_timeout.deprecated, class)
    end
    local ok, err = pcall(follow.start, client, "call_x", { wait_timeout = 1, timeout = 1 })
    assert.is_false(ok)
    assert.matches("are the same option", tostring(err))

    assert_annotated("create_calls' options", option_set(batch.start_calls, "known_options"), "truedy.BatchOptions")

    -- start_each_call: list_calls' options, its own, and `delay`
    local own = option_set(pager.start_each_call, "OWN_OPTIONS")
    local list = option_set(pager.start_each_call, "LIST_OPTIONS")
    assert_annotated("each_call's options", list, "truedy.ListOptions")
    assert_annotated("start_each_call's options", union(list, own, { delay = true }), "truedy.PagerOptions")
    local p = assert(client:start_each_call(nil, { on_call = function() end, delay = 60 }))
    assert.is_true(p:cancel())

    -- webhook.verify's option names live in C: each annotated one is accepted, others raise
    for name in pairs(annotated("truedy.VerifyOptions")) do
      local accepted, why = pcall(truedy.webhook.verify, "{}", {}, "whsec_x", { [name] = 0 })
      assert.is_true(accepted, name .. ": " .. tostring(why))
    end
    local refused, why = pcall(truedy.webhook.verify, "{}", {}, "whsec_x", { tolerence = 0 })
    assert.is_false(refused)
    assert.matches("unknown option", tostring(why))
  end)

  describe("annotate every field of the error objects", function()
    local seen = {}
    local function note(err)
      assert.is_table(err)
      for k in pairs(err) do seen[k] = true end
      return err
    end

    before_each(function() helper.reset() end)
    after_each(function() helper.reset() end)

    it("that the module gives, of every kind, and that the README's table lists", function()
      local kinds = set_of(aliases["truedy.ErrorKind"] or {})
      local errors = {}
      local function add(err) errors[#errors + 1] = note(err) end
      add(select(2, client:create_call({ agent_id = helper.agent.id, phone_number = "555" })))
      add(select(2, truedy.new { api_key = "short" }))
      add(select(2, client:get_call("call_nope")))
      local offline = assert(truedy.new { api_key = helper.api_key, base_url = "http://127.0.0.1:1/api/public/v1",
        retries = 0 })
      add(select(2, offline:get_call("call_x")))
      offline:close()
      helper.fault { method = "GET", path = "*", type = "html", status = 502 }
      add(select(2, client:get_call("call_x", { retries = 0 })))
      helper.configure { rate_limit = 1, rate_window = 3600 }
      assert(client:get_call("call_nope") == nil)
      add(select(2, client:get_call("call_nope", { retry_max_wait = 0 })))
      local h = assert(client:start_call(helper.params(), { delay = 60 }))
      assert.is_true(h:cancel())
      add(select(2, h:result()))
      local p = assert(client:start_each_call(nil, { on_call = function() end }))
      p:cancel()
      add(select(2, p:result()))
      local f = truedy.follow.start(client, "call_x")
      f:cancel()
      add(select(2, f:result()))
      add(select(2, truedy.webhook.verify("{}", {}, "whsec_x")))
      for _, err in ipairs(errors) do
        assert.is_true(kinds[err.kind], "kind " .. tostring(err.kind) .. " is in truedy.ErrorKind")
      end
      assert.is_true(seen.retry_after and seen.curl_code and seen.maybe_sent and seen.offset and seen.excerpt
        and seen.details and seen.idempotency_key and seen.field and true, "the errors above have them all")
      -- the README's table of fields
      local section = read_file("README.md"):match("\n### The error object\n(.-)\n##")
      for row in section:gmatch("\n(|[^\n]*)") do
        local cell = row:match("^|([^|]*)|")
        for field in cell:gmatch("`([%w_]+)`") do seen[field] = true end
      end
      assert.is_true(seen.content_type and seen.kind, "the README's table was read")
      assert_annotated("error fields", seen, "truedy.Error", true)
    end)
  end)

  describe("annotate every field of the envelopes", function()
    local catalog
    local seen = { call = {}, meta = {}, pagination = {}, entry = {}, one = {}, list = {} }

    setup(function()
      catalog = helper.control("GET", "/variants").data
    end)

    after_each(function() helper.reset() end)

    -- One configuration: a call created, ended, read and listed; every key noted.
    local function collect(variant)
      helper.reset()
      helper.configure { clock_speed = 0, variant = variant }
      local function note(into, t)
        for k in pairs(t or {}) do into[k] = true end
      end
      local created = assert(client:create_call(helper.params { variables = { first_name = "Ada" } }))
      helper.control("POST", "/clock/advance", { seconds = 120 })
      local read = assert(client:get_call(created.data.id))
      local list = assert(client:list_calls { limit = 5 })
      for _, res in ipairs { created, read } do
        note(seen.one, res)
        note(seen.call, res.data)
        note(seen.meta, res.meta)
      end
      note(seen.list, list)
      note(seen.meta, list.meta)
      note(seen.pagination, list.pagination)
      for _, call in ipairs(list.data) do note(seen.call, call) end
      for _, entry in ipairs(read.data.transcript or {}) do note(seen.entry, entry) end
    end

    it("in every variant the emulator serves", function()
      collect("default")
      for _, key in ipairs(sorted(catalog.variants)) do
        for i = 2, #catalog.variants[key] do collect({ [key] = catalog.variants[key][i] }) end
      end
      collect("alternate")
      assert.is_true(seen.call.transcript and seen.call.completed_at and seen.meta.timestamp and seen.meta.count
        and seen.pagination.has_more and seen.entry.speaker and true, "the variants showed their fields")
      assert_annotated("call fields", seen.call, "truedy.Call", true)
      assert_annotated("meta fields", seen.meta, "truedy.Meta", true)
      assert_annotated("pagination fields", seen.pagination, "truedy.Pagination", true)
      assert_annotated("transcript entry fields", seen.entry, "truedy.TranscriptEntry", true)
      assert_annotated("create/get envelope", seen.one, "truedy.CallEnvelope", true)
      assert_annotated("list envelope", seen.list, "truedy.ListEnvelope", true)
    end)
  end)
end)
