/*
 * engine.c - the libcurl multi handle of one client, and its requests.
 *
 * No Lua in here.  The engine is malloc'd and reference counted (the
 * client userdata holds one reference, every live request another), so its
 * memory never depends on the order in which Lua collects things.  Closing
 * marks it closed and stops everything in flight at once; the libcurl
 * objects and the key are released only when no C frame is driving it
 * (`busy`), because a finalizer or an __index may close the client while a
 * call of that same client is on the C stack.
 *
 * libcurl is driven through curl_multi_socket_action: libcurl says which
 * sockets to watch (CURLMOPT_SOCKETFUNCTION) and when to call it back
 * (CURLMOPT_TIMERFUNCTION); the engine polls those sockets itself, and
 * client:sockets() / client:timeout() hand the same facts to an event loop.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "truedy.h"

#define FREE_LIST_MAX 16
#define SOCKS_MAX (TD_POOL_MAX * 2 + 8) /* the sockets td_engine_drive polls */
#define KEEP_BUFFER_MAX ((size_t)64 * 1024) /* larger buffers are not kept for reuse */

/* ---- lifetime -------------------------------------------------------------- */

td_engine *td_engine_new(void) {
    td_engine *e = calloc(1, sizeof *e);
    if (e == NULL)
        return NULL;
    e->refs = 1;
    e->curl_deadline = -1;
    e->next_id = 1;
    return e;
}

static void free_req_memory(td_req *r) {
    td_buf_free(&r->path);
    td_buf_free(&r->query);
    td_buf_free(&r->body);
    td_buf_free(&r->resp);
    free(r);
}

/* Free the libcurl side and the secrets: the client is closed and nobody
 * drives it. */
static void engine_release(td_engine *e) {
    td_req *r;
    int i;
    if (e->released)
        return;
    e->released = 1;
    for (i = 0; i < e->pool_len; i++)
        td_slot_cleanup(&e->pool[i]);
    e->pool_len = 0;
    if (e->multi)
        curl_multi_cleanup(e->multi);
    e->multi = NULL;
    if (e->share)
        curl_share_cleanup(e->share);
    e->share = NULL;
    if (e->base)
        curl_url_cleanup(e->base);
    e->base = NULL;
    while ((r = e->free_list) != NULL) {
        e->free_list = r->qnext;
        free_req_memory(r);
    }
    e->free_len = 0;
    td_free_secret(&e->api_key);
    td_free_secret(&e->auth_line);
    free(e->ua_line);
    free(e->ca_file);
    free(e->ca_path);
    e->ua_line = NULL;
    e->ca_file = e->ca_path = NULL;
    free(e->socks);
    e->socks = NULL;
    e->nsocks = e->socks_cap = 0;
}

void td_engine_unref(td_engine *e) {
    if (e == NULL || --e->refs > 0)
        return;
    /* the last reference: nobody can be busy, and close has run or the
     * client never finished being made */
    e->closed = 1;
    engine_release(e);
    /* kept until now: a call builds its path from base_path, and Lua that
     * runs before the call counts as busy (an __index of the options, a
     * finalizer at an allocation) may close the client first */
    free(e->base_url);
    free(e->base_path);
    free(e);
}

void td_engine_enter(td_engine *e) { e->busy++; }

void td_engine_leave(td_engine *e) {
    if (--e->busy == 0 && e->closed)
        engine_release(e);
}

/* ---- libcurl callbacks: C memory only ---------------------------------------- */

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
    td_engine *e = userp;
    int i;
    (void)easy;
    (void)socketp;
    for (i = 0; i < e->nsocks; i++)
        if (e->socks[i].fd == fd)
            break;
    if (what == CURL_POLL_REMOVE) {
        if (i < e->nsocks)
            e->socks[i] = e->socks[--e->nsocks];
        return 0;
    }
    if (i == e->nsocks) {
        if (e->nsocks == e->socks_cap) {
            int cap = e->socks_cap ? e->socks_cap * 2 : 16;
            td_sock *grown = realloc(e->socks, sizeof *grown * (size_t)cap);
            if (grown == NULL)
                return -1; /* libcurl fails the transfers: out of memory */
            e->socks = grown;
            e->socks_cap = cap;
        }
        e->socks[e->nsocks].fd = fd;
        e->nsocks++;
    }
    e->socks[i].what = what;
    return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp) {
    td_engine *e = userp;
    (void)multi;
    e->curl_deadline = timeout_ms < 0 ? -1 : td_monotonic() + (double)timeout_ms / 1000.0;
    return 0;
}

