/*
 * baseline.h - what the C baselines share.  The request they send, byte for
 * byte truedy's:
 * truedy's header lines in truedy's order (Authorization, User-Agent,
 * Accept, Content-Type, "Expect:" to suppress 100-continue, then
 * X-Idempotency-Key with a fresh UUIDv4 per call), and a kept response body.
 *
 * The constant lines are built once; the key line is a list node of our own
 * at the tail whose text is rewritten in place before each transfer, which
 * is the cheapest way a hand-written libcurl client can send a fresh key.
 */
#ifndef BENCH_BASELINE_H
#define BENCH_BASELINE_H

#include <stddef.h>
#include <curl/curl.h>

#define BENCH_KEY_PREFIX "X-Idempotency-Key: "

typedef struct bench_headers {
    struct curl_slist *list;     /* what CURLOPT_HTTPHEADER gets: key_node, then the constant lines */
    struct curl_slist *constant; /* the constant lines (curl_slist_append's) */
    struct curl_slist key_node;  /* ours, first, as truedy sends it: never given to curl_slist_free_all */
    char key_line[sizeof BENCH_KEY_PREFIX + 36];
} bench_headers;

/* api_key and user_agent are the values, without "Bearer " or the name.
 * 0 on success.  h must not move afterwards (key_node points into it). */
int bench_headers_init(bench_headers *h, const char *api_key, const char *user_agent);
/* A fresh UUIDv4 from the OS CSPRNG into the key line; 0 on success. */
int bench_headers_new_key(bench_headers *h);
void bench_headers_free(bench_headers *h);

/* A response body, kept: appended to by bench_body_write, reset per call. */
typedef struct bench_body {
    char *data;
    size_t len;
    size_t cap;
    int failed; /* out of memory: the write callback stopped the transfer */
} bench_body;

size_t bench_body_write(char *data, size_t size, size_t nmemb, void *userdata);
void bench_body_free(bench_body *b);

/* The environment every baseline reads (the harness sets it from what
 * truedy itself sent): BENCH_API_KEY, BENCH_USER_AGENT, BENCH_BODY.
 * Returns the value, or prints what is missing and returns NULL. */
const char *bench_env(const char *name);

/* Monotonic seconds, for the timed part of a run. */
double bench_now(void);

/* The usage every client shares: URL WARMUP N.  Fills the three, or prints
 * the usage and returns -1. */
int bench_args(int argc, char **argv, const char **url, long *warmup, long *n);

#endif
