-- The prelude of every README.md block that spec/docs/docs_spec.lua runs (not of the
-- examples, which must stand alone).  A block may use, without defining them:
--   truedy    require "truedy"
--   client    truedy.new(): TRUEDY_API_KEY / TRUEDY_BASE_URL point at the emulator
--   call_id   the id of a real call on the emulator, already ended
local truedy = require "truedy"
rawset(_G, "truedy", truedy)
rawset(_G, "client", assert(truedy.new()))
rawset(_G, "call_id", assert(os.getenv("TRUEDY_DOCS_CALL_ID"), "TRUEDY_DOCS_CALL_ID is not set"))
