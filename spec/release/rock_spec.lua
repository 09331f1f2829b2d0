-- The release path, offline: `make rock` packs HEAD into a .src.rock, which installs into
-- an empty tree with Debian's luarocks for Lua 5.4 and 5.1 (lua-cjson comes from apt,
-- hence --deps-mode=none); the installed tree then serves `require "truedy"` and every
-- pure-Lua module of lua/truedy/, in PUC Lua and (5.1 tree) LuaJIT, against the emulator.
-- Also `luarocks make` of the published rockspec in an unpacked checkout, as the README says.
-- Each install also carries types/, the LuaLS annotations, in the rock's own directory.
local helper = require "spec.support.helper"

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Runs a shell command (bounded by `timeout`); returns its exit status and output.
local function sh(command, seconds)
  local pipe = assert(io.popen(string.format("timeout %d sh -c %s 2>&1; echo \"__exit=$?\"",
    seconds or 300, quote(command))))
  local output = pipe:read("*a")
  pipe:close()
  return tonumber(output:match("__exit=(%d+)%s*$")), (output:gsub("__exit=%d+%s*$", ""))
end

local root = helper.module_dir:match("^(/.*)/build/[^/]*$")
if not root then
  local pipe = assert(io.popen("pwd"))
  root = pipe:read("*l")
  pipe:close()
end

