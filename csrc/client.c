/*
 * client.c - the client userdata: options, the libcurl engine (one multi
 * handle with a share handle and a pool of easy handles, so connections are
 * reused across calls), and the API methods.
 *
 * The blocking calls are "start, then drive the engine until done": there is
 * one engine, which later asynchronous APIs can drive step by step.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "truedy.h"

#define DEFAULT_TIMEOUT 30.0
#define DEFAULT_CONNECT_TIMEOUT 10.0
#define DEFAULT_MAX_RETRIES 2
#define DEFAULT_RETRY_BASE_DELAY 0.5
#define DEFAULT_RETRY_MAX_DELAY 8.0
#define DEFAULT_MAX_RETRY_WAIT 60.0
#define DEFAULT_MAX_CONNECTIONS 8
#define DEFAULT_MAX_RESPONSE_BYTES (4L * 1024 * 1024)
#define MAX_RETRIES_LIMIT 10

static const char *const client_options[] = {
    "api_key",        "base_url",         "timeout",            "connect_timeout",
    "max_retries",    "retry_base_delay", "retry_max_delay",    "max_retry_wait",
    "max_connections", "max_response_bytes", "user_agent",      "ca_file",
    "ca_path",        "allow_insecure_http", "debug",           NULL};

/* ---- option reading (programmer errors raise) ----------------------------- */

static void check_option_names(lua_State *L, int t, const char *fname, const char *const *names) {
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
        int i, known = 0;
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "%s: option names must be strings", fname);
        for (i = 0; names[i]; i++)
            if (strcmp(lua_tostring(L, -1), names[i]) == 0)
                known = 1;
        if (!known)
            luaL_error(L, "%s: unknown option '%s'", fname, lua_tostring(L, -1));
    }
}

/* Number option in [min, max]; def when absent. */
static double opt_number(lua_State *L, int t, const char *fname, const char *name, double def,
                         double min, double max) {
    double v = def;
    if (t == 0)
        return def;
    lua_getfield(L, t, name);
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TNUMBER)
            luaL_error(L, "%s: option '%s' must be a number, got %s", fname, name,
                       luaL_typename(L, -1));
        v = (double)lua_tonumber(L, -1);
        if (!(v >= min && v <= max)) {
            /* lua_pushfstring has no %g: format here */
            char range[128];
            snprintf(range, sizeof range, "between %g and %g", min, max);
            luaL_error(L, "%s: option '%s' must be %s", fname, name, range);
        }
    }
    lua_pop(L, 1);
    return v;
}

static long opt_whole(lua_State *L, int t, const char *fname, const char *name, long def, long min,
                      long max) {
    double v = opt_number(L, t, fname, name, (double)def, (double)min, (double)max);
    if (v != floor(v))
        luaL_error(L, "%s: option '%s' must be a whole number", fname, name);
    return (long)v;
}

static int opt_bool(lua_State *L, int t, const char *fname, const char *name) {
    int v = 0;
    if (t == 0)
        return 0;
    lua_getfield(L, t, name);
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TBOOLEAN)
            luaL_error(L, "%s: option '%s' must be a boolean", fname, name);
        v = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

/* String option, or getenv(env) when absent; NULL when neither.  The value
 * is left on the stack (the caller pops it): an __index metamethod may have
 * made a string that nothing else anchors.  With len NULL an embedded NUL
 * raises; otherwise *len is the full length. */
static const char *opt_string(lua_State *L, int t, const char *fname, const char *name,
                              const char *env, size_t *len) {
    const char *v = NULL;
    size_t n = 0;
    if (t != 0) {
        lua_getfield(L, t, name);
        if (!lua_isnil(L, -1)) {
            if (lua_type(L, -1) != LUA_TSTRING)
                luaL_error(L, "%s: option '%s' must be a string, got %s", fname, name,
                           luaL_typename(L, -1));
            v = lua_tolstring(L, -1, &n);
            if (len == NULL && strlen(v) != n) /* a NUL would silently cut the value */
                luaL_error(L, "%s: option '%s' must not contain NUL bytes", fname, name);
        }
    }
    if (v == NULL && env != NULL) {
        v = getenv(env);
        if (v != NULL && v[0] == '\0')
            v = NULL;
        n = v ? strlen(v) : 0;
    }
    if (len)
        *len = n;
    return v;
}

