/*
 * truedy.h - the types shared by the truedy sources.
 *
 * Ownership rule: every C resource (easy/multi/share handles, header lists,
 * buffers) hangs off a Lua userdata whose __gc releases it, and the userdata
 * exists before anything that could raise a Lua error.  Lua is never called
 * from inside a libcurl callback, so no Lua error can longjmp over libcurl.
 */
#ifndef TRUEDY_H
#define TRUEDY_H

#include <stddef.h>
#include <stdint.h>
#include <curl/curl.h>

#include "compat.h"

#define TRUEDY_VERSION "0.1.0"
#define TD_DEFAULT_BASE_URL "https://api.truedy.ai/api/public/v1"

#if defined(__GNUC__) || defined(__clang__)
#define TD_EXPORT __attribute__((visibility("default")))
#else
#define TD_EXPORT
#endif

TD_EXPORT int luaopen_truedy(lua_State *L);

#define TD_CLIENT_MT "truedy.client"
#define TD_REQUEST_MT "truedy.request"
#define TD_ERROR_MT "truedy.error"

/* Easy handles kept warm per client, and the hard ceiling on connections. */
#define TD_POOL_MAX 64
#define TD_IDEM_KEY_MAX 255

/* ---- growable byte buffer (buf.c) ---------------------------------- */

typedef struct td_buf {
    char *data;
    size_t len;
    size_t cap;
} td_buf;

int td_buf_reserve(td_buf *b, size_t extra);
int td_buf_append(td_buf *b, const void *p, size_t n);
int td_buf_puts(td_buf *b, const char *s);
int td_buf_putc(td_buf *b, char c);
void td_buf_free(td_buf *b);

/* ---- small utilities (util.c) -------------------------------------- */

double td_monotonic(void);                 /* seconds, monotonic clock */
double td_wallclock(void);                 /* seconds since the epoch */
int td_random_bytes(void *out, size_t n);  /* OS CSPRNG; 0 on success */
void td_uuid4(char out[37]);               /* random UUIDv4, lower-case */
int td_parse_iso8601(const char *s, double *epoch);   /* 0 on success */
int td_utf8_valid(const char *s, size_t n);
/* Shortest text that reads back as the same double; integral values in
 * +-2^53 print without a fraction.  Returns the length written. */
int td_format_double(char *out, size_t cap, double d);
/* Does s contain a byte that must never reach an HTTP header line? */
int td_has_ctl(const char *s, size_t n);
/* Offset of the first occurrence of key (klen > 0 bytes) in buf[from..n),
 * or n when there is none.  NUL-safe. */
size_t td_find_key(const char *buf, size_t n, size_t from, const char *key, size_t klen);
/* Replace every occurrence of key (at least 10 bytes) in buf[0..*n) with
 * "[redacted]", in place; *n shrinks accordingly.  NUL-safe. */
void td_redact(char *buf, size_t *n, const char *key);

/* ---- refusals of the caller's input (params.c, json.c) ------------- */

typedef struct td_fail {
    char field[192];  /* path of the offending field, e.g. variables.order */
    char rule[320];   /* what the field must be */
} td_fail;

/* Path under construction while walking nested tables. */
typedef struct td_path {
    char text[192];
    size_t len;
} td_path;

size_t td_path_push_key(td_path *p, const char *key, size_t keylen);
size_t td_path_push_index(td_path *p, lua_Integer i);
void td_path_pop(td_path *p, size_t saved_len);
void td_fail_set(td_fail *f, const td_path *p, const char *fmt, ...);

/* ---- JSON (json.c) --------------------------------------------------- */

/* Encode the Lua value at idx as JSON into out.  Objects are written with
 * sorted keys so equal tables always give the same bytes (the idempotency
 * store hashes the body).  Returns 0, or -1 with f filled. */
int td_json_encode_value(lua_State *L, int idx, td_buf *out, td_path *path,
                         td_fail *f, int depth);
int td_json_encode_string(td_buf *out, const char *s, size_t n);
/* The exact text of the number at idx: integers digit for digit, others in
 * the shortest form that reads back the same.  -1 for NaN or infinity. */
int td_number_text(lua_State *L, int idx, char *out, size_t cap);

/* Emits the value at idx (absolute) for one field; 0, -1 refused, -2 OOM. */
typedef int (*td_emit_fn)(lua_State *L, int idx, td_buf *out, td_path *path, td_fail *f);
/* The special emitter for a named field, or NULL for plain JSON. */
typedef td_emit_fn (*td_lookup_fn)(const char *key, size_t n);

typedef struct td_key {
    const char *s;
    size_t n;
    int at; /* where the anchored key is: stack slot or anchor-table index */
} td_key;

/* Write the object at idx (count string keys, already checked) with sorted
 * keys.  A field gets lookup(key) when that gives an emitter, else
 * values() when set, else plain JSON. */
int td_json_encode_object(lua_State *L, int idx, int count, td_buf *out, td_path *path,
                          td_fail *f, int depth, td_lookup_fn lookup, td_emit_fn values);

/* Decode JSON text with the private lua-cjson instance, then normalise:
 * null in objects -> key absent, null in arrays -> truedy.null, whole floats
 * -> integers (5.3+).  On success pushes the value and returns 1; on failure
 * pushes a message string and returns 0.  Never raises except on OOM. */
