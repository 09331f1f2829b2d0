/*
 * calls.c - each API endpoint as "arguments -> method, path, query, body,
 * idempotency key", and the methods made from them: client:<name>
 * (blocking), client:start_<name> (a handle), truedy.<name> (the default
 * client).  A new endpoint is one row of td_endpoints and one build function.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "truedy.h"

/* ---- building paths and queries --------------------------------------------------- */

/* Percent-encode s into out (RFC 3986 unreserved characters stay). */
static int url_escape(td_buf *out, const char *s, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    size_t i;
    if (td_buf_reserve(out, n * 3) != 0)
        return -1;
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '_' || ch == '.' || ch == '~') {
            out->data[out->len++] = (char)ch;
        } else {
            out->data[out->len++] = '%';
            out->data[out->len++] = hex[ch >> 4];
            out->data[out->len++] = hex[ch & 15];
        }
    }
    out->data[out->len] = '\0';
    return 0;
}

static int set_path(td_req *r, const char *tail) {
    r->path.len = 0;
    return (td_buf_puts(&r->path, r->e->base_path) || td_buf_puts(&r->path, tail)) ? -2 : 0;
}

/* One query parameter from the table entry on the stack (key -2, value -1).
 * 0, -1 refused, -2 out of memory. */
static int add_query_param(lua_State *L, td_req *r, td_fail *f) {
    size_t kn, vn;
    const char *k = lua_tolstring(L, -2, &kn), *v;
    char num[64];
    if (lua_type(L, -1) == LUA_TNUMBER) {
        if (td_number_text(L, -1, num, sizeof num) != 0) {
            td_fail_field(f, k, "must be a finite number");
            return -1;
        }
        v = num;
        vn = strlen(num);
    } else if (lua_type(L, -1) == LUA_TSTRING) {
        v = lua_tolstring(L, -1, &vn);
    } else if (lua_type(L, -1) == LUA_TBOOLEAN) {
        v = lua_toboolean(L, -1) ? "true" : "false";
        vn = strlen(v);
    } else {
        td_fail_field(f, k, "must be a string, number or boolean, got %s", td_type_phrase(L, -1));
        return -1;
    }
    if (!td_utf8_valid(k, kn) || !td_utf8_valid(v, vn)) {
        td_fail_field(f, k, "must be valid UTF-8 text");
        return -1;
    }
    if ((r->query.len > 0 && td_buf_putc(&r->query, '&')) || url_escape(&r->query, k, kn) ||
        td_buf_putc(&r->query, '=') || url_escape(&r->query, v, vn))
        return -2;
    return 0;
}

/* ---- create_call ------------------------------------------------------------------ */

static void check_table(lua_State *L, int arg) { luaL_checktype(L, arg, LUA_TTABLE); }

static int build_create(lua_State *L, int arg, const td_settings *s, td_req *r, td_fail *f) {
    int rc;
    (void)s;
    rc = td_params_create_call(L, arg, &r->body, f);
    if (rc != 0)
        return rc;
    return set_path(r, "/calls");
}

/* ---- get_call ------------------------------------------------------------------------ */

static void check_string(lua_State *L, int arg) { luaL_checkstring(L, arg); }

static int build_get(lua_State *L, int arg, const td_settings *s, td_req *r, td_fail *f) {
    size_t n;
    const char *id = lua_tolstring(L, arg, &n);
    (void)s;
    if (n == 0 || !td_utf8_valid(id, n) || memchr(id, '/', n) || memchr(id, '\\', n) ||
        strcmp(id, ".") == 0 || strcmp(id, "..") == 0) {
        td_fail_field(f, "call_id",
                      "must be a call id: non-empty UTF-8 text without '/' or '\\', not '.' or '..'");
        return -1;
    }
    /* one path segment, escaped: an id can never reach another endpoint */
    if (set_path(r, "/calls/") != 0 || url_escape(&r->path, id, n) != 0)
        return -2;
    return 0;
}

/* ---- list_calls ---------------------------------------------------------------------- */

static void check_optional_table(lua_State *L, int arg) {
    if (!lua_isnoneornil(L, arg))
        luaL_checktype(L, arg, LUA_TTABLE);
}

/* The documented filters.  A misspelt one would be sent and silently
 * ignored by the server, so unknown names raise, like unknown options;
 * options.query passes anything else through untouched. */
static const char *const list_filters[] = {"status", "direction", "agent_id", "limit", "offset",
                                           "created_after", "created_before", NULL};

