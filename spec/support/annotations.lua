-- Reads the LuaLS annotation files of types/ the simple way, for spec/docs/types_spec.lua:
-- which classes they declare, and each class's members (its `---@field` lines, and the
-- functions and fields set on the local that the class annotates), with whether a member is
-- `---@private` or `---@deprecated` and the description above it. Enough for these files
-- (one declaration per line, as LuaLS's own docs write them); not a LuaLS parser.
local annotations = {}

local SCOPES = { private = true, protected = true, public = true, package = true }

local function new_class(classes, name, parents)
  local class = classes[name]
  if not class then
    class = { name = name, parents = {}, members = {}, files = {} }
    classes[name] = class
  end
  for parent in (parents or ""):gmatch("[^,%s]+") do class.parents[#class.parents + 1] = parent end
  return class
end

-- The classes of one file's text, added to `classes`, and its aliases' quoted values
-- (`---| "value"` lines), added to `aliases`; `path` for the messages.
function annotations.parse(text, path, classes, aliases)
  local alias          -- the ---@alias whose ---| lines come now
  local class          -- the class whose ---@field lines come now
  local pending_class  -- a ---@class not yet bound to a local
  local bound = {}     -- local name -> class
  local docs = { description = {} } -- the ---lines above the next declaration
  local function add(owner, name, how)
    owner.members[name] = owner.members[name] or {
      name = name, how = how, path = path,
      private = docs.private or false, deprecated = docs.deprecated or false,
      description = table.concat(docs.description, " "),
    }
  end
  local n = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    local name, parents = line:match("^%-%-%-@class%s+([%w_.]+)%s*:?%s*(.-)%s*$")
    local alias_name = line:match("^%-%-%-@alias%s+([%w_.]+)")
    if alias_name then
      alias = {}
      aliases[alias_name] = alias
    elseif alias and line:match('^%-%-%-|%s*"') then
      alias[#alias + 1] = line:match('^%-%-%-|%s*"([^"]*)"')
    elseif name then
      class = new_class(classes, name, parents)
      class.files[path] = true
      pending_class = class
    elseif line:match("^%-%-%-@field%s") then
      alias = nil
      local words = line:gsub("^%-%-%-@field%s+", "")
      local first, rest = words:match("^(%S+)%s+(.*)$")
      if first and SCOPES[first] then words = rest end
      local field = words:match("^([%a_][%w_]*)%??%s")
      if field then
        assert(class, ("%s:%d: ---@field outside a ---@class"):format(path, n))
        add(class, field, "field")
        if first == "private" then class.members[field].private = true end
      elseif not words:match("^%[") then
        error(("%s:%d: a ---@field this reader does not understand: %s"):format(path, n, line))
      end
    elseif line:match("^%-%-%-@private%s*$") then
      docs.private = true
    elseif line:match("^%-%-%-@deprecated") then
      docs.deprecated = true
    elseif line:match("^%-%-%-[^@]") then
      docs.description[#docs.description + 1] = line:gsub("^%-%-%-", "")
    elseif line:match("^%-%-%-@") then -- @param, @return, @type, @overload, ...: same declaration
      local _ = nil
    else
      local var = line:match("^local%s+([%a_][%w_]*)%s*=")
      local owner, member = line:match("^function%s+([%a_][%w_]*)[.:]([%a_][%w_]*)%s*%(")
      if not owner then owner, member = line:match("^([%a_][%w_]*)%.([%a_][%w_]*)%s*=") end
      if var and pending_class then
        bound[var] = pending_class
      elseif owner then
        local target = bound[owner]
        assert(target, ("%s:%d: %s.%s: %s is not a local annotated with ---@class"):format(path, n, owner,
          member, owner))
        add(target, member, "declared")
      end
      if not line:match("^%s*$") then
        class, pending_class, alias = nil, nil, nil
        docs = { description = {} }
      end
    end
  end
  return classes
end

-- The classes and aliases of every types/*.lua file, and the files' paths.
function annotations.read(dir)
  local classes, aliases, files = {}, {}, {}
  local pipe = assert(io.popen("ls " .. dir .. "/*.lua"))
  for path in pipe:lines() do files[#files + 1] = path end
  pipe:close()
  for _, path in ipairs(files) do
    local file = assert(io.open(path, "rb"))
    annotations.parse(file:read("*a"), path, classes, aliases)
    file:close()
  end
  return classes, aliases, files
end

-- Every member of a class, its parents' included (a child's own wins).
function annotations.members(classes, name, out)
  local class = assert(classes[name], "no ---@class " .. name .. " in types/")
  out = out or {}
  for member, info in pairs(class.members) do
    if out[member] == nil then out[member] = info end
  end
  for _, parent in ipairs(class.parents) do annotations.members(classes, parent, out) end
  return out
end

return annotations
