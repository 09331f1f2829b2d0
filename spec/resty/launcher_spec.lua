-- emulator/truedy-emulator --conf / --set / --health: the launcher's way to run another nginx
-- configuration (the OpenResty example, spec/resty/edges.conf). Refusals happen before anything
-- starts; starting and stopping are what every other spec here does.
local app = require "spec.resty.app"
local emu = app.emu
local q = app.q

describe("truedy-emulator --conf", function()
  local tmp

  before_each(function() tmp = emu.tmpdir() end)
  after_each(function() emu.sh("rm -rf " .. q(tmp)) end)

  local function start(args)
    return emu.launch("start --dir " .. q(tmp .. "/app") .. " --conf "
      .. q(emu.root .. "/examples/openresty/nginx.conf") .. " " .. args)
  end

  it("refuses a --set value that could break out of nginx.conf's quotes", function()
    for _, value in ipairs { 'a"b', "a;b", "a{b", "a\\b", "a$b" } do
      local out, err, status = start("--set " .. q("LUA_CPATH=" .. value))
      assert.are_not.equal(0, status)
      assert.equal("", out)
      assert.matches("cannot use a path or value containing", err, 1, true)
    end
  end)

  it("refuses --set names that are not capitals, and --health paths that are not plain", function()
    local _, err, status = start("--set " .. q("lua_cpath=x"))
    assert.are_not.equal(0, status)
    assert.matches("--set takes NAME=VALUE with NAME in capitals", err, 1, true)
    _, err, status = start("--health " .. q("/health?x=1"))
    assert.are_not.equal(0, status)
    assert.matches("--health must be a plain path", err, 1, true)
  end)

  it("refuses a configuration file it cannot read", function()
    local _, err, status = emu.launch("start --dir " .. q(tmp .. "/app") .. " --conf " .. q(tmp .. "/none.conf"))
    assert.are_not.equal(0, status)
    assert.matches("--conf: no readable file", err, 1, true)
  end)

  it("prints the server's URL and directory, not the emulator's variables", function()
    local server = app.start {}
    local res = server:request("GET", "/health")
    assert.equal(200, res.status)
    assert.matches("^http://127%.0%.0%.1:%d+$", server.url)
    local env = emu.read_file(server.dir .. "/emulator.env")
    assert.matches("^TRUEDY_SERVER_URL=http://127%.0%.0%.1:%d+\nTRUEDY_SERVER_DIR=", env)
    assert.is_nil(env:find("TRUEDY_API_KEY", 1, true))
    server:stop()
  end)
end)