-- The pure-Lua modules of the checkout (lua/truedy/x.lua -> "truedy.x",
-- lua/truedy/x/y.lua -> "truedy.x.y").
local function lua_modules()
  local names = {}
  local pipe = assert(io.popen("cd " .. quote(root) .. "/lua && find truedy -name '*.lua' | sort"))
  for path in pipe:lines() do names[#names + 1] = (path:gsub("%.lua$", ""):gsub("/", ".")) end
  pipe:close()
  return names
end

-- Lua run from `dir` (not the checkout) with only `tree` added to the default paths:
-- requires the module and every lua/truedy/ module, says where truedy came from, and
-- reads one call from the emulator with it.
local function require_from_tree(interpreter, tree, abi, dir)
  local code = string.format([[
    local modules = { %s }
    local truedy = require "truedy"
    -- where require found it: the first match on package.cpath (5.1 has no searchpath)
    for template in package.cpath:gmatch("[^;]+") do
      local path = template:gsub("%%?", "truedy")
      local file = io.open(path, "rb")
      if file then file:close(); print("truedy from " .. path); break end
    end
    -- truedy.follow through the module table (loaded from the tree on first read)
    local follow = truedy.follow
    assert(type(follow) == "table" and type(follow.start) == "function"
      and follow == require "truedy.follow", "truedy.follow from the module table")
    print("module table truedy.follow ok")
    for _, name in ipairs(modules) do
      if name:match("^truedy%%.resty") then
        -- for nginx: installed, and either loading or refusing plainly outside nginx
        local ok, err = pcall(require, name)
        assert(ok or tostring(err):find("needs nginx", 1, true), name .. ": " .. tostring(err))
      else
        assert(require(name), name)
      end
      print(name .. " ok")
    end
    local client = assert(truedy.new{ api_key = %q, base_url = %q })
    local res, err = client:get_call("call_from_the_rock")
    assert(res == nil and err.code == "not_found", tostring(err))
    print("version " .. truedy.VERSION)
  ]], (function()
      local quoted = {}
      for _, name in ipairs(lua_modules()) do quoted[#quoted + 1] = string.format("%q", name) end
      return table.concat(quoted, ", ")
    end)(), helper.api_key, helper.base_url)
  return sh(string.format("cd %s && env -u TRUEDY_API_KEY -u TRUEDY_BASE_URL LUA_CPATH=%s LUA_PATH=%s %s -e %s",
    quote(dir), quote(tree .. "/lib/lua/" .. abi .. "/?.so;;"),
    quote(tree .. "/share/lua/" .. abi .. "/?.lua;" .. tree .. "/share/lua/" .. abi .. "/?/init.lua;;"),
    interpreter, quote(code)), 60)
end

local function assert_served(status, output, tree, abi)
  assert.equal(0, status, output)
  assert.matches("truedy from " .. (tree .. "/lib/lua/" .. abi .. "/truedy.so"):gsub("%p", "%%%0"), output)
  for _, name in ipairs(lua_modules()) do assert.matches(name:gsub("%p", "%%%0") .. " ok", output) end
  assert.matches("module table truedy.follow ok", output, 1, true)
  assert.matches("version %d+%.%d+%.%d+", output)
end

-- The LuaLS annotations (types/, the rockspec's copy_directories) are in the rock's own
-- directory, where `luarocks show --rock-dir` says, the same files as the checkout's; and
-- nowhere on the Lua paths of the tree (share/lua, lib/lua).
local function assert_types_installed(tree, abi, work)
  local status, output = sh(string.format(
    "cd %s && HOME=%s luarocks --lua-version %s --tree %s show --rock-dir truedy",
    quote(work), quote(work), abi, quote(tree)), 60)
  assert.equal(0, status, output)
  local rock_dir = output:match("(/%S+)%s*$")
  assert.matches("^" .. (tree .. "/lib/luarocks/rocks-" .. abi .. "/truedy/"):gsub("%p", "%%%0"), rock_dir)
  local pipe = assert(io.popen("cd " .. quote(root) .. " && git ls-files types"))
  local count = 0
  for path in pipe:lines() do
    count = count + 1
    local same = sh(string.format("cmp %s %s", quote(root .. "/" .. path), quote(rock_dir .. "/" .. path)), 30)
    assert.equal(0, same, path .. " installed in " .. rock_dir)
  end
  pipe:close()
  assert.is_true(count >= 6, "the checkout's types/ files")
  local _, found = sh(string.format("find %s/share %s/lib/lua -name '*.d.lua' 2>/dev/null",
    quote(tree), quote(tree)), 30)
  assert.equal("", found, "no annotation file on the tree's Lua paths")
end

describe("the release path", function()
  local work, rock

  setup(function()
    local status, output = sh("mktemp -d \"${TMPDIR:-/tmp}/truedy-rock.XXXXXX\"", 10)
    assert.equal(0, status, output)
    work = output:match("(%S+)")
    -- luarocks keeps a cache and config under $HOME: a private one per run
    local make_status, make_output = sh(string.format("HOME=%s make -s -C %s rock ROCK_DIR=%s",
      quote(work), quote(root), quote(work .. "/rock")), 300)
    assert.equal(0, make_status, make_output)
    rock = make_output:match("(%S+%.src%.rock)%s*$")
    assert.is_string(rock, make_output)
  end)

  teardown(function()
    if work then sh("rm -rf " .. quote(work), 60) end
  end)

  it("makes one .src.rock holding the generated rockspec and the packed checkout", function()
    local status, output = sh("unzip -l " .. quote(rock), 30)
    assert.equal(0, status, output)
    local version = rock:match("truedy%-([%d.]+)%-%d+%.src%.rock$")
    assert.is_string(version, rock)
    assert.matches("truedy%-" .. version:gsub("%.", "%%.") .. "%-%d+%.rockspec", output)
    assert.matches("truedy%-" .. version:gsub("%.", "%%.") .. "%.tar%.gz", output)
    -- the rockspec inside points at the tarball inside, not at the network
    local _, rockspec = sh("unzip -p " .. quote(rock) .. " '*.rockspec'", 30)
    assert.matches('url = "file://[^"]*/truedy%-' .. version:gsub("%.", "%%.") .. '%.tar%.gz"', rockspec)
  end)

  for _, target in ipairs({ { abi = "5.4", luas = { "lua5.4" } }, { abi = "5.1", luas = { "lua5.1", "luajit" } } }) do
    it("installs into an empty tree with luarocks --lua-version " .. target.abi
      .. " and serves require \"truedy\" from it (" .. table.concat(target.luas, ", ") .. ")", function()
      local tree = work .. "/tree-" .. target.abi
      local status, output = sh(string.format("cd %s && HOME=%s luarocks --lua-version %s install "
        .. "--deps-mode=none --tree %s %s", quote(work), quote(work), target.abi, quote(tree), quote(rock)), 300)
      assert.equal(0, status, output)
      assert.matches("truedy [%d.%-]+ is now installed", output)
      for _, lua in ipairs(target.luas) do
        local run_status, run_output = require_from_tree(lua, tree, target.abi, work)
        assert_served(run_status, run_output, tree, target.abi)
      end
      assert_types_installed(tree, target.abi, work)
    end)
  end

  it("builds the published rockspec with luarocks make in an unpacked checkout (Lua 5.4)", function()
    local src, tree = work .. "/src", work .. "/tree-make"
    local status, output = sh(string.format("mkdir -p %s && git -C %s archive HEAD | tar -x -C %s",
      quote(src), quote(root), quote(src)), 60)
    assert.equal(0, status, output)
    status, output = sh(string.format("cd %s && HOME=%s luarocks --lua-version 5.4 make --deps-mode=none "
      .. "--tree %s truedy-*.rockspec", quote(src), quote(work), quote(tree)), 300)
    assert.equal(0, status, output)
    local run_status, run_output = require_from_tree("lua5.4", tree, "5.4", work)
    assert_served(run_status, run_output, tree, "5.4")
    assert_types_installed(tree, "5.4", work)
  end)
end)
