/*
 * client.c - the client userdata: creation from the options, the base URL
 * policy, close, and the method table.
 *
 * Creation reads and checks every option first (programmer errors raise
 * before anything exists), then makes the userdata, then everything the
 * userdata owns (the engine).  Closing marks the client closed at once and
 * stops what it has in flight; the libcurl objects go when no C frame is
 * driving them (engine.c).
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "truedy.h"

/* The constant header lines every client shares; libcurl only reads them. */
static char accept_line[] = "Accept: application/json";
static char ctype_line[] = "Content-Type: application/json";
static char expect_line[] = "Expect:"; /* no 100-continue round trip */

/* ---- base URL policy ------------------------------------------------------------- */

/* localhost, 127.0.0.0/8 or ::1 -- as addresses, so that a name such as
 * "127.evil.example" does not pass. */
static int host_is_loopback(const char *host) {
    unsigned char addr[16];
    char bare[64];
    size_t n = strlen(host);
    if (strcasecmp(host, "localhost") == 0)
        return 1;
    if (inet_pton(AF_INET, host, addr) == 1)
        return addr[0] == 127;
    if (n >= 2 && n < sizeof bare + 2 && host[0] == '[' && host[n - 1] == ']') {
        memcpy(bare, host + 1, n - 2);
        bare[n - 2] = '\0';
        host = bare;
    }
    if (inet_pton(AF_INET6, host, addr) == 1) {
        static const unsigned char loopback6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
        return memcmp(addr, loopback6, 16) == 0;
    }
    return 0;
}

typedef struct parsed_url {
    CURLU *u;
    char *text;      /* normalised, without trailing slashes */
    char *path;      /* without trailing slashes */
    int plain_http;
} parsed_url;

static void parsed_free(parsed_url *p) {
    if (p->u)
        curl_url_cleanup(p->u);
    free(p->text);
    free(p->path);
    memset(p, 0, sizeof *p);
}

static void chop_slashes(char *s) {
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == '/')
        s[--n] = '\0';
}

/* Everything about the scheme and host is decided from one parse of the
 * URL, by libcurl's own parser, never from string prefixes: libcurl accepts
 * "http:/host" and "HTTP:host" too, and the proxy rule must see them as
 * plain http.  NULL when acceptable (p filled), else why not. */
static const char *parse_base_url(const char *url, int allow_http, parsed_url *p, char *buf,
                                  size_t cap) {
    char *scheme = NULL, *host = NULL, *user = NULL, *password = NULL, *query = NULL,
         *fragment = NULL, *text = NULL, *path = NULL;
    const char *why = NULL;
    memset(p, 0, sizeof *p);
    p->u = curl_url();
    if (p->u == NULL)
        return "out of memory";
    if (curl_url_set(p->u, CURLUPART_URL, url, 0) != CURLUE_OK) {
        why = "base_url is not a valid absolute URL (like https://api.truedy.ai/api/public/v1)";
        goto done;
    }
    curl_url_get(p->u, CURLUPART_SCHEME, &scheme, 0);
    curl_url_get(p->u, CURLUPART_HOST, &host, 0);
    curl_url_get(p->u, CURLUPART_USER, &user, 0);
    curl_url_get(p->u, CURLUPART_PASSWORD, &password, 0);
    curl_url_get(p->u, CURLUPART_QUERY, &query, 0);
    curl_url_get(p->u, CURLUPART_FRAGMENT, &fragment, 0);
    if (scheme == NULL || (strcasecmp(scheme, "https") != 0 && strcasecmp(scheme, "http") != 0)) {
        why = "base_url must use https:// (or http:// to a loopback address)";
    } else if (user != NULL || password != NULL) {
        why = "base_url must not carry credentials; give the key as api_key";
    } else if (query != NULL || fragment != NULL) {
        why = "base_url must not have a query or a fragment";
    } else if (host == NULL || host[0] == '\0') {
        why = "base_url has no host";
    } else {
        p->plain_http = strcasecmp(scheme, "http") == 0;
        if (p->plain_http && !allow_http && !host_is_loopback(host)) {
            snprintf(buf, cap,
                     "base_url uses plain http:// to %s, which would send the API key unencrypted; "
                     "use https://, or set allow_insecure_http = true if you really mean it",
                     host);
            why = buf;
        }
    }
    if (why == NULL) {
        if (curl_url_get(p->u, CURLUPART_URL, &text, 0) != CURLUE_OK ||
            curl_url_get(p->u, CURLUPART_PATH, &path, 0) != CURLUE_OK ||
            (p->text = td_strdup(text)) == NULL || (p->path = td_strdup(path)) == NULL) {
            why = "out of memory";
        } else {
            chop_slashes(p->text);
            chop_slashes(p->path);
        }
    }
done:
    curl_free(scheme);
    curl_free(host);
    curl_free(user);
    curl_free(password);
    curl_free(query);
    curl_free(fragment);
    curl_free(text);
    curl_free(path);
    if (why != NULL)
        parsed_free(p);
    return why;
}