/* ---- base URL policy ---------------------------------------------------- */

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

/* NULL when the URL is acceptable, else why not (into buf). */
static const char *check_base_url(const char *url, int allow_http, char *buf, size_t cap) {
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *user = NULL, *query = NULL, *fragment = NULL;
    const char *why = NULL;
    if (u == NULL)
        return "out of memory";
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
        why = "base_url is not a valid absolute URL (like https://api.truedy.ai/api/public/v1)";
        goto done;
    }
    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    curl_url_get(u, CURLUPART_HOST, &host, 0);
    curl_url_get(u, CURLUPART_USER, &user, 0);
    curl_url_get(u, CURLUPART_QUERY, &query, 0);
    curl_url_get(u, CURLUPART_FRAGMENT, &fragment, 0);
    if (scheme == NULL || (strcmp(scheme, "https") != 0 && strcmp(scheme, "http") != 0)) {
        why = "base_url must use https:// (or http:// to a loopback address)";
    } else if (user != NULL) {
        why = "base_url must not carry credentials; give the key as api_key";
    } else if (query != NULL || fragment != NULL) {
        why = "base_url must not have a query or a fragment";
    } else if (strcmp(scheme, "http") == 0 && !allow_http && host && !host_is_loopback(host)) {
        snprintf(buf, cap,
                 "base_url uses plain http:// to %s, which would send the API key unencrypted; "
                 "use https://, or set allow_insecure_http = true if you really mean it",
                 host);
        why = buf;
    }
done:
    curl_free(scheme);
    curl_free(host);
    curl_free(user);
    curl_free(query);
    curl_free(fragment);
    curl_url_cleanup(u);
    return why;
}

/* ---- lifecycle ------------------------------------------------------------ */

td_client *td_check_client(lua_State *L, int idx) {
    td_client *c = luaL_checkudata(L, idx, TD_CLIENT_MT);
    if (c->closed)
        luaL_error(L, "truedy: the client is closed");
    return c;
}

static void free_secret(char **p) {
    if (*p) {
        volatile char *v = *p;
        while (*v)
            *v++ = '\0'; /* do not leave the key in freed memory */
        free(*p);
        *p = NULL;
    }
}

/* No request can be in the multi here: close runs from Lua, and the engine
 * never returns to Lua with a transfer in flight. */
static void client_close(td_client *c) {
    int i;
    if (c->closed)
        return;
    c->closed = 1;
    for (i = 0; i < c->pool_len; i++)
        curl_easy_cleanup(c->pool[i]);
    c->pool_len = 0;
    if (c->multi)
        curl_multi_cleanup(c->multi);
    c->multi = NULL;
    if (c->share)
        curl_share_cleanup(c->share);
    c->share = NULL;
    free_secret(&c->api_key);
    free_secret(&c->auth_header);
    free(c->base_url);
    free(c->ua_header);
    free(c->ca_file);
    free(c->ca_path);
    c->base_url = c->ua_header = c->ca_file = c->ca_path = NULL;
}

static int client_gc(lua_State *L) {
    client_close(luaL_checkudata(L, 1, TD_CLIENT_MT));
    return 0;
}

static int client_close_method(lua_State *L) {
    client_close(luaL_checkudata(L, 1, TD_CLIENT_MT));
    return 0;
}

static int client_tostring(lua_State *L) {
    td_client *c = luaL_checkudata(L, 1, TD_CLIENT_MT);
    if (c->closed)
        lua_pushstring(L, "truedy.client (closed)");
    else /* never the key */
        lua_pushfstring(L, "truedy.client (%s)", c->base_url);
    return 1;
}