int td_engine_start(td_engine *e) {
    CURLMcode mrc = CURLM_OK;
    CURLSHcode src = CURLSHE_OK;
    e->multi = curl_multi_init();
    e->share = curl_share_init();
    /* the socket table at its full size now, so that on_socket never fails:
     * a -1 from it marks the whole multi handle dead for good (every later
     * transfer aborted, and no timer set to tell us) */
    e->socks = malloc(sizeof *e->socks * SOCKS_MAX);
    e->socks_cap = e->socks ? SOCKS_MAX : 0;
    if (e->multi == NULL || e->share == NULL || e->socks == NULL)
        return -1;
    src |= curl_share_setopt(e->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    src |= curl_share_setopt(e->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    mrc |= curl_multi_setopt(e->multi, CURLMOPT_MAX_HOST_CONNECTIONS, e->cfg.max_connections);
    mrc |= curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS, e->cfg.max_connections);
    mrc |= curl_multi_setopt(e->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    mrc |= curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    mrc |= curl_multi_setopt(e->multi, CURLMOPT_SOCKETDATA, e);
    mrc |= curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    mrc |= curl_multi_setopt(e->multi, CURLMOPT_TIMERDATA, e);
    return (src == CURLSHE_OK && mrc == CURLM_OK) ? 0 : -1;
}

/* ---- requests ---------------------------------------------------------------------- */

td_req *td_req_new(td_engine *e) {
    td_req *r = e->free_list;
    if (r != NULL) {
        e->free_list = r->qnext;
        e->free_len--;
    } else {
        r = calloc(1, sizeof *r);
        if (r == NULL)
            return NULL;
    }
    r->e = e;
    e->refs++;
    e->live_reqs++;
    r->refs = 1;
    r->id = e->next_id++;
    r->state = TD_QUEUED;
    r->a.retry_after = -1;
    return r;
}

/* Empty a buffer for reuse, or free it when it grew large. */
static void reset_buf(td_buf *b) {
    if (b->cap > KEEP_BUFFER_MAX)
        td_buf_free(b);
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void td_req_unref(td_req *r) {
    td_engine *e;
    if (r == NULL || --r->refs > 0)
        return;
    e = r->e;
    e->live_reqs--;
    /* nobody holds it: it is DONE, out of every list and out of libcurl */
    if (e->closed || e->free_len >= FREE_LIST_MAX) {
        free_req_memory(r);
    } else {
        td_buf path = r->path, query = r->query, body = r->body, resp = r->resp;
        reset_buf(&path);
        reset_buf(&query);
        reset_buf(&body);
        reset_buf(&resp);
        memset(r, 0, sizeof *r);
        r->path = path;
        r->query = query;
        r->body = body;
        r->resp = resp;
        r->qnext = e->free_list;
        e->free_list = r;
        e->free_len++;
    }
    td_engine_unref(e);
}

static void link_active(td_engine *e, td_req *r) {
    r->prev = NULL;
    r->next = e->active;
    if (e->active)
        e->active->prev = r;
    e->active = r;
    r->in_active = 1;
}

static void unlink_active(td_engine *e, td_req *r) {
    if (!r->in_active)
        return;
    if (r->prev)
        r->prev->next = r->next;
    else
        e->active = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    r->in_active = 0;
}

/* Append r to the queue (head, tail) linked through qnext. */
static void fifo_push(td_req **head, td_req **tail, td_req *r) {
    r->qnext = NULL;
    if (*tail)
        (*tail)->qnext = r;
    else
        *head = r;
    *tail = r;
}

static void push_completed(td_engine *e, td_req *r) {
    fifo_push(&e->completed, &e->completed_tail, r);
    r->in_completed = 1;
    r->state = TD_COMPLETED;
}

void td_engine_unlink_completed(td_engine *e, td_req *r) {
    td_req **p = &e->completed, *prev = NULL;
    if (!r->in_completed)
        return;
    while (*p && *p != r) {
        prev = *p;
        p = &(*p)->qnext;
    }
    if (*p) {
        *p = r->qnext;
        if (e->completed_tail == r)
            e->completed_tail = prev;
    }
    r->qnext = NULL;
    r->in_completed = 0;
}

/* Would r's next attempt wait out the client's 429 pause for longer than
 * r allows (retry_max_wait)?  Then it gets the 429 now, not in an hour. */
static int paused_too_long(const td_engine *e, const td_req *r, double now) {
    double from = r->not_before > now ? r->not_before : now;
    return e->pause_until - from > r->retry_max_wait;
}

static void stop_paused(td_engine *e, td_req *r, double now) {
    double from = r->not_before > now ? r->not_before : now;
    unlink_active(e, r);
    r->stop = TD_STOP_PAUSED;
    r->paused_for = e->pause_until - from;
    push_completed(e, r); /* judged (as paused) by the next frame */
}

int td_engine_submit(td_engine *e, td_req *r) {
    double now = td_monotonic();
    if (e->closed)
        return -1;
    r->refs++; /* the engine's, until DONE */
    r->held = 1;
    r->state = TD_QUEUED;
    link_active(e, r);
    if (paused_too_long(e, r, now))
        stop_paused(e, r, now);
    return 0;
}

/* An attempt could not even start: judge it like any other failed one. */
static void begin_failed(td_engine *e, td_req *r) {
    unlink_active(e, r);
    push_completed(e, r);
}

/* Start every request whose time has come, within max_connections. */
static void start_due(td_engine *e, double now) {
    td_req *r, *next;
    if (e->pause_until > now)
        return;
    for (r = e->active; r != NULL && e->running < e->cfg.max_connections; r = next) {
        next = r->next;
        if ((r->state == TD_QUEUED || r->state == TD_WAITING) && r->not_before <= now) {
            if (td_transfer_begin(e, r) == 0) {
                r->state = TD_RUNNING;
                e->running++;
            } else {
                begin_failed(e, r);
            }
        }
    }
}

/* Move every finished transfer from libcurl to e->completed. */
static void collect_done(td_engine *e) {
    CURLMsg *m;
    int queued = 0;
    while ((m = curl_multi_info_read(e->multi, &queued)) != NULL) {
        td_req *r = NULL;
        CURLcode result;
        if (m->msg != CURLMSG_DONE)
            continue;
        result = m->data.result; /* m dies with the removal */
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        if (r == NULL || !r->in_multi)
            continue;
        td_transfer_end(e, r, result);
        e->running--;
        unlink_active(e, r);
        push_completed(e, r);
    }
}

static int has_work_for(td_engine *e, const void *frame) {
    td_req *r;
    for (r = e->completed; r != NULL; r = r->qnext)
        if (r->frame == NULL || r->frame == frame)
            return 1;
    return 0;
}

/* Seconds until the next request may start, or -1 for none. */
static double next_start(td_engine *e, double now) {
    double best = -1;
    td_req *r;
    if (e->running >= e->cfg.max_connections)
        return -1; /* a finishing transfer wakes us instead */
    for (r = e->active; r != NULL; r = r->next) {
        if (r->state == TD_QUEUED || r->state == TD_WAITING) {
            double at = r->not_before > e->pause_until ? r->not_before : e->pause_until;
            double left = at > now ? at - now : 0;
            if (best < 0 || left < best)
                best = left;
        }
    }
    return best;
}

double td_engine_timeout(td_engine *e) {
    double now = td_monotonic(), best = -1, t;
    if (e->closed)
        return -1;
    if (e->completed != NULL || e->callbacks != NULL)
        return 0;
    t = next_start(e, now);
    if (t >= 0)
        best = t;
    if (e->curl_deadline >= 0) {
        t = e->curl_deadline > now ? e->curl_deadline - now : 0;
        if (best < 0 || t < best)
            best = t;
    }
    if (best < 0 && e->running > 0)
        best = 1; /* libcurl set no timer: look again within a second */
    return best;
}

int td_engine_drive(td_engine *e, double wait, const void *frame) {
    struct pollfd fds[SOCKS_MAX];
    int nfds = 0, i, running = 0, interrupted = 0;
    double now = td_monotonic(), t;
    if (e->closed || e->multi == NULL)
        return 0;
    start_due(e, now);
    /* read the clock again: a transfer just added set libcurl's timer to
     * "now", which the older reading would put a few microseconds ahead (and
     * the wait, rounded up, at a whole millisecond) */
    now = td_monotonic();
    if (has_work_for(e, frame))
        wait = 0;
    t = next_start(e, now);
    if (t >= 0 && t < wait)
        wait = t;
    if (e->curl_deadline >= 0 && e->curl_deadline - now < wait)
        wait = e->curl_deadline > now ? e->curl_deadline - now : 0;
    if (wait < 0)
        wait = 0;
    for (i = 0; i < e->nsocks && nfds < (int)(sizeof fds / sizeof fds[0]); i++) {
        fds[nfds].fd = e->socks[i].fd;
        fds[nfds].events = (short)(((e->socks[i].what & CURL_POLL_IN) ? POLLIN : 0) |
                                   ((e->socks[i].what & CURL_POLL_OUT) ? POLLOUT : 0));
        fds[nfds].revents = 0;
        nfds++;
    }
    if (nfds > 0 || wait > 0) {
        double ms = ceil(wait * 1000.0);
        int rc = poll(nfds > 0 ? fds : NULL, (nfds_t)nfds, ms > 3600000 ? 3600000 : (int)ms);
        if (rc < 0) {
            if (errno == EINTR)
                interrupted = 1;
            rc = 0;
        }
        /* socket_action may change e->socks: act on the copy */
        for (i = 0; rc > 0 && i < nfds; i++) {
            int ev = 0;
            if (fds[i].revents == 0)
                continue;
            if (fds[i].revents & (POLLIN | POLLHUP))
                ev |= CURL_CSELECT_IN;
            if (fds[i].revents & POLLOUT)
                ev |= CURL_CSELECT_OUT;
            if (fds[i].revents & (POLLERR | POLLNVAL))
                ev |= CURL_CSELECT_ERR;
            curl_multi_socket_action(e->multi, fds[i].fd, ev, &running);
        }
    }
    if (e->curl_deadline >= 0 && e->curl_deadline <= td_monotonic()) {
        e->curl_deadline = -1; /* libcurl sets it again if it still needs one */
        curl_multi_socket_action(e->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    collect_done(e);
    start_due(e, td_monotonic()); /* a finished transfer freed a connection */
    /* a transfer just added wants its first kick now, not after a wait */
    if (e->curl_deadline >= 0 && e->curl_deadline <= td_monotonic()) {
        e->curl_deadline = -1;
        curl_multi_socket_action(e->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        collect_done(e);
    }
    return interrupted;
}

/* ---- decisions taken from Lua (run.c), carried out here -------------------------- */

void td_engine_retry(td_engine *e, td_req *r, double delay) {
    double now = td_monotonic();
    td_engine_unlink_completed(e, r);
    r->state = TD_WAITING;
    r->not_before = now + delay;
    link_active(e, r);
    if (paused_too_long(e, r, now))
        stop_paused(e, r, now);
}

void td_engine_stop(td_engine *e, td_req *r, enum td_stop why) {
    if (r->state == TD_DONE)
        return;
    if (r->in_multi) {
        td_transfer_abort(e, r);
        e->running--;
        r->maybe_sent = 1; /* its bytes may be on the wire already */
    }
    unlink_active(e, r);
    td_engine_unlink_completed(e, r);
    r->state = TD_DONE;
    r->stop = why;
    td_engine_release_req(r);
}

void td_engine_release_req(td_req *r) {
    if (r->held) {
        r->held = 0;
        td_req_unref(r); /* the engine's reference */
    }
}

void td_engine_pause(td_engine *e, double seconds) {
    double now = td_monotonic(), until = now + seconds;
    td_req *r, *next;
    if (until > e->pause_until)
        e->pause_until = until;
    /* a request that would have to wait past its own limit gets the 429 now */
    for (r = e->active; r != NULL; r = next) {
        next = r->next;
        if ((r->state == TD_QUEUED || r->state == TD_WAITING) && paused_too_long(e, r, now))
            stop_paused(e, r, now);
    }
}

void td_engine_push_callback(td_engine *e, td_req *r) {
    r->refs++;
    fifo_push(&e->callbacks, &e->callbacks_tail, r);
}

/* The caller gets the queue's reference. */
td_req *td_engine_pop_callback(td_engine *e) {
    td_req *r = e->callbacks;
    if (r == NULL)
        return NULL;
    e->callbacks = r->qnext;
    if (e->callbacks == NULL)
        e->callbacks_tail = NULL;
    r->qnext = NULL;
    return r;
}

void td_engine_close(td_engine *e) {
    td_req *r;
    if (e->closed)
        return;
    e->closed = 1;
    while ((r = e->active) != NULL)
        td_engine_stop(e, r, TD_STOP_CLOSED);
    while ((r = e->completed) != NULL)
        td_engine_stop(e, r, TD_STOP_CLOSED);
    while ((r = td_engine_pop_callback(e)) != NULL)
        td_req_unref(r);
    if (e->busy == 0)
        engine_release(e);
}
