-- luacheck configuration for the whole project.
std = "max"
max_line_length = 120
exclude_files = { "build/", ".tmp/", "luarocks-tree/" }

-- The emulator runs inside nginx's LuaJIT with the ngx API.
files["emulator/"] = { std = "ngx_lua" }
-- Specs run under busted.
files["spec/"] = { std = "+busted" }
