/*
 * request.c - one API request in flight: its easy handle, headers, body,
 * response buffer and retry state, owned by a userdata so that a Lua error
 * at any point leaks nothing.
 *
 * The libcurl callbacks here only touch C memory.  Everything that needs
 * Lua (decoding a 429 body, building the result) runs between libcurl
 * calls, never inside one.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "truedy.h"

#define EXCERPT_MAX 160

/* ---- libcurl callbacks (C only) --------------------------------------- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata) {
    td_request *r = userdata;
    size_t n = size * nmemb;
    if (r->resp.len + n > r->client->max_response_bytes) {
        r->overflow = 1;
        return 0; /* makes libcurl stop with CURLE_WRITE_ERROR */
    }
    if (td_buf_append(&r->resp, data, n) != 0)
        return 0;
    return n;
}

/* Copy a header value (trimmed) into dst. */
static void header_value(const char *v, size_t n, char *dst, size_t cap) {
    while (n > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    while (n > 0 && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

static int header_is(const char *line, size_t n, const char *name, size_t *vstart) {
    size_t k = strlen(name);
    if (n > k && strncasecmp(line, name, k) == 0 && line[k] == ':') {
        *vstart = k + 1;
        return 1;
    }
    return 0;
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *userdata) {
    td_request *r = userdata;
    size_t n = size * nmemb, v;
    if (n >= 5 && strncmp(line, "HTTP/", 5) == 0) {
        /* a new response (after a 100 Continue, say): forget the last one */
        r->content_type[0] = '\0';
        r->request_id_hdr[0] = '\0';
        r->retry_after = -1;
    } else if (header_is(line, n, "content-type", &v)) {
        header_value(line + v, n - v, r->content_type, sizeof r->content_type);
    } else if (header_is(line, n, "x-request-id", &v)) {
        header_value(line + v, n - v, r->request_id_hdr, sizeof r->request_id_hdr);
    } else if (header_is(line, n, "retry-after", &v)) {
        char value[64], *end;
        double secs;
        header_value(line + v, n - v, value, sizeof value);
        secs = strtod(value, &end);
        if (end != value && *end == '\0' && secs >= 0) {
            r->retry_after = secs;
        } else {
            time_t when = curl_getdate(value, NULL); /* the HTTP-date form */
            if (when != (time_t)-1) {
                double d = (double)when - td_wallclock();
                r->retry_after = d > 0 ? d : 0;
            }
        }
    }
    return n;
}

/* Write data[0..n) to stderr with every occurrence of the key replaced. */
static void write_redacted(const char *data, size_t n, const char *key) {
    size_t klen = key ? strlen(key) : 0, run = 0, hit;
    while (klen > 0 && (hit = td_find_key(data, n, run, key, klen)) < n) {
        fwrite(data + run, 1, hit - run, stderr);
        fputs("[redacted]", stderr);
        run = hit + klen;
    }
    fwrite(data + run, 1, n - run, stderr);
}

/* The debug option's trace: headers and libcurl's notes go to stderr, with
 * the Authorization value and every other appearance of the key redacted
 * (libcurl also logs request headers as plain text lines with HTTP/2). */
int td_debug_trace(CURL *easy, curl_infotype type, char *data, size_t size, void *userdata) {
    const td_client *c = userdata;
    const char *prefix;
    size_t i = 0;
    (void)easy;
    switch (type) {
    case CURLINFO_TEXT: prefix = "truedy * "; break;
    case CURLINFO_HEADER_OUT: prefix = "truedy > "; break;
    case CURLINFO_HEADER_IN: prefix = "truedy < "; break;
    case CURLINFO_DATA_OUT: fprintf(stderr, "truedy > [%zu bytes of body]\n", size); return 0;
    case CURLINFO_DATA_IN: fprintf(stderr, "truedy < [%zu bytes of body]\n", size); return 0;
    default: return 0;
    }
    while (i < size) {
        size_t end = i;
        while (end < size && data[end] != '\n')
            end++;
        if (end > i) {
            size_t len = end - i;
            if (data[end - 1] == '\r')
                len--;
            fputs(prefix, stderr);
            if (len >= 14 && strncasecmp(data + i, "authorization:", 14) == 0)
                fputs("Authorization: [redacted]", stderr);
            else
                write_redacted(data + i, len, c ? c->api_key : NULL);
            fputc('\n', stderr);
        }
        i = end + 1;
    }
    return 0;
}

/* ---- the userdata ------------------------------------------------------- */

/* The header list holds a copy of the Authorization line: wipe it first. */
static void free_headers(td_request *r) {
    struct curl_slist *h;
    for (h = r->headers; h != NULL; h = h->next) {
        if (h->data && strncasecmp(h->data, "authorization:", 14) == 0) {
            volatile char *p = h->data;
            while (*p)
                *p++ = '\0';
        }
    }
    curl_slist_free_all(r->headers);
    r->headers = NULL;
}

void td_request_release(td_request *r) {
    if (r->easy) {
        if (r->in_multi && r->client && r->client->multi)
            curl_multi_remove_handle(r->client->multi, r->easy);
        r->in_multi = 0;
        curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, (char *)NULL);
        curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
        if (r->client)
            td_client_give_easy(r->client, r->easy);
        else
            curl_easy_cleanup(r->easy);
        r->easy = NULL;
    }
    free_headers(r);
}

/* Free everything the request holds.  Called as each method returns, so a
 * finished request holds nothing: when memory is so short that Lua cannot
 * even call a finalizer (it then frees the userdata without __gc), nothing
 * leaks.  __gc is the same, for the paths where a Lua error left early. */
static void request_free(td_request *r) {
    if (r->easy) { /* never expected: td_client_run releases it */
        curl_easy_cleanup(r->easy);
        r->easy = NULL;
    }
    r->client = NULL; /* it may be gone by the time the collector comes */
    free_headers(r);
    td_buf_free(&r->body);
    td_buf_free(&r->resp);
    free(r->url);
    r->url = NULL;
}

int td_request_finish(td_request *r, int nresults) {
    td_request_release(r);
    request_free(r);
    return nresults;
}

static int request_gc(lua_State *L) {
    request_free(luaL_checkudata(L, 1, TD_REQUEST_MT));
    return 0;
}

void td_request_init(lua_State *L) {
    luaL_newmetatable(L, TD_REQUEST_MT);
    lua_pushcfunction(L, request_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, "truedy.request");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
}

td_request *td_request_new(lua_State *L, int client_idx) {
    td_client *c = td_check_client(L, client_idx);
    td_request *r = td_newuserdata(L, sizeof *r);
    memset(r, 0, sizeof *r);
    r->retry_after = -1;
    r->wait_hint = -1;
    r->max_retries = c->max_retries;
    r->timeout_ms = c->timeout_ms;
    r->client = c;
    luaL_getmetatable(L, TD_REQUEST_MT);
    lua_setmetatable(L, -2);
    return r;
}

int td_request_set_url(td_request *r, const char *path) {
    td_buf url = {0};
    if (td_buf_puts(&url, r->client->base_url) || td_buf_puts(&url, path)) {
        td_buf_free(&url);
        return -1;
    }
    free(r->url);
    r->url = url.data;
    return 0;
}

static int add_header(td_request *r, const char *line) {
    struct curl_slist *l = curl_slist_append(r->headers, line);
    if (l == NULL)
        return -1;
    r->headers = l;
    return 0;
}

int td_request_set_headers(td_request *r, int with_body) {
    td_client *c = r->client;
    if (add_header(r, c->auth_header) || add_header(r, c->ua_header) ||
        add_header(r, "Accept: application/json") ||
        (with_body && add_header(r, "Content-Type: application/json")) ||
        add_header(r, "Expect:")) /* no 100-continue round trip */
        return -1;
    if (r->idem_key[0]) {
        char line[TD_IDEM_KEY_MAX + 32];
        snprintf(line, sizeof line, "X-Idempotency-Key: %s", r->idem_key);
        if (add_header(r, line))
            return -1;
    }
    return 0;
}

/* Everything that differs per request; the constant options were set when
 * the client made the handle. */
static int configure_easy(td_request *r) {
    CURL *e = r->easy;
    CURLcode rc = CURLE_OK;
    rc |= curl_easy_setopt(e, CURLOPT_URL, r->url);
    rc |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    rc |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    rc |= curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    rc |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    rc |= curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    rc |= curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    rc |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    rc |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, r->timeout_ms);
    if (strcmp(r->method, "POST") == 0) {
        rc |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body.len);
        rc |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body.data ? r->body.data : "");
    } else {
        rc |= curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    }
    return rc == CURLE_OK ? 0 : -1;
}