static char *dup_or_null(const char *s) {
    char *d;
    size_t n;
    if (s == NULL)
        return NULL;
    n = strlen(s) + 1;
    d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static char *concat3(const char *a, const char *b, const char *c) {
    size_t n = strlen(a) + strlen(b) + strlen(c) + 1;
    char *d = malloc(n);
    if (d)
        snprintf(d, n, "%s%s%s", a, b, c);
    return d;
}

/* truedy.new([opts]) -> client | nil, err */
static int client_create(lua_State *L, int t) {
    const char *fname = "truedy.new";
    const char *api_key, *base_url, *user_agent, *ca_file, *ca_path, *why;
    char whybuf[256], ua[256];
    size_t n, key_len = 0, url_len = 0;
    int allow_http;
    td_client *c, opt;
    CURLMcode mrc = CURLM_OK;
    CURLSHcode src = CURLSHE_OK;
    const curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
    int base = lua_gettop(L); /* the string options stay above it until copied */

    if (t != 0)
        check_option_names(L, t, fname, client_options);
    api_key = opt_string(L, t, fname, "api_key", "TRUEDY_API_KEY", &key_len);
    base_url = opt_string(L, t, fname, "base_url", "TRUEDY_BASE_URL", &url_len);
    user_agent = opt_string(L, t, fname, "user_agent", NULL, NULL);
    ca_file = opt_string(L, t, fname, "ca_file", NULL, NULL);
    ca_path = opt_string(L, t, fname, "ca_path", NULL, NULL);
    if (base_url == NULL)
        base_url = TD_DEFAULT_BASE_URL;
    allow_http = opt_bool(L, t, fname, "allow_insecure_http");
    if (user_agent && td_has_ctl(user_agent, strlen(user_agent)))
        luaL_error(L, "%s: option 'user_agent' must not contain control characters", fname);

    if (api_key == NULL)
        return td_push_config_error(
            L, "no API key: set TRUEDY_API_KEY or pass api_key to truedy.new{...}");
    if (key_len == 0)
        return td_push_config_error(L, "the API key is empty");
    if (td_has_ctl(api_key, key_len) || memchr(api_key, ' ', key_len) != NULL)
        return td_push_config_error(L, "the API key contains spaces or control characters");
    if (td_has_ctl(base_url, url_len))
        return td_push_config_error(L, "base_url contains control characters");
    why = check_base_url(base_url, allow_http, whybuf, sizeof whybuf);
    if (why != NULL)
        return td_push_config_error(L, why);

    /* every option is read (and may raise) before anything is allocated */
    memset(&opt, 0, sizeof opt);
    opt.timeout_ms = (long)(1000 * opt_number(L, t, fname, "timeout", DEFAULT_TIMEOUT, 0.001, 86400));
    opt.connect_timeout_ms = (long)(1000 * opt_number(L, t, fname, "connect_timeout",
                                                      DEFAULT_CONNECT_TIMEOUT, 0.001, 86400));
    opt.max_retries =
        (int)opt_whole(L, t, fname, "max_retries", DEFAULT_MAX_RETRIES, 0, MAX_RETRIES_LIMIT);
    opt.retry_base_delay =
        opt_number(L, t, fname, "retry_base_delay", DEFAULT_RETRY_BASE_DELAY, 0, 3600);
    opt.retry_max_delay =
        opt_number(L, t, fname, "retry_max_delay", DEFAULT_RETRY_MAX_DELAY, 0, 3600);
    opt.max_retry_wait = opt_number(L, t, fname, "max_retry_wait", DEFAULT_MAX_RETRY_WAIT, 0, 3600);
    opt.max_connections =
        opt_whole(L, t, fname, "max_connections", DEFAULT_MAX_CONNECTIONS, 1, TD_POOL_MAX);
    opt.max_response_bytes = (size_t)opt_whole(L, t, fname, "max_response_bytes",
                                               DEFAULT_MAX_RESPONSE_BYTES, 1024, 1024L * 1024 * 1024);
    opt.debug = opt_bool(L, t, fname, "debug");

    c = td_newuserdata(L, sizeof *c);
    *c = opt; /* all pointers NULL: __gc frees whatever gets built below */
    luaL_getmetatable(L, TD_CLIENT_MT);
    lua_setmetatable(L, -2);

    td_push_lua_name(L); /* PUC Lua or LuaJIT, told at run time */
    snprintf(ua, sizeof ua, "User-Agent: truedy-lua/%s (%s; libcurl/%s)", TRUEDY_VERSION,
             lua_tostring(L, -1), cv && cv->version ? cv->version : "?");
    lua_pop(L, 1);
    c->api_key = dup_or_null(api_key);
    c->auth_header = concat3("Authorization: Bearer ", api_key, "");
    c->ua_header = concat3(ua, user_agent ? " " : "", user_agent ? user_agent : "");
    c->base_url = dup_or_null(base_url);
    c->ca_file = dup_or_null(ca_file);
    c->ca_path = dup_or_null(ca_path);
    c->multi = curl_multi_init();
    c->share = curl_share_init();
    if (!c->api_key || !c->auth_header || !c->ua_header || !c->base_url ||
        (ca_file && !c->ca_file) || (ca_path && !c->ca_path) || !c->multi || !c->share)
        return luaL_error(L, "truedy: out of memory");
    /* the API paths are appended to the base: drop trailing slashes */
    n = strlen(c->base_url);
    while (n > 0 && c->base_url[n - 1] == '/')
        c->base_url[--n] = '\0';

    src |= curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    src |= curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    mrc |= curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, c->max_connections);
    mrc |= curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, c->max_connections);
    mrc |= curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    if (src != CURLSHE_OK || mrc != CURLM_OK)
        return luaL_error(L, "truedy: could not configure libcurl");
    c->plain_http = strncasecmp(c->base_url, "http://", 7) == 0;
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

