/*
 * outcome.c - what one attempt produced (status, headers, body, transfer
 * result) turned into what the caller gets: the decoded envelope, or the
 * error object.  No libcurl handle in here: the fuzz target drives this file
 * with hostile bytes, through the real decoding.
 *
 * The error envelope is parsed once; the facts the retry policy needs (is it
 * an error, retryable, how long the server asked us to wait) come back in C.
 */
#include <stdio.h>
#include <string.h>

#include "truedy.h"

#define EXCERPT_MAX 160

/* A short, single-line, readable excerpt of a body: tags of HTML pages are
 * dropped, whitespace and control characters collapsed, cut on a UTF-8
 * boundary. */
static void push_excerpt(lua_State *L, const char *s, size_t n) {
    char out[EXCERPT_MAX + 4];
    size_t i, o = 0;
    int in_tag = 0, space = 1;
    int html = n > 0 && memchr(s, '<', n < 64 ? n : 64) != NULL;
    for (i = 0; i < n && o < EXCERPT_MAX; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (html && ch == '<') {
            in_tag = 1;
            continue;
        }
        if (in_tag) {
            if (ch == '>') {
                in_tag = 0;
                if (!space)
                    out[o++] = ' ', space = 1;
            }
            continue;
        }
        if (ch < 0x20 || ch == 0x7f || ch == ' ') {
            if (!space)
                out[o++] = ' ', space = 1;
            continue;
        }
        out[o++] = (char)ch;
        space = 0;
    }
    while (o > 0 && out[o - 1] == ' ')
        o--;
    /* do not end inside a multi-byte character */
    while (o > 0 && !td_utf8_valid(out, o))
        o--;
    if (i < n && o > 0) { /* cut: say so */
        out[o++] = '.';
        out[o++] = '.';
        out[o++] = '.';
    }
    lua_pushlstring(L, out, o);
}

static const char *code_for_status(long status, char *buf, size_t cap) {
    switch (status) {
    case 400: return "bad_request";
    case 401: return "unauthorized";
    case 402: return "payment_required";
    case 403: return "forbidden";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 408: return "request_timeout";
    case 409: return "conflict";
    case 422: return "validation_error";
    case 429: return "rate_limit_exceeded";
    case 500: return "internal_error";
    case 502: return "bad_gateway";
    case 503: return "service_unavailable";
    case 504: return "gateway_timeout";
    default:
        snprintf(buf, cap, "http_%ld", status);
        return buf;
    }
}

static void set_common(lua_State *L, int err, const td_outcome_in *in, const td_outcome_info *info) {
    const td_attempt *a = in->a;
    lua_pushinteger(L, in->attempts);
    lua_setfield(L, err, "attempts");
    if (in->idem_key && in->idem_key[0]) {
        lua_pushstring(L, in->idem_key);
        lua_setfield(L, err, "idempotency_key");
    }
    lua_pushboolean(L, info->retryable);
    lua_setfield(L, err, "retryable");
    if (a->status > 0) {
        lua_pushinteger(L, a->status);
        lua_setfield(L, err, "status");
    }
    /* headers may have arrived even when the body did not */
    if (a->request_id[0]) {
        lua_pushstring(L, a->request_id);
        lua_setfield(L, err, "request_id");
    }
    if (a->content_type[0]) {
        lua_pushstring(L, a->content_type);
        lua_setfield(L, err, "content_type");
    }
}

static void set_retry_after(lua_State *L, int err, const td_outcome_info *info) {
    if (info->server_wait >= 0) {
        lua_pushnumber(L, info->server_wait);
        lua_setfield(L, err, "retry_after");
    }
}

