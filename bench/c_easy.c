/*
 * c_easy.c - baseline: a plain C loop of POST /calls on one reused libcurl
 * easy handle (keep-alive), sending truedy's bytes (baseline.h: same headers,
 * a fresh UUIDv4 key per call, the same pre-encoded JSON body), keeping each
 * answer in memory and decoding nothing: the floor for one connection.
 * Usage: c_easy URL WARMUP N   -> "calls N seconds S" for the N timed calls.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>

#include "baseline.h"

static int one_call(CURL *easy, bench_headers *h, bench_body *body) {
    long status = 0;
    CURLcode rc;
    body->len = 0;
    if (bench_headers_new_key(h) != 0)
        return -1;
    rc = curl_easy_perform(easy);
    if (rc != CURLE_OK) {
        fprintf(stderr, "c_easy: %s\n", curl_easy_strerror(rc));
        return -1;
    }
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    if (status != 201 || body->len == 0 || body->data[0] != '{') {
        fprintf(stderr, "c_easy: unexpected answer: status %ld, %zu bytes\n", status, body->len);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *url, *key, *ua, *json;
    long warmup, n, i;
    bench_headers h;
    bench_body body = {0};
    CURL *easy;
    double t0;
    int rc = 1;
    if (bench_args(argc, argv, &url, &warmup, &n) != 0)
        return 2;
    key = bench_env("BENCH_API_KEY");
    ua = bench_env("BENCH_USER_AGENT");
    json = bench_env("BENCH_BODY");
    if (!key || !ua || !json)
        return 2;
    if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
        return 1;
    easy = curl_easy_init();
    if (easy == NULL || bench_headers_init(&h, key, ua) != 0) {
        fprintf(stderr, "c_easy: out of memory\n");
        return 1;
    }
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, h.list);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, json);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(json));
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, bench_body_write);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    for (i = 0; i < warmup; i++)
        if (one_call(easy, &h, &body) != 0)
            goto done;
    t0 = bench_now();
    for (i = 0; i < n; i++)
        if (one_call(easy, &h, &body) != 0)
            goto done;
    printf("calls %ld seconds %.6f\n", n, bench_now() - t0);
    rc = 0;
done:
    curl_easy_cleanup(easy);
    bench_headers_free(&h);
    bench_body_free(&body);
    curl_global_cleanup();
    return rc;
}