/* ---- the engine ---------------------------------------------------------- */

static CURL *new_easy(td_client *c) {
    CURL *e = curl_easy_init();
    CURLcode rc = CURLE_OK;
    if (e == NULL)
        return NULL;
    rc |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L); /* threads: never SIGALRM */
    rc |= curl_easy_setopt(e, CURLOPT_SHARE, c->share);
    rc |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
#if LIBCURL_VERSION_NUM >= 0x075500
    rc |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    rc |= curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    /* redirects are never followed: one could carry the key to another host */
    rc |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    rc |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    rc |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    rc |= curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    rc |= curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    rc |= curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_response_bytes);
    if (c->ca_file)
        rc |= curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
    if (c->ca_path)
        rc |= curl_easy_setopt(e, CURLOPT_CAPATH, c->ca_path);
    /* plain http is only allowed to loopback (or by explicit opt-in): a proxy
     * from http_proxy / ALL_PROXY must not see the key in clear text.  https
     * goes through proxies as a tunnel, unreadable to them. */
    if (c->plain_http)
        rc |= curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
    if (c->debug) {
        rc |= curl_easy_setopt(e, CURLOPT_DEBUGFUNCTION, td_debug_trace);
        rc |= curl_easy_setopt(e, CURLOPT_DEBUGDATA, c);
        rc |= curl_easy_setopt(e, CURLOPT_VERBOSE, 1L);
    }
    if (rc != CURLE_OK) {
        curl_easy_cleanup(e);
        return NULL;
    }
    return e;
}

CURL *td_client_take_easy(td_client *c) {
    if (c->pool_len > 0)
        return c->pool[--c->pool_len];
    return new_easy(c);
}

void td_client_give_easy(td_client *c, CURL *easy) {
    if (!c->closed && c->pool_len < c->max_connections && c->pool_len < TD_POOL_MAX)
        c->pool[c->pool_len++] = easy;
    else
        curl_easy_cleanup(easy);
}

/* Drive the engine until r is finished.  No Lua runs inside libcurl;
 * between libcurl calls, a finished attempt is classified (which may decode a
 * 429 body, under a protected call).  Waits between attempts are spent in
 * curl_multi_poll, which sleeps and keeps idle connections serviced. */
