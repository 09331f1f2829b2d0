-- truedy.resty's rate gate, shared by nginx workers through a lua_shared_dict: after one worker
-- is told 429, no worker sends a POST /calls before the reset time the server gave.
local app = require "spec.resty.app"
local helper_epoch = require("spec.support.helper").epoch
local emu = app.emu

describe("truedy.resty's 429 gate", function()
  local server

  setup(function() server = app.start { workers = 2 } end)
  teardown(function() if server then server:stop() end end)

  local LIMIT, BATCH = 20, 8
  local function dial_body() return { agent_id = emu.agent.id, phone_number = emu.to } end

  -- One round in a rate window of `window` seconds: the window used up, a /dial meets the 429,
  -- then a /dial on each worker's connection and a batch on new connections. Returns what the
  -- checks need.
  local function round(window, pinned)
    emu.reset()
    emu.config { rate_limit = LIMIT, rate_window = window }
    -- Windows are aligned to the epoch: start with at least half of one left, so the dials go
    -- out while the gate is up (a set-up wait, not an assertion).
    local left = window - emu.now() % window
    if left < window / 2 then emu.sleep(left + 0.05) end

    -- Use up this window with the spec's own reads (not through nginx); the next read tells
    -- the reset time.
    local reset_at
    for _ = 1, LIMIT + 1 do
      local res = emu.api("GET", "/calls?limit=1")
      if res.status == 429 then
        reset_at = helper_epoch(res.json.error.details.reset_at)
        break
      end
      assert.equal(200, res.status, res.body)
    end
    assert.is_number(reset_at, "the rate limit never answered 429")

    -- One /dial meets the 429 in one worker, and waits there for the reset.
    local first = server:background("POST", "/dial", dial_body())
    local seen = emu.eventually(function()
      for _, e in ipairs(app.posts()) do
        if e.status == 429 then return e end
      end
    end, 10)
    assert.is_table(seen, "no POST /calls was answered 429")

    -- Then a /dial on each worker, and a batch of them on new connections.
    local sent = emu.now()
    for _, worker in ipairs { 0, 1 } do pinned[worker]:send("POST", "/dial", dial_body()) end
    local batch = {}
    for i = 1, BATCH do batch[i] = { method = "POST", path = "/dial", body = dial_body() } end
    local answers = server:parallel(batch)
    for _, worker in ipairs { 0, 1 } do
      local answer = pinned[worker]:receive()
      assert.equal(worker, answer.worker)
      answers[#answers + 1] = answer
    end
    answers[#answers + 1] = first.wait()
    return { reset_at = reset_at, seen = seen, sent = sent, answers = answers }
  end

  it("holds every worker's calls until reset_at after one worker's 429", function()
    -- a connection to each worker (a kept-alive connection stays with its worker)
    local pinned = server:connections(2)
    local r
    for _, window in ipairs { 6, 12, 24 } do
      r = round(window, pinned)
      if r.sent < r.reset_at then break end
      -- everything went out after the reset, which proves nothing: again, with more time
    end
    for _, conn in pairs(pinned) do conn:close() end
    assert.is_true(r.sent < r.reset_at, "the dials never went out before the reset: too slow a machine to test")

    local workers = {}
    for _, a in ipairs(r.answers) do
      assert.equal(201, a.status, a.body)
      workers[a.worker] = true
    end
    assert.is_true(workers[0] and workers[1], "answers did not come from both workers")

    -- The journal: nothing after the 429 reached the server before the reset, and there was
    -- only that one 429 (nobody else tried and failed).
    local posts = app.posts()
    assert.equal(BATCH + 4, #posts) -- the 429, its retry, one per worker, the batch
    local statuses = {}
    for _, e in ipairs(posts) do
      statuses[e.status] = (statuses[e.status] or 0) + 1
      if e.seq > r.seen.seq then
        assert.is_true(helper_epoch(e.ts) >= r.reset_at,
          ("POST /calls #%d reached the server at %s, before the reset"):format(e.seq, e.ts))
      end
    end
    assert.same({ [429] = 1, [201] = BATCH + 3 }, statuses)
  end)
end)
