/*
 * transfer.c - one attempt of a request on a libcurl easy handle.
 *
 * Easy handles are kept warm in the engine's pool ("slots"), each with its
 * own copy of the parsed base URL (CURLOPT_CURLU): an attempt sets only the
 * path and query on it, so libcurl never parses the URL text again.  The
 * constant headers are built once per client; an attempt puts only its
 * idempotency key in front of them.  The callbacks touch C memory only.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "truedy.h"

/* ---- libcurl callbacks (C only) -------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata) {
    td_req *r = userdata;
    size_t n = size * nmemb;
    if (r->resp.len + n > r->e->cfg.max_response_bytes) {
        r->a.overflow = 1;
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
    td_req *r = userdata;
    size_t n = size * nmemb, v;
    /* lower case of the first byte: most lines are skipped at once */
    unsigned char first = n > 0 ? (unsigned char)((unsigned char)line[0] | 0x20u) : 0u;
    if (first != 'h' && first != 'c' && first != 'x' && first != 'r')
        return n;
    if (n >= 5 && strncmp(line, "HTTP/", 5) == 0) {
        /* a new response (after a 100 Continue, say): forget the last one */
        r->a.content_type[0] = '\0';
        r->a.request_id[0] = '\0';
        r->a.retry_after = -1;
    } else if (header_is(line, n, "content-type", &v)) {
        header_value(line + v, n - v, r->a.content_type, sizeof r->a.content_type);
    } else if (header_is(line, n, "x-request-id", &v)) {
        header_value(line + v, n - v, r->a.request_id, sizeof r->a.request_id);
    } else if (header_is(line, n, "retry-after", &v)) {
        char value[64], *end;
        double secs;
        header_value(line + v, n - v, value, sizeof value);
        secs = strtod(value, &end);
        /* seconds are digits (strtod also reads "inf", "1e999": a wait
         * that would pause the client for good) */
        if (end != value && *end == '\0' && value[0] >= '0' && value[0] <= '9' &&
            secs < HUGE_VAL) {
            r->a.retry_after = secs;
        } else {
            time_t when = curl_getdate(value, NULL); /* the HTTP-date form */
            if (when != (time_t)-1) {
                double d = (double)when - td_wallclock();
                r->a.retry_after = d > 0 ? d : 0;
            }
        }
    }
    return n;
}

/* Writes to stderr through a small buffer, control bytes shown escaped, so
 * a server's header line cannot move the terminal's cursor. */
typedef struct trace_out {
    char buf[256];
    size_t len;
} trace_out;

static void trace_flush(trace_out *o) {
    fwrite(o->buf, 1, o->len, stderr);
    o->len = 0;
}

static void trace_put(trace_out *o, const char *s, size_t n, int escape) {
    size_t i;
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (o->len + 5 > sizeof o->buf)
            trace_flush(o);
        if (escape && (ch < 0x20 || ch == 0x7f))
            o->len += (size_t)snprintf(o->buf + o->len, 5, "\\x%02x", ch);
        else
            o->buf[o->len++] = (char)ch;
    }
}

/* One line, every occurrence of the key replaced (matched on the raw bytes,
 * before anything is escaped or cut). */
static void trace_line(const char *prefix, const char *data, size_t n, const char *key) {
    trace_out o;
    size_t klen = key ? strlen(key) : 0;
    o.len = 0;
    trace_put(&o, prefix, strlen(prefix), 0);
    if (n >= 14 && strncasecmp(data, "authorization:", 14) == 0) {
        trace_put(&o, "Authorization: [redacted]", 25, 0);
    } else {
        size_t run = 0, hit;
        while (klen > 0 && (hit = td_find_key(data, n, run, key, klen)) < n) {
            trace_put(&o, data + run, hit - run, 1);
            trace_put(&o, "[redacted]", 10, 0);
            run = hit + klen;
        }
        trace_put(&o, data + run, n - run, 1);
    }
    trace_put(&o, "\n", 1, 0);
    trace_flush(&o);
}

/* The debug option's trace: headers and libcurl's notes go to stderr, with
 * the Authorization value and every other appearance of the key redacted
 * (libcurl also logs request headers as plain text lines with HTTP/2). */
int td_debug_trace(CURL *easy, curl_infotype type, char *data, size_t size, void *userdata) {
    const td_engine *e = userdata;
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
        if (end > i)
            trace_line(prefix, data + i, (end - i) - (data[end - 1] == '\r'), e ? e->api_key : NULL);
        i = end + 1;
    }
    return 0;
}

/* ---- slots ------------------------------------------------------------------------- */

void td_slot_cleanup(td_slot *slot) {
    if (slot->easy)
        curl_easy_cleanup(slot->easy);
    if (slot->url)
        curl_url_cleanup(slot->url);
    slot->easy = NULL;
    slot->url = NULL;
}

