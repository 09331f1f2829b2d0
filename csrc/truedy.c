/*
 * truedy.c - luaopen_truedy: the module table, its constants, the default
 * client configured from TRUEDY_API_KEY / TRUEDY_BASE_URL, and the parts
 * written in Lua (truedy.follow), loaded on first use.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <time.h>
#include <string.h>
#include <strings.h>

#include "truedy.h"

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_OK;

/* curl_global_init is not safe to race; OpenResty loads the module in one
 * Lua state per worker thread, so it runs exactly once per process. */
static void global_init(void) { global_rc = curl_global_init(CURL_GLOBAL_ALL); }

static const char default_client_key = 'c';
static const char lua_name_key = 'n';

/* The running Lua's name, for the User-Agent.  One 5.1-ABI build serves
 * PUC Lua 5.1 and LuaJIT, so it is decided at run time: LuaJIT has a `jit`
 * table whose `version` is "LuaJIT 2.1...".  Raw reads, so that a strict
 * mode's __index on the globals does not raise for a missing `jit`. */
static void remember_lua_name(lua_State *L) {
#if LUA_VERSION_NUM == 501
    lua_pushliteral(L, "jit");
    lua_rawget(L, LUA_GLOBALSINDEX);
    if (lua_istable(L, -1)) {
        lua_pushliteral(L, "version");
        lua_rawget(L, -2);
        lua_remove(L, -2);
    }
    if (lua_type(L, -1) != LUA_TSTRING) {
        lua_pop(L, 1);
        lua_pushliteral(L, LUA_RELEASE);
    }
#else
    lua_pushliteral(L, LUA_RELEASE);
#endif
    td_rawsetp(L, LUA_REGISTRYINDEX, &lua_name_key);
}

void td_push_lua_name(lua_State *L) {
    td_rawgetp(L, LUA_REGISTRYINDEX, &lua_name_key);
    if (lua_type(L, -1) != LUA_TSTRING) { /* only if luaopen_truedy never ran */
        lua_pop(L, 1);
        lua_pushliteral(L, LUA_RELEASE);
    }
}

/* The default client (made on first use): client, or nil, err. */
static int default_client(lua_State *L) {
    int n;
    td_rawgetp(L, LUA_REGISTRYINDEX, &default_client_key);
    if (!lua_isnil(L, -1)) {
        td_client *c = td_to_client(L, -1);
        if (c != NULL && c->e != NULL && !c->e->closed)
            return 1;
    }
    lua_pop(L, 1);
    n = td_client_create_with(L, 0);
    if (n != 1)
        return n;
    lua_pushvalue(L, -1);
    td_rawsetp(L, LUA_REGISTRYINDEX, &default_client_key);
    return 1;
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
    if (lua_type(L, 1) == LUA_TSTRING) {
        const char *const *t;
        for (t = terminal; *t && !found; t++)
            found = strcasecmp(lua_tostring(L, 1), *t) == 0;
    }
    lua_pushboolean(L, found);
    return 1;
}

/* truedy.options([scope]) -> the option names ("client", "call", "create",
 * "list", "start"): for tools, editors and specs. */
static int mod_options(lua_State *L) {
    static const char *const names[] = {"client", "call", "create", "list", "start", NULL};
    static const unsigned scopes[] = {TD_SCOPE_CLIENT, TD_SCOPE_CALL, TD_SCOPE_CREATE,
                                      TD_SCOPE_LIST, TD_SCOPE_START};
    int which = luaL_checkoption(L, 1, "client", names);
    td_options_push_names(L, scopes[which]);
    return 1;
}

/* truedy.now() -> seconds on a monotonic clock (for timeouts and frame
 * timing; unaffected by changes to the wall clock). */
static int mod_now(lua_State *L) {
    lua_pushnumber(L, td_monotonic());
    return 1;
}

