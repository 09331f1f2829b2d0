/*
 * truedy.h - the types shared by the truedy sources.
 *
 * Which file does what (one concern each):
 *   truedy.c    the module table, the default client
 *   options.c   every option in one table (name, type, range, default, scope)
 *   client.c    the client userdata: creation, base URL policy, close
 *   calls.c     each endpoint as arguments -> method, path, query, body, key
 *   handle.c    the asynchronous handle userdata (done, state, result, wait, cancel)
 *   run.c       driving the engine from Lua: outcomes, retries, callbacks, poll/wait
 *   engine.c    the libcurl multi handle, the request queue, sockets and timers (no Lua)
 *   transfer.c  one attempt on a libcurl easy handle and its callbacks (no Lua)
 *   policy.c    what is retryable and how long to wait: pure functions
 *   outcome.c   status + headers + body -> envelope or error object (no libcurl)
 *   errors.c    the error object
 *   params.c    checking and normalising create_call parameters
 *   json.c      the exact encoder, and decoding through lua-cjson
 *   util.c      buffers, clocks, randomness, ISO 8601, UTF-8, redaction
 *
 * Ownership: every C resource belongs either to the engine (malloc'd,
 * reference counted, released when the client is closed and no C frame uses
 * it) or to a userdata whose __gc releases it, created before anything that
 * could raise.  Lua is never called from inside a libcurl callback, so no
 * Lua error can longjmp over libcurl.  C never keeps a pointer into Lua
 * memory across a step that can run Lua: Lua objects are found again through
 * the stack or through anchor tables.
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
/* Pushes the running Lua's name ("Lua 5.4.4", "LuaJIT 2.1.0-beta3"). */
void td_push_lua_name(lua_State *L);

#define TD_CLIENT_MT "truedy.client"
#define TD_HANDLE_MT "truedy.handle"
#define TD_ERROR_MT "truedy.error"

/* Connections (and easy handles kept warm) per client: the hard ceiling. */
#define TD_POOL_MAX 64
#define TD_IDEM_KEY_MAX 255
#define TD_MIN_KEY_LEN 16

/* ---- growable byte buffer (util.c) --------------------------------------- */

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

/* ---- small utilities (util.c) -------------------------------------------- */

double td_monotonic(void);                 /* seconds, monotonic clock */
double td_wallclock(void);                 /* seconds since the epoch */
int td_random_bytes(void *out, size_t n);  /* OS CSPRNG; 0 on success */
double td_random01(void);                  /* uniform in [0, 1) */
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
/* Replace every occurrence of key in buf[0..*n) with "[redacted]", in place;
 * *n shrinks accordingly.  NUL-safe.  Keys are at least TD_MIN_KEY_LEN. */
void td_redact(char *buf, size_t *n, const char *key);
void td_redact_cstr(char *text, const char *key);
/* Overwrite then free a string that held a secret. */
void td_free_secret(char **p);
char *td_strdup(const char *s);

/* ---- refusals of the caller's input (params.c, json.c, calls.c) ----------- */

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
void td_fail_field(td_fail *f, const char *field, const char *fmt, ...);

/* ---- JSON (json.c) --------------------------------------------------------- */

/* Encode the Lua value at idx as JSON into out, reading tables raw (their
 * metatables are ignored).  Objects are written with sorted keys so equal
 * tables always give the same bytes (the idempotency store hashes the body).
 * Returns 0, -1 with f filled, or -2 out of memory. */
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
 * null in objects -> key absent, null in arrays -> truedy.null, whole
 * numbers below 2^53 -> integers (5.3+; larger ones stay floats, never a
 * wrong integer), and every decoded string (values and keys) that holds
 * `secret` gets it replaced by "[redacted]" (secret may be NULL).  The
 * caller has already redacted the secret from the raw text (td_redact):
 * only a \u escape can spell it in a decoded string.  The walk is skipped
 * when the raw text shows it has nothing to do.  On success pushes
 * the value and returns 1; on failure pushes a message and returns 0.
 * Raises only on out of memory. */
int td_json_decode(lua_State *L, const char *s, size_t n, const char *secret);
void td_json_init(lua_State *L);           /* at luaopen: loads cjson */
/* Null members dropped from the text before decoding (on by default); the
 * differential fuzz target decodes both ways. */