/* A new easy handle with everything that never changes. */
int td_slot_init(td_engine *e, td_slot *slot) {
    CURLcode rc = CURLE_OK;
    slot->target[0] = '\0';
    slot->easy = curl_easy_init();
    slot->url = curl_url_dup(e->base);
    if (slot->easy == NULL || slot->url == NULL) {
        td_slot_cleanup(slot);
        return -1;
    }
    rc |= curl_easy_setopt(slot->easy, CURLOPT_NOSIGNAL, 1L); /* threads: never SIGALRM */
    rc |= curl_easy_setopt(slot->easy, CURLOPT_SHARE, e->share);
    rc |= curl_easy_setopt(slot->easy, CURLOPT_CURLU, slot->url);
    rc |= curl_easy_setopt(slot->easy, CURLOPT_CONNECTTIMEOUT_MS, e->cfg.connect_timeout_ms);
#if LIBCURL_VERSION_NUM >= 0x075500
    rc |= curl_easy_setopt(slot->easy, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    rc |= curl_easy_setopt(slot->easy, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    /* redirects are never followed: one could carry the key to another host */
    rc |= curl_easy_setopt(slot->easy, CURLOPT_FOLLOWLOCATION, 0L);
    rc |= curl_easy_setopt(slot->easy, CURLOPT_SSL_VERIFYPEER, 1L);
    rc |= curl_easy_setopt(slot->easy, CURLOPT_SSL_VERIFYHOST, 2L);
    rc |= curl_easy_setopt(slot->easy, CURLOPT_TCP_KEEPALIVE, 1L);
    /* wait for a connection that may multiplex only where one can: HTTP/2
     * over TLS.  On plain http:// it would hold every other transfer of a
     * fresh client until the first answer came back. */
    if (!e->cfg.plain_http)
        rc |= curl_easy_setopt(slot->easy, CURLOPT_PIPEWAIT, 1L);
    rc |= curl_easy_setopt(slot->easy, CURLOPT_MAXFILESIZE_LARGE,
                           (curl_off_t)e->cfg.max_response_bytes);
    rc |= curl_easy_setopt(slot->easy, CURLOPT_WRITEFUNCTION, on_body);
    rc |= curl_easy_setopt(slot->easy, CURLOPT_HEADERFUNCTION, on_header);
    if (e->ca_file)
        rc |= curl_easy_setopt(slot->easy, CURLOPT_CAINFO, e->ca_file);
    if (e->ca_path)
        rc |= curl_easy_setopt(slot->easy, CURLOPT_CAPATH, e->ca_path);
    /* plain http is only allowed to loopback (or by explicit opt-in): a proxy
     * from http_proxy / ALL_PROXY must not see the key in clear text.  https
     * goes through proxies as a tunnel, unreadable to them. */
    if (e->cfg.plain_http)
        rc |= curl_easy_setopt(slot->easy, CURLOPT_NOPROXY, "*");
    if (e->cfg.debug) {
        rc |= curl_easy_setopt(slot->easy, CURLOPT_DEBUGFUNCTION, td_debug_trace);
        rc |= curl_easy_setopt(slot->easy, CURLOPT_DEBUGDATA, e);
        rc |= curl_easy_setopt(slot->easy, CURLOPT_VERBOSE, 1L);
    }
    if (rc != CURLE_OK) {
        td_slot_cleanup(slot);
        return -1;
    }
    return 0;
}

static void give_slot(td_engine *e, td_slot *slot) {
    /* kept warm while open; kept too when closed while a frame drives the
     * engine (freed with the rest on release) */
    int keep = e->closed ? e->busy > 0 : e->pool_len < e->cfg.max_connections;
    if (keep && e->pool_len < TD_POOL_MAX)
        e->pool[e->pool_len++] = *slot;
    else
        td_slot_cleanup(slot);
    slot->easy = NULL;
    slot->url = NULL;
}

/* ---- one attempt --------------------------------------------------------------------- */

static void attempt_reset(td_req *r) {
    r->resp.len = 0;
    if (r->resp.data)
        r->resp.data[0] = '\0';
    r->a.result = CURLE_OK;
    r->a.status = 0;
    r->a.overflow = 0;
    r->a.retry_after = -1;
    r->a.content_type[0] = '\0';
    r->a.request_id[0] = '\0';
    r->a.errbuf[0] = '\0';
}

/* Does the slot's URL already have r's path and query?  (Placing calls
 * one after another sets the same path each time: skip libcurl's work.) */
static int same_target(const td_slot *slot, const td_req *r) {
    size_t p = r->path.len, q = r->query.len;
    return slot->target[0] != '\0' && p + 1 + q < sizeof slot->target &&
           memcmp(slot->target, r->path.data, p) == 0 && slot->target[p] == '?' &&
           (q == 0 || memcmp(slot->target + p + 1, r->query.data, q) == 0) &&
           slot->target[p + 1 + q] == '\0';
}

static void remember_target(td_slot *slot, const td_req *r) {
    size_t p = r->path.len, q = r->query.len;
    if (p + 1 + q >= sizeof slot->target)
        return; /* too long to remember: set every time */
    memcpy(slot->target, r->path.data, p);
    slot->target[p] = '?';
    if (q)
        memcpy(slot->target + p + 1, r->query.data, q);
    slot->target[p + 1 + q] = '\0';
}

/* libcurl asks for "100-continue" only for bodies over 1 MiB (7.88; 1 KiB
 * in older versions): below that, the "Expect:" that turns it off would
 * only be one more custom header for libcurl to scan on every request. */
#define EXPECT_THRESHOLD 1024

static int set_attempt_options(td_req *r) {
    CURL *easy = r->slot.easy;
    CURLcode rc = CURLE_OK;
    int post = r->ep->method[0] == 'P';
    struct curl_slist *constant = !post ? r->e->hdr_get
                                  : r->body.len > EXPECT_THRESHOLD ? r->e->hdr_post_large
                                                                  : r->e->hdr_post;
    if (!same_target(&r->slot, r)) {
        r->slot.target[0] = '\0';
        if (curl_url_set(r->slot.url, CURLUPART_PATH, r->path.data, 0) != CURLUE_OK ||
            curl_url_set(r->slot.url, CURLUPART_QUERY, r->query.len ? r->query.data : NULL, 0) !=
                CURLUE_OK)
            return -1;
        remember_target(&r->slot, r);
    }
    rc |= curl_easy_setopt(easy, CURLOPT_WRITEDATA, r);
    rc |= curl_easy_setopt(easy, CURLOPT_HEADERDATA, r);
    rc |= curl_easy_setopt(easy, CURLOPT_PRIVATE, r);
    rc |= curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, r->a.errbuf);
    rc |= curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, r->timeout_ms);
    if (r->idem_key[0]) {
        r->key_node.data = r->key_line;
        r->key_node.next = constant;
        rc |= curl_easy_setopt(easy, CURLOPT_HTTPHEADER, &r->key_node);
    } else {
        rc |= curl_easy_setopt(easy, CURLOPT_HTTPHEADER, constant);
    }
    if (post) {
        rc |= curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body.len);
        rc |= curl_easy_setopt(easy, CURLOPT_POSTFIELDS, r->body.data ? r->body.data : "");
    } else {
        rc |= curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
    }
    return rc == CURLE_OK ? 0 : -1;
}