int td_json_decode(lua_State *L, const char *s, size_t n);
void td_json_init(lua_State *L);           /* at luaopen: loads cjson */
int td_is_null(lua_State *L, int idx);
/* "a string", "a table", "truedy.null"...: for messages about a value */
const char *td_type_phrase(lua_State *L, int idx);

/* ---- errors (errors.c) --------------------------------------------- */

/* Push a new error table {kind=kind, message=message} with its metatable. */
void td_error_new(lua_State *L, const char *kind, const char *message);
void td_error_init(lua_State *L);          /* registers the metatable */
/* Set fields on the error (or any table) on top of the stack. */
void td_set_str(lua_State *L, const char *k, const char *v);
void td_set_int(lua_State *L, const char *k, lua_Integer v);
void td_set_bool(lua_State *L, const char *k, int v);
/* return nil, invalid_params error naming the field */
int td_push_invalid(lua_State *L, const td_fail *f);
int td_push_config_error(lua_State *L, const char *message);

/* ---- create_call parameters (params.c) ------------------------------- */

/* Check and normalise create_call params (table at idx) into a JSON body. */
int td_params_create_call(lua_State *L, int idx, td_buf *body, td_fail *f);

/* ---- client and engine (client.c) ----------------------------------- */

typedef struct td_request td_request;

typedef struct td_client {
    CURLM *multi;
    CURLSH *share;
    char *api_key;
    char *base_url;          /* without trailing slash */
    char *auth_header;       /* "Authorization: Bearer ..." */
    char *ua_header;         /* "User-Agent: ..." */
    char *ca_file;
    char *ca_path;
    long timeout_ms;
    long connect_timeout_ms;
    int max_retries;
    double retry_base_delay;
    double retry_max_delay;
    double max_retry_wait;
    size_t max_response_bytes;
    long max_connections;
    int debug;
    int plain_http;          /* base_url is http://: never through a proxy */
    CURL *pool[TD_POOL_MAX];
    int pool_len;
    int closed;
} td_client;

td_client *td_check_client(lua_State *L, int idx);
void td_client_init(lua_State *L);          /* metatable + methods */
int td_client_new(lua_State *L);            /* truedy.new(opts) */
/* client_create with options at opts_idx (0: none, environment only) */
int td_client_create_with(lua_State *L, int opts_idx);
/* the methods, client at index 1: for the module-level shortcuts */
int td_client_create_call(lua_State *L);
int td_client_get_call(lua_State *L);
int td_client_list_calls(lua_State *L);
CURL *td_client_take_easy(td_client *c);
void td_client_give_easy(td_client *c, CURL *easy);
/* Drive the engine until r is finished (blocking).  Never raises: when it
 * returns, r holds no easy handle and nothing of r is in the multi. */
void td_client_run(lua_State *L, td_client *c, td_request *r);

/* ---- one request (request.c) ---------------------------------------- */

enum td_state { TD_IDLE, TD_RUNNING, TD_WAITING, TD_DONE };

/* A request lives on the Lua stack of the call that made it, next to its
 * client: the client pointer is only used while that call runs, and the
 * client keeps no pointer to the request (a userdata the collector may free,
 * even without running __gc when memory is short).  An asynchronous API that
 * keeps requests in flight across calls must anchor them first (a table the
 * client references), and unanchor them only once out of the multi. */
struct td_request {
    td_client *client;
    CURL *easy;
    struct curl_slist *headers;
    char *url;
    const char *method;       /* static string: "GET" / "POST" */
    td_buf body;
    td_buf resp;
    char idem_key[TD_IDEM_KEY_MAX + 1];
    char errbuf[CURL_ERROR_SIZE];
    int attempts;
    int max_retries;
    long timeout_ms;
    enum td_state state;
    double retry_at;          /* monotonic time of the next attempt */
    /* what the last attempt produced */
    CURLcode result;
    long status;
    int overflow;             /* the body went over max_response_bytes */
    int in_multi;             /* easy handle currently added to the multi */
    double retry_after;       /* from a Retry-After header, -1 when absent */
    double wait_hint;         /* server-given wait for a 429, -1 when none */
    char content_type[96];
    char request_id_hdr[128];
};

td_request *td_request_new(lua_State *L, int client_idx);
/* The URL: base_url + path (path already escaped, query included). */
int td_request_set_url(td_request *r, const char *path);
int td_request_set_headers(td_request *r, int with_body);
int td_request_start_attempt(td_request *r);
/* Called by the engine when an attempt finishes: decides retry or done.
 * Never raises (what needs Lua runs under a protected call). */
void td_request_attempt_done(lua_State *L, td_request *r, CURLcode result);
/* Release the easy handle and lists; keep nothing but the outcome. */
void td_request_release(td_request *r);
/* Push the outcome: the decoded envelope, or nil + error. */
int td_request_push_outcome(lua_State *L, td_request *r);
/* Free everything r holds (it is done), returning nresults: every method
 * ends with it, so no finished request depends on its __gc. */
int td_request_finish(td_request *r, int nresults);
void td_request_init(lua_State *L);
/* CURLOPT_DEBUGFUNCTION of the debug option; userdata is the client. */
int td_debug_trace(CURL *easy, curl_infotype type, char *data, size_t size, void *userdata);

/* ---- webhook signatures (webhook.c) ---------------------------------- */

/* Adds truedy.webhook (verify, sign, hmac_sha256) to the module table on
 * top of the stack. */
void td_webhook_init(lua_State *L);

#endif /* TRUEDY_H */
