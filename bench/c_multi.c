/*
 * c_multi.c - baseline for the asynchronous path: a plain C libcurl multi
 * loop keeping 16 POST /calls in flight (16 easy handles, each reused, so 16
 * keep-alive connections), each sending truedy's bytes (baseline.h) and
 * keeping its answer in memory, decoding nothing.  The clock starts when the
 * WARMUP-th answer arrives and stops at the last one.
 * Usage: c_multi URL WARMUP N   -> "calls N seconds S" for the N timed calls.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>

#include "baseline.h"

#define IN_FLIGHT 16

typedef struct slot {
    CURL *easy;
    bench_headers h;
    bench_body body;
} slot;

static slot slots[IN_FLIGHT];

static int start(CURLM *m, slot *s) {
    s->body.len = 0;
    if (bench_headers_new_key(&s->h) != 0)
        return -1;
    return curl_multi_add_handle(m, s->easy) == CURLM_OK ? 0 : -1;
}

/* Checks one finished transfer; 0 when it is the expected answer. */
static int finished(CURLMsg *msg, slot **which) {
    long status = 0;
    slot *s = NULL;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
    *which = s;
    if (msg->data.result != CURLE_OK) {
        fprintf(stderr, "c_multi: %s\n", curl_easy_strerror(msg->data.result));
        return -1;
    }
    curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
    if (status != 201 || s->body.len == 0 || s->body.data[0] != '{') {
        fprintf(stderr, "c_multi: unexpected answer: status %ld, %zu bytes\n", status, s->body.len);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *url, *key, *ua, *json;
    long warmup, n, total, started = 0, completed = 0;
    CURLM *m;
    double t0 = 0;
    int i, running = 0, rc = 1;
    if (bench_args(argc, argv, &url, &warmup, &n) != 0)
        return 2;
    key = bench_env("BENCH_API_KEY");
    ua = bench_env("BENCH_USER_AGENT");
    json = bench_env("BENCH_BODY");
    if (!key || !ua || !json)
        return 2;
    total = warmup + n;
    if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK || (m = curl_multi_init()) == NULL)
        return 1;
    for (i = 0; i < IN_FLIGHT; i++) {
        slot *s = &slots[i];
        s->easy = curl_easy_init();
        if (s->easy == NULL || bench_headers_init(&s->h, key, ua) != 0) {
            fprintf(stderr, "c_multi: out of memory\n");
            return 1;
        }
        curl_easy_setopt(s->easy, CURLOPT_URL, url);
        curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->h.list);
        curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, json);
        curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(json));
        curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, bench_body_write);
        curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, &s->body);
        curl_easy_setopt(s->easy, CURLOPT_PRIVATE, (char *)s);
        curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L);
    }
    if (warmup == 0)
        t0 = bench_now();
    for (i = 0; i < IN_FLIGHT && started < total; i++, started++)
        if (start(m, &slots[i]) != 0)
            goto done;
    while (completed < total) {
        CURLMsg *msg;
        int queued;
        if (curl_multi_perform(m, &running) != CURLM_OK)
            goto done;
        while ((msg = curl_multi_info_read(m, &queued)) != NULL) {
            slot *s;
            if (msg->msg != CURLMSG_DONE)
                continue;
            if (finished(msg, &s) != 0)
                goto done;
            curl_multi_remove_handle(m, s->easy);
            if (++completed == warmup)
                t0 = bench_now();
            if (started < total) {
                if (start(m, s) != 0)
                    goto done;
                started++;
            }
        }
        if (completed < total && curl_multi_poll(m, NULL, 0, 1000, NULL) != CURLM_OK)
            goto done;
    }
    printf("calls %ld seconds %.6f\n", n, bench_now() - t0);
    rc = 0;
done:
    for (i = 0; i < IN_FLIGHT; i++) {
        if (slots[i].easy != NULL) {
            curl_multi_remove_handle(m, slots[i].easy);
            curl_easy_cleanup(slots[i].easy);
        }
        bench_headers_free(&slots[i].h);
        bench_body_free(&slots[i].body);
    }
    curl_multi_cleanup(m);
    curl_global_cleanup();
    return rc;
}
