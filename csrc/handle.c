/*
 * handle.c - what client:start_call() and the other start_* methods return.
 *
 * A handle holds a reference to its request (C memory, engine.c) and, in
 * its user value, its client, its on_done and, once finished, its results.
 * While the request is in flight the client anchors the handle (run.c), so
 * dropping the user's reference never frees anything libcurl holds; once it
 * is done, the handle is the caller's alone and stays readable, even after
 * client:close().
 */
#include <stdio.h>
#include <string.h>

#include "truedy.h"

static td_handle *check_handle(lua_State *L, int idx) {
    return luaL_checkudata(L, idx, TD_HANDLE_MT);
}

void td_handle_push(lua_State *L, int client_idx, int on_done_idx) {
    td_handle *h;
    client_idx = td_absindex(L, client_idx);
    h = td_newuserdata_uv(L, sizeof *h);
    h->r = NULL;
    h->answered = 0;
    luaL_getmetatable(L, TD_HANDLE_MT);
    lua_setmetatable(L, -2);
    lua_createtable(L, 0, 4);
    lua_pushvalue(L, client_idx);
    lua_setfield(L, -2, "client");
    if (on_done_idx) {
        lua_pushvalue(L, on_done_idx);
        lua_setfield(L, -2, "on_done");
    }
    td_setuv(L, -2);
}

void td_handle_store(lua_State *L, int h_idx, int res_idx, int nres) {
    td_handle *h = lua_touserdata(L, h_idx);
    h_idx = td_absindex(L, h_idx);
    td_getuv(L, h_idx);
    lua_pushvalue(L, res_idx);
    lua_setfield(L, -2, "res");
    if (nres == 2) {
        lua_pushvalue(L, res_idx + 1);
        lua_setfield(L, -2, "err");
    }
    lua_pop(L, 1);
    h->answered = 1; /* last: a finalizer running above saw it unfinished */
}

void td_handle_answer(lua_State *L, int client_idx, td_req *r, int h_idx, int res_idx, int nres) {
    td_handle_store(L, h_idx, res_idx, nres);
    if (r->has_on_done && !r->e->closed)
        td_engine_push_callback(r->e, r); /* the anchor stays until on_done runs */
    else
        td_anchor_set(L, client_idx, r->id, 0);
}

/* Stopped by close() with no answer: the cancelled error, made once. */
static void answer_stopped(lua_State *L, int h_idx, td_handle *h) {
    int top = lua_gettop(L);
    td_push_stopped(L, h->r);
    td_handle_store(L, h_idx, top + 1, 2);
    lua_settop(L, top);
}

static int is_done(const td_handle *h) {
    return h->answered || (h->r != NULL && h->r->state == TD_DONE && h->r->stop == TD_STOP_CLOSED);
}

int td_handle_push_results(lua_State *L, int h_idx) {
    td_handle *h = lua_touserdata(L, h_idx);
    h_idx = td_absindex(L, h_idx);
    if (!h->answered)
        answer_stopped(L, h_idx, h);
    td_getuv(L, h_idx);
    lua_getfield(L, -1, "res");
    if (!lua_isnil(L, -1)) {
        lua_remove(L, -2);
        return 1;
    }
    lua_getfield(L, -2, "err");
    lua_remove(L, -3);
    return 2;
}

/* h:done() -> true once finished */
static int handle_done(lua_State *L) {
    lua_pushboolean(L, is_done(check_handle(L, 1)));
    return 1;
}

/* h:state() -> "queued" | "running" | "waiting" | "done" */
static int handle_state(lua_State *L) {
    td_handle *h = check_handle(L, 1);
    const char *state = "done";
    if (!is_done(h) && h->r) {
        switch (h->r->state) {
        case TD_QUEUED: state = "queued"; break;
        case TD_WAITING: state = "waiting"; break;
        default: state = "running"; break; /* running, or judged this instant */
        }
    }
    lua_pushstring(L, state);
    return 1;
}