int td_transfer_begin(td_engine *e, td_req *r) {
    attempt_reset(r);
    r->attempts++;
    if (e->pool_len > 0)
        r->slot = e->pool[--e->pool_len];
    else if (td_slot_init(e, &r->slot) != 0)
        goto failed;
    if (set_attempt_options(r) != 0 || curl_multi_add_handle(e->multi, r->slot.easy) != CURLM_OK) {
        give_slot(e, &r->slot);
        goto failed;
    }
    r->in_multi = 1;
    return 0;
failed:
    r->a.result = CURLE_OUT_OF_MEMORY;
    snprintf(r->a.errbuf, sizeof r->a.errbuf, "could not start the transfer (out of memory)");
    return -1;
}

/* Forget the handle's per-attempt pointers before it goes back to the pool. */
static void detach(td_engine *e, td_req *r) {
    curl_multi_remove_handle(e->multi, r->slot.easy);
    r->in_multi = 0;
    curl_easy_setopt(r->slot.easy, CURLOPT_ERRORBUFFER, (char *)NULL);
    curl_easy_setopt(r->slot.easy, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
    curl_easy_setopt(r->slot.easy, CURLOPT_PRIVATE, (void *)NULL);
    give_slot(e, &r->slot);
}

void td_transfer_end(td_engine *e, td_req *r, CURLcode result) {
    r->a.result = result;
    r->a.status = 0;
    curl_easy_getinfo(r->slot.easy, CURLINFO_RESPONSE_CODE, &r->a.status);
    if (result == CURLE_FILESIZE_EXCEEDED)
        r->a.overflow = 1; /* refused from Content-Length before reading the body */
    detach(e, r);
    if (td_policy_maybe_processed(&r->a))
        r->maybe_sent = 1;
    if (e->api_key) {
        /* a server or proxy that echoes the request back must not put the
         * key into an error: everything later derives from these buffers */
        td_redact(r->resp.data, &r->resp.len, e->api_key);
        if (r->resp.data)
            r->resp.data[r->resp.len] = '\0';
        if (r->a.content_type[0])
            td_redact_cstr(r->a.content_type, e->api_key);
        if (r->a.request_id[0])
            td_redact_cstr(r->a.request_id, e->api_key);
        if (r->a.errbuf[0])
            td_redact_cstr(r->a.errbuf, e->api_key);
    }
}

void td_transfer_abort(td_engine *e, td_req *r) {
    if (r->in_multi)
        detach(e, r);
}