void td_client_run(lua_State *L, td_client *c, td_request *r) {
    while (r->state != TD_DONE) {
        int running = 0, queued = 0;
        CURLMcode mc;
        CURLMsg *m;
        if (r->state == TD_IDLE || (r->state == TD_WAITING && td_monotonic() >= r->retry_at)) {
            if (td_request_start_attempt(r) != 0) {
                r->result = CURLE_OUT_OF_MEMORY;
                snprintf(r->errbuf, sizeof r->errbuf, "could not start the transfer");
                r->state = TD_DONE;
                break;
            }
        }
        if (r->state == TD_WAITING) {
            double ms = ceil((r->retry_at - td_monotonic()) * 1000.0);
            if (ms > 0)
                curl_multi_poll(c->multi, NULL, 0, ms > 1000 ? 1000 : (int)ms, NULL);
            continue;
        }
        mc = curl_multi_perform(c->multi, &running);
        if (mc != CURLM_OK) {
            r->result = CURLE_FAILED_INIT;
            snprintf(r->errbuf, sizeof r->errbuf, "libcurl: %s", curl_multi_strerror(mc));
            r->state = TD_DONE;
            break;
        }
        while ((m = curl_multi_info_read(c->multi, &queued)) != NULL) {
            if (m->msg == CURLMSG_DONE && m->easy_handle == r->easy) {
                CURLcode result = m->data.result; /* m dies with the removal */
                td_request_attempt_done(L, r, result);
                break;
            }
        }
        if (r->state == TD_RUNNING)
            curl_multi_poll(c->multi, NULL, 0, 1000, NULL);
    }
    td_request_release(r);
}

/* ---- methods --------------------------------------------------------------- */

static const char *const create_options[] = {"idempotency_key", "timeout", "max_retries", NULL};
static const char *const read_options[] = {"timeout", "max_retries", NULL};

/* Per-call options at idx (table or nil) onto r. */
static void apply_call_options(lua_State *L, int idx, td_request *r, const char *fname,
                               const char *const *names) {
    if (lua_isnoneornil(L, idx))
        return;
    luaL_checktype(L, idx, LUA_TTABLE);
    check_option_names(L, idx, fname, names);
    lua_getfield(L, idx, "timeout");
    if (!lua_isnil(L, -1))
        r->timeout_ms = (long)(1000 * opt_number(L, idx, fname, "timeout", 0, 0.001, 86400));
    lua_pop(L, 1);
    r->max_retries =
        (int)opt_whole(L, idx, fname, "max_retries", r->max_retries, 0, MAX_RETRIES_LIMIT);
}