/* limit and offset: whole numbers in range, given as numbers or digits. */
static int check_paging(lua_State *L, int idx, const char *k, td_fail *f) {
    int is_limit = strcmp(k, "limit") == 0;
    double lo = is_limit ? 1 : 0, hi = is_limit ? 100 : 1e15, d = -1;
    if (!is_limit && strcmp(k, "offset") != 0)
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
    td_fail_field(f, k, "%s",
                  is_limit ? "must be a whole number from 1 to 100" : "must be a whole number, 0 or more");
    return -1;
}

static int build_list(lua_State *L, int arg, const td_settings *s, td_req *r, td_fail *f) {
    int rc;
    if (set_path(r, "/calls") != 0)
        return -2;
    r->query.len = 0;
    if (lua_istable(L, arg)) {
        lua_pushnil(L);
        while (lua_next(L, arg) != 0) {
            const char *k, *const *known;
            if (lua_type(L, -2) != LUA_TSTRING)
                return luaL_error(L, "list_calls: filter names must be strings");
            k = lua_tostring(L, -2);
            for (known = list_filters; *known && strcmp(*known, k) != 0; known++)
                ;
            if (*known == NULL)
                return luaL_error(L,
                                  "list_calls: unknown filter '%s' (filters: status, direction, "
                                  "agent_id, limit, offset, created_after, created_before; "
                                  "others go in options.query)",
                                  k);
            if ((rc = check_paging(L, -1, k, f)) != 0 || (rc = add_query_param(L, r, f)) != 0) {
                lua_pop(L, 2);
                return rc;
            }
            lua_pop(L, 1);
        }
    }
    if (s->query) { /* passed through as given, for filters the server adds later */
        lua_pushnil(L);
        while (lua_next(L, s->query) != 0) {
            if (lua_type(L, -2) != LUA_TSTRING)
                return luaL_error(L, "list_calls: query parameter names must be strings");
            if ((rc = add_query_param(L, r, f)) != 0) {
                lua_pop(L, 2);
                return rc;
            }
            lua_pop(L, 1);
        }
    }
    return 0;
}

const td_endpoint td_endpoints[] = {
    {"create_call", "start_call", "POST", TD_SCOPE_CREATE, 1, check_table, build_create},
    {"get_call", "start_get_call", "GET", 0, 0, check_string, build_get},
    {"list_calls", "start_list_calls", "GET", TD_SCOPE_LIST, 0, check_optional_table, build_list},
    {NULL, NULL, NULL, 0, 0, NULL, NULL},
};

/* ---- the methods ------------------------------------------------------------------------ */

/* The settings a call starts from: the client's. */
static void call_settings(const td_engine *e, td_settings *s) {
    memset(s, 0, sizeof *s);
    s->attempt_timeout = (double)e->cfg.attempt_timeout_ms / 1000.0;
    s->retries = e->cfg.retries;
    s->retry_base_delay = e->cfg.retry_base_delay;
    s->retry_max_delay = e->cfg.retry_max_delay;
    s->retry_max_wait = e->cfg.retry_max_wait;
}

static void read_call_options(lua_State *L, const td_endpoint *ep, td_engine *e, unsigned extra,
                              const char *fname, td_settings *s) {
    call_settings(e, s);
    if (!lua_isnoneornil(L, 3)) {
        if (!lua_istable(L, 3))
            luaL_error(L, "%s: options must be a table, got %s", fname, luaL_typename(L, 3));
        td_options_read(L, 3, TD_SCOPE_CALL | ep->scope | extra, fname, s);
    }
}

typedef struct blocking_ctx {
    const td_endpoint *ep;
    td_req *r;
} blocking_ctx;

/* Runs under lua_pcall: client at 1, argument at 2, options at 3, the
 * context at 4.  The caller releases ctx->r whatever happens in here. */
static int blocking_body(lua_State *L) {
    blocking_ctx *ctx = lua_touserdata(L, 4);
    td_client *c = lua_touserdata(L, 1);
    td_engine *e = c->e;
    td_settings s;
    int n;
    read_call_options(L, ctx->ep, e, 0, ctx->ep->name, &s); /* may raise: nothing held yet */
    ctx->r = td_req_new(e);
    if (ctx->r == NULL)
        return luaL_error(L, "truedy: out of memory");
    n = td_run_prepare(L, ctx->ep, 2, &s, ctx->r);
    if (n != 0)
        return n; /* refused: nothing sent */
    ctx->r->frame = ctx;
    if (td_engine_submit(e, ctx->r) != 0) {
        /* a finalizer or __index closed the client while the call was read */
        ctx->r->stop = TD_STOP_CLOSED;
        ctx->r->state = TD_DONE;
        return td_push_stopped(L, ctx->r);
    }
    return td_run_blocking(L, 1, e, ctx->r, ctx);
}

