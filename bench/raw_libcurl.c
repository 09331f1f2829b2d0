/*
 * The baseline: a plain C loop doing the same POST /calls with libcurl on
 * one reused easy handle (keep-alive), as a hand-written client would.
 * Usage: raw_libcurl URL N  -> prints "calls_per_second <x>"
 */
#define _POSIX_C_SOURCE 200809L
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static size_t sink(char *data, size_t size, size_t nmemb, void *userdata) {
    (void)data;
    (void)userdata;
    return size * nmemb;
}

int main(int argc, char **argv) {
    static const char body[] = "{\"agent_id\":\"agt_f9447372\",\"phone_number\":\"+12125551234\"}";
    struct curl_slist *headers = NULL;
    struct timespec t0, t1;
    long status = 0, i, n;
    CURL *easy;
    if (argc != 3) {
        fprintf(stderr, "usage: raw_libcurl URL N\n");
        return 2;
    }
    n = atol(argv[2]);
    curl_global_init(CURL_GLOBAL_ALL);
    easy = curl_easy_init();
    headers = curl_slist_append(headers, "Authorization: Bearer truedy_benchbenchbenchbenchbenchbench12");
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Accept: application/json");
    headers = curl_slist_append(headers, "X-Idempotency-Key: 7e45ccc4-61db-4345-8fae-9d0d6d7bad91");
    headers = curl_slist_append(headers, "Expect:");
    curl_easy_setopt(easy, CURLOPT_URL, argv[1]);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (i = 0; i < n; i++) {
        if (curl_easy_perform(easy) != CURLE_OK)
            return 1;
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
        if (status != 201)
            return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("calls_per_second %.1f\n",
           (double)n / ((double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9));
    curl_slist_free_all(headers);
    curl_easy_cleanup(easy);
    curl_global_cleanup();
    return 0;
}
