/*
 * policy.c - what is retryable and how long to wait: pure functions of
 * what an attempt produced, no Lua and no libcurl handles.
 *
 * Retrying is safe because every create carries an idempotency key, the
 * same on every attempt, with the same bytes: a retry after a lost answer
 * replays the first call instead of dialling again.
 */
#include <math.h>

#include "truedy.h"

static int status_retryable(long status) {
    return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 ||
           status == 504;
}

/* Failures where the request may not have reached the server, or its answer
 * was lost: safe to repeat because the idempotency key goes with it. */
static int transfer_retryable(CURLcode rc) {
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

int td_policy_retryable(const td_attempt *a) {
    if (a->result != CURLE_OK)
        return !a->overflow && transfer_retryable(a->result);
    return status_retryable(a->status);
}

/* Only failures that prove the server never acted on the request say "no":
 * a refused connection, a name that does not resolve, a 429 (the API
 * refuses before doing anything), a 4xx validation answer. */
int td_policy_maybe_processed(const td_attempt *a) {
    if (a->result == CURLE_COULDNT_CONNECT || a->result == CURLE_COULDNT_RESOLVE_HOST ||
        a->result == CURLE_COULDNT_RESOLVE_PROXY || a->result == CURLE_OUT_OF_MEMORY)
        return 0;
    if (a->result == CURLE_OK && a->status >= 400 && a->status < 500)
        return 0;
    return 1;
}

double td_policy_delay(int attempts, int retries, double base, double cap, double max_wait,
                       double server_wait, double rand01) {
    double ceiling;
    if (attempts > retries)
        return -1;
    if (server_wait >= 0) {
        if (server_wait > max_wait)
            return -1; /* longer than allowed: give the error back now */
        /* a little past the reset so as not to arrive a hair early */
        return server_wait + 0.05 + 0.1 * rand01;
    }
    ceiling = base * pow(2.0, (double)(attempts - 1));
    if (ceiling > cap)
        ceiling = cap;
    return ceiling / 2 + (ceiling / 2) * rand01; /* "equal jitter" */
}

double td_policy_reset_wait(const char *reset_at, const char *now_text, double wallclock) {
    double reset, server_now, wait;
    if (reset_at == NULL || td_parse_iso8601(reset_at, &reset) != 0)
        return -1;
    /* against the server's own clock, so clock skew between us and the API
     * does not matter */
    if (now_text == NULL || td_parse_iso8601(now_text, &server_now) != 0)
        server_now = wallclock;
    wait = reset - server_now;
    return wait > 0 ? wait : 0;
}