int td_call_blocking(lua_State *L, const td_endpoint *ep) {
    td_client *c = td_check_client(L, 1);
    td_engine *e = c->e;
    blocking_ctx ctx;
    int status;
    ep->check(L, 2);
    lua_settop(L, 3);
    ctx.ep = ep;
    ctx.r = NULL;
    lua_pushcfunction(L, blocking_body); /* may raise: nothing held yet */
    lua_insert(L, 1);
    lua_pushlightuserdata(L, &ctx);
    td_engine_enter(e);
    status = lua_pcall(L, 4, LUA_MULTRET, 0);
    if (ctx.r != NULL) {
        if (ctx.r->state != TD_DONE) /* left by an error: out of libcurl first */
            td_engine_stop(e, ctx.r, TD_STOP_CANCELLED);
        td_req_unref(ctx.r);
    }
    td_engine_leave(e);
    if (status != LUA_OK)
        return lua_error(L);
    return lua_gettop(L);
}

static int method_blocking(lua_State *L) {
    return td_call_blocking(L, lua_touserdata(L, lua_upvalueindex(1)));
}

/* client:start_<name>(arg [, options]) -> handle | nil, err */
static int method_start(lua_State *L) {
    const td_endpoint *ep = lua_touserdata(L, lua_upvalueindex(1));
    const char *fname = lua_tostring(L, lua_upvalueindex(2));
    td_client *c = td_check_client(L, 1);
    td_engine *e = c->e;
    td_settings s;
    td_handle *h;
    td_req *r;
    int n, hidx;
    ep->check(L, 2);
    lua_settop(L, 3);
    read_call_options(L, ep, e, TD_SCOPE_START, fname, &s);
    /* the handle first: it owns the request from the moment it exists */
    td_handle_push(L, 1, s.on_done);
    hidx = lua_gettop(L);
    h = lua_touserdata(L, hidx);
    r = td_req_new(e);
    if (r == NULL)
        return luaL_error(L, "truedy: out of memory");
    h->r = r;
    n = td_run_prepare(L, ep, 2, &s, r);
    if (n != 0)
        return n; /* refused: the handle is dropped, nothing sent */
    if (e->closed) {
        r->stop = TD_STOP_CLOSED;
        r->state = TD_DONE;
        return td_push_stopped(L, r);
    }
    r->has_on_done = s.on_done != 0;
    td_anchor_set(L, 1, r->id, hidx); /* in flight: the client holds it */
    td_engine_submit(e, r);
    lua_pushvalue(L, hidx);
    return 1;
}

/* truedy.<name>(arg [, options]) on the default client */
static int module_call(lua_State *L) {
    const td_endpoint *ep = lua_touserdata(L, lua_upvalueindex(1));
    ep->check(L, 1);
    lua_settop(L, 2);
    lua_pushvalue(L, lua_upvalueindex(2)); /* the default client getter */
    lua_call(L, 0, 2);
    if (lua_isnil(L, -2))
        return 2; /* nil, config error */
    lua_pop(L, 1);
    lua_insert(L, 1);
    return td_call_blocking(L, ep);
}

void td_calls_register(lua_State *L, int methods) {
    const td_endpoint *ep;
    for (ep = td_endpoints; ep->name; ep++) {
        lua_pushlightuserdata(L, (void *)ep);
        lua_pushcclosure(L, method_blocking, 1);
        lua_setfield(L, methods, ep->name);
        lua_pushlightuserdata(L, (void *)ep);
        lua_pushstring(L, ep->start_name);
        lua_pushcclosure(L, method_start, 2);
        lua_setfield(L, methods, ep->start_name);
    }
}

/* The module-level shortcuts; the module table is on top, the default
 * client getter at getter_idx. */
void td_calls_register_module(lua_State *L, int module, int getter) {
    const td_endpoint *ep;
    for (ep = td_endpoints; ep->name; ep++) {
        lua_pushlightuserdata(L, (void *)ep);
        lua_pushvalue(L, getter);
        lua_pushcclosure(L, module_call, 2);
        lua_setfield(L, module, ep->name);
    }
}
