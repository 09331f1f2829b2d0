/*
 * baseline.c - truedy's request headers, a fresh idempotency key per call, a
 * kept response body, the arguments and the clock, for the C baselines.
 */
#define _POSIX_C_SOURCE 200809L
#include "baseline.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static int append(bench_headers *h, const char *line) {
    struct curl_slist *l = curl_slist_append(h->constant, line);
    if (l == NULL)
        return -1;
    h->constant = l;
    return 0;
}

int bench_headers_init(bench_headers *h, const char *api_key, const char *user_agent) {
    size_t alen = strlen(api_key), ulen = strlen(user_agent);
    char *auth = malloc(alen + sizeof "Authorization: Bearer ");
    char *ua = malloc(ulen + sizeof "User-Agent: ");
    int rc = -1;
    memset(h, 0, sizeof *h);
    if (auth != NULL && ua != NULL) {
        snprintf(auth, alen + sizeof "Authorization: Bearer ", "Authorization: Bearer %s", api_key);
        snprintf(ua, ulen + sizeof "User-Agent: ", "User-Agent: %s", user_agent);
        /* truedy's lines in truedy's order (its "Expect:" goes only on bodies over 1 KiB,
         * where libcurl could ask for 100-continue) */
        rc = append(h, auth) || append(h, ua) || append(h, "Accept: application/json") ||
                     append(h, "Content-Type: application/json")
                 ? -1
                 : 0;
    }
    if (auth != NULL) /* the key's copy: wiped, as truedy does */
        memset(auth, 0, alen + sizeof "Authorization: Bearer ");
    free(auth);
    free(ua);
    if (rc != 0) {
        curl_slist_free_all(h->constant);
        h->constant = NULL;
        return -1;
    }
    /* the key line first, in front of the constant ones: truedy's order */
    memcpy(h->key_line, BENCH_KEY_PREFIX, sizeof BENCH_KEY_PREFIX - 1);
    h->key_line[sizeof h->key_line - 1] = '\0';
    h->key_node.data = h->key_line;
    h->key_node.next = h->constant;
    h->list = &h->key_node;
    return 0;
}

int bench_headers_new_key(bench_headers *h) {
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    size_t got = 0;
    char *out = h->key_line + sizeof BENCH_KEY_PREFIX - 1;
    int i;
    while (got < sizeof b) {
        ssize_t n = getrandom(b + got, sizeof b - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        got += (size_t)n;
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    for (i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *out++ = '-';
        *out++ = hex[b[i] >> 4];
        *out++ = hex[b[i] & 15];
    }
    *out = '\0';
    return 0;
}

void bench_headers_free(bench_headers *h) {
    if (h->constant != NULL) /* the Authorization line: wiped before it goes */
        memset(h->constant->data, 0, strlen(h->constant->data));
    curl_slist_free_all(h->constant); /* key_node is not curl's to free */
    h->constant = NULL;
    h->list = NULL;
}

size_t bench_body_write(char *data, size_t size, size_t nmemb, void *userdata) {
    bench_body *b = userdata;
    size_t n = size * nmemb;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        char *p;
        while (cap < b->len + n + 1)
            cap *= 2;
        p = realloc(b->data, cap);
        if (p == NULL) {
            b->failed = 1;
            return 0;
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

void bench_body_free(bench_body *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

const char *bench_env(const char *name) {
    const char *v = getenv(name);
    if (v == NULL || v[0] == '\0')
        fprintf(stderr, "%s is not set (bench/run and bench/instr set it)\n", name);
    return v && v[0] ? v : NULL;
}

double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int bench_args(int argc, char **argv, const char **url, long *warmup, long *n) {
    char *end1 = NULL, *end2 = NULL;
    if (argc == 4) {
        *url = argv[1];
        *warmup = strtol(argv[2], &end1, 10);
        *n = strtol(argv[3], &end2, 10);
        if (*end1 == '\0' && *end2 == '\0' && *warmup >= 0 && *n > 0)
            return 0;
    }
    fprintf(stderr, "usage: %s URL WARMUP N   (prints \"calls N seconds S\" for the N timed calls)\n",
            argv[0]);
    return -1;
}
