-- Memory over many calls: RSS after 10,000 calls and after N (default 100,000),
-- both after a full collection.  Usage: lua5.4 bench/memory.lua BASE_URL [N]
local truedy = require "truedy"
local base_url, n = arg[1], tonumber(arg[2]) or 100000
local client = assert(truedy.new{ api_key = "truedy_benchbenchbenchbenchbenchbench12",
                                  base_url = base_url, max_retries = 0 })
local function rss_kib()
  for line in io.lines("/proc/self/status") do
    local kib = line:match("^VmRSS:%s+(%d+)")
    if kib then return tonumber(kib) end
  end
end
local params = { agent_id = "agt_f9447372", phone_number = "+12125551234", variables = { n = 1 } }
local early
for i = 1, n do
  assert(client:create_call(params))
  if i == 10000 then collectgarbage(); early = rss_kib() end
end
collectgarbage()
print(string.format("rss_kib_after_10000 %d", early))
print(string.format("rss_kib_after_%d %d", n, rss_kib()))
