-- The benchmark's clients, in one place: what each one does, how it is run, how many calls it
-- makes, and which truedy client it is compared with.  To add a client: one entry here (its
-- program takes URL WARMUP N and prints "calls N seconds S", or "unavailable <why>" and exits 3).
--
-- Fields: name; label (exactly what it does, printed with every result); argv (the command
-- before URL WARMUP N; BUILD is build/bench); calls (function of the -n calls: how many this
-- client makes; nil: the same); vs (the truedy client a ratio is taken against; nil for truedy's
-- own clients); instr (measured by make bench-instr), or not_instr (why not).
local BUILD = os.getenv("BENCH_BUILD") or "build/bench"

return {
  {
    name = "truedy",
    label = "truedy client:create_call, one client (keep-alive), params checked and encoded, "
            .. "answer decoded to Lua tables",
    argv = { "lua5.4", "bench/clients.lua", "truedy" },
    instr = true,
  },
  {
    name = "c-easy",
    label = "C, libcurl, one reused easy handle (keep-alive); body pre-encoded, answer kept in "
            .. "memory, NOT decoded",
    argv = { BUILD .. "/c_easy" },
    vs = "truedy",
    instr = true,
  },
  {
    name = "binding",
    label = "minimal Lua 5.4 libcurl binding (bench/minicurl.c, one reused easy handle) + "
            .. "cjson.encode / cjson.decode in Lua",
    argv = { "lua5.4", "bench/clients.lua", "binding" },
    vs = "truedy",
    instr = true,
  },
  {
    name = "luasocket",
    label = "LuaSocket http.request + cjson, a NEW CONNECTION PER CALL (LuaSocket does not keep "
            .. "alive)",
    argv = { "lua5.4", "bench/clients.lua", "luasocket" },
    vs = "truedy",
    instr = true,
  },
  {
    name = "curl-shell",
    label = "curl command in a shell loop, a process and a connection per call, answer kept, "
            .. "not decoded; 1/100 of the calls",
    argv = { "bench/curl-loop" },
    calls = function(n) return math.max(20, n // 100) end,
    warmup = function(w) return math.min(w, 5) end,
    vs = "truedy",
    not_instr = "a process per call: callgrind would count one curl process, not the loop",
  },
  {
    name = "truedy-async16",
    label = "truedy client:start_call + client:poll, 16 calls in flight on one client",
    argv = { "lua5.4", "bench/clients.lua", "truedy-async16" },
    instr = true,
  },
  {
    name = "c-multi16",
    label = "C, libcurl multi, 16 transfers in flight (16 reused easy handles); answers kept, "
            .. "NOT decoded",
    argv = { BUILD .. "/c_multi" },
    vs = "truedy-async16",
    instr = true,
  },
}
