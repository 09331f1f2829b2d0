/*
 * params.c - checking and normalising create_call parameters.
 *
 * The known fields are checked against the API contract and normalised
 * (durations given as numbers become "Ns", variables become strings); every
 * other field passes through as JSON, untouched, because the API grows and
 * the client must never be stricter than the server.  The body is written
 * with sorted keys in one pass; a refusal names the field and the rule, and
 * nothing is sent.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "truedy.h"

#define E164_RULE                                                                                  \
    "must be an E.164 phone number: '+', then 2 to 15 digits, the first not 0, "                   \
    "nothing else (like +12125551234)"
#define MAX_DURATION 315576000000.0
#define DURATION_RULE "must be a duration: a number of seconds (30) or a string like \"30s\" or \"1.5s\""

static int is_e164(const char *s, size_t n) {
    size_t i;
    if (n < 3 || n > 16 || s[0] != '+' || s[1] < '1' || s[1] > '9')
        return 0;
    for (i = 2; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* "30s", "1.5s": digits, an optional fraction, then 's'. */
static int is_duration_text(const char *s, size_t n) {
    size_t i = 0;
    if (n < 2 || s[n - 1] != 's')
        return 0;
    n--;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++;
    if (i == 0)
        return 0;
    if (i < n && s[i] == '.') {
        size_t frac = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == frac)
            return 0;
    }
    return i == n;
}

static int put(td_buf *out, const char *s) { return td_buf_puts(out, s) == 0 ? 0 : -2; }

/* A string field: truedy.null when allowed, then the type, then `valid` on
 * the text (rule says what it failed). */
static int emit_text(lua_State *L, int idx, td_buf *out, td_path *path, td_fail *f, int allow_null,
                     const char *what, int (*valid)(const char *, size_t), const char *rule) {
    size_t n;
    const char *s;
    if (allow_null && td_is_null(L, idx))
        return put(out, "null");
    if (lua_type(L, idx) != LUA_TSTRING) {
        td_fail_set(f, path, "must be %s%s, got %s", what, allow_null ? " or truedy.null" : "",
                    td_type_phrase(L, idx));
        return -1;
    }
    s = lua_tolstring(L, idx, &n);
    if (!valid(s, n)) {
        td_fail_set(f, path, "%s", rule);
        return -1;
    }
    return td_json_encode_string(out, s, n) == 0 ? 0 : -2;
}

static int emit_string(lua_State *L, int idx, td_buf *out, td_path *path, td_fail *f,
                       int allow_null) {
    return emit_text(L, idx, out, path, f, allow_null, "a string", td_utf8_valid,
                     "must be valid UTF-8 text");
}

/* The number itself is never repeated in the refusal: phone numbers are
 * personal data, and error lines end up in logs. */
static int emit_phone(lua_State *L, int idx, td_buf *out, td_path *path, td_fail *f,
                      int allow_null) {
    return emit_text(L, idx, out, path, f, allow_null,
                     "a string (an E.164 phone number like +12125551234)", is_e164, E164_RULE);
}

static int emit_boolean(lua_State *L, int idx, td_buf *out, td_path *path, td_fail *f) {
    if (td_is_null(L, idx))
        return put(out, "null");
    if (lua_type(L, idx) != LUA_TBOOLEAN) {
        td_fail_set(f, path, "must be a boolean (true or false), got %s", td_type_phrase(L, idx));
        return -1;
    }
    return put(out, lua_toboolean(L, idx) ? "true" : "false");
}

static int emit_duration(lua_State *L, int idx, td_buf *out, td_path *path, td_fail *f) {
    if (td_is_null(L, idx))
        return put(out, "null");
    if (lua_type(L, idx) == LUA_TNUMBER) {
        char text[80];
        lua_Number d = lua_tonumber(L, idx);
        if (d != d || d == HUGE_VAL || d == -HUGE_VAL) {
            td_fail_set(f, path, "must be a finite number of seconds");
            return -1;
        }
        if (d < 0) {
            td_fail_set(f, path, "must not be negative");
            return -1;
        }
        if (d > MAX_DURATION) { /* protobuf's Duration limit: 10,000 years */
            td_fail_set(f, path, "must be at most %.0f seconds", MAX_DURATION);
            return -1;
        }
        if (d == 0) { /* -0.0 == 0: never "-0s", which the server refuses */
            snprintf(text, sizeof text, "\"0s\"");
        } else if (td_isinteger(L, idx)) {
            snprintf(text, sizeof text, "\"%llds\"", (long long)lua_tointeger(L, idx));
        } else {
            /* fixed notation, nanoseconds at most, trailing zeros dropped:
             * never "1e-07s", which no duration parser takes */
            size_t n = (size_t)snprintf(text, sizeof text, "\"%.9f", (double)d);
            while (n > 2 && text[n - 1] == '0')
                n--;
            if (text[n - 1] == '.' || text[n - 1] == ',')
                n--;
            if (text[n - 1] == '"') /* nothing left: it was 0 */
                text[n++] = '0';
            for (size_t i = 1; i < n; i++) /* a locale's decimal comma */
                if (text[i] == ',')
                    text[i] = '.';
            text[n++] = 's';
            text[n++] = '"';
            text[n] = '\0';
        }
        return put(out, text);
    }
    if (lua_type(L, idx) == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        if (!is_duration_text(s, n)) {
            td_fail_set(f, path, DURATION_RULE);
            return -1;
        }
        return td_json_encode_string(out, s, n) == 0 ? 0 : -2;
    }
    td_fail_set(f, path, DURATION_RULE ", got %s", td_type_phrase(L, idx));
    return -1;
}

