-- Docs that run: every ```lua block of README.md and every examples/*.lua, each in a fresh
-- interpreter bounded by `timeout`, against the emulator (TRUEDY_API_KEY / TRUEDY_BASE_URL
-- point at it).  Each must exit 0 and write nothing to stderr.
--
-- README blocks run after spec/docs/prelude.lua, which defines `truedy`, `client` and
-- `call_id` (a real call, already ended).  A block that cannot run standalone is marked on
-- the line right before its fence:
--   <!-- docs-spec: skip: <why> -->   not run (nginx-only, a fragment...); the why is required
--   <!-- docs-spec: value -->         a Lua value shown (a table): run as `local value = <block>`
-- Any other block runs: a block added to the README is a test added to `make test`.
-- The examples run without the prelude (they are whole programs), with TRUEDY_AGENT_ID,
-- TRUEDY_TO_NUMBER and TRUEDY_WAIT set.
local helper = require "spec.support.helper"

local README = "README.md"
local PRELUDE = "spec/docs/prelude.lua"
local TIMEOUT = 60 -- seconds, per block or example
local MARKER = "^<!%-%-%s*docs%-spec:%s*(.-)%s*%-%->%s*$"

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function read_file(path)
  local file = assert(io.open(path, "rb"))
  local text = file:read("*a")
  file:close()
  return text
end

local function write_file(path, text)
  local file = assert(io.open(path, "wb"))
  file:write(text)
  file:close()
end

-- The ```lua blocks of a Markdown file: { line, heading, code, mode, reason }, and the
-- problems found with its markers.
local function lua_blocks(path)
  local lines = {}
  for line in (read_file(path) .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  local blocks, problems = {}, {}
  local heading, fence, block
  for n, line in ipairs(lines) do
    if fence then
      if line:match("^" .. fence .. "%s*$") then
        if block then blocks[#blocks + 1] = block end
        fence, block = nil, nil
      elseif block then
        block.code[#block.code + 1] = line
      end
    else
      local ticks, info = line:match("^(```+)%s*(%S*)")
      if ticks then
        fence = ticks
        if info:lower() == "lua" then
          block = { line = n, heading = heading or "top", code = {}, mode = "run" }
          local marker = n > 1 and lines[n - 1]:match(MARKER)
          if marker then
            local reason = marker:match("^skip:%s*(.-)$")
            if reason then
              block.mode, block.reason = "skip", reason
              if reason == "" then
                problems[#problems + 1] = ("%s:%d: a skip marker must say why"):format(path, n - 1)
              end
            elseif marker == "value" then
              block.mode = "value"
            else
              problems[#problems + 1] = ("%s:%d: unknown docs-spec marker '%s' (skip: <why>, value)")
                :format(path, n - 1, marker)
            end
          end
        end
      else
        heading = line:match("^#+%s+(.-)%s*$") or heading
        if line:match(MARKER) and not (lines[n + 1] or ""):match("^```+%s*[Ll][Uu][Aa]%s*$") then
          problems[#problems + 1] = ("%s:%d: a docs-spec marker must stand on the line right before"
            .. " a ```lua block"):format(path, n)
        end
      end
    end
  end
  if fence then problems[#problems + 1] = ("%s: a code block is never closed"):format(path) end
  for _, b in ipairs(blocks) do b.code = table.concat(b.code, "\n") .. "\n" end
  return blocks, problems
end

local function examples()
  local files = {}
  local pipe = assert(io.popen("ls examples/*.lua 2>/dev/null"))
  for path in pipe:lines() do files[#files + 1] = path end
  pipe:close()
  return files
end

-- Runs a Lua file in a fresh interpreter with `env`; returns the exit status, stdout, stderr.
local function run_lua_file(file, env, with_prelude)
  local err_file = os.tmpname()
  local words = { "env -u TRUEDY_API_KEY -u TRUEDY_BASE_URL" }
  for name, value in pairs(env) do words[#words + 1] = name .. "=" .. quote(value) end
  words[#words + 1] = "LUA_CPATH=" .. quote(helper.module_dir .. "/?.so;;")
  words[#words + 1] = "LUA_PATH=" .. quote("lua/?.lua;lua/?/init.lua;;")
  words[#words + 1] = ("timeout %d %s"):format(TIMEOUT, helper.lua)
  if with_prelude then words[#words + 1] = "-e " .. quote(("dofile(%q)"):format(PRELUDE)) end
  words[#words + 1] = quote(file) .. " 2>" .. quote(err_file) .. "; echo \"__exit=$?\""
  local pipe = assert(io.popen(table.concat(words, " ")))
  local output = pipe:read("*a")
  pipe:close()
  local stderr = read_file(err_file)
  os.remove(err_file)
  return tonumber(output:match("__exit=(%d+)%s*$")), (output:gsub("__exit=%d+%s*$", "")), stderr
end

local function assert_ran(what, status, stdout, stderr)
  local shown = ("%s\n-- stdout:\n%s-- stderr:\n%s"):format(what, stdout, stderr)
  assert(status ~= 124, what .. " did not finish within " .. TIMEOUT .. " s\n" .. shown)
  assert.equal(0, status, shown)
  assert.equal("", stderr, shown)
end

describe("the docs", function()
  local blocks, problems = lua_blocks(README)
  local counts = { run = 0, value = 0, skip = 0 }
  local skipped = {}
  for _, block in ipairs(blocks) do
    counts[block.mode] = counts[block.mode] + 1
    if block.mode == "skip" then
      skipped[#skipped + 1] = ("%s:%d (%s): %s"):format(README, block.line, block.heading, block.reason)
    end
  end
  local example_files = examples()
  local env, work

  setup(function()
    helper.reset()
    -- one real call for `call_id`, ended (the emulator's clock jumps past its 35 s);
    -- a faster clock lets the examples follow their own calls to the end.  No rate limit:
    -- the examples place and follow dozens of calls, more than the default 100 requests a
    -- minute that every block and example would share (spec/truedy covers the 429s)
    local call = assert(helper.client():create_call(helper.params())).data
    helper.control("POST", "/clock/advance", { seconds = 40 })
    helper.configure({ clock_speed = 20, rate_limit = 0 })
    env = {
      TRUEDY_API_KEY = helper.api_key,
      TRUEDY_BASE_URL = helper.base_url,
      TRUEDY_DOCS_CALL_ID = call.id,
      TRUEDY_AGENT_ID = helper.agent.id,
      TRUEDY_TO_NUMBER = helper.to_number,
      TRUEDY_WAIT = "10",
    }
    work = os.tmpname()
    os.remove(work)
    assert(os.execute("mkdir -m 700 " .. quote(work)))
  end)

  teardown(function()
    if work then os.execute("rm -rf " .. quote(work)) end
    helper.reset()
    io.stdout:write(("\ndocs: %s: %d Lua blocks: %d ran, %d evaluated as values, %d skipped%s;"
      .. " examples: %d ran\n"):format(README, #blocks, counts.run, counts.value, counts.skip,
      #skipped > 0 and (" (" .. table.concat(skipped, "; ") .. ")") or "", #example_files))
  end)

  it("has Lua blocks in " .. README .. ", each run or marked with a well-formed marker", function()
    assert.is_true(counts.run > 0, "no runnable ```lua block found in " .. README)
    assert.same({}, problems)
  end)

  -- The block in a file of its own named README.md, its code on the README's own line
  -- numbers, so that an error message points into the README.
  local function block_file(block, code)
    local dir = ("%s/line%d"):format(work, block.line)
    assert(os.execute("mkdir " .. quote(dir)))
    local file = dir .. "/" .. README:match("[^/]+$")
    write_file(file, string.rep("\n", block.line) .. code)
    return file
  end

  for _, block in ipairs(blocks) do
    local name = ("%s:%d (%s)"):format(README, block.line, block.heading)
    if block.mode == "run" then
      it(name .. " runs", function()
        assert_ran(name, run_lua_file(block_file(block, block.code), env, true))
      end)
    elseif block.mode == "value" then
      it(name .. " is a Lua value", function()
        local file = block_file(block, "local value = " .. block.code
          .. "assert(value ~= nil, 'the block evaluates to nil')\n")
        assert_ran(name, run_lua_file(file, env, true))
      end)
    end
  end

  it("has examples", function()
    assert.is_true(#example_files > 0, "no examples/*.lua")
  end)

  for _, file in ipairs(example_files) do
    it(file .. " runs on its own", function()
      local status, stdout, stderr = run_lua_file(file, env, false)
      assert_ran(file, status, stdout, stderr)
      assert.is_true(#stdout > 0, file .. " printed nothing")
    end)
  end
end)