/* ---- lifecycle -------------------------------------------------------------------- */

td_client *td_to_client(lua_State *L, int idx) {
    return td_testudata(L, idx, TD_CLIENT_MT);
}

td_client *td_check_client(lua_State *L, int idx) {
    td_client *c = luaL_checkudata(L, idx, TD_CLIENT_MT);
    if (c->e == NULL || c->e->closed)
        luaL_error(L, "truedy: the client is closed");
    return c;
}

static int client_gc(lua_State *L) {
    td_client *c = luaL_checkudata(L, 1, TD_CLIENT_MT);
    if (c->e) {
        td_engine_close(c->e);
        td_engine_unref(c->e);
        c->e = NULL;
    }
    return 0;
}

/* client:close(): closed for good, in-flight work stopped (each handle's
 * result says so), the connections freed once no call is using them. */
static int client_close(lua_State *L) {
    td_client *c = luaL_checkudata(L, 1, TD_CLIENT_MT);
    if (c->e)
        td_engine_close(c->e);
    /* nothing is in flight any more: the handles are the caller's alone
     * (cleared in place, allocating nothing) */
    td_getuv(L, 1);
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "inflight");
        if (lua_istable(L, -1)) {
            int t = lua_gettop(L);
            lua_pushnil(L);
            while (lua_next(L, t) != 0) {
                lua_pop(L, 1);
                lua_pushvalue(L, -1);
                lua_pushnil(L);
                lua_rawset(L, t);
            }
        }
    }
    return 0;
}

static int client_tostring(lua_State *L) {
    td_client *c = luaL_checkudata(L, 1, TD_CLIENT_MT);
    if (c->e == NULL || c->e->closed || c->e->base_url == NULL)
        lua_pushstring(L, "truedy.client (closed)");
    else /* never the key */
        lua_pushfstring(L, "truedy.client (%s)", c->e->base_url);
    return 1;
}

static char *concat3(const char *a, const char *b, const char *c) {
    size_t n = strlen(a) + strlen(b) + strlen(c) + 1;
    char *d = malloc(n);
    if (d)
        snprintf(d, n, "%s%s%s", a, b, c);
    return d;
}

/* Chain lines[0..n) into the list nodes l[0..n). */
static void chain(struct curl_slist *l, char *const *lines, int n) {
    int i;
    for (i = 0; i < n; i++) {
        l[i].data = lines[i];
        l[i].next = i + 1 < n ? &l[i + 1] : NULL;
    }
}

static void link_headers(td_engine *e) {
    char *post[5];
    post[0] = e->auth_line;
    post[1] = e->ua_line;
    post[2] = accept_line;
    post[3] = ctype_line;
    post[4] = expect_line;
    chain(e->hdr_post, post, 4);
    chain(e->hdr_post_large, post, 5);
    chain(e->hdr_get, post, 3);
}