static int push_transfer_error(lua_State *L, const td_outcome_in *in, td_outcome_info *info) {
    const td_attempt *a = in->a;
    const char *kind = "network";
    char msg[CURL_ERROR_SIZE + 256];
    const char *detail = a->errbuf[0] ? a->errbuf : curl_easy_strerror(a->result);
    int err;
    if (a->overflow) {
        kind = "response";
        snprintf(msg, sizeof msg,
                 "the response body is larger than the %zu-byte limit (max_response_bytes)",
                 in->max_response_bytes);
    } else if (a->result == CURLE_PARTIAL_FILE) {
        kind = "response";
        snprintf(msg, sizeof msg, "the response body was cut short: %s", detail);
    } else if (a->result == CURLE_OPERATION_TIMEDOUT) {
        snprintf(msg, sizeof msg, "timed out (attempt_timeout %.3g s, connect_timeout %.3g s): %s",
                 in->attempt_timeout, in->connect_timeout, detail);
    } else {
        snprintf(msg, sizeof msg, "%s (curl error %d)", detail, (int)a->result);
    }
    info->server_wait = a->retry_after;
    lua_pushnil(L);
    td_error_new(L, kind, "");
    err = lua_gettop(L);
    lua_pushstring(L, msg);
    lua_setfield(L, err, "message");
    lua_pushinteger(L, (lua_Integer)a->result);
    lua_setfield(L, err, "curl_code");
    set_common(L, err, in, info);
    set_retry_after(L, err, info);
    return 2;
}

/* err.message = prefix .. excerpt of the body, and err.excerpt = the excerpt. */
static void set_message_with_excerpt(lua_State *L, int err, const char *prefix,
                                     const td_outcome_in *in) {
    lua_pushstring(L, prefix);
    push_excerpt(L, in->body ? in->body : "", in->body_len);
    lua_pushvalue(L, -1);
    lua_setfield(L, err, "excerpt");
    lua_concat(L, 2);
    lua_setfield(L, err, "message");
}

/* err[as] = the value on top when it is a string; pops it either way. */
static void take_string(lua_State *L, int err, const char *as) {
    if (lua_type(L, -1) == LUA_TSTRING)
        lua_setfield(L, err, as);
    else
        lua_pop(L, 1);
}

/* A string field of the table at t, or NULL; the value stays pushed. */
static const char *get_str(lua_State *L, int t, const char *k) {
    lua_getfield(L, t, k);
    return lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
}

/* The documented envelope {"error": {...}, "meta": {...}}, or the shapes
 * frameworks in front of the API produce: {"error": "text"},
 * {"detail": "text" | [{"loc": [...], "msg": "..."}]}, {"message": "text"}.
 * Also finds the 429 wait: error.details.reset_at against meta.ts. */
static void read_error_body(lua_State *L, int env, int err, const td_outcome_in *in,
                            td_outcome_info *info) {
    int top = lua_gettop(L), e, meta;
    const char *reset_at = NULL, *now_text = NULL;
    lua_getfield(L, env, "error");
    e = lua_gettop(L);
    lua_getfield(L, env, "meta");
    meta = lua_gettop(L);
    if (lua_type(L, e) == LUA_TTABLE) {
        lua_getfield(L, e, "code");
        take_string(L, err, "code");
        lua_getfield(L, e, "message");
        take_string(L, err, "message");
        lua_getfield(L, e, "details");
        if (lua_type(L, -1) == LUA_TTABLE) {
            int d = lua_gettop(L);
            lua_getfield(L, d, "field");
            take_string(L, err, "field");
            reset_at = get_str(L, d, "reset_at");
            lua_pushvalue(L, d);
            lua_setfield(L, err, "details");
        }
        lua_getfield(L, e, "request_id"); /* older backends put it here */
        take_string(L, err, "request_id");
        if (reset_at == NULL)
            reset_at = get_str(L, e, "reset_at");
        now_text = get_str(L, e, "ts");
        if (now_text == NULL)
            now_text = get_str(L, e, "timestamp");
    } else if (lua_type(L, e) == LUA_TSTRING) {
        lua_pushvalue(L, e);
        lua_setfield(L, err, "message");
    } else {
        lua_getfield(L, env, "detail");
        if (lua_type(L, -1) == LUA_TSTRING) {
            take_string(L, err, "message");
        } else if (lua_type(L, -1) == LUA_TTABLE) {
            lua_rawgeti(L, -1, 1);
            if (lua_type(L, -1) == LUA_TTABLE) {
                lua_getfield(L, -1, "msg");
                take_string(L, err, "message");
                lua_getfield(L, -1, "loc");
                if (lua_type(L, -1) == LUA_TTABLE) {
                    lua_rawgeti(L, -1, (lua_Integer)td_rawlen(L, -1));
                    take_string(L, err, "field");
                }
            }
        } else {
            lua_getfield(L, env, "message");
            take_string(L, err, "message");
        }
    }
    if (lua_type(L, meta) == LUA_TTABLE) {
        const char *ts = get_str(L, meta, "ts");
        if (ts == NULL)
            ts = get_str(L, meta, "timestamp");
        if (ts != NULL)
            now_text = ts;
        lua_getfield(L, meta, "request_id");
        take_string(L, err, "request_id");
    }
    if (in->a->status == 429 && info->server_wait < 0)
        info->server_wait = td_policy_reset_wait(reset_at, now_text, td_wallclock());
    lua_settop(L, top);
}

