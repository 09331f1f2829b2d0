-- emulator/truedy-emulator: start/stop/run/status, in temporary state directories.
local emu = require "spec.emulator.emu"
local socket = require "socket"

local q = emu.quote

local function health(url)
  local ok, res = pcall(emu.request, { url = url .. "/__emulator/health", timeout = 2 })
  return ok and res.status == 200 and res.json.data or nil
end

-- True if nothing accepts connections on the port any more.
local function refused(url)
  local port = tonumber(url:match(":(%d+)$"))
  local c = socket.tcp()
  c:settimeout(1)
  local ok = c:connect("127.0.0.1", port)
  c:close()
  return not ok
end

local function pid_of(dir)
  local text = emu.read_file(dir .. "/nginx.pid")
  return text and tonumber(text:match("%d+"))
end

-- The pids of every live nginx process (master or worker) started with dir/nginx.conf.
local function nginx_processes(dir)
  local pids = {}
  local out = emu.sh("grep -lsF -- " .. q(dir .. "/nginx.conf") .. " /proc/[0-9]*/cmdline")
  for pid in out:gmatch("/proc/(%d+)/cmdline") do
    if emu.alive(pid) then pids[#pids + 1] = tonumber(pid) end
  end
  return pids
end

-- Runs `truedy-emulator ARGS` n times at once; returns a list of { out, err, status }.
local function concurrently(n, args, tmp)
  local script = {}
  for i = 1, n do
    local f = tmp .. "/concurrent." .. i
    script[#script + 1] = ("(%s %s >%s.out 2>%s.err </dev/null; echo $? >%s.status) &"):format(
      q(emu.launcher), args, q(f), q(f), q(f))
  end
  script[#script + 1] = "wait"
  emu.sh(table.concat(script, "\n"))
  local results = {}
  for i = 1, n do
    local f = tmp .. "/concurrent." .. i
    results[i] = { out = emu.read_file(f .. ".out"), err = emu.read_file(f .. ".err"),
      status = tonumber(emu.read_file(f .. ".status")) }
  end
  return results
end

describe("truedy-emulator launcher", function()
  local tmp
  local started = {} -- state dirs to stop whatever happens (or functions that stop one)

  local function start(dir, extra, env)
    local out, err, status = emu.launch("start --dir " .. q(dir) .. " " .. (extra or ""), env)
    if status == 0 then started[#started + 1] = dir end
    return out, err, status
  end

  local function stop(dir)
    return emu.launch("stop --dir " .. q(dir))
  end

  before_each(function()
    tmp = emu.tmpdir()
  end)

  after_each(function()
    for _, dir in ipairs(started) do
      if type(dir) == "function" then dir() else stop(dir) end
    end
    started = {}
    emu.sh("rm -rf " .. q(tmp))
  end)

  it("starts, prints exactly the env lines, stops; and does it all again", function()
    local dir = tmp .. "/a"
    for round = 1, 2 do
      local out, err, status = start(dir)
      assert.are.equal(0, status, err)
      local lines = {}
      for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
      assert.are.equal(4, #lines, out)
      local port = lines[1]:match("^TRUEDY_BASE_URL=http://127%.0%.0%.1:(%d+)/api/public/v1$")
      assert.is_string(port, lines[1])
      assert.are.equal("TRUEDY_API_KEY=" .. emu.key, lines[2])
      assert.are.equal("TRUEDY_EMULATOR_URL=http://127.0.0.1:" .. port, lines[3])
      assert.are.equal("TRUEDY_EMULATOR_DIR=" .. dir, lines[4])

      local url = "http://127.0.0.1:" .. port
      local h = health(url)
      assert.is_table(h, "round " .. round .. ": the server answers")
      assert.are.equal(dir, h.dir)
      assert.are.equal(2, h.workers, "2 workers by default")
      local pid = pid_of(dir)
      assert.is_true(emu.alive(pid))
      -- the API works with the printed key
      local res = emu.request { url = url .. "/api/public/v1/calls",
        headers = { authorization = "Bearer " .. emu.key } }
      assert.are.equal(200, res.status)

      local _, stop_err, stop_status = stop(dir)
      assert.are.equal(0, stop_status, stop_err)
      assert.is_false(emu.alive(pid), "the nginx master is gone")
      assert.is_true(refused(url), "nothing listens on the port any more")
      assert.is_nil(pid_of(dir))
    end
    -- stopping what is not running is fine, and says so
    local _, err, status = stop(dir)
    assert.are.equal(0, status)
    assert.matches("not running", err)
  end)

  it("keeps everything inside the state directory and listens on 127.0.0.1 only", function()
    local dir = tmp .. "/a"
    local out = start(dir)
    local port = tonumber(emu.parse_env(out).TRUEDY_EMULATOR_URL:match(":(%d+)$"))
    local conf = emu.read_file(dir .. "/nginx.conf")
    assert.matches("listen 127%.0%.0%.1:" .. port .. "[ ;]", conf)
    assert.is_truthy(emu.read_file(dir .. "/logs/error.log"))
    assert.is_truthy(pid_of(dir))
    -- every listening socket on that port is bound to 127.0.0.1 (0100007F in /proc/net/tcp)
    local hex = ("%04X"):format(port)
    local listeners = 0
    for line in (emu.read_file("/proc/net/tcp") .. (emu.read_file("/proc/net/tcp6") or "")):gmatch("[^\n]+") do
      local here, state = line:match("^%s*%d+: (%x+:%x+) %x+:%x+ (%x%x)")
      if here and here:sub(-4) == hex and state == "0A" then
        listeners = listeners + 1
        assert.are.equal("0100007F:" .. hex, here)
      end
    end
    assert.is_true(listeners >= 1)
    -- as root the workers run as the invoking user, never as nobody
    local uid = emu.sh("id -u"):match("%d+")
    if uid == "0" then
      assert.matches("\nuser root ", conf)
    else
      assert.is_nil(conf:find("\nuser "))
    end
  end)

  it("reports status", function()
    local dir = tmp .. "/a"
    local _, err, status = emu.launch("status --dir " .. q(dir))
    assert.are.equal(3, status)
    assert.matches("not running", err)
    local out = start(dir)
    local status_out
    status_out, err, status = emu.launch("status --dir " .. q(dir))
    assert.are.equal(0, status, err)
    assert.are.equal(out, status_out)
  end)

  it("runs two instances at once in different directories, with separate state", function()
    local a, b = tmp .. "/a", tmp .. "/b"
    local out_a, err_a, status_a = start(a)
    local out_b, err_b, status_b = start(b, "--workers 1")
    assert.are.equal(0, status_a, err_a)
    assert.are.equal(0, status_b, err_b)
    local url_a, url_b = emu.parse_env(out_a).TRUEDY_EMULATOR_URL, emu.parse_env(out_b).TRUEDY_EMULATOR_URL
    assert.are_not.equal(url_a, url_b)
    assert.are.equal(1, health(url_b).workers)
    local auth = { authorization = "Bearer " .. emu.key, ["content-type"] = "application/json" }
    local created = emu.request { method = "POST", url = url_a .. "/api/public/v1/calls", headers = auth,
      body = emu.json.encode(emu.call_body()) }
    assert.are.equal(201, created.status)
    local list_b = emu.request { url = url_b .. "/api/public/v1/calls", headers = auth }
    assert.matches('"data":%[%]', list_b.body)
    -- stopping one leaves the other running
    stop(a)
    assert.is_nil(health(url_a))
    assert.is_table(health(url_b))
  end)

  it("refuses to start twice in one directory", function()
    local dir = tmp .. "/a"
    local out = start(dir)
    local _, err, status = start(dir)
    assert.are_not.equal(0, status)
    assert.matches("already running", err)
    assert.is_table(health(emu.parse_env(out).TRUEDY_EMULATOR_URL), "the first one still runs")
  end)

  it("lets one of several concurrent starts in one directory win; stop leaves no nginx behind", function()
    local dir = tmp .. "/a"
    local results = concurrently(3, "start --dir " .. q(dir), tmp)
    started[#started + 1] = dir
    local winners = 0
    for _, r in ipairs(results) do
      if r.status == 0 then
        winners = winners + 1
        assert.is_table(health(emu.parse_env(r.out).TRUEDY_EMULATOR_URL))
      else
        assert.is_truthy(r.err:find("already running") or r.err:find("busy"), r.err)
      end
    end
    assert.are.equal(1, winners)
    local _, err, status = stop(dir)
    assert.are.equal(0, status, err)
    assert.are.same({}, nginx_processes(dir))
  end)

  it("cleans up a stale pid file, with a message", function()
    local dir = tmp .. "/a"
    emu.sh("mkdir -p " .. q(dir))
    -- the pid of a process that has exited
    local dead = tonumber(emu.sh("sh -c 'echo $$'"):match("%d+"))
    emu.write_file(dir .. "/nginx.pid", dead .. "\n")
    local _, err, status = stop(dir)
    assert.are.equal(0, status)
    assert.matches("stale", err)
    assert.is_nil(pid_of(dir))

    emu.write_file(dir .. "/nginx.pid", dead .. "\n")
    local out
    out, err, status = start(dir)
    assert.are.equal(0, status, err)
    assert.matches("stale", err)
    assert.is_table(health(emu.parse_env(out).TRUEDY_EMULATOR_URL))
  end)

  it("uses --port, and names the port when it is already in use", function()
    -- a port held by some other program
    local holder = assert(socket.bind("127.0.0.1", 0))
    local _, busy = holder:getsockname()
    local _, err, status = start(tmp .. "/a", "--port " .. busy)
    assert.are_not.equal(0, status)
    assert.matches("port " .. busy .. " is already in use", err, 1, true)
    holder:close()

    -- a port held by another emulator
    local out = start(tmp .. "/b")
    local port = emu.parse_env(out).TRUEDY_EMULATOR_URL:match(":(%d+)$")
    _, err, status = start(tmp .. "/c", "--port " .. port)
    assert.are_not.equal(0, status)
    assert.matches("port " .. port .. " is already in use", err, 1, true)
    assert.is_nil(pid_of(tmp .. "/c"))

    -- a free port is used as given
    stop(tmp .. "/b")
    out, err, status = start(tmp .. "/c", "--port " .. port)
    assert.are.equal(0, status, err)
    assert.are.equal("http://127.0.0.1:" .. port, emu.parse_env(out).TRUEDY_EMULATOR_URL)
  end)

  it("lets one of several concurrent starts on one --port win; the others name the port", function()
    local probe = assert(socket.bind("127.0.0.1", 0))
    local _, port = probe:getsockname()
    probe:close()
    local dirs = {}
    for i = 1, 3 do dirs[i] = tmp .. "/p" .. i end
    -- each launcher checks the port before nginx binds it: started together, all see it free
    local script = {}
    for i, dir in ipairs(dirs) do
      local f = tmp .. "/p" .. i
      script[#script + 1] = ("(%s start --port %d --dir %s >%s.out 2>%s.err </dev/null; echo $? >%s.status) &")
        :format(q(emu.launcher), port, q(dir), q(f), q(f), q(f))
    end
    script[#script + 1] = "wait"
    emu.sh(table.concat(script, "\n"))
    local winners, urls = 0, {}
    for i, dir in ipairs(dirs) do
      started[#started + 1] = dir
      local f = tmp .. "/p" .. i
      local status, err = tonumber(emu.read_file(f .. ".status")), emu.read_file(f .. ".err")
      if status == 0 then
        winners = winners + 1
        urls[#urls + 1] = emu.parse_env(emu.read_file(f .. ".out")).TRUEDY_EMULATOR_URL
      else
        assert.matches("port " .. port .. " is already in use", err, 1, true)
        assert.are.same({}, nginx_processes(dir), "the loser left no nginx behind")
      end
    end
    assert.are.equal(1, winners)
    assert.are.same({ "http://127.0.0.1:" .. port }, urls)
  end)

  describe("state directory safety", function()
    local function mode_of(path)
      return emu.sh("stat -c %a " .. q(path)):match("%d+")
    end

    it("creates a new state directory, and logs/ and tmp/ in it, with mode 700", function()
      local dir = tmp .. "/new/state"
      local _, err, status = start(dir)
      assert.are.equal(0, status, err)
      assert.are.same({ "700", "700", "700" }, { mode_of(dir), mode_of(dir .. "/logs"), mode_of(dir .. "/tmp") })
    end)

    it("refuses a directory owned by another user (as root: one owned by nobody)", function()
      if emu.sh("id -u"):match("%d+") ~= "0" then
        pending("needs root, to give a directory to another user")
        return
      end
      local dir = tmp .. "/nobodys"
      emu.sh("mkdir -m 700 " .. q(dir) .. " && chown 65534:65534 " .. q(dir))
      for _, command in ipairs { "start", "run", "stop" } do
        local _, err, status = emu.launch(command .. " --dir " .. q(dir))
        if status == 0 then started[#started + 1] = dir end
        assert.are_not.equal(0, status, command)
        assert.matches("belongs to uid 65534", err, 1, true)
      end
      assert.are.same({}, nginx_processes(dir))
      assert.is_nil(emu.read_file(dir .. "/nginx.conf"), "nothing was written into it")
    end)

    it("refuses a directory writable by group or others, and a symbolic link", function()
      local open = tmp .. "/open"
      emu.sh("mkdir -m 777 " .. q(open) .. " && chmod 777 " .. q(open))
      local _, err, status = start(open)
      assert.are_not.equal(0, status)
      assert.matches("writable by group or others", err, 1, true)
      assert.is_nil(emu.read_file(open .. "/nginx.conf"))

      local real, link = tmp .. "/real", tmp .. "/link"
      emu.sh("mkdir -m 700 " .. q(real) .. " && ln -s real " .. q(link))
      _, err, status = start(link)
      assert.are_not.equal(0, status)
      assert.matches("symbolic link", err, 1, true)
      assert.is_nil(emu.read_file(real .. "/nginx.conf"))
    end)

    it("replaces symbolic links where it writes its files instead of following them", function()
      local dir = tmp .. "/a"
      emu.sh("mkdir -m 700 " .. q(dir) .. " " .. q(dir .. "/logs") .. " && echo precious >" .. q(tmp .. "/target"))
      for _, name in ipairs { "nginx.conf", "emulator.env", "nginx.pid", "launcher.lock", "logs/startup.log",
        "logs/error.log", "logs/access.log" } do
        emu.sh("ln -s " .. q(tmp .. "/target") .. " " .. q(dir .. "/" .. name))
      end
      local _, err, status = start(dir)
      assert.are.equal(0, status, err)
      assert.are.equal("precious\n", emu.read_file(tmp .. "/target"))
    end)
  end)

  it("names the Debian packages when nginx or its Lua module is missing", function()
    local _, err, status = start(tmp .. "/a", "", "TRUEDY_NGINX=/nonexistent/nginx")
    assert.are_not.equal(0, status)
    assert.matches("nginx", err)
    assert.matches("libnginx-mod-http-lua", err, 1, true)
    _, err, status = start(tmp .. "/a", "", "TRUEDY_NGINX_MODULES=/nonexistent")
    assert.are_not.equal(0, status)
    assert.matches("libnginx-mod-http-lua", err, 1, true)
  end)

  it("refuses bad arguments", function()
    local _, err, status = emu.launch("start --port 0 --dir " .. q(tmp .. "/a"))
    assert.are_not.equal(0, status)
    assert.matches("port", err)
    _, err, status = emu.launch("start --bogus")
    assert.are_not.equal(0, status)
    assert.matches("usage", err)
    _, _, status = emu.launch("frobnicate")
    assert.are_not.equal(0, status)
  end)

  it("runs in the foreground with `run` until it gets a signal", function()
    local dir = tmp .. "/fg"
    local launcher_pid = tonumber(emu.sh(q(emu.launcher) .. " run --dir " .. q(dir) .. " >" .. q(tmp .. "/run.out")
      .. " 2>" .. q(tmp .. "/run.err") .. " </dev/null & echo $!"):match("%d+"))
    started[#started + 1] = dir
    local out = emu.eventually(function()
      local text = emu.read_file(tmp .. "/run.out")
      return text and select(2, text:gsub("\n", "")) >= 4 and text
    end, 10)
    assert.is_string(out, "run printed its env lines: " .. (emu.read_file(tmp .. "/run.err") or ""))
    local url = emu.parse_env(out).TRUEDY_EMULATOR_URL
    assert.is_table(health(url))
    local nginx_pid = pid_of(dir)
    assert.is_true(emu.alive(nginx_pid))

    emu.sh("kill -TERM " .. launcher_pid)
    local gone = emu.eventually(function()
      return not emu.alive(launcher_pid) and not emu.alive(nginx_pid)
    end, 10)
    assert.is_true(gone, "launcher and nginx exited")
    assert.is_true(refused(url))
  end)

  it("works for a normal user (as root: runs it as nobody)", function()
    local uid = emu.sh("id -u"):match("%d+")
    if uid ~= "0" then
      -- not root: every other test of this file already ran as a normal user
      local out, err, status = start(tmp .. "/a")
      assert.are.equal(0, status, err)
      assert.is_table(health(emu.parse_env(out).TRUEDY_EMULATOR_URL))
      return
    end
    local _, has_setpriv = emu.sh("command -v setpriv >/dev/null")
    local _, readable = emu.sh("setpriv --reuid=65534 --regid=65534 --clear-groups test -r "
      .. q(emu.root .. "/emulator/nginx.conf.in"))
    if has_setpriv ~= 0 or readable ~= 0 then
      pending("needs setpriv and a repository that user nobody can read")
      return
    end
    local dir = tmp .. "/nobody"
    emu.sh("mkdir -p " .. q(dir) .. " && chown 65534:65534 " .. q(dir) .. " && chmod 755 " .. q(tmp))
    local as_nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups env HOME=/ "
    -- stopped as nobody whatever happens (root may not use a directory of nobody's)
    started[#started + 1] = function()
      emu.sh(as_nobody .. q(emu.launcher) .. " stop --dir " .. q(dir) .. " >/dev/null 2>&1")
    end
    local out, status = emu.sh(as_nobody .. q(emu.launcher) .. " start --dir " .. q(dir) .. " 2>/dev/null")
    assert.are.equal(0, status, out)
    local url = emu.parse_env(out).TRUEDY_EMULATOR_URL
    local h = health(url)
    assert.is_table(h)
    local conf = emu.read_file(dir .. "/nginx.conf")
    assert.is_nil(conf:find("\nuser "), "no user directive when not root")
    local stop_out, stop_status = emu.sh(as_nobody .. q(emu.launcher) .. " stop --dir " .. q(dir) .. " 2>&1")
    assert.are.equal(0, stop_status, stop_out)
    assert.is_true(refused(url))
  end)
end)