/* truedy.new([opts]) -> client | nil, err */
static int client_create(lua_State *L, int t) {
    const char *fname = "truedy.new", *why;
    char whybuf[256], ua[256];
    td_settings s;
    td_client *c;
    td_engine *e;
    parsed_url url;
    const curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
    int base = lua_gettop(L); /* the string options stay above it until copied */

    td_settings_defaults(&s);
    td_options_read(L, t, TD_SCOPE_CLIENT, fname, &s);
    if (s.base_url == NULL) {
        s.base_url = TD_DEFAULT_BASE_URL;
        s.base_url_len = strlen(TD_DEFAULT_BASE_URL);
    }
    if (s.user_agent && td_has_ctl(s.user_agent, strlen(s.user_agent)))
        luaL_error(L, "%s: option 'user_agent' must not contain control characters", fname);

    /* every option is type-checked; now what is wrong with the values */
    if (s.api_key == NULL)
        return td_push_config_error(
            L, "no API key: set TRUEDY_API_KEY or pass api_key to truedy.new{...}");
    if (s.api_key_len == 0)
        return td_push_config_error(L, "the API key is empty");
    if (td_has_ctl(s.api_key, s.api_key_len) || memchr(s.api_key, ' ', s.api_key_len) != NULL)
        return td_push_config_error(L, "the API key contains spaces or control characters");
    if (s.api_key_len < TD_MIN_KEY_LEN)
        return td_push_config_error(L, "the API key is too short to be a Truedy key (keys are "
                                       "truedy_ followed by 32 characters)");
    if (td_has_ctl(s.base_url, s.base_url_len))
        return td_push_config_error(L, "base_url contains control characters");

    /* the userdata first, so that it owns everything made after it */
    c = td_newuserdata_uv(L, sizeof *c);
    c->e = NULL;
    luaL_getmetatable(L, TD_CLIENT_MT);
    lua_setmetatable(L, -2);
    c->e = e = td_engine_new();
    if (e == NULL)
        return luaL_error(L, "truedy: out of memory");
    why = parse_base_url(s.base_url, s.allow_insecure_http, &url, whybuf, sizeof whybuf);
    if (why != NULL) {
        lua_pop(L, 1); /* the half-made client: its __gc frees the engine */
        return td_push_config_error(L, why);
    }
    e->base = url.u;
    e->base_url = url.text;
    e->base_path = url.path;
    e->cfg.plain_http = url.plain_http;

    e->cfg.attempt_timeout_ms = (long)(1000 * s.attempt_timeout);
    e->cfg.connect_timeout_ms = (long)(1000 * s.connect_timeout);
    e->cfg.retries = (int)s.retries;
    e->cfg.retry_base_delay = s.retry_base_delay;
    e->cfg.retry_max_delay = s.retry_max_delay;
    e->cfg.retry_max_wait = s.retry_max_wait;
    e->cfg.max_connections = (long)s.max_connections;
    e->cfg.max_response_bytes = (size_t)s.max_response_bytes;
    e->cfg.debug = s.debug;

    td_push_lua_name(L); /* PUC Lua or LuaJIT, told at run time */
    snprintf(ua, sizeof ua, "User-Agent: truedy-lua/%s (%s; libcurl/%s)", TRUEDY_VERSION,
             lua_tostring(L, -1), cv && cv->version ? cv->version : "?");
    lua_pop(L, 1);
    e->api_key = td_strdup(s.api_key);
    e->auth_line = concat3("Authorization: Bearer ", s.api_key, "");
    e->ua_line = concat3(ua, s.user_agent ? " " : "", s.user_agent ? s.user_agent : "");
    e->ca_file = s.ca_file ? td_strdup(s.ca_file) : NULL;
    e->ca_path = s.ca_path ? td_strdup(s.ca_path) : NULL;
    if (!e->api_key || !e->auth_line || !e->ua_line || (s.ca_file && !e->ca_file) ||
        (s.ca_path && !e->ca_path))
        return luaL_error(L, "truedy: out of memory");
    link_headers(e);
    if (td_engine_start(e) != 0)
        return luaL_error(L, "truedy: could not set up libcurl (out of memory?)");

    /* the user value: handles in flight are anchored here */
    lua_createtable(L, 0, 2);
    lua_newtable(L);
    lua_setfield(L, -2, "inflight");
    td_setuv(L, -2);
    if (lua_gettop(L) > base + 1) { /* the client, in place of the option strings */
        lua_replace(L, base + 1);
        lua_settop(L, base + 1);
    }
    return 1;
}

int td_client_new(lua_State *L) {
    if (!lua_isnoneornil(L, 1))
        luaL_checktype(L, 1, LUA_TTABLE);
    return client_create(L, lua_istable(L, 1) ? 1 : 0);
}

int td_client_create_with(lua_State *L, int opts_idx) { return client_create(L, opts_idx); }

/* Methods written in Lua (lua/truedy/), loaded on first use:
 * client:create_calls(...) is require("truedy.batch").create_calls(client, ...). */
static int lua_method(lua_State *L) {
    int n = lua_gettop(L);
    td_check_client(L, 1);
    lua_getglobal(L, "require");
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_call(L, 1, 1);
    lua_getfield(L, -1, lua_tostring(L, lua_upvalueindex(2)));
    if (!lua_isfunction(L, -1))
        return luaL_error(L, "truedy: %s has no function %s", lua_tostring(L, lua_upvalueindex(1)),
                          lua_tostring(L, lua_upvalueindex(2)));
    lua_insert(L, 1);
    lua_pop(L, 1); /* the module table */
    lua_call(L, n, LUA_MULTRET);
    return lua_gettop(L);
}

static void add_lua_method(lua_State *L, int methods, const char *name, const char *module,
                           const char *function) {
    lua_pushstring(L, module);
    lua_pushstring(L, function);
    lua_pushcclosure(L, lua_method, 2);
    lua_setfield(L, methods, name);
}

void td_client_init(lua_State *L) {
    int methods;
    luaL_newmetatable(L, TD_CLIENT_MT);
    lua_newtable(L);
    methods = lua_gettop(L);
    lua_pushcfunction(L, client_close);
    lua_setfield(L, methods, "close");
    td_calls_register(L, methods);
    td_run_init(L, methods);
    add_lua_method(L, methods, "create_calls", "truedy.batch", "create_calls");
    add_lua_method(L, methods, "start_calls", "truedy.batch", "start_calls");
    add_lua_method(L, methods, "each_call", "truedy.pager", "each_call");
    add_lua_method(L, methods, "start_each_call", "truedy.pager", "start_each_call");
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, client_gc);
    lua_setfield(L, -2, "__gc");
#if LUA_VERSION_NUM >= 504
    lua_pushcfunction(L, client_close);
    lua_setfield(L, -2, "__close");
#endif
    lua_pushcfunction(L, client_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "truedy.client");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
}
