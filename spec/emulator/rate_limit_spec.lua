-- The per-key rate limit: fixed windows, 429 rate_limit_exceeded with limit and reset_at.
local emu = require "spec.emulator.emu"

-- Seconds since the epoch of an ISO 8601 UTC timestamp (days-from-civil, independent of TZ).
local function epoch(iso)
  local y, m, d, h, mi, s = iso:match("^(%d+)%-(%d+)%-(%d+)T(%d+):(%d+):(%d+)")
  y, m, d = tonumber(y), tonumber(m), tonumber(d)
  if m <= 2 then y = y - 1 end
  local floor = math.floor -- not //: plain `busted` may run this under Lua 5.1 or 5.2
  local era = floor(y / 400)
  local yoe = y - era * 400
  local doy = floor((153 * (m > 2 and m - 3 or m + 9) + 2) / 5) + d - 1
  local days = era * 146097 + yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy - 719468
  return days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(s)
end

-- Tests count requests inside one window: do not start one just before a window edge.
local function away_from_window_edge(window)
  local into = emu.now() % window
  if into > window - 1.5 then emu.sleep(window - into + 0.05) end
end

describe("emulator rate limit", function()
  before_each(emu.reset)

  it("defaults to 100 requests per 60 s window", function()
    local cfg = emu.control("GET", "/config").data
    assert.are.equal(100, cfg.rate_limit)
    assert.are.equal(60, cfg.rate_window)
  end)

  it("answers 429 rate_limit_exceeded past the limit, with limit and reset_at, without Retry-After", function()
    emu.config { rate_limit = 3 }
    away_from_window_edge(60)
    for i = 1, 3 do
      assert.are.equal(200, emu.api("GET", "/calls").status, "request " .. i)
    end
    local before = os.time()
    local res = emu.api("POST", "/calls", emu.call_body())
    assert.are.equal(429, res.status)
    local err = res.json.error
    assert.are.equal("rate_limit_exceeded", err.code)
    assert.are.equal("Rate limit exceeded", err.message)
    assert.are.equal(3, err.details.limit)
    assert.matches(emu.ISO_US, err.details.reset_at)
    assert.matches(":00%.000000Z$", err.details.reset_at) -- a minute boundary
    local reset = epoch(err.details.reset_at)
    assert.is_true(reset > before - 1 and reset <= before + 61, "reset_at within the next minute")
    assert.matches("^req_", res.json.meta.request_id)
    assert.is_nil(res.headers["retry-after"])
    for name in pairs(res.headers) do assert.is_nil(name:find("ratelimit")) end
  end)

  it("refuses the call itself: a limited POST creates nothing", function()
    emu.config { rate_limit = 1, rate_window = 86400 }
    emu.create_call()
    assert.are.equal(429, emu.api("POST", "/calls", emu.call_body()).status)
    emu.config { rate_limit = 0 }
    assert.are.equal(1, #emu.list_calls())
  end)

  it("counts per API key", function()
    emu.config { rate_limit = 2, rate_window = 86400 }
    emu.api("GET", "/calls")
    emu.api("GET", "/calls")
    assert.are.equal(429, emu.api("GET", "/calls").status)
    assert.are.equal(200, emu.api("GET", "/calls", nil, { key = emu.other_key }).status)
  end)

  it("does not count unknown routes, wrong methods or refused credentials (answered before it)", function()
    emu.config { rate_limit = 1, rate_window = 86400 }
    for _ = 1, 3 do
      assert.are.equal(404, emu.api("GET", "/agents").status)
      assert.are.equal(405, emu.api("DELETE", "/calls").status)
      assert.are.equal(401, emu.api("GET", "/calls", nil, { key = "truedy_" .. ("x"):rep(32) }).status)
    end
    assert.are.equal(200, emu.api("GET", "/calls").status)
    assert.are.equal(429, emu.api("GET", "/calls").status)
  end)

  it("counts every request to an endpoint with a seeded key, whatever its answer", function()
    emu.config { rate_limit = 3, rate_window = 86400 }
    for _ = 1, 5 do
      assert.are.equal(401, emu.api("GET", "/calls", nil, { key = false }).status)
    end
    assert.are.equal(201, emu.api("POST", "/calls", emu.call_body()).status)
    assert.are.equal(422, emu.api("POST", "/calls", emu.call_body { phone_number = "x" }).status)
    assert.are.equal(404, emu.api("GET", "/calls/call_nope").status)
    assert.are.equal(429, emu.api("GET", "/calls").status)
  end)

  it("opens a new window when the old one ends", function()
    emu.config { rate_limit = 1, rate_window = 1 }
    local got_429
    -- within two 1 s windows we must see a refusal, then an acceptance in the next window
    local deadline = emu.now() + 3
    while emu.now() < deadline do
      local res = emu.api("GET", "/calls")
      if res.status == 429 then
        got_429 = res
        break
      end
    end
    assert.is_table(got_429, "a second request in one window is refused")
    emu.sleep(1.05)
    assert.are.equal(200, emu.api("GET", "/calls").status)
  end)

  it("can be disabled with rate_limit 0", function()
    emu.config { rate_limit = 0 }
    for i = 1, 120 do
      local status = emu.api("GET", "/calls").status
      if status ~= 200 then
        assert.are.equal(200, status, "request " .. i)
      end
    end
  end)

  it("does not limit the control surface", function()
    emu.config { rate_limit = 1, rate_window = 86400 }
    emu.api("GET", "/calls")
    assert.are.equal(429, emu.api("GET", "/calls").status)
    for _ = 1, 5 do emu.control("GET", "/journal") end
  end)

  it("starts over after a reset", function()
    emu.config { rate_limit = 1, rate_window = 86400 }
    emu.api("GET", "/calls")
    emu.reset()
    emu.config { rate_limit = 1 }
    assert.are.equal(200, emu.api("GET", "/calls").status)
  end)
end)
