-- luacheck configuration for the whole project.
std = "max"
max_line_length = 120
exclude_files = { "build/", ".tmp/", "luarocks-tree/" }

-- The emulator runs inside nginx's LuaJIT with the ngx API.
files["emulator/"] = { std = "ngx_lua" }
-- Specs run under busted.
files["spec/"] = { std = "+busted" }
-- LuaLS definition files (types/): empty function bodies and class tables that are
-- described, never used; their @field comments run long.
files["types/"] = { ignore = { "212", "241" }, max_comment_line_length = false }
