/*
 * run.c - driving the engine from Lua.
 *
 * engine.c moves bytes without running any Lua.  Here, between those steps,
 * each finished attempt is judged: its outcome is built (outcome.c), and the
 * policy (policy.c) decides between trying again and the final answer.  A
 * blocking call keeps the final answer of its own request; a handle's goes
 * into the handle (found through the client's anchors), and its on_done is
 * queued for the next poll or wait.
 *
 * Lua runs at every allocation (finalizers) and at every table read
 * (__index), so after each step that may run Lua this code looks again at
 * what it holds: the client may have been closed, a request cancelled.
 * Requests are reference counted; the engine frees nothing a frame uses.
 */
#include <stdio.h>
#include <string.h>

#include "truedy.h"

/* ---- anchors: the handles a client has in flight --------------------------------- */

static void push_inflight(lua_State *L, int client_idx) {
    td_getuv(L, client_idx);
    lua_getfield(L, -1, "inflight");
    lua_remove(L, -2);
}

void td_anchor_set(lua_State *L, int client_idx, unsigned long id, int handle_idx) {
    handle_idx = td_absindex(L, handle_idx);
    push_inflight(L, client_idx);
    lua_pushnumber(L, (lua_Number)id);
    if (handle_idx)
        lua_pushvalue(L, handle_idx);
    else
        lua_pushnil(L);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

void td_anchor_push_handle(lua_State *L, int client_idx, unsigned long id) {
    push_inflight(L, client_idx);
    lua_pushnumber(L, (lua_Number)id);
    lua_rawget(L, -2);
    lua_remove(L, -2);
}

/* ---- preparing a request ------------------------------------------------------------ */

/* The caller's idempotency key (the value at idx), checked into r. */
static int take_key(lua_State *L, int idx, td_req *r, td_fail *f) {
    size_t n, i;
    const char *key;
    if (lua_type(L, idx) != LUA_TSTRING) {
        td_fail_field(f, "idempotency_key", "must be a string, got %s", td_type_phrase(L, idx));
        return -1;
    }
    key = lua_tolstring(L, idx, &n);
    if (n == 0 || n > TD_IDEM_KEY_MAX) {
        td_fail_field(f, "idempotency_key", "must be 1 to %d characters long", TD_IDEM_KEY_MAX);
        return -1;
    }
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)key[i];
        if (ch <= 0x20 || ch >= 0x7f) {
            td_fail_field(f, "idempotency_key",
                          "must be printable ASCII without spaces (it travels in an HTTP header)");
            return -1;
        }
    }
    memcpy(r->idem_key, key, n);
    r->idem_key[n] = '\0';
    return 0;
}

int td_run_prepare(lua_State *L, const td_endpoint *ep, int arg, const td_settings *s,
                   td_req *r) {
    td_fail fail;
    int rc;
    memset(&fail, 0, sizeof fail);
    r->ep = ep;
    r->retries = (int)s->retries;
    r->timeout_ms = (long)(1000 * s->attempt_timeout);
    r->retry_base_delay = s->retry_base_delay;
    r->retry_max_delay = s->retry_max_delay;
    r->retry_max_wait = s->retry_max_wait;
    r->not_before = s->delay > 0 ? td_monotonic() + s->delay : 0;
    r->idem_key[0] = '\0';
    if (ep->creates && s->idempotency_key && take_key(L, s->idempotency_key, r, &fail) != 0)
        return td_push_invalid(L, &fail);
    rc = ep->build(L, arg, s, r, &fail);
    if (rc == -1)
        return td_push_invalid(L, &fail);
    if (rc != 0)
        return luaL_error(L, "truedy: out of memory");
    /* every create carries a key, so a retry can never dial twice */
    if (ep->creates && r->idem_key[0] == '\0')
        td_uuid4(r->idem_key);
    if (r->idem_key[0]) { /* "X-Idempotency-Key: <key>", built without printf */
        static const char name[] = "X-Idempotency-Key: ";
        size_t klen = strlen(r->idem_key);
        memcpy(r->key_line, name, sizeof name - 1);
        memcpy(r->key_line + sizeof name - 1, r->idem_key, klen + 1);
    }
    return 0;
}

