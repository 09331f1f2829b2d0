-- One build per Lua ABI: the User-Agent names the Lua that runs (told at run time), and
-- the 5.1-ABI truedy.so (built against PUC Lua 5.1's headers) is the one file that both
-- PUC Lua 5.1 and LuaJIT load.
local helper = require "spec.support.helper"
local truedy = require "truedy"

local jit = rawget(_G, "jit")

-- A POSIX shell word.
local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Runs `code` in `interpreter` (a fresh process); returns its exit status and output.
local function run_in(interpreter, code)
  local command = string.format("%s -e %s 2>&1; echo \"__exit=$?\"", interpreter, quote(code))
  local pipe = assert(io.popen(command))
  local output = pipe:read("*a")
  pipe:close()
  return tonumber(output:match("__exit=(%d+)%s*$")), (output:gsub("__exit=%d+%s*$", ""))
end

describe("the Lua ABI", function()
  before_each(helper.reset)

  it("names the running Lua in the User-Agent", function()
    local client = helper.client{ user_agent = "abi-spec" }
    local _, err = client:get_call("call_abi")
    assert.equal(404, err.status)
    local ua = helper.journal("GET")[1].headers["user-agent"]
    -- "(LuaJIT 2.1.0-beta3; libcurl/...)", "(Lua 5.4.4; libcurl/...)"
    local name = (jit and jit.version or _VERSION):gsub("%p", "%%%0")
    assert.matches("%(" .. name .. (jit and "" or "%.%d+") .. "; libcurl/", ua)
    assert.matches("^truedy%-lua/" .. truedy.VERSION:gsub("%.", "%%.") .. " ", ua)
    assert.matches(" abi%-spec$", ua)
  end)

  if _VERSION == "Lua 5.1" then
    it("is one truedy.so that PUC Lua 5.1 and LuaJIT both load, each named in the User-Agent", function()
      local module = helper.module_dir .. "/truedy.so"
      assert.is_truthy(io.open(module, "rb"), "no " .. module)
      for _, interpreter in ipairs({ "lua5.1", "luajit" }) do
        -- package.loadlib: exactly this file, whatever package.cpath says
        local status, output = run_in(interpreter, string.format([[
          local open = assert(package.loadlib(%s, "luaopen_truedy"))
          local truedy = open("truedy")
          local client = assert(truedy.new{ api_key = %s, base_url = %s, user_agent = "abi/%s" })
          local res, err = client:get_call("call_abi")
          assert(res == nil and err.status == 404, tostring(err))
          print("ran " .. (rawget(_G, "jit") and jit.version or _VERSION))
        ]], string.format("%q", module), string.format("%q", helper.api_key),
          string.format("%q", helper.base_url), interpreter))
        assert.equal(0, status, output)
        assert.matches("ran " .. (interpreter == "luajit" and "LuaJIT" or "Lua 5%.1"), output)
      end
      local gets = helper.journal("GET")
      assert.equal(2, #gets)
      assert.matches("%(Lua 5%.1%.%d+; libcurl/[^)]+%) abi/lua5%.1$", gets[1].headers["user-agent"])
      assert.matches("%(LuaJIT 2%.[^;]+; libcurl/[^)]+%) abi/luajit$", gets[2].headers["user-agent"])
    end)
  end
end)
