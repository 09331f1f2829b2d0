/*
 * options.c - every option of truedy in one table, read in one place.
 *
 * A row is: the name, an older spelling kept as an alias (or NULL), the
 * type, the allowed range, the default, where it may be given (scope), the
 * environment variable it falls back to, and where the value goes.  A new
 * option is one row here and one field in td_settings.
 *
 * Naming: retry settings all start with `retry_` (`retries` is the count),
 * and `attempt_timeout` says it bounds one attempt (`timeout` meant that in
 * truedy.new but the whole wait in truedy.follow: it stays as an alias).
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "truedy.h"

typedef enum {
    OPT_NUMBER,   /* a finite number in [min, max] */
    OPT_WHOLE,    /* the same, and a whole number */
    OPT_BOOL,
    OPT_STRING,   /* no NUL bytes */
    OPT_FUNCTION, /* stored as a stack index */
    OPT_TABLE,    /* stored as a stack index */
    OPT_ANY       /* stored as a stack index; the call checks it (refusals are invalid_params) */
} opt_type;

typedef struct td_option {
    const char *name;
    const char *alias;
    opt_type type;
    unsigned scope;
    double min, max, def;
    const char *env;
    size_t value;     /* offsetof(td_settings, ...) */
    size_t length;    /* strings: offsetof the length field, or (size_t)-1 */
} td_option;

#define NOLEN ((size_t)-1)
#define AT(f) offsetof(td_settings, f)
#define CLIENT TD_SCOPE_CLIENT
#define CALL TD_SCOPE_CALL
#define DAY 86400.0

static const td_option options[] = {
    {"api_key", NULL, OPT_STRING, CLIENT, 0, 0, 0, "TRUEDY_API_KEY", AT(api_key), AT(api_key_len)},
    {"base_url", NULL, OPT_STRING, CLIENT, 0, 0, 0, "TRUEDY_BASE_URL", AT(base_url), AT(base_url_len)},
    {"user_agent", NULL, OPT_STRING, CLIENT, 0, 0, 0, NULL, AT(user_agent), NOLEN},
    {"ca_file", NULL, OPT_STRING, CLIENT, 0, 0, 0, NULL, AT(ca_file), NOLEN},
    {"ca_path", NULL, OPT_STRING, CLIENT, 0, 0, 0, NULL, AT(ca_path), NOLEN},
    {"allow_insecure_http", NULL, OPT_BOOL, CLIENT, 0, 1, 0, NULL, AT(allow_insecure_http), 0},
    {"debug", NULL, OPT_BOOL, CLIENT, 0, 1, 0, NULL, AT(debug), 0},
    {"connect_timeout", NULL, OPT_NUMBER, CLIENT, 0.001, DAY, 10, NULL, AT(connect_timeout), 0},
    {"max_connections", NULL, OPT_WHOLE, CLIENT, 1, TD_POOL_MAX, 8, NULL, AT(max_connections), 0},
    {"max_response_bytes", NULL, OPT_WHOLE, CLIENT, 1024, 1073741824.0, 4194304, NULL, AT(max_response_bytes), 0},
    {"attempt_timeout", "timeout", OPT_NUMBER, CLIENT | CALL, 0.001, DAY, 30, NULL, AT(attempt_timeout), 0},
    {"retries", "max_retries", OPT_WHOLE, CLIENT | CALL, 0, 10, 2, NULL, AT(retries), 0},
    {"retry_base_delay", NULL, OPT_NUMBER, CLIENT | CALL, 0, 3600, 0.5, NULL, AT(retry_base_delay), 0},
    {"retry_max_delay", NULL, OPT_NUMBER, CLIENT | CALL, 0, 3600, 8, NULL, AT(retry_max_delay), 0},
    {"retry_max_wait", "max_retry_wait", OPT_NUMBER, CLIENT | CALL, 0, 3600, 60, NULL, AT(retry_max_wait), 0},
    {"idempotency_key", NULL, OPT_ANY, TD_SCOPE_CREATE, 0, 0, 0, NULL, AT(idempotency_key), 0},
    {"query", NULL, OPT_TABLE, TD_SCOPE_LIST, 0, 0, 0, NULL, AT(query), 0},
    {"on_done", NULL, OPT_FUNCTION, TD_SCOPE_START, 0, 0, 0, NULL, AT(on_done), 0},
    {"delay", NULL, OPT_NUMBER, TD_SCOPE_START, 0, DAY, 0, NULL, AT(delay), 0},
    {NULL, NULL, OPT_ANY, 0, 0, 0, 0, NULL, 0, 0},
};

#define FIELD(s, off, type) ((type *)(void *)((char *)(s) + (off)))

void td_settings_defaults(td_settings *s) {
    const td_option *o;
    memset(s, 0, sizeof *s);
    for (o = options; o->name; o++)
        if (o->type == OPT_NUMBER || o->type == OPT_WHOLE)
            *FIELD(s, o->value, double) = o->def;
}

static const td_option *find(const char *name, int *as_alias) {
    const td_option *o;
    for (o = options; o->name; o++) {
        if (strcmp(name, o->name) == 0) {
            *as_alias = 0;
            return o;
        }
        if (o->alias && strcmp(name, o->alias) == 0) {
            *as_alias = 1;
            return o;
        }
    }
    return NULL;
}