/* ---- stopped requests ------------------------------------------------------------------- */

int td_push_stopped(lua_State *L, const td_req *r) {
    char msg[512];
    int create = r->ep && r->ep->creates;
    const char *why = r->stop == TD_STOP_CLOSED ? "the client was closed" : "cancelled";
    /* r->maybe_sent is the policy's judgement of every attempt so far (a
     * refused connection or a 429 proves the server did nothing), not
     * merely "an attempt was made" */
    if (r->attempts == 0 && !r->maybe_sent)
        snprintf(msg, sizeof msg, "%s before the request was sent: nothing reached the server",
                 why);
    else if (!r->maybe_sent)
        snprintf(msg, sizeof msg,
                 "%s while waiting to try again: the server acted on none of the %d attempt%s "
                 "(each was refused or never arrived)%s",
                 why, r->attempts, r->attempts == 1 ? "" : "s",
                 create ? ", so nothing was created" : "");
    else if (create)
        snprintf(msg, sizeof msg,
                 "%s after the request may have reached the server: the call may exist; look it "
                 "up, or place it again with the same idempotency_key (it cannot dial twice)",
                 why);
    else
        snprintf(msg, sizeof msg, "%s while the request was in flight", why);
    lua_pushnil(L);
    td_error_new(L, "cancelled", msg);
    td_set_int(L, "attempts", r->attempts);
    td_set_bool(L, "retryable", 1);
    td_set_bool(L, "maybe_sent", r->maybe_sent);
    if (r->idem_key[0])
        td_set_str(L, "idempotency_key", r->idem_key);
    return 2;
}

/* The 429 error of a request the client's pause stopped: a copy of the 429
 * that started the pause, for this request. */
static int push_paused(lua_State *L, int client_idx, const td_req *r) {
    int err;
    lua_pushnil(L);
    td_error_new(L, "api", "");
    err = lua_gettop(L);
    td_getuv(L, client_idx);
    lua_getfield(L, -1, "pause_error");
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        while (lua_next(L, -2) != 0) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, err);
        }
    }
    lua_settop(L, err);
    td_set_int(L, "status", 429);
    td_set_str(L, "code", "rate_limit_exceeded");
    lua_getfield(L, err, "message");
    lua_pushfstring(L, "%s (not sent: the client is paused until the rate limit resets, longer "
                       "than retry_max_wait)",
                    lua_isstring(L, -1) ? lua_tostring(L, -1) : "Rate limit exceeded");
    lua_setfield(L, err, "message");
    lua_pop(L, 1);
    td_set_int(L, "attempts", r->attempts);
    td_set_num(L, "retry_after", r->paused_for);
    td_set_bool(L, "retryable", 1);
    if (r->idem_key[0])
        td_set_str(L, "idempotency_key", r->idem_key);
    else {
        lua_pushnil(L);
        lua_setfield(L, err, "idempotency_key");
    }
    return 2;
}

/* ---- judging finished attempts --------------------------------------------------------- */

/* JUDGED_RETRY: r is not finished by this judgement (retried, or judged by
 * another frame meanwhile); JUDGED_FINAL: it is. */
enum { JUDGED_RETRY, JUDGED_FINAL };

/* Judge r, a completed attempt this frame may judge.  The final results
 * (nres values) are left on the stack for a blocking request of this frame;
 * a handle's go into the handle. */