int td_request_start_attempt(td_request *r) {
    td_client *c = r->client;
    if (c == NULL || c->closed)
        return -1;
    if (r->easy == NULL) {
        r->easy = td_client_take_easy(c);
        if (r->easy == NULL || configure_easy(r) != 0)
            return -1;
    }
    r->resp.len = 0;
    r->overflow = 0;
    r->status = 0;
    r->retry_after = -1;
    r->wait_hint = -1;
    r->errbuf[0] = '\0';
    r->content_type[0] = '\0';
    r->request_id_hdr[0] = '\0';
    r->attempts++;
    if (curl_multi_add_handle(c->multi, r->easy) != CURLM_OK)
        return -1;
    r->in_multi = 1;
    r->state = TD_RUNNING;
    return 0;
}

/* ---- deciding what an attempt means ------------------------------------ */

static int status_retryable(long status) {
    return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 ||
           status == 504;
}

/* Failures where the request may not have reached the server, or its answer
 * was lost: safe to repeat because the idempotency key goes with it. */
static int curl_retryable(CURLcode rc) {
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
        return 1;
    default:
        return 0;
    }
}

static int attempt_retryable(const td_request *r) {
    if (r->result != CURLE_OK)
        return !r->overflow && curl_retryable(r->result);
    return status_retryable(r->status);
}

