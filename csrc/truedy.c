/*
 * truedy.c - luaopen_truedy: the module table, its constants and the
 * default client configured from TRUEDY_API_KEY / TRUEDY_BASE_URL.
 */
#include <pthread.h>
#include <string.h>
#include <strings.h>

#include "truedy.h"

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_OK;

/* curl_global_init is not safe to race; OpenResty loads the module in one
 * Lua state per worker thread, so it runs exactly once per process. */
static void global_init(void) { global_rc = curl_global_init(CURL_GLOBAL_ALL); }

static const char default_client_key = 'c';

/* Push the default client (made on first use); on a configuration error
 * pushes nil, err and returns 2. */
static int push_default_client(lua_State *L) {
    int n;
    td_rawgetp(L, LUA_REGISTRYINDEX, &default_client_key);
    if (!lua_isnil(L, -1))
        return 1;
    lua_pop(L, 1);
    n = td_client_create_with(L, 0);
    if (n != 1)
        return n;
    lua_pushvalue(L, -1);
    td_rawsetp(L, LUA_REGISTRYINDEX, &default_client_key);
    return 1;
}

/* Run a client method with the default client in front of the arguments. */
static int with_default_client(lua_State *L, int nargs, lua_CFunction method) {
    lua_settop(L, nargs);
    if (push_default_client(L) != 1)
        return 2;
    lua_insert(L, 1);
    return method(L);
}

static int mod_create_call(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    return with_default_client(L, 2, td_client_create_call);
}

static int mod_get_call(lua_State *L) {
    luaL_checkstring(L, 1);
    return with_default_client(L, 2, td_client_get_call);
}

static int mod_list_calls(lua_State *L) {
    if (!lua_isnoneornil(L, 1))
        luaL_checktype(L, 1, LUA_TTABLE);
    return with_default_client(L, 2, td_client_list_calls);
}

/* truedy.new_idempotency_key() -> a fresh random UUIDv4, for callers who
 * store the key with their own record before placing the call. */
static int mod_new_idempotency_key(lua_State *L) {
    char uuid[37];
    td_uuid4(uuid);
    lua_pushstring(L, uuid);
    return 1;
}

/* truedy.is_terminal(status or call) -> boolean.  The docs use several
 * spellings for the end states; unknown statuses are not terminal. */
static int mod_is_terminal(lua_State *L) {
    static const char *const terminal[] = {"ended",     "completed", "failed",    "cancelled",
                                           "canceled",  "busy",      "no-answer", "no_answer",
                                           "no answer", NULL};
    int found = 0;
    if (lua_type(L, 1) == LUA_TTABLE) {
        lua_getfield(L, 1, "status");
        lua_replace(L, 1);
    }
    if (lua_type(L, 1) == LUA_TSTRING)
        for (const char *const *t = terminal; *t && !found; t++)
            found = strcasecmp(lua_tostring(L, 1), *t) == 0;
    lua_pushboolean(L, found);
    return 1;
}

int luaopen_truedy(lua_State *L) {
    static const luaL_Reg functions[] = {
        {"new", td_client_new},
        {"create_call", mod_create_call},
        {"get_call", mod_get_call},
        {"list_calls", mod_list_calls},
        {"new_idempotency_key", mod_new_idempotency_key},
        {"is_terminal", mod_is_terminal},
        {NULL, NULL},
    };
    const curl_version_info_data *cv;
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK)
        return luaL_error(L, "truedy: curl_global_init failed: %s", curl_easy_strerror(global_rc));
    cv = curl_version_info(CURLVERSION_NOW);

    td_json_init(L); /* raises early if lua-cjson is missing */
    lua_newtable(L);
    td_setfuncs(L, functions, 0);
    td_error_init(L);
    td_request_init(L);
    td_client_init(L);
    td_webhook_init(L); /* the truedy.webhook sub-table */
    lua_pushliteral(L, TRUEDY_VERSION);
    lua_setfield(L, -2, "VERSION");
    lua_pushstring(L, cv && cv->version ? cv->version : "");
    lua_setfield(L, -2, "LIBCURL_VERSION");
    lua_pushliteral(L, TD_DEFAULT_BASE_URL);
    lua_setfield(L, -2, "DEFAULT_BASE_URL");
    /* the JSON null: the same light userdata as cjson.null and ngx.null */
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    return 1;
}