/* truedy.sleep(seconds): blocks the thread; for scripts (truedy.follow's
 * default outside nginx).  A signal ends it early, so Ctrl-C is prompt. */
static int mod_sleep(lua_State *L) {
    double s = luaL_checknumber(L, 1);
    struct timespec ts;
    if (!(s >= 0))
        return luaL_argerror(L, 1, "must be a number of seconds, 0 or more");
    if (s > 86400)
        s = 86400;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    nanosleep(&ts, NULL);
    return 0;
}

/* truedy.retry_delay(err, attempts, config) -> seconds to wait before the
 * next attempt, or nil for none: the engine's own rule (policy.c) for
 * layers that retry themselves (truedy.resty).  err: the last error
 * (retryable, retry_after); attempts: how many were made; config: a
 * client:config() table. */
static int mod_retry_delay(lua_State *L) {
    double delay, server_wait = -1;
    int attempts = (int)luaL_checkinteger(L, 2), retryable;
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_getfield(L, 1, "retryable");
    retryable = lua_toboolean(L, -1);
    lua_getfield(L, 1, "retry_after");
    if (lua_type(L, -1) == LUA_TNUMBER)
        server_wait = lua_tonumber(L, -1);
    lua_getfield(L, 3, "retries");
    lua_getfield(L, 3, "retry_base_delay");
    lua_getfield(L, 3, "retry_max_delay");
    lua_getfield(L, 3, "retry_max_wait");
    if (!retryable) {
        lua_pushnil(L);
        return 1;
    }
    delay = td_policy_delay(attempts, (int)luaL_checknumber(L, -4), luaL_checknumber(L, -3),
                            luaL_checknumber(L, -2), luaL_checknumber(L, -1), server_wait,
                            td_random01());
    if (delay < 0)
        lua_pushnil(L);
    else
        lua_pushnumber(L, delay);
    return 1;
}

/* Parts written in Lua, loaded when first read: truedy.follow. */
static int module_index(lua_State *L) {
    const char *key = lua_tostring(L, 2);
    if (key == NULL || strcmp(key, "follow") != 0)
        return 0;
    lua_getglobal(L, "require");
    lua_pushliteral(L, "truedy.follow");
    lua_call(L, 1, 1);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_rawset(L, 1);
    return 1;
}

int luaopen_truedy(lua_State *L) {
    static const luaL_Reg functions[] = {
        {"new", td_client_new},
        {"new_idempotency_key", mod_new_idempotency_key},
        {"is_terminal", mod_is_terminal},
        {"options", mod_options},
        {"now", mod_now},
        {"retry_delay", mod_retry_delay},
        {"sleep", mod_sleep},
        {NULL, NULL},
    };
    const curl_version_info_data *cv;
    int module;
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK)
        return luaL_error(L, "truedy: curl_global_init failed: %s", curl_easy_strerror(global_rc));
    cv = curl_version_info(CURLVERSION_NOW);

    td_json_init(L); /* raises early if lua-cjson is missing */
    remember_lua_name(L);
    lua_newtable(L);
    module = lua_gettop(L);
    td_setfuncs(L, functions, 0);
    td_error_init(L);
    td_handle_init(L);
    td_client_init(L);
    lua_pushcfunction(L, default_client);
    td_calls_register_module(L, module, lua_gettop(L));
    lua_setfield(L, module, "default_client");
    td_webhook_init(L); /* the truedy.webhook sub-table */
    lua_pushliteral(L, TRUEDY_VERSION);
    lua_setfield(L, module, "VERSION");
    lua_pushstring(L, cv && cv->version ? cv->version : "");
    lua_setfield(L, module, "LIBCURL_VERSION");
    lua_pushliteral(L, TD_DEFAULT_BASE_URL);
    lua_setfield(L, module, "DEFAULT_BASE_URL");
    /* the JSON null: the same light userdata as cjson.null and ngx.null */
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, module, "null");
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, module_index);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, module);
    return 1;
}
