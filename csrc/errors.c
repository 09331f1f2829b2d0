/*
 * errors.c - the one error object of truedy.
 *
 * An error is a plain Lua table with stable fields (kind, message, status,
 * code, details, field, request_id, retryable, attempts, idempotency_key,
 * retry_after, curl_code) and a metatable whose __tostring prints one
 * readable line.  Being a plain table, it survives copies that drop
 * metatables (ngx.run_worker_thread); truedy.format_error prints it then.
 */
#include <stdio.h>
#include <string.h>

#include "truedy.h"

void td_set_str(lua_State *L, const char *k, const char *v) {
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

void td_set_int(lua_State *L, const char *k, lua_Integer v) {
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

void td_set_bool(lua_State *L, const char *k, int v) {
    lua_pushboolean(L, v);
    lua_setfield(L, -2, k);
}

void td_set_num(lua_State *L, const char *k, lua_Number v) {
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

void td_error_new(lua_State *L, const char *kind, const char *message) {
    lua_createtable(L, 0, 12);
    td_set_str(L, "kind", kind);
    td_set_str(L, "message", message);
    td_set_bool(L, "retryable", 0);
    luaL_getmetatable(L, TD_ERROR_MT);
    lua_setmetatable(L, -2);
}

int td_push_invalid(lua_State *L, const td_fail *f) {
    lua_pushnil(L);
    td_error_new(L, "invalid_params", f->rule);
    if (f->field[0] != '\0')
        td_set_str(L, "field", f->field);
    td_set_int(L, "attempts", 0);
    return 2;
}

int td_push_config_error(lua_State *L, const char *message) {
    lua_pushnil(L);
    td_error_new(L, "config", message);
    td_set_int(L, "attempts", 0);
    return 2;
}

/* Field of the table at idx as a string, or NULL (numbers are converted
 * on a copy so the table is untouched). */
static const char *field_str(lua_State *L, int idx, const char *k) {
    const char *s = NULL;
    lua_getfield(L, idx, k);
    if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER)
        s = lua_tostring(L, -1);
    /* the value stays on the stack until the caller's lua_settop */
    return s;
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    size_t need = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3
                                                          : (s[0] & 0xf8) == 0xf0 ? 4 : 0;
    return (need > 0 && need <= n && td_utf8_valid((const char *)s, need)) ? need : 0;
}

/* Add text that came from a server to the line, kept on one printable
 * line: control characters (C0, DEL, C1), the Unicode line separators and
 * bytes that are not UTF-8 are written as escapes (\n, \x1b, \u2028), so
 * a hostile answer cannot add log lines or move a terminal's cursor. */
static void add_text(luaL_Buffer *b, const char *text) {
    const unsigned char *s = (const unsigned char *)text;
    size_t n = strlen(text), i = 0;
    char esc[16];
    while (i < n) {
        size_t len = utf8_len(s + i, n - i);
        unsigned cp = 0;
        if (len == 1)
            cp = s[i];
        else if (len == 2)
            cp = ((unsigned)(s[i] & 0x1f) << 6) | (s[i + 1] & 0x3f);
        else if (len == 3)
            cp = ((unsigned)(s[i] & 0x0f) << 12) | ((unsigned)(s[i + 1] & 0x3f) << 6) |
                 (s[i + 2] & 0x3f);
        if (len == 0) {
            snprintf(esc, sizeof esc, "\\x%02x", s[i]);
            luaL_addstring(b, esc);
            i++;
            continue;
        }
        if (cp == '\n' || cp == '\r' || cp == '\t') {
            luaL_addstring(b, cp == '\n' ? "\\n" : cp == '\r' ? "\\r" : "\\t");
        } else if (len == 1 && (cp < 0x20 || cp == 0x7f)) {
            snprintf(esc, sizeof esc, "\\x%02x", cp);
            luaL_addstring(b, esc);
        } else if ((cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029) {
            snprintf(esc, sizeof esc, "\\u%04x", cp);
            luaL_addstring(b, esc);
        } else {
            luaL_addlstring(b, text + i, len);
        }
        i += len;
    }
}

/* truedy.format_error(err) and __tostring: one line, e.g.
 *   truedy: 422 validation_error: phone_number: Must be in E.164 format (request_id=req_1)
 */
static int error_tostring(lua_State *L) {
    luaL_Buffer b;
    const char *kind, *code, *message, *field, *request_id, *reason = NULL;
    lua_Integer status = 0, attempts = 0;
    lua_settop(L, 1);
    kind = lua_type(L, 1) == LUA_TTABLE ? field_str(L, 1, "kind") : NULL;
    if (kind == NULL) { /* not one of ours (no kind): never recurse into __tostring */
        if (lua_type(L, 1) == LUA_TSTRING || lua_type(L, 1) == LUA_TNUMBER)
            lua_pushstring(L, lua_tostring(L, 1));
        else
            lua_pushfstring(L, "%s: %p", luaL_typename(L, 1), lua_topointer(L, 1));
        return 1;
    }
    code = field_str(L, 1, "code");
    message = field_str(L, 1, "message");
    field = field_str(L, 1, "field");
    request_id = field_str(L, 1, "request_id");
    /* range-checked before the cast: the table may come from anywhere */
    lua_getfield(L, 1, "status");
    if (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) >= 0 && lua_tonumber(L, -1) < 1e6)
        status = (lua_Integer)lua_tonumber(L, -1);
    lua_getfield(L, 1, "attempts");
    if (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) >= 0 && lua_tonumber(L, -1) < 1e6)
        attempts = (lua_Integer)lua_tonumber(L, -1);
    lua_getfield(L, 1, "details");
    if (lua_type(L, -1) == LUA_TTABLE)
        reason = field_str(L, -1, "reason");

    luaL_buffinit(L, &b);
    luaL_addstring(&b, "truedy: ");
    if (strcmp(kind, "api") == 0) {
        if (status > 0) {
            char num[32];
            snprintf(num, sizeof num, "%lld ", (long long)status);
            luaL_addstring(&b, num);
        }
        add_text(&b, code ? code : "error");
        luaL_addstring(&b, ": ");
        if (field && reason) {
            add_text(&b, field);
            luaL_addstring(&b, ": ");
            add_text(&b, reason);
        } else if (message) {
            add_text(&b, message);
        }
    } else {
        add_text(&b, kind);
        luaL_addstring(&b, ": ");
        if (field) {
            add_text(&b, field);
            luaL_addstring(&b, ": ");
        }
        add_text(&b, message ? message : "unknown error");
    }
    if (request_id) {
        luaL_addstring(&b, " (request_id=");
        add_text(&b, request_id);
        luaL_addstring(&b, ")");
    }
    if (attempts > 1) {
        char num[48];
        snprintf(num, sizeof num, " after %lld attempts", (long long)attempts);
        luaL_addstring(&b, num);
    }
    luaL_pushresult(&b);
    return 1;
}

/* "text" .. err and err .. "text" */
static int error_concat(lua_State *L) {
    int i;
    for (i = 1; i <= 2; i++) {
        lua_pushcfunction(L, error_tostring);
        lua_pushvalue(L, i);
        lua_call(L, 1, 1);
    }
    lua_concat(L, 2);
    return 1;
}

/* truedy.restore_error(t): a copy of an error that lost its metatable on the
 * way (ngx.run_worker_thread, luv's new_work, a serializer) gets it back, so
 * tostring() and concatenation print the line again.  Anything that is not a
 * table with a string kind is returned untouched. */
static int error_restore(lua_State *L) {
    lua_settop(L, 1);
    if (lua_type(L, 1) == LUA_TTABLE && lua_getmetatable(L, 1) == 0) {
        lua_getfield(L, 1, "kind");
        if (lua_type(L, -1) == LUA_TSTRING) {
            luaL_getmetatable(L, TD_ERROR_MT);
            lua_setmetatable(L, 1);
        }
    }
    lua_settop(L, 1);
    return 1;
}

void td_error_init(lua_State *L) {
    luaL_newmetatable(L, TD_ERROR_MT);
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, error_concat);
    lua_setfield(L, -2, "__concat");
    lua_pop(L, 1);
    /* module table is on top: export the formatter */
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "format_error");
    lua_pushcfunction(L, error_restore);
    lua_setfield(L, -2, "restore_error");
}