static int judge(lua_State *L, int client_idx, td_engine *e, td_req *r, int *nres) {
    int base = lua_gettop(L), top, n;
    unsigned judged = r->judged;
    td_outcome_info info;
    /* a handle's request: the handle stays on the stack while Lua runs, so
     * r (which the handle holds) outlives a close() or cancel() that
     * unanchors the handle, and the collection that may follow */
    if (r->frame == NULL)
        td_anchor_push_handle(L, client_idx, r->id);
    top = lua_gettop(L);
    if (r->stop == TD_STOP_PAUSED) {
        n = push_paused(L, client_idx, r); /* final: no retry to decide */
        if (r->judged != judged)
            goto judged_meanwhile;
    } else {
        td_outcome_in in;
        in.a = &r->a;
        in.body = r->resp.data;
        in.body_len = r->resp.len;
        in.attempts = r->attempts;
        in.idem_key = r->idem_key[0] ? r->idem_key : NULL;
        in.attempt_timeout = (double)r->timeout_ms / 1000.0;
        in.connect_timeout = (double)e->cfg.connect_timeout_ms / 1000.0;
        in.max_response_bytes = e->cfg.max_response_bytes;
        in.secret = e->api_key;
        n = td_outcome_push(L, &in, &info); /* Lua runs: anything may happen */
        if (r->judged != judged)
            goto judged_meanwhile;
        if (r->state == TD_COMPLETED && info.is_error && !e->closed) {
            double delay = -1;
            if (r->a.status == 429 && info.server_wait >= 0) {
                /* the server said when: every new request of this client waits */
                td_getuv(L, client_idx);
                lua_pushvalue(L, top + 2);
                lua_setfield(L, -2, "pause_error");
                lua_pop(L, 1);
                td_engine_pause(e, info.server_wait);
            }
            if (info.retryable)
                delay = td_policy_delay(r->attempts, r->retries, r->retry_base_delay,
                                        r->retry_max_delay, r->retry_max_wait, info.server_wait,
                                        td_random01());
            if (delay >= 0) {
                r->judged++;
                td_engine_retry(e, r, delay);
                lua_settop(L, base);
                return JUDGED_RETRY;
            }
        }
    }
    /* final.  (Stopped while Lua ran: the answer in hand is still the true one.) */
    r->judged++;
    if (r->state != TD_DONE) {
        td_engine_unlink_completed(e, r);
        r->state = TD_DONE;
        td_engine_release_req(r); /* r->frame or a handle holds another */
    }
    if (r->frame != NULL) {
        *nres = n;
        return JUDGED_FINAL;
    }
    if (r->stop == TD_STOP_CANCELLED) { /* h:cancel() ran meanwhile: it answered */
        lua_settop(L, base);
        *nres = 0;
        return JUDGED_FINAL;
    }
    /* a handle's answer: into the handle, found through the anchor */
    td_anchor_push_handle(L, client_idx, r->id);
    if (lua_isuserdata(L, -1)) {
        td_handle_answer(L, client_idx, r, lua_gettop(L), top + 1, n);
    }
    lua_settop(L, base);
    *nres = 0;
    return JUDGED_FINAL;

judged_meanwhile:
    /* a frame that the Lua above started (a finalizer calling poll, wait or
     * a blocking method) judged this same attempt, and may have retried it:
     * that judgement stands, this answer is dropped */
    lua_settop(L, base);
    *nres = 0;
    return JUDGED_RETRY;
}

/* The first completed request this frame may judge: its own, or a handle's. */
static td_req *next_for(td_engine *e, const void *frame) {
    td_req *r;
    for (r = e->completed; r != NULL; r = r->qnext)
        if (r->frame == NULL || r->frame == frame)
            return r;
    return NULL;
}

int td_run_completed(lua_State *L, int client_idx, td_engine *e, const void *frame) {
    td_req *r;
    int finished = 0, nres;
    while (!e->closed && (r = next_for(e, frame)) != NULL) {
        if (judge(L, client_idx, e, r, &nres) == JUDGED_FINAL)
            finished++;
    }
    return finished;
}

/* Lets the standalone interpreter's Ctrl-C hook (which fires on the next
 * function call) interrupt a wait that a signal cut short. */
static int noop(lua_State *L) {
    (void)L;
    return 0;
}

void td_run_after_signal(lua_State *L) {
    lua_pushcfunction(L, noop);
    lua_call(L, 0, 0);
}