void td_json_set_strip(int on);
int td_is_null(lua_State *L, int idx);
/* "a string", "a table", "truedy.null"...: for messages about a value */
const char *td_type_phrase(lua_State *L, int idx);

/* ---- errors (errors.c) ------------------------------------------------------ */

/* Push a new error table {kind=kind, message=message} with its metatable. */
void td_error_new(lua_State *L, const char *kind, const char *message);
void td_error_init(lua_State *L);          /* registers the metatable */
/* Set fields on the error (or any table) on top of the stack. */
void td_set_str(lua_State *L, const char *k, const char *v);
void td_set_int(lua_State *L, const char *k, lua_Integer v);
void td_set_bool(lua_State *L, const char *k, int v);
void td_set_num(lua_State *L, const char *k, lua_Number v);
/* return nil, invalid_params error naming the field */
int td_push_invalid(lua_State *L, const td_fail *f);
int td_push_config_error(lua_State *L, const char *message);

/* ---- create_call parameters (params.c) ---------------------------------------- */

/* Check and normalise create_call params (table at idx, read raw) into a
 * JSON body.  0, -1 refused (f), -2 out of memory. */
int td_params_create_call(lua_State *L, int idx, td_buf *body, td_fail *f);

/* ---- options (options.c) ---------------------------------------------------------- */

/* Where an option may be given. */
enum {
    TD_SCOPE_CLIENT = 1,  /* truedy.new */
    TD_SCOPE_CALL = 2,    /* every call: create, get, list, blocking or started */
    TD_SCOPE_CREATE = 4,  /* create_call / start_call only */
    TD_SCOPE_LIST = 8,    /* list_calls / start_list_calls only */
    TD_SCOPE_START = 16   /* the start_* methods only */
};

/* Every option value, after checking.  Strings point into Lua strings the
 * reader left on the stack; the caller keeps them there while it uses them. */
typedef struct td_settings {
    const char *api_key;
    size_t api_key_len;
    const char *base_url;
    size_t base_url_len;
    const char *user_agent;
    const char *ca_file;
    const char *ca_path;
    int allow_insecure_http;
    int debug;
    double connect_timeout;
    double max_connections;
    double max_response_bytes;
    /* client defaults that a call may override */
    double attempt_timeout;
    double retries;
    double retry_base_delay;
    double retry_max_delay;
    double retry_max_wait;
    /* per call */
    int idempotency_key;      /* stack index of the value, 0 when none */
    int on_done;              /* stack index of the function, 0 when none */
    int query;                /* stack index of the extra query table, 0 when none */
    double delay;
} td_settings;

/* Defaults for a new client. */
void td_settings_defaults(td_settings *s);
/* Read the options table at idx (0: none) for `scope` into s, checking
 * names (unknown ones raise), aliases, types and ranges (programmer errors
 * raise, naming fname).  Client-scope strings fall back to the environment.
 * Values are left on the stack above the caller's top. */
void td_options_read(lua_State *L, int idx, unsigned scope, const char *fname, td_settings *s);
/* The option names for a scope, as a Lua array (for tools and specs). */
void td_options_push_names(lua_State *L, unsigned scope);

/* ---- the engine (engine.c, transfer.c) --------------------------------------------- */

typedef struct td_engine td_engine;
typedef struct td_req td_req;
typedef struct td_endpoint td_endpoint;

/* The client's fixed configuration, read once by truedy.new. */
typedef struct td_config {
    long attempt_timeout_ms;
    long connect_timeout_ms;
    int retries;
    double retry_base_delay;
    double retry_max_delay;
    double retry_max_wait;
    long max_connections;
    size_t max_response_bytes;
    int debug;
    int plain_http;           /* http:// (decided from one parse of the URL) */
} td_config;

/* One libcurl easy handle kept warm, with its own parsed copy of the base
 * URL (CURLOPT_CURLU): each attempt only sets the path and query on it. */
typedef struct td_slot {
    CURL *easy;
    CURLU *url;
    char target[160];         /* the path?query last set on url ("" when unknown) */
} td_slot;

typedef struct td_sock {
    curl_socket_t fd;
    int what;                 /* CURL_POLL_IN / OUT / INOUT */
} td_sock;

/* Request states.  QUEUED: accepted, no attempt running (waiting for its
 * start time, the client's 429 pause, or a free connection).  RUNNING: in
 * libcurl.  WAITING: between attempts (backoff or a server-requested
 * wait).  COMPLETED: libcurl finished an attempt that Lua has not judged
 * yet.  DONE: the final outcome is known. */
