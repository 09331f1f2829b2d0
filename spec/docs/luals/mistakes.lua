-- Mistakes, for spec/docs/luals_spec.lua: lua-language-server, with types/ as its library, must
-- report each line marked `expect: <diagnostic>` with that diagnostic, and nothing else.
-- Never run (it is checked, not executed).
local truedy = require "truedy"

local client = assert(truedy.new { api_key = 1 })                 -- expect: assign-type-mismatch
client:create_cal({})                                             -- expect: undefined-field
local res = assert(client:get_call("call_1"))
print(res.data.idd)                                               -- expect: undefined-field
local _, err = client:get_call("call_1")
print(err and err.kinds)                                          -- expect: undefined-field
client:poll("soon")                                               -- expect: param-type-mismatch
local p = assert(client:start_each_call(nil, { on_call = print }))
print(p:results())                                                -- expect: undefined-field
---@type truedy.CallOptions
local options = {}
print(options.max_retries)                                        -- expect: deprecated
local h = assert(client:start_call({ agent_id = "a", phone_number = "+12125551234" }))
print(h:stat())                                                   -- expect: undefined-field
require("truedy.resty").follow.start()                            -- expect: deprecated