/* A variables value: the agent's prompt takes text, so numbers and booleans
 * are sent as their exact text (integers digit for digit). */
static int emit_variable(lua_State *L, int idx, td_buf *out, td_path *path, td_fail *f) {
    char num[64];
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        return emit_string(L, idx, out, path, f, 0);
    case LUA_TBOOLEAN:
        return put(out, lua_toboolean(L, idx) ? "\"true\"" : "\"false\"");
    case LUA_TNUMBER:
        if (td_number_text(L, idx, num, sizeof num) != 0) {
            td_fail_set(f, path, "must be a finite number");
            return -1;
        }
        return td_json_encode_string(out, num, strlen(num)) == 0 ? 0 : -2;
    case LUA_TTABLE:
        td_fail_set(f, path,
                    "must be a string, number or boolean: nested tables are not allowed "
                    "(prompt variables are flat text values)");
        return -1;
    default:
        td_fail_set(f, path, "must be a string, number or boolean, got %s", td_type_phrase(L, idx));
        return -1;
    }
}

typedef td_emit_fn emit_fn;

static int emit_object(lua_State *L, int idx, td_buf *out, td_path *path, td_fail *f,
                       td_lookup_fn lookup, td_emit_fn values, const char *what);

static int emit_agent_id(lua_State *L, int idx, td_buf *out, td_path *path, td_fail *f) {
    if (lua_type(L, idx) == LUA_TSTRING && td_rawlen(L, idx) == 0) {
        td_fail_set(f, path, "must not be empty");
        return -1;
    }
    return emit_string(L, idx, out, path, f, 0);
}

static int emit_to(lua_State *L, int idx, td_buf *out, td_path *path, td_fail *f) {
    return emit_phone(L, idx, out, path, f, 0);
}

static int emit_from(lua_State *L, int idx, td_buf *out, td_path *path, td_fail *f) {
    return emit_phone(L, idx, out, path, f, 1);
}

static int emit_greeting(lua_State *L, int idx, td_buf *out, td_path *path, td_fail *f) {
    return emit_string(L, idx, out, path, f, 1);
}

static emit_fn settings_field(const char *key, size_t n) {
    (void)n;
    if (strcmp(key, "recording_enabled") == 0 || strcmp(key, "transcription_enabled") == 0)
        return emit_boolean;
    if (strcmp(key, "greeting") == 0)
        return emit_greeting;
    if (strcmp(key, "max_duration") == 0 || strcmp(key, "join_timeout") == 0)
        return emit_duration;
    return NULL;
}

static int emit_call_settings(lua_State *L, int idx, td_buf *out, td_path *path, td_fail *f) {
    return emit_object(L, idx, out, path, f, settings_field, NULL, "a table of settings");
}

static int emit_variables(lua_State *L, int idx, td_buf *out, td_path *path, td_fail *f) {
    return emit_object(L, idx, out, path, f, NULL, emit_variable, "a table of name = value pairs");
}

static emit_fn top_field(const char *key, size_t n) {
    (void)n;
    if (strcmp(key, "agent_id") == 0)
        return emit_agent_id;
    if (strcmp(key, "phone_number") == 0)
        return emit_to;
    if (strcmp(key, "from_number") == 0)
        return emit_from;
    if (strcmp(key, "call_settings") == 0)
        return emit_call_settings;
    if (strcmp(key, "variables") == 0)
        return emit_variables;
    return NULL;
}

/* An object of named fields: `lookup` gives special emitters for known
 * names, `values` (when set) checks every value, anything else is JSON. */
static int emit_object(lua_State *L, int idx, td_buf *out, td_path *path, td_fail *f,
                       td_lookup_fn lookup, td_emit_fn values, const char *what) {
    int count = 0;
    idx = td_absindex(L, idx);
    if (td_is_null(L, idx))
        return put(out, "null");
    if (lua_type(L, idx) != LUA_TTABLE) {
        td_fail_set(f, path, "must be %s or truedy.null, got %s", what, td_type_phrase(L, idx));
        return -1;
    }
    luaL_checkstack(L, 6, "truedy: parameters");
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        int kt = lua_type(L, -2);
        lua_pop(L, 1);
        if (kt != LUA_TSTRING) {
            lua_pop(L, 1);
            td_fail_set(f, path, "must be %s with string keys, not an array or a table with %s keys",
                        what, kt == LUA_TNUMBER ? "number" : "non-string");
            return -1;
        }
        count++;
    }
    return td_json_encode_object(L, idx, count, out, path, f, 1, lookup, values);
}

/* Read raw, as the encoder reads: a params table's metatable is ignored, so
 * the check and the bytes sent can never disagree. */
static int require_field(lua_State *L, int idx, const char *name, const char *rule, td_fail *f) {
    int present;
    lua_pushstring(L, name);
    lua_rawget(L, idx);
    present = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (!present) {
        td_fail_field(f, name, "%s", rule);
        return -1;
    }
    return 0;
}

int td_params_create_call(lua_State *L, int idx, td_buf *body, td_fail *f) {
    td_path path;
    memset(&path, 0, sizeof path);
    idx = td_absindex(L, idx);
    if (require_field(L, idx, "agent_id", "is required: the id of the agent that places the call", f) ||
        require_field(L, idx, "phone_number",
                      "is required: the number to call, in E.164 form like +12125551234", f))
        return -1;
    return emit_object(L, idx, body, &path, f, top_field, NULL, "a table");
}