/* h:result() -> envelope | nil, err; raises when not finished yet */
static int handle_result(lua_State *L) {
    td_handle *h = check_handle(L, 1);
    lua_settop(L, 1);
    if (!is_done(h))
        return luaL_error(L, "truedy: the call is not finished yet (h:done() is false; "
                             "drive it with client:poll() or h:wait())");
    return td_handle_push_results(L, 1);
}

/* h:cancel() -> true, or false when it was already finished.  The API has
 * no way to hang up a call: the result says whether the request may have
 * reached the server, with the idempotency key to find out safely. */
static int handle_cancel(lua_State *L) {
    td_handle *h = check_handle(L, 1);
    td_req *r = h->r;
    int top;
    lua_settop(L, 1);
    if (is_done(h) || r == NULL) {
        lua_pushboolean(L, 0);
        return 1;
    }
    td_getuv(L, 1);
    lua_getfield(L, -1, "client");
    top = lua_gettop(L); /* the client */
    td_engine_stop(r->e, r, TD_STOP_CANCELLED);
    td_push_stopped(L, r);
    td_handle_answer(L, top, r, 1, top + 1, 2); /* on_done runs at the next poll or wait */
    lua_settop(L, top);
    lua_pushboolean(L, 1);
    return 1;
}

static int wait_stop(void *arg, td_engine *e, int finished) {
    (void)e;
    (void)finished;
    return is_done(arg);
}

/* Under lua_pcall: handle at 1, client at 2, timeout at 3 (< 0: none). */
static int wait_body(lua_State *L) {
    td_handle *h = lua_touserdata(L, 1);
    td_client *c = lua_touserdata(L, 2);
    int timed_out;
    td_run_until(L, 2, c->e, lua_tonumber(L, 3), wait_stop, h, &timed_out);
    if (timed_out)
        return 0;
    return td_handle_push_results(L, 1);
}

/* h:wait([timeout]) -> envelope | nil, err; nothing when timeout seconds
 * passed first (the call goes on; h:done() is still false). */
static int handle_wait(lua_State *L) {
    td_handle *h = check_handle(L, 1);
    double timeout = luaL_optnumber(L, 2, -1);
    td_client *c;
    int status, base;
    if (lua_gettop(L) >= 2 && !lua_isnil(L, 2) && !(timeout >= 0))
        return luaL_argerror(L, 2, "timeout must be a number of seconds, 0 or more");
    lua_settop(L, 1);
    if (is_done(h))
        return td_handle_push_results(L, 1);
    td_getuv(L, 1);
    lua_getfield(L, -1, "client");
    c = td_check_client(L, -1);
    base = lua_gettop(L);
    lua_pushcfunction(L, wait_body);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, base);
    lua_pushnumber(L, timeout);
    td_engine_enter(c->e);
    status = lua_pcall(L, 3, LUA_MULTRET, 0);
    td_engine_leave(c->e);
    if (status != LUA_OK)
        return lua_error(L);
    return lua_gettop(L) - base;
}

static int handle_gc(lua_State *L) {
    td_handle *h = check_handle(L, 1);
    td_req *r = h->r;
    h->r = NULL;
    if (r != NULL) {
        /* in flight only if its client is garbage too (it anchors the
         * handle otherwise): out of libcurl first */
        if (r->state != TD_DONE)
            td_engine_stop(r->e, r, TD_STOP_CLOSED);
        td_req_unref(r);
    }
    return 0;
}

static int handle_tostring(lua_State *L) {
    td_handle *h = check_handle(L, 1);
    const char *name = h->r && h->r->ep ? h->r->ep->name : "call";
    lua_settop(L, 1);
    handle_state(L);
    lua_pushfstring(L, "truedy.handle (%s, %s)", name, lua_tostring(L, -1));
    return 1;
}

void td_handle_init(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"done", handle_done},     {"state", handle_state}, {"result", handle_result},
        {"wait", handle_wait},     {"cancel", handle_cancel}, {NULL, NULL},
    };
    luaL_newmetatable(L, TD_HANDLE_MT);
    lua_newtable(L);
    td_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, handle_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, handle_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "truedy.handle");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
}