static const char *scope_phrase(unsigned scope) {
    if (scope & TD_SCOPE_CLIENT)
        return "a client option: give it to truedy.new";
    if (scope & TD_SCOPE_CREATE)
        return "an option of create_call and start_call only";
    if (scope & TD_SCOPE_LIST)
        return "an option of list_calls and start_list_calls only";
    return "an option of the start_* methods only";
}

/* Every name in the table at t must be an option of this scope. */
static void check_names(lua_State *L, int t, unsigned scope, const char *fname) {
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
        const td_option *o;
        int as_alias;
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "%s: option names must be strings", fname);
        o = find(lua_tostring(L, -1), &as_alias);
        if (o == NULL) {
            luaL_error(L, "%s: unknown option '%s'", fname, lua_tostring(L, -1));
            return;
        }
        if (!(o->scope & scope))
            luaL_error(L, "%s: '%s' is %s", fname, lua_tostring(L, -1), scope_phrase(o->scope));
    }
}

/* Push the value given for o (by name or alias), or nil; *given says which
 * spelling was used. */
static void get_value(lua_State *L, int t, const td_option *o, const char *fname,
                      const char **given) {
    *given = o->name;
    lua_getfield(L, t, o->name);
    if (o->alias == NULL)
        return;
    lua_getfield(L, t, o->alias);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    if (!lua_isnil(L, -2))
        luaL_error(L, "%s: options '%s' and '%s' are the same option: give one of them", fname,
                   o->name, o->alias);
    lua_remove(L, -2);
    *given = o->alias;
}

static void read_number(lua_State *L, const td_option *o, const char *fname, const char *given,
                        td_settings *s) {
    double v;
    if (lua_type(L, -1) != LUA_TNUMBER)
        luaL_error(L, "%s: option '%s' must be a number, got %s", fname, given,
                   luaL_typename(L, -1));
    v = (double)lua_tonumber(L, -1);
    if (!(v >= o->min && v <= o->max)) {
        char range[128]; /* lua_pushfstring has no %g */
        snprintf(range, sizeof range, "between %g and %g", o->min, o->max);
        luaL_error(L, "%s: option '%s' must be %s", fname, given, range);
    }
    if (o->type == OPT_WHOLE && v != floor(v))
        luaL_error(L, "%s: option '%s' must be a whole number", fname, given);
    *FIELD(s, o->value, double) = v;
}

static void read_string(lua_State *L, const td_option *o, const char *fname, const char *given,
                        td_settings *s) {
    size_t n;
    const char *v;
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "%s: option '%s' must be a string, got %s", fname, given,
                   luaL_typename(L, -1));
    v = lua_tolstring(L, -1, &n);
    if (o->length == NOLEN && strlen(v) != n) /* a NUL would silently cut the value */
        luaL_error(L, "%s: option '%s' must not contain NUL bytes", fname, given);
    *FIELD(s, o->value, const char *) = v;
    if (o->length != NOLEN)
        *FIELD(s, o->length, size_t) = n;
}

void td_options_read(lua_State *L, int t, unsigned scope, const char *fname, td_settings *s) {
    const td_option *o;
    if (t != 0) {
        t = td_absindex(L, t);
        check_names(L, t, scope, fname);
    }
    for (o = options; o->name; o++) {
        const char *given;
        if (!(o->scope & scope))
            continue;
        if (t != 0) {
            get_value(L, t, o, fname, &given);
            if (lua_isnil(L, -1)) {
                lua_pop(L, 1);
            } else {
                switch (o->type) {
                case OPT_NUMBER:
                case OPT_WHOLE:
                    read_number(L, o, fname, given, s);
                    lua_pop(L, 1);
                    break;
                case OPT_BOOL:
                    if (lua_type(L, -1) != LUA_TBOOLEAN)
                        luaL_error(L, "%s: option '%s' must be a boolean", fname, given);
                    *FIELD(s, o->value, int) = lua_toboolean(L, -1);
                    lua_pop(L, 1);
                    break;
                case OPT_STRING:
                    read_string(L, o, fname, given, s); /* stays on the stack */
                    break;
                case OPT_FUNCTION:
                case OPT_TABLE:
                case OPT_ANY:
                    if (o->type != OPT_ANY &&
                        lua_type(L, -1) != (o->type == OPT_FUNCTION ? LUA_TFUNCTION : LUA_TTABLE))
                        luaL_error(L, "%s: option '%s' must be a %s, got %s", fname, given,
                                   o->type == OPT_FUNCTION ? "function" : "table",
                                   luaL_typename(L, -1));
                    *FIELD(s, o->value, int) = lua_gettop(L); /* stays on the stack */
                    break;
                }
                continue;
            }
        }
        if (o->type == OPT_STRING && o->env != NULL && *FIELD(s, o->value, const char *) == NULL) {
            const char *v = getenv(o->env);
            if (v != NULL && v[0] != '\0') {
                *FIELD(s, o->value, const char *) = v;
                if (o->length != NOLEN)
                    *FIELD(s, o->length, size_t) = strlen(v);
            }
        }
    }
}

void td_options_push_names(lua_State *L, unsigned scope) {
    const td_option *o;
    int i = 0;
    lua_newtable(L);
    for (o = options; o->name; o++) {
        if (!(o->scope & scope))
            continue;
        lua_pushstring(L, o->name);
        lua_rawseti(L, -2, ++i);
        if (o->alias) {
            lua_pushstring(L, o->alias);
            lua_rawseti(L, -2, ++i);
        }
    }
}