enum td_rstate { TD_QUEUED, TD_RUNNING, TD_WAITING, TD_COMPLETED, TD_DONE };

/* Why a request ended without a final answer of its own. */
enum td_stop {
    TD_STOP_NONE = 0,
    TD_STOP_CANCELLED,        /* h:cancel() */
    TD_STOP_CLOSED,           /* client:close() (or its collection) */
    TD_STOP_PAUSED            /* the client's 429 pause outlasts retry_max_wait */
};

/* What one attempt produced: the input of the outcome and the policy. */
typedef struct td_attempt {
    CURLcode result;
    long status;
    int overflow;             /* the body went over max_response_bytes */
    double retry_after;       /* Retry-After header, seconds; -1 when absent */
    char content_type[96];
    char request_id[128];     /* X-Request-Id header */
    char errbuf[CURL_ERROR_SIZE];
} td_attempt;

struct td_req {
    td_engine *e;             /* counted reference, for the request's lifetime */
    td_req *prev, *next;      /* e->active (queued, running, waiting) */
    td_req *qnext;            /* e->completed, e->callbacks or the free list */
    unsigned long id;         /* the anchor of its Lua handle */
    int refs;                 /* engine lists, a handle, a blocking frame, the callback queue */
    int held;                 /* the engine holds one of those references (submitted, not DONE) */
    unsigned judged;          /* attempts judged: a judgement that ran Lua sees if another did */
    enum td_rstate state;
    int in_active, in_completed;
    const td_endpoint *ep;
    const void *frame;        /* the blocking call waiting for it; NULL for a handle */
    int has_on_done;
    td_slot slot;             /* while an attempt runs */
    int in_multi;
    td_buf path;              /* full path, escaped */
    td_buf query;             /* query string without '?', escaped; empty: none */
    td_buf body;
    td_buf resp;
    char idem_key[TD_IDEM_KEY_MAX + 1];
    char key_line[TD_IDEM_KEY_MAX + 24];
    struct curl_slist key_node; /* "X-Idempotency-Key: ..." in front of the client's list */
    td_attempt a;
    int attempts;
    int retries;
    long timeout_ms;
    double retry_base_delay, retry_max_delay, retry_max_wait;
    double not_before;        /* monotonic: no attempt before this */
    int maybe_sent;           /* an earlier attempt may have reached the server */
    enum td_stop stop;
    double paused_for;        /* TD_STOP_PAUSED: seconds the pause had left */
};

struct td_engine {
    int refs;                 /* the client userdata + every live request */
    int busy;                 /* C frames driving it right now */
    int closed;
    int released;             /* libcurl objects and secrets freed */
    td_config cfg;
    char *api_key;
    char *auth_line;          /* "Authorization: Bearer ..." */
    char *ua_line;
    char *ca_file;
    char *ca_path;
    char *base_url;           /* normalised, without trailing slash: for tostring */
    char *base_path;          /* its path, without trailing slash ("" for none) */
    CURLU *base;              /* the parsed base URL, copied into every slot */
    /* the constant headers, built once.  "Expect:" (no 100-continue round
     * trip) only where libcurl could add one: larger POST bodies. */
    struct curl_slist hdr_post[4];
    struct curl_slist hdr_post_large[5];
    struct curl_slist hdr_get[3];
    CURLM *multi;
    CURLSH *share;
    td_slot pool[TD_POOL_MAX];
    int pool_len;
    td_req *active;           /* doubly linked */
    td_req *completed, *completed_tail;
    td_req *callbacks, *callbacks_tail;
    td_req *free_list;
    int free_len;
    int running;              /* requests in the multi */
    int live_reqs;            /* requests allocated and not back in the free list */
    double pause_until;       /* the 429 pause: monotonic time, 0 when none */
    double curl_deadline;     /* libcurl's timer, monotonic; < 0 when none */
    td_sock *socks;
    int nsocks, socks_cap;
    unsigned long next_id;
};