/* The caller's idempotency key, checked; 0 when absent or fine. */
static int read_idempotency_key(lua_State *L, int idx, td_request *r, td_fail *f) {
    size_t n;
    const char *key;
    memset(f, 0, sizeof *f);
    if (lua_isnoneornil(L, idx))
        return 0;
    lua_getfield(L, idx, "idempotency_key");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    snprintf(f->field, sizeof f->field, "idempotency_key");
    if (lua_type(L, -1) != LUA_TSTRING) {
        snprintf(f->rule, sizeof f->rule, "must be a string, got %s", td_type_phrase(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    key = lua_tolstring(L, -1, &n);
    if (n == 0 || n > TD_IDEM_KEY_MAX) {
        snprintf(f->rule, sizeof f->rule, "must be 1 to %d characters long", TD_IDEM_KEY_MAX);
        lua_pop(L, 1);
        return -1;
    }
    {
        size_t i;
        for (i = 0; i < n; i++) {
            unsigned char ch = (unsigned char)key[i];
            if (ch <= 0x20 || ch >= 0x7f) {
                snprintf(f->rule, sizeof f->rule,
                         "must be printable ASCII without spaces (it travels in an HTTP header)");
                lua_pop(L, 1);
                return -1;
            }
        }
    }
    memcpy(r->idem_key, key, n);
    r->idem_key[n] = '\0';
    lua_pop(L, 1);
    return 0;
}

/* Raise, after freeing what the request holds: should the collector later
 * be unable to run its __gc (out of memory), nothing is lost. */
static int raise_finished(lua_State *L, td_request *r, const char *message) {
    td_request_finish(r, 0);
    return luaL_error(L, "%s", message);
}

static int run_request(lua_State *L, td_client *c, td_request *r) {
    if (td_request_set_headers(r, r->body.len > 0) != 0)
        return raise_finished(L, r, "truedy: out of memory");
    td_client_run(L, c, r);
    return td_request_finish(r, td_request_push_outcome(L, r));
}

/* client:create_call(params [, opts]) -> envelope | nil, err */
static int client_create_call(lua_State *L) {
    td_client *c = td_check_client(L, 1);
    td_request *r;
    td_fail fail;
    int rc;
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 3);
    r = td_request_new(L, 1);
    r->method = "POST";
    apply_call_options(L, 3, r, "create_call", create_options);
    if (read_idempotency_key(L, 3, r, &fail) != 0)
        return td_request_finish(r, td_push_invalid(L, &fail));
    memset(&fail, 0, sizeof fail);
    rc = td_params_create_call(L, 2, &r->body, &fail);
    if (rc == -1)
        return td_request_finish(r, td_push_invalid(L, &fail));
    if (rc != 0)
        return raise_finished(L, r, "truedy: out of memory");
    /* every create carries a key, so a retry can never dial twice */
    if (r->idem_key[0] == '\0')
        td_uuid4(r->idem_key);
    if (td_request_set_url(r, "/calls") != 0)
        return raise_finished(L, r, "truedy: out of memory");
    return run_request(L, c, r);
}

/* Percent-encode s into out (RFC 3986 unreserved characters stay). */
static int url_escape(td_buf *out, const char *s, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    size_t i;
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '_' || ch == '.' || ch == '~') {
            if (td_buf_putc(out, (char)ch))
                return -1;
        } else {
            char esc[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            if (td_buf_append(out, esc, 3))
                return -1;
        }
    }
    return 0;
}

/* client:get_call(call_id [, opts]) -> envelope | nil, err */
static int client_get_call(lua_State *L) {
    td_client *c = td_check_client(L, 1);
    td_request *r;
    size_t n;
    const char *id = luaL_checklstring(L, 2, &n);
    td_buf *path;
    lua_settop(L, 3);
    r = td_request_new(L, 1);
    r->method = "GET";
    apply_call_options(L, 3, r, "get_call", read_options);
    if (n == 0 || !td_utf8_valid(id, n) || memchr(id, '/', n) || memchr(id, '\\', n) ||
        strcmp(id, ".") == 0 || strcmp(id, "..") == 0) {
        td_fail fail;
        snprintf(fail.field, sizeof fail.field, "call_id");
        snprintf(fail.rule, sizeof fail.rule,
                 "must be a call id: non-empty UTF-8 text without '/' or '\\', not '.' or '..'");
        return td_request_finish(r, td_push_invalid(L, &fail));
    }
    /* one path segment, escaped: an id can never reach another endpoint.  The
     * path is built in the request's (unused) body buffer, which the request
     * userdata owns should anything raise. */
    path = &r->body;
    if (td_buf_puts(path, "/calls/") || url_escape(path, id, n) ||
        td_request_set_url(r, path->data))
        return raise_finished(L, r, "truedy: out of memory");
    path->len = 0;
    return run_request(L, c, r);
}

/* limit and offset: whole numbers in range, given as numbers or digits. */
static int check_paging(lua_State *L, int idx, const char *k, td_fail *f) {
    double lo = strcmp(k, "limit") == 0 ? 1 : 0, hi = strcmp(k, "limit") == 0 ? 100 : 1e15, d = -1;
    if (strcmp(k, "limit") != 0 && strcmp(k, "offset") != 0)
        return 0;
    if (lua_type(L, idx) == LUA_TNUMBER) {
        d = (double)lua_tonumber(L, idx);
    } else if (lua_type(L, idx) == LUA_TSTRING) {
        size_t n, i;
        const char *s = lua_tolstring(L, idx, &n);
        for (i = 0; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            ;
        if (n > 0 && n <= 15 && i == n)
            d = strtod(s, NULL);
    }
    if (d >= lo && d <= hi && d == floor(d))
        return 0;
    snprintf(f->field, sizeof f->field, "%s", k);
    snprintf(f->rule, sizeof f->rule, "%s",
             lo == 1 ? "must be a whole number from 1 to 100" : "must be a whole number, 0 or more");
    return -1;
}

/* client:list_calls([filters [, opts]]) -> envelope | nil, err */
static int client_list_calls(lua_State *L) {
    td_client *c = td_check_client(L, 1);
    td_request *r;
    td_buf *query;
    td_fail fail;
    lua_settop(L, 3);
    if (!lua_isnil(L, 2))
        luaL_checktype(L, 2, LUA_TTABLE);
    r = td_request_new(L, 1);
    r->method = "GET";
    apply_call_options(L, 3, r, "list_calls", read_options);
    memset(&fail, 0, sizeof fail);
    /* built in the request's (unused) body buffer: owned by the userdata, so
     * the raise below cannot leak it */
    query = &r->body;
    if (td_buf_puts(query, "/calls"))
        return raise_finished(L, r, "truedy: out of memory");
    if (lua_istable(L, 2)) {
        int first = 1;
        lua_pushnil(L);
        while (lua_next(L, 2) != 0) {
            size_t kn, vn;
            const char *k, *v;
            char num[64];
            if (lua_type(L, -2) != LUA_TSTRING)
                return raise_finished(L, r, "list_calls: filter names must be strings");
            k = lua_tolstring(L, -2, &kn);
            if (check_paging(L, -1, k, &fail) != 0)
                return td_request_finish(r, td_push_invalid(L, &fail));
            if (lua_type(L, -1) == LUA_TNUMBER) {
                if (td_number_text(L, -1, num, sizeof num) != 0) {
                    snprintf(fail.field, sizeof fail.field, "%s", k);
                    snprintf(fail.rule, sizeof fail.rule, "must be a finite number");
                    return td_request_finish(r, td_push_invalid(L, &fail));
                }
                v = num;
                vn = strlen(num);
            } else if (lua_type(L, -1) == LUA_TSTRING) {
                v = lua_tolstring(L, -1, &vn);
            } else if (lua_type(L, -1) == LUA_TBOOLEAN) {
                v = lua_toboolean(L, -1) ? "true" : "false";
                vn = strlen(v);
            } else {
                snprintf(fail.field, sizeof fail.field, "%s", k);
                snprintf(fail.rule, sizeof fail.rule, "must be a string, number or boolean, got %s",
                         luaL_typename(L, -1));
                return td_request_finish(r, td_push_invalid(L, &fail));
            }
            if (!td_utf8_valid(k, kn) || !td_utf8_valid(v, vn)) {
                snprintf(fail.field, sizeof fail.field, "%s", k);
                snprintf(fail.rule, sizeof fail.rule, "must be valid UTF-8 text");
                return td_request_finish(r, td_push_invalid(L, &fail));
            }
            if (td_buf_putc(query, first ? '?' : '&') || url_escape(query, k, kn) ||
                td_buf_putc(query, '=') || url_escape(query, v, vn))
                return raise_finished(L, r, "truedy: out of memory");
            first = 0;
            lua_pop(L, 1);
        }
    }
    if (td_request_set_url(r, query->data))
        return raise_finished(L, r, "truedy: out of memory");
    query->len = 0;
    return run_request(L, c, r);
}

void td_client_init(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"create_call", client_create_call},
        {"get_call", client_get_call},
        {"list_calls", client_list_calls},
        {"close", client_close_method},
        {NULL, NULL},
    };
    luaL_newmetatable(L, TD_CLIENT_MT);
    lua_newtable(L);
    td_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, client_gc);
    lua_setfield(L, -2, "__gc");
#if LUA_VERSION_NUM >= 504
    lua_pushcfunction(L, client_close_method);
    lua_setfield(L, -2, "__close");
#endif
    lua_pushcfunction(L, client_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "truedy.client");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
}

/* Methods for the module-level shortcuts in truedy.c */
int td_client_create_call(lua_State *L) { return client_create_call(L); }
int td_client_get_call(lua_State *L) { return client_get_call(L); }
int td_client_list_calls(lua_State *L) { return client_list_calls(L); }
int td_client_create_with(lua_State *L, int opts_idx) { return client_create(L, opts_idx); }