/* A string field of the table on top (or NULL); leaves the value pushed. */
static const char *get_str(lua_State *L, int t, const char *k) {
    lua_getfield(L, t, k);
    return lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
}

/* For a 429: how long the server asks us to wait, from
 * error.details.reset_at measured against the server's own clock
 * (meta.ts / meta.timestamp / error.ts) so that clock skew between us and
 * the API does not matter. */
static double rate_limit_wait(lua_State *L, td_request *r) {
    double wait = -1, reset, server_now;
    int top = lua_gettop(L);
    if (r->resp.len == 0 || !td_json_decode(L, r->resp.data, r->resp.len) ||
        lua_type(L, -1) != LUA_TTABLE) {
        lua_settop(L, top);
        return -1;
    }
    {
        int env = lua_gettop(L), err, meta;
        const char *reset_at = NULL, *now_text = NULL;
        lua_getfield(L, env, "error");
        err = lua_gettop(L);
        lua_getfield(L, env, "meta");
        meta = lua_gettop(L);
        if (lua_type(L, err) == LUA_TTABLE) {
            int details;
            lua_getfield(L, err, "details");
            details = lua_gettop(L);
            if (lua_type(L, details) == LUA_TTABLE)
                reset_at = get_str(L, details, "reset_at");
            if (reset_at == NULL)
                reset_at = get_str(L, err, "reset_at");
        }
        if (lua_type(L, meta) == LUA_TTABLE) {
            now_text = get_str(L, meta, "ts");
            if (now_text == NULL)
                now_text = get_str(L, meta, "timestamp");
        }
        if (now_text == NULL && lua_type(L, err) == LUA_TTABLE) {
            now_text = get_str(L, err, "ts");
            if (now_text == NULL)
                now_text = get_str(L, err, "timestamp");
        }
        if (reset_at && td_parse_iso8601(reset_at, &reset) == 0) {
            if (now_text == NULL || td_parse_iso8601(now_text, &server_now) != 0)
                server_now = td_wallclock();
            wait = reset - server_now;
            if (wait < 0)
                wait = 0;
        }
    }
    lua_settop(L, top);
    return wait;
}

static int rate_limit_wait_protected(lua_State *L) {
    td_request *r = lua_touserdata(L, 1);
    r->wait_hint = rate_limit_wait(L, r);
    return 0;
}

static double jitter(void) {
    uint32_t x = 0;
    if (td_random_bytes(&x, sizeof x) != 0)
        x = (uint32_t)(td_monotonic() * 1e6);
    return (double)x / 4294967296.0;
}

static void redact_text(char *text, const char *key) {
    size_t n = strlen(text);
    td_redact(text, &n, key);
    text[n] = '\0';
}