int td_run_blocking(lua_State *L, int client_idx, td_engine *e, td_req *r, const void *frame) {
    for (;;) {
        td_req *c;
        int nres;
        while ((c = next_for(e, frame)) != NULL) {
            if (judge(L, client_idx, e, c, &nres) == JUDGED_FINAL && c == r)
                return nres;
            if (e->closed)
                break;
        }
        if (r->state == TD_DONE)
            return td_push_stopped(L, r);
        if (td_engine_drive(e, 3600, frame))
            td_run_after_signal(L);
    }
}

/* ---- callbacks ---------------------------------------------------------------------------- */

int td_run_callbacks(lua_State *L, int client_idx, td_engine *e) {
    td_req *r;
    while (!e->closed && (r = td_engine_pop_callback(e)) != NULL) {
        int top = lua_gettop(L), h, n;
        unsigned long id = r->id;
        td_req_unref(r); /* the queue's; the handle keeps its own */
        td_anchor_push_handle(L, client_idx, id);
        if (!lua_isuserdata(L, -1)) {
            lua_settop(L, top);
            continue;
        }
        h = lua_gettop(L);
        td_anchor_set(L, client_idx, id, 0); /* runs once, even if it raises */
        td_getuv(L, h);
        lua_getfield(L, -1, "on_done");
        lua_remove(L, -2);
        if (!lua_isfunction(L, -1)) {
            lua_settop(L, top);
            continue;
        }
        n = td_handle_push_results(L, h);
        if (n == 1)
            lua_pushnil(L);
        lua_pushvalue(L, h);
        if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
            lua_replace(L, top + 1);
            lua_settop(L, top + 1);
            return 1;
        }
        lua_settop(L, top);
    }
    return 0;
}

/* ---- driving until something is true ---------------------------------------------------- */

int td_run_until(lua_State *L, int client_idx, td_engine *e, double timeout, td_stop_fn stop,
                 void *arg, int *timed_out) {
    double deadline = td_monotonic() + timeout, wait = 0; /* the first pass never sleeps */
    int finished = 0;
    *timed_out = 0;
    for (;;) {
        if (td_engine_drive(e, wait, NULL))
            td_run_after_signal(L);
        finished += td_run_completed(L, client_idx, e, NULL);
        if (td_run_callbacks(L, client_idx, e))
            lua_error(L); /* the callback's own error, unchanged */
        if (e->closed || stop(arg, e, finished))
            return finished;
        wait = timeout < 0 ? 3600 : deadline - td_monotonic();
        if (wait <= 0) {
            *timed_out = 1;
            return finished;
        }
    }
}

/* ---- client:poll, client:timeout, client:sockets ----------------------------------------- */

/* Under lua_pcall: client at 1, timeout at 2.  Stops once something
 * finished, or when nothing is in flight. */
static int poll_stop(void *arg, td_engine *e, int finished) {
    (void)arg;
    return finished > 0 || td_engine_timeout(e) < 0;
}

static int poll_body(lua_State *L) {
    td_client *c = lua_touserdata(L, 1);
    int timed_out;
    lua_pushinteger(L, td_run_until(L, 1, c->e, lua_tonumber(L, 2), poll_stop, NULL, &timed_out));
    return 1;
}

/* client:poll([timeout]) -> the number of handles that finished during it.
 * Waits at most timeout seconds (default 0: never sleeps), returning as
 * soon as something finished, or at once when nothing is in flight. */
static int client_poll(lua_State *L) {
    td_client *c = td_check_client(L, 1);
    td_engine *e = c->e;
    double timeout = luaL_optnumber(L, 2, 0);
    int status;
    if (!(timeout >= 0))
        return luaL_argerror(L, 2, "timeout must be a number of seconds, 0 or more");
    lua_settop(L, 1);
    lua_pushcfunction(L, poll_body);
    lua_pushvalue(L, 1);
    lua_pushnumber(L, timeout);
    td_engine_enter(e);
    status = lua_pcall(L, 2, 1, 0);
    td_engine_leave(e);
    if (status != LUA_OK)
        return lua_error(L);
    return 1;
}