/* engine.c */
td_engine *td_engine_new(void);             /* refs = 1 */
void td_engine_unref(td_engine *e);
/* Make the libcurl side (multi, share) once the configuration is set. */
int td_engine_start(td_engine *e);
td_req *td_req_new(td_engine *e);           /* refs = 1: the caller's */
void td_req_unref(td_req *r);
/* Queue r (refs +1 while the engine holds it); 0, or -1 when closed. */
int td_engine_submit(td_engine *e, td_req *r);
/* Wait at most `wait` seconds (0: never sleep) for something to do, then do
 * it in C: start what is due, run libcurl on ready sockets and due timers,
 * move finished attempts to e->completed.  `frame` says whose completed
 * requests count as work (a blocking call sleeps past another frame's).
 * Returns 1 when a signal interrupted the wait. */
int td_engine_drive(td_engine *e, double wait, const void *frame);
/* Seconds until the engine needs driving (0: now), or -1 when idle. */
double td_engine_timeout(td_engine *e);
/* Stop r: out of libcurl and the queues, state DONE with `why`. */
void td_engine_stop(td_engine *e, td_req *r, enum td_stop why);
void td_engine_unlink_completed(td_engine *e, td_req *r);
/* Drop the engine's reference to r (it is DONE). */
void td_engine_release_req(td_req *r);
/* After an attempt failed: try again after `delay` seconds. */
void td_engine_retry(td_engine *e, td_req *r, double delay);
/* A 429 asked the client to pause for `seconds`: no new attempt before
 * then.  Requests that would wait longer than their retry_max_wait stop
 * with TD_STOP_PAUSED. */
void td_engine_pause(td_engine *e, double seconds);
void td_engine_push_callback(td_engine *e, td_req *r);
td_req *td_engine_pop_callback(td_engine *e);
/* close(): closed, everything in flight stopped, callbacks dropped; the
 * libcurl objects go once no frame is busy. */
void td_engine_close(td_engine *e);
void td_engine_enter(td_engine *e);
void td_engine_leave(td_engine *e);

/* transfer.c */
int td_transfer_begin(td_engine *e, td_req *r);   /* 0, or -1 (r->a says why) */
void td_transfer_end(td_engine *e, td_req *r, CURLcode result);
void td_transfer_abort(td_engine *e, td_req *r);  /* out of libcurl, no outcome */
int td_slot_init(td_engine *e, td_slot *slot);
void td_slot_cleanup(td_slot *slot);

/* ---- retry policy (policy.c): pure functions --------------------------------- */

int td_policy_retryable(const td_attempt *a);
/* Seconds to wait before attempt number `attempts` + 1, or -1 for no retry.
 * server_wait: what the server asked for (-1: nothing); rand01 in [0, 1). */
double td_policy_delay(int attempts, int retries, double base, double cap, double max_wait,
                       double server_wait, double rand01);
/* The server's requested wait from a 429 body: reset_at against the
 * server's own clock (now_text), else against ours. -1 when unreadable. */
double td_policy_reset_wait(const char *reset_at, const char *now_text, double wallclock);
/* May the request have reached the server (and been acted on)? */
int td_policy_maybe_processed(const td_attempt *a);

/* ---- outcomes (outcome.c): no libcurl inside ----------------------------------- */

typedef struct td_outcome_in {
    const td_attempt *a;
    const char *body;
    size_t body_len;
    int attempts;
    const char *idem_key;     /* NULL for reads */
    double attempt_timeout;   /* for messages */
    double connect_timeout;
    size_t max_response_bytes;
    const char *secret;       /* the API key: no string handed back may hold it */
} td_outcome_in;

typedef struct td_outcome_info {
    int is_error;
    int retryable;
    double server_wait;       /* seconds the server asked for (429 / Retry-After); -1 */
} td_outcome_info;

/* Push the envelope (returns 1) or nil, err (returns 2). */
int td_outcome_push(lua_State *L, const td_outcome_in *in, td_outcome_info *info);

/* ---- calls and the Lua side of the engine (calls.c, run.c, handle.c, client.c) -- */

struct td_endpoint {
    const char *name;         /* "create_call": client:create_call, truedy.create_call */
    const char *start_name;   /* "start_call": client:start_call (a handle) */
    const char *method;       /* "POST" or "GET" */
    unsigned scope;           /* its options besides TD_SCOPE_CALL */
    int creates;              /* gets an idempotency key */
    /* Check the argument at arg (type errors raise) before anything is
     * allocated. */
    void (*check)(lua_State *L, int arg);
    /* Fill r->path, r->query, r->body from the argument; 0, -1 refused (f),
     * -2 out of memory. */
    int (*build)(lua_State *L, int arg, const td_settings *s, td_req *r, td_fail *f);
};

