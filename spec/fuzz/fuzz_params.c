/*
 * fuzz_params.c - libFuzzer target for the create_call params encoder:
 * the input bytes are a small program that builds a Lua table (strings of
 * any bytes, integers, doubles with NaN/inf/-0, booleans, truedy.null,
 * nested and self-referencing tables, functions, the known field names),
 * which td_params_create_call checks and encodes.
 *
 * Checked: no crash or sanitizer report; never "out of memory" here; a
 * refusal names a field and a rule; an accepted table gives JSON that
 * lua-cjson decodes, with agent_id and phone_number, and the same bytes
 * when encoded twice.
 */
#include "harness.h"

static const char *const names[] = {
    "agent_id", "phone_number", "from_number", "call_settings", "variables",
    "recording_enabled", "transcription_enabled", "greeting", "max_duration",
    "join_timeout", "metadata", "x", "", "first_name"};
#define NNAMES (sizeof names / sizeof names[0])

static int noop(lua_State *L) {
    (void)L;
    return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    lua_State *L = fuzz_state();
    int top = lua_gettop(L), base, rc, rc2;
    size_t i = 0;
    td_buf body = {0}, again = {0};
    td_fail f, f2;
    lua_newtable(L); /* the params table */
    base = lua_gettop(L);
    while (i < size && lua_gettop(L) < base + 40) {
        unsigned char op = data[i++];
        switch (op % 14) {
        case 0: { /* a string of the next n bytes */
            size_t len = i < size ? data[i++] % 64 : 0;
            if (len > size - i)
                len = size - i;
            lua_pushlstring(L, (const char *)data + i, len);
            i += len;
            break;
        }
        case 1: lua_pushstring(L, names[(i < size ? data[i++] : 0) % NNAMES]); break;
        case 2: {
            long long v = 0;
            size_t k;
            for (k = 0; k < 8 && i < size; k++)
                v = (long long)(((unsigned long long)v << 8) | data[i++]);
            lua_pushinteger(L, (lua_Integer)v);
            break;
        }
        case 3: {
            double d = 0;
            unsigned char raw[8] = {0};
            size_t k;
            for (k = 0; k < 8 && i < size; k++)
                raw[k] = data[i++];
            memcpy(&d, raw, sizeof d);
            lua_pushnumber(L, d);
            break;
        }
        case 4: lua_pushboolean(L, op & 16); break;
        case 5: lua_pushlightuserdata(L, NULL); break; /* truedy.null */
        case 6: lua_newtable(L); break;
        case 7: /* t[k] = v with t, k, v the three values on top */
            if (lua_gettop(L) >= base + 2 && lua_istable(L, -3) && !lua_isnil(L, -2) &&
                !(lua_type(L, -2) == LUA_TNUMBER && lua_tonumber(L, -2) != lua_tonumber(L, -2)))
                lua_rawset(L, -3);
            else if (lua_gettop(L) > base)
                lua_pop(L, 1);
            break;
        case 8: /* append the top to the table below it */
            if (lua_gettop(L) >= base + 1 && lua_istable(L, -2))
                lua_rawseti(L, -2, (int)td_rawlen(L, -2) + 1);
            else if (lua_gettop(L) > base)
                lua_pop(L, 1);
            break;
        case 9: lua_pushcfunction(L, noop); break;
        case 10: lua_pushstring(L, "+12125551234"); break;
        case 11: lua_pushstring(L, "agt_f9447372"); break;
        case 12: /* t[name] = t: a table that contains itself */
            if (lua_istable(L, -1)) {
                lua_pushstring(L, names[(op / 14) % NNAMES]);
                lua_pushvalue(L, -2);
                lua_rawset(L, -3);
            }
            break;
        default: /* a value into the params table under a known name */
            if (lua_gettop(L) > base) {
                lua_pushstring(L, names[(op / 14) % NNAMES]);
                lua_insert(L, -2);
                lua_rawset(L, base);
            }
            break;
        }
    }
    lua_settop(L, base);
    memset(&f, 0, sizeof f);
    memset(&f2, 0, sizeof f2);
    rc = td_params_create_call(L, base, &body, &f);
    rc2 = td_params_create_call(L, base, &again, &f2);
    if (rc == -2 || rc2 != rc)
        abort();
    if (rc == -1 && (f.rule[0] == '\0' || strcmp(f.rule, f2.rule) != 0))
        abort(); /* a refusal says what, the same each time */
    if (rc == 0) {
        if (body.len != again.len || memcmp(body.data, again.data, body.len) != 0)
            abort(); /* equal tables, equal bytes: the idempotency store relies on it */
        lua_pushlstring(L, body.data, body.len);
        fuzz_check(L, "check_body", 1);
    }
    td_buf_free(&body);
    td_buf_free(&again);
    lua_settop(L, top);
    return 0;
}
