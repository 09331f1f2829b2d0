/*
 * harness.h - what both libFuzzer targets share: one Lua 5.4 state with
 * lua-cjson and truedy's error metatable, and Lua checkers that abort the
 * run (a libFuzzer "crash") when an invariant breaks.
 */
#ifndef TRUEDY_FUZZ_HARNESS_H
#define TRUEDY_FUZZ_HARNESS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../csrc/truedy.h"

/* The key a hostile server may echo back: it must never reach the caller. */
#define FUZZ_KEY "truedy_FuzzKey0123456789abcdefghijklmnopq"

static const char fuzz_checkers[] =
    "local KEY = ...\n"
    "local function strings(v, seen, out)\n"
    "  if type(v) == 'string' then out[#out + 1] = v\n"
    "  elseif type(v) == 'table' and not seen[v] then\n"
    "    seen[v] = true\n"
    "    for k, x in pairs(v) do strings(k, seen, out); strings(x, seen, out) end\n"
    "  end\n"
    "  return out\n"
    "end\n"
    "local function no_key(...)\n"
    "  for i = 1, select('#', ...) do\n"
    "    for _, s in ipairs(strings(select(i, ...), {}, {})) do\n"
    "      assert(not s:find(KEY, 1, true), 'the key reached the caller: ' .. s)\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local function one_line(err)\n"
    "  local line = tostring(err)\n"
    "  assert(type(line) == 'string' and not line:find('[%c\\127]'), 'not one line: ' .. line)\n"
    "end\n"
    "function check_outcome(n, a, b)\n"
    "  if n == 1 then assert(type(a) == 'table', 'envelope not a table')\n"
    "  else\n"
    "    assert(n == 2 and a == nil and type(b) == 'table', 'not nil, err')\n"
    "    assert(type(b.kind) == 'string' and type(b.message) == 'string', 'error without kind/message')\n"
    "    assert(type(b.retryable) == 'boolean', 'error without retryable')\n"
    "    one_line(b)\n"
    "  end\n"
    "  no_key(a, b)\n"
    "end\n"
    "local function same(a, b, seen)\n"
    "  if type(a) ~= type(b) then return false end\n"
    "  if type(a) == 'number' then\n"
    "    if math.type(a) ~= math.type(b) then return false end\n"
    "    return a == b or (a ~= a and b ~= b)\n"
    "  end\n"
    "  if type(a) ~= 'table' then return a == b end\n"
    "  if seen[a] then return seen[a] == b end\n"
    "  seen[a] = b\n"
    "  for k, v in pairs(a) do if not same(v, b[k], seen) then return false end end\n"
    "  for k in pairs(b) do if a[k] == nil then return false end end\n"
    "  return true\n"
    "end\n"
    "function check_same(ok1, a, ok2, b)\n"
    "  assert(ok1 == ok2, 'stripping changed whether the text decodes')\n"
    "  if ok1 then assert(same(a, b, {}), 'stripping changed what the text decodes to') end\n"
    "end\n"
    "function check_body(body)\n"
    "  local cjson = require('cjson')\n"
    "  local ok, v = pcall(cjson.decode, body)\n"
    "  assert(ok and type(v) == 'table', 'the encoder wrote JSON that does not decode: ' .. body)\n"
    "  assert(type(v.agent_id) == 'string' and type(v.phone_number) == 'string', 'required fields lost')\n"
    "end\n";

static lua_State *fuzz_state(void) {
    static lua_State *L;
    if (L != NULL)
        return L;
    L = luaL_newstate();
    luaL_openlibs(L);
    td_json_init(L);
    lua_newtable(L); /* stands for the module table td_error_init writes to */
    td_error_init(L);
    lua_pop(L, 1);
    if (luaL_loadstring(L, fuzz_checkers) != LUA_OK) {
        fprintf(stderr, "fuzz: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_pushstring(L, FUZZ_KEY);
    lua_call(L, 1, 0);
    return L;
}

/* Call the global checker `name` with the n values on top (popped);
 * abort on failure so that libFuzzer keeps the input. */
static void fuzz_check(lua_State *L, const char *name, int n) {
    lua_getglobal(L, name);
    lua_insert(L, -n - 1);
    if (lua_pcall(L, n, 0, 0) != LUA_OK) {
        fprintf(stderr, "fuzz: %s failed: %s\n", name, lua_tostring(L, -1));
        abort();
    }
}

#endif