/* The error for a non-2xx answer. */
static int push_api_error(lua_State *L, const td_outcome_in *in, td_outcome_info *info) {
    const td_attempt *a = in->a;
    int err, env = 0;
    int decoded = in->body_len > 0 && td_json_decode(L, in->body, in->body_len, in->secret) &&
                  lua_type(L, -1) == LUA_TTABLE;
    if (decoded)
        env = lua_gettop(L);
    else if (in->body_len > 0)
        lua_pop(L, 1); /* the decoder's message, or a value that is not an envelope */

    info->server_wait = a->retry_after; /* a Retry-After header wins */
    lua_pushnil(L);
    td_error_new(L, "api", "");
    err = lua_gettop(L);
    set_common(L, err, in, info);
    if (decoded)
        read_error_body(L, env, err, in, info);
    set_retry_after(L, err, info);

    /* whatever the body lacked */
    lua_getfield(L, err, "code");
    if (lua_isnil(L, -1)) {
        char codebuf[32];
        lua_pushstring(L, a->status >= 300 && a->status < 400
                              ? "redirect_not_followed"
                              : code_for_status(a->status, codebuf, sizeof codebuf));
        lua_setfield(L, err, "code");
    }
    lua_pop(L, 1);
    lua_getfield(L, err, "message");
    if (lua_type(L, -1) != LUA_TSTRING || td_rawlen(L, -1) == 0) {
        char msg[512];
        if (a->status >= 300 && a->status < 400) {
            snprintf(msg, sizeof msg,
                     "the server answered %ld with a redirect; truedy does not follow redirects "
                     "(they could carry the API key to another host): check base_url",
                     a->status);
            lua_pushstring(L, msg);
            lua_setfield(L, err, "message");
        } else if (in->body_len == 0) {
            snprintf(msg, sizeof msg, "HTTP %ld with an empty body", a->status);
            lua_pushstring(L, msg);
            lua_setfield(L, err, "message");
        } else {
            snprintf(msg, sizeof msg, "HTTP %ld with a body that is not the API's JSON (%s): ",
                     a->status, a->content_type[0] ? a->content_type : "no content type");
            set_message_with_excerpt(L, err, msg, in);
        }
    }
    lua_settop(L, err);
    if (env)
        lua_remove(L, env);
    return 2;
}

static int push_response_error(lua_State *L, const td_outcome_in *in, td_outcome_info *info,
                               const char *why) {
    char msg[512];
    int err;
    snprintf(msg, sizeof msg, "HTTP %ld with a body that could not be read (%s): ", in->a->status,
             why);
    lua_pushnil(L);
    td_error_new(L, "response", "");
    err = lua_gettop(L);
    set_common(L, err, in, info);
    set_message_with_excerpt(L, err, msg, in);
    return 2;
}

/* cjson gives tables for arrays and objects alike; the text tells them apart */
static int starts_with_brace(const char *s, size_t n) {
    size_t i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
        i++;
    return i < n && s[i] == '{';
}

int td_outcome_push(lua_State *L, const td_outcome_in *in, td_outcome_info *info) {
    const td_attempt *a = in->a;
    const char *body = in->body ? in->body : "";
    int top = lua_gettop(L);
    info->is_error = 1;
    info->retryable = td_policy_retryable(a);
    info->server_wait = -1;
    if (a->result != CURLE_OK)
        return push_transfer_error(L, in, info);
    if (a->status < 200 || a->status >= 300)
        return push_api_error(L, in, info);
    if (!td_json_decode(L, body, in->body_len, in->secret)) {
        char why[256];
        snprintf(why, sizeof why, "not JSON: %s", lua_tostring(L, -1));
        lua_settop(L, top);
        return push_response_error(L, in, info, why);
    }
    if (lua_type(L, -1) != LUA_TTABLE || !starts_with_brace(body, in->body_len)) {
        lua_settop(L, top);
        return push_response_error(L, in, info, "JSON, but not an object");
    }
    info->is_error = 0;
    return 1;
}