void td_request_attempt_done(lua_State *L, td_request *r, CURLcode result) {
    td_client *c = r->client;
    double delay = -1;
    if (r->in_multi && c && c->multi)
        curl_multi_remove_handle(c->multi, r->easy);
    r->in_multi = 0;
    r->result = result;
    r->status = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
    if (result == CURLE_FILESIZE_EXCEEDED)
        r->overflow = 1; /* refused from Content-Length before reading the body */
    if (c && c->api_key) {
        /* a server or proxy that echoes the request back must not put the
         * key into an error: everything later derives from these buffers */
        td_redact(r->resp.data, &r->resp.len, c->api_key);
        if (r->resp.data)
            r->resp.data[r->resp.len] = '\0';
        redact_text(r->content_type, c->api_key);
        redact_text(r->request_id_hdr, c->api_key);
        redact_text(r->errbuf, c->api_key);
    }

    /* the server said how long: Retry-After first, then reset_at */
    if (r->retry_after >= 0)
        r->wait_hint = r->retry_after;
    else if (r->status == 429 && td_cpcall(L, rate_limit_wait_protected, r) != LUA_OK)
        lua_pop(L, 1); /* the error object: no wait hint, plain backoff */
    if (attempt_retryable(r) && r->attempts <= r->max_retries && c && !c->closed) {
        if (r->wait_hint >= 0) {
            /* a little past the reset so we do not arrive a hair early */
            delay = r->wait_hint + 0.05 + 0.1 * jitter();
            if (r->wait_hint > c->max_retry_wait)
                delay = -1; /* longer than allowed: give the error back */
        } else {
            double cap = c->retry_base_delay * pow(2.0, (double)(r->attempts - 1));
            if (cap > c->retry_max_delay)
                cap = c->retry_max_delay;
            delay = cap / 2 + (cap / 2) * jitter(); /* "equal jitter" */
        }
    }
    if (delay >= 0) {
        r->state = TD_WAITING;
        r->retry_at = td_monotonic() + delay;
    } else {
        r->state = TD_DONE; /* td_client_run releases the handle as it returns */
    }
}

/* ---- building the outcome ------------------------------------------------ */

/* A short, single-line, readable excerpt of a body: tags of HTML pages are
 * dropped, whitespace collapsed, cut on a UTF-8 boundary. */
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

static void set_common(lua_State *L, int err, td_request *r) {
    lua_pushinteger(L, r->attempts);
    lua_setfield(L, err, "attempts");
    if (r->idem_key[0]) {
        lua_pushstring(L, r->idem_key);
        lua_setfield(L, err, "idempotency_key");
    }
    lua_pushboolean(L, attempt_retryable(r));
    lua_setfield(L, err, "retryable");
    if (r->status > 0) {
        lua_pushinteger(L, r->status);
        lua_setfield(L, err, "status");
    }
    if (r->wait_hint >= 0) {
        lua_pushnumber(L, r->wait_hint);
        lua_setfield(L, err, "retry_after");
    }
    /* headers may have arrived even when the body did not */
    if (r->request_id_hdr[0]) {
        lua_pushstring(L, r->request_id_hdr);
        lua_setfield(L, err, "request_id");
    }
    if (r->content_type[0]) {
        lua_pushstring(L, r->content_type);
        lua_setfield(L, err, "content_type");
    }
}

static int push_transfer_error(lua_State *L, td_request *r) {
    td_client *c = r->client;
    const char *kind = "network";
    char msg[CURL_ERROR_SIZE + 256];
    const char *detail = r->errbuf[0] ? r->errbuf : curl_easy_strerror(r->result);
    int err;
    if (r->overflow) {
        kind = "response";
        snprintf(msg, sizeof msg,
                 "the response body is larger than the %zu-byte limit (max_response_bytes)",
                 c ? c->max_response_bytes : (size_t)0);
    } else if (r->result == CURLE_PARTIAL_FILE) {
        kind = "response";
        snprintf(msg, sizeof msg, "the response body was cut short: %s", detail);
    } else if (r->result == CURLE_OPERATION_TIMEDOUT) {
        snprintf(msg, sizeof msg, "timed out (timeout %.3g s, connect_timeout %.3g s): %s",
                 (double)r->timeout_ms / 1000.0,
                 c ? (double)c->connect_timeout_ms / 1000.0 : 0.0, detail);
    } else {
        snprintf(msg, sizeof msg, "%s (curl error %d)", detail, (int)r->result);
    }
    lua_pushnil(L);
    td_error_new(L, kind, "");
    err = lua_gettop(L);
    lua_pushstring(L, msg);
    lua_setfield(L, err, "message");
    lua_pushinteger(L, (lua_Integer)r->result);
    lua_setfield(L, err, "curl_code");
    set_common(L, err, r);
    return 2;
}