/* client:timeout() -> seconds an event loop may sleep before calling
 * poll(0), or nil when nothing is in flight. */
static int client_timeout(lua_State *L) {
    td_client *c = td_check_client(L, 1);
    double t = td_engine_timeout(c->e);
    if (t < 0)
        lua_pushnil(L);
    else
        lua_pushnumber(L, t);
    return 1;
}

/* client:sockets() -> { [fd] = "r" | "w" | "rw" }: what libcurl wants
 * watched.  Changes after every poll; an event loop re-reads it. */
static int client_sockets(lua_State *L) {
    td_client *c = td_check_client(L, 1);
    td_engine *e = c->e;
    int i, n = e->nsocks;
    lua_createtable(L, 0, n);
    for (i = 0; i < e->nsocks; i++) {
        /* read before pushing: a finalizer that runs there may close the
         * client, and the release frees the table (nsocks becomes 0) */
        int what = e->socks[i].what, fd = (int)e->socks[i].fd;
        lua_pushstring(L, what == CURL_POLL_INOUT ? "rw" : what == CURL_POLL_OUT ? "w" : "r");
        lua_rawseti(L, -2, fd);
    }
    return 1;
}

/* client:pending() -> how many requests are in flight (not yet done). */
static int client_pending(lua_State *L) {
    td_client *c = td_check_client(L, 1);
    const td_req *r;
    int n = 0;
    for (r = c->e->active; r; r = r->next)
        n++;
    for (r = c->e->completed; r; r = r->qnext)
        n++;
    lua_pushinteger(L, n);
    return 1;
}

/* client:stats() -> counts for diagnostics and leak checks: requests in
 * flight and alive, easy handles kept warm, sockets watched. */
static int client_stats(lua_State *L) {
    td_client *c = luaL_checkudata(L, 1, TD_CLIENT_MT);
    td_engine *e = c->e;
    lua_createtable(L, 0, 6);
    if (e == NULL)
        return 1;
    td_set_bool(L, "closed", e->closed);
    td_set_int(L, "running", e->running);
    td_set_int(L, "live_requests", e->live_reqs);
    td_set_int(L, "pooled_handles", e->pool_len);
    td_set_int(L, "sockets", e->nsocks);
    td_set_bool(L, "released", e->released);
    return 1;
}

/* client:config() -> the settings in force, under their current names
 * (whatever spelling truedy.new was given): for layers such as truedy.resty
 * that retry themselves with the same rules. */
static int client_config(lua_State *L) {
    td_client *c = td_check_client(L, 1);
    const td_config *cfg = &c->e->cfg;
    lua_createtable(L, 0, 10);
    td_set_num(L, "attempt_timeout", (lua_Number)cfg->attempt_timeout_ms / 1000);
    td_set_num(L, "connect_timeout", (lua_Number)cfg->connect_timeout_ms / 1000);
    td_set_int(L, "retries", cfg->retries);
    td_set_num(L, "retry_base_delay", cfg->retry_base_delay);
    td_set_num(L, "retry_max_delay", cfg->retry_max_delay);
    td_set_num(L, "retry_max_wait", cfg->retry_max_wait);
    td_set_int(L, "max_connections", cfg->max_connections);
    td_set_int(L, "max_response_bytes", (lua_Integer)cfg->max_response_bytes);
    td_set_str(L, "base_url", c->e->base_url);
    return 1;
}

void td_run_init(lua_State *L, int methods) {
    lua_pushcfunction(L, client_config);
    lua_setfield(L, methods, "config");
    lua_pushcfunction(L, client_stats);
    lua_setfield(L, methods, "stats");
    lua_pushcfunction(L, client_poll);
    lua_setfield(L, methods, "poll");
    lua_pushcfunction(L, client_timeout);
    lua_setfield(L, methods, "timeout");
    lua_pushcfunction(L, client_sockets);
    lua_setfield(L, methods, "sockets");
    lua_pushcfunction(L, client_pending);
    lua_setfield(L, methods, "pending");
}
