-- The annotations in a real lua-language-server, when one is installed (Debian 12 has no
-- package: set TRUEDY_LUALS to its binary, or put lua-language-server on PATH; otherwise this
-- is pending). Its `--check` runs over spec/docs/luals/ with types/ as workspace.library:
-- uses.lua (correct uses of the whole API) must give no diagnostic at all, and mistakes.lua
-- exactly the diagnostic each of its lines marked `-- expect: <code>` names.
local helper = require "spec.support.helper"
local cjson = require "cjson"

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function sh(command)
  local pipe = assert(io.popen(command .. " 2>&1"))
  local output = pipe:read("*a")
  pipe:close()
  return output
end

local luals = os.getenv("TRUEDY_LUALS")
if luals == nil or luals == "" then
  luals = sh("command -v lua-language-server"):match("^(/%S+)")
end

describe("the annotations in lua-language-server", function()
  if not luals then
    pending("lua-language-server is not installed (set TRUEDY_LUALS or put it on PATH)")
    return
  end

  it("find nothing wrong in correct uses, and each marked mistake", function()
    local work = sh("mktemp -d \"${TMPDIR:-/tmp}/truedy-luals.XXXXXX\""):match("(%S+)")
    finally(function() sh("rm -rf " .. quote(work)) end)
    local fixtures = helper.root .. "/spec/docs/luals"
    sh(string.format("cp %s/uses.lua %s/mistakes.lua %s/", quote(fixtures), quote(fixtures), quote(work)))
    local config = assert(io.open(work .. "/.luarc.json", "wb"))
    config:write(cjson.encode { ["runtime.version"] = "Lua 5.4", ["workspace.library"] = { helper.root .. "/types" } })
    config:close()
    local output = sh(string.format("cd %s && timeout 120 %s --check=%s --checklevel=Information"
      .. " --check_format=json --check_out_path=%s --logpath=%s", quote(work), quote(luals), quote(work),
      quote(work .. "/out.json"), quote(work .. "/log")))
    local file = io.open(work .. "/out.json", "rb")
    assert(file, "lua-language-server wrote no report: " .. output)
    local report = cjson.decode(file:read("*a"))
    file:close()

    local found = { ["uses.lua"] = {}, ["mistakes.lua"] = {} }
    for uri, diagnostics in pairs(report) do
      local name = uri:match("([^/]+)$")
      assert(found[name], "a diagnostic for " .. uri)
      for _, d in ipairs(diagnostics) do
        found[name][("%d: %s"):format(d.range.start.line + 1, d.code)] = true
      end
    end
    local expected, n = {}, 0
    for line in io.lines(fixtures .. "/mistakes.lua") do
      n = n + 1
      local code = line:match("%-%- expect: (%S+)%s*$")
      if code then expected[n .. ": " .. code] = true end
    end
    assert.is_true(next(expected) ~= nil, "mistakes.lua marks its mistakes")
    assert.are.same({}, found["uses.lua"])
    assert.are.same(expected, found["mistakes.lua"])
  end)
end)