/* err.message = prefix .. excerpt of the body, and err.excerpt = the excerpt. */
static void set_message_with_excerpt(lua_State *L, int err, const char *prefix, const td_request *r) {
    lua_pushstring(L, prefix);
    push_excerpt(L, r->resp.data ? r->resp.data : "", r->resp.len);
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

/* The error for a non-2xx answer. */
static int push_api_error(lua_State *L, td_request *r) {
    int err, env = 0;
    int decoded = r->resp.len > 0 && td_json_decode(L, r->resp.data, r->resp.len) &&
                  lua_type(L, -1) == LUA_TTABLE;
    if (decoded)
        env = lua_gettop(L);
    else if (r->resp.len > 0)
        lua_pop(L, 1); /* the decoder's message */

    lua_pushnil(L);
    td_error_new(L, "api", "");
    err = lua_gettop(L);
    set_common(L, err, r);

    if (decoded) {
        int e, meta;
        lua_getfield(L, env, "error");
        e = lua_gettop(L);
        lua_getfield(L, env, "meta");
        meta = lua_gettop(L);
        if (lua_type(L, e) == LUA_TTABLE) {
            /* the documented envelope */
            lua_getfield(L, e, "code");
            take_string(L, err, "code");
            lua_getfield(L, e, "message");
            take_string(L, err, "message");
            lua_getfield(L, e, "details");
            if (lua_type(L, -1) == LUA_TTABLE) {
                int d = lua_gettop(L);
                lua_getfield(L, d, "field");
                take_string(L, err, "field");
                lua_setfield(L, err, "details");
            } else {
                lua_pop(L, 1);
            }
            lua_getfield(L, e, "request_id"); /* older backends put it here */
            take_string(L, err, "request_id");
        } else if (lua_type(L, e) == LUA_TSTRING) {
            lua_pushvalue(L, e); /* {"error": "text"} */
            lua_setfield(L, err, "message");
        } else {
            /* {"detail": "text"} or {"detail": [{"loc": [...], "msg": "..."}]}
             * from frameworks in front of the API, or {"message": "text"} */
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
                    lua_pop(L, 1);
                }
                lua_pop(L, 2);
            } else {
                lua_pop(L, 1);
                lua_getfield(L, env, "message");
                take_string(L, err, "message");
            }
        }
        if (lua_type(L, meta) == LUA_TTABLE) {
            lua_getfield(L, meta, "request_id");
            take_string(L, err, "request_id");
        }
        lua_settop(L, err);
    }

    /* whatever the body lacked */
    lua_getfield(L, err, "code");
    if (lua_isnil(L, -1)) {
        char codebuf[32];
        lua_pushstring(L, r->status >= 300 && r->status < 400
                              ? "redirect_not_followed"
                              : code_for_status(r->status, codebuf, sizeof codebuf));
        lua_setfield(L, err, "code");
    }
    lua_pop(L, 1);
    lua_getfield(L, err, "message");
    if (lua_type(L, -1) != LUA_TSTRING || td_rawlen(L, -1) == 0) {
        char msg[512];
        if (r->status >= 300 && r->status < 400) {
            snprintf(msg, sizeof msg,
                     "the server answered %ld with a redirect; truedy does not follow redirects "
                     "(they could carry the API key to another host): check base_url",
                     r->status);
            lua_pushstring(L, msg);
            lua_setfield(L, err, "message");
        } else if (r->resp.len == 0) {
            snprintf(msg, sizeof msg, "HTTP %ld with an empty body", r->status);
            lua_pushstring(L, msg);
            lua_setfield(L, err, "message");
        } else {
            snprintf(msg, sizeof msg, "HTTP %ld with a body that is not the API's JSON (%s): ",
                     r->status, r->content_type[0] ? r->content_type : "no content type");
            set_message_with_excerpt(L, err, msg, r);
        }
    }
    lua_settop(L, err);
    return 2;
}

static int push_response_error(lua_State *L, td_request *r, const char *why) {
    char msg[512];
    int err;
    snprintf(msg, sizeof msg, "HTTP %ld with a body that could not be read (%s): ", r->status, why);
    lua_pushnil(L);
    td_error_new(L, "response", "");
    err = lua_gettop(L);
    set_common(L, err, r);
    set_message_with_excerpt(L, err, msg, r);
    return 2;
}

/* cjson gives tables for arrays and objects alike; the text tells them apart */
static int starts_with_brace(const char *s, size_t n) {
    size_t i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
        i++;
    return i < n && s[i] == '{';
}

int td_request_push_outcome(lua_State *L, td_request *r) {
    int top = lua_gettop(L);
    const char *body = r->resp.data ? r->resp.data : "";
    if (r->result != CURLE_OK)
        return push_transfer_error(L, r);
    if (r->status < 200 || r->status >= 300)
        return push_api_error(L, r);
    if (!td_json_decode(L, body, r->resp.len)) {
        char why[256];
        snprintf(why, sizeof why, "not JSON: %s", lua_tostring(L, -1));
        lua_settop(L, top);
        return push_response_error(L, r, why);
    }
    if (lua_type(L, -1) != LUA_TTABLE || !starts_with_brace(body, r->resp.len)) {
        lua_settop(L, top);
        return push_response_error(L, r, "JSON, but not an object");
    }
    return 1;
}
