-- busted helper (see .busted): when no emulator was started by the test
-- runner (TRUEDY_EMULATOR_URL unset), start one for this run and stop it
-- when the suite ends.  The specs find it through TRUEDY_TEST_EMULATOR_URL.
if os.getenv("TRUEDY_EMULATOR_URL") then return end

local busted = require "busted"
local dir = os.tmpname()
os.remove(dir)
local pipe = assert(io.popen("emulator/truedy-emulator start --dir '" .. dir .. "'"))
local output = pipe:read("*a")
pipe:close()
local url = output:match("TRUEDY_EMULATOR_URL=(%S+)")
if not url then
  error("could not start the emulator (emulator/truedy-emulator start): " .. output)
end
rawset(_G, "TRUEDY_TEST_EMULATOR_URL", url)

busted.subscribe({ "suite", "end" }, function()
  os.execute("emulator/truedy-emulator stop --dir '" .. dir .. "' >/dev/null 2>&1; rm -rf '" .. dir .. "'")
  return nil, true
end)