extern const td_endpoint td_endpoints[];   /* ends with a NULL name */

/* The client userdata: the engine, and a user value table holding the
 * handles in flight (anchors) and what the 429 pause came from. */
typedef struct td_client {
    td_engine *e;
} td_client;

td_client *td_check_client(lua_State *L, int idx);    /* raises when closed */
td_client *td_to_client(lua_State *L, int idx);       /* NULL when not one */
void td_client_init(lua_State *L);                     /* metatable + methods */
int td_client_new(lua_State *L);                       /* truedy.new(opts) */
/* client_create with options at opts_idx (0: none, environment only) */
int td_client_create_with(lua_State *L, int opts_idx);

/* calls.c: methods made from the endpoint table */
void td_calls_register(lua_State *L, int methods_idx);
/* truedy.<name> on the default client (getter at getter_idx returns it) */
void td_calls_register_module(lua_State *L, int module_idx, int getter_idx);
/* The blocking call: client at 1, argument at 2, options at 3. */
int td_call_blocking(lua_State *L, const td_endpoint *ep);

/* run.c */
/* Prepare r from the arguments (settings, key, path, body); 0, or pushes
 * nil, err and returns 2. */
int td_run_prepare(lua_State *L, const td_endpoint *ep, int arg, const td_settings *s,
                   td_req *r);
/* Drive until the blocking request r is done; pushes its results. */
int td_run_blocking(lua_State *L, int client_idx, td_engine *e, td_req *r, const void *frame);
/* Judge the completed attempts this frame may judge; returns how many
 * handles finished.  Results of handles go to their user values. */
int td_run_completed(lua_State *L, int client_idx, td_engine *e, const void *frame);
/* Drive the engine, judge finished attempts and run callbacks until stop()
 * says so, the client is closed, or timeout seconds pass (< 0: none; 0: one
 * pass that never sleeps).  Returns how many handles finished; *timed_out
 * says the time ran out.  A callback's error is raised unchanged. */
typedef int (*td_stop_fn)(void *arg, td_engine *e, int finished);
int td_run_until(lua_State *L, int client_idx, td_engine *e, double timeout, td_stop_fn stop,
                 void *arg, int *timed_out);
/* Run queued on_done callbacks; pushes the first error raised and returns
 * 1 (the rest stay queued), else 0. */
int td_run_callbacks(lua_State *L, int client_idx, td_engine *e);
/* The results of a finished request with no stored answer (stopped). */
int td_push_stopped(lua_State *L, const td_req *r);
void td_run_init(lua_State *L, int methods_idx);
/* After a signal cut a wait short: one function call, so that the
 * standalone interpreter's Ctrl-C hook can raise. */
void td_run_after_signal(lua_State *L);
/* anchors: client user value.inflight[id] = handle */
void td_anchor_push_handle(lua_State *L, int client_idx, unsigned long id);
void td_anchor_set(lua_State *L, int client_idx, unsigned long id, int handle_idx);

/* handle.c */
typedef struct td_handle {
    td_req *r;
    int answered;             /* the results are in the user value */
} td_handle;
void td_handle_init(lua_State *L);
/* Push a new handle for r (taking a reference) with user value
 * {client = <client at client_idx>, on_done = <fn or nil>}. */
void td_handle_push(lua_State *L, int client_idx, int on_done_idx);
/* Store the results at res_idx (1 or 2 values) in the handle at h_idx. */
void td_handle_store(lua_State *L, int h_idx, int res_idx, int nres);
/* A finished handle's answer: stored, then its on_done queued (the anchor
 * stays until it runs) or, without one, the anchor dropped. */
void td_handle_answer(lua_State *L, int client_idx, td_req *r, int h_idx, int res_idx, int nres);
/* Push the stored results of a finished handle; returns their count. */
int td_handle_push_results(lua_State *L, int h_idx);

/* debug trace (transfer.c): CURLOPT_DEBUGFUNCTION; userdata is the engine */
int td_debug_trace(CURL *easy, curl_infotype type, char *data, size_t size, void *userdata);

/* ---- webhook signatures (webhook.c) ---------------------------------- */

/* Adds truedy.webhook (verify, sign, hmac_sha256) to the module table on
 * top of the stack. */
void td_webhook_init(lua_State *L);

#endif /* TRUEDY_H */
