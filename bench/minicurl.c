/*
 * minicurl.c - baseline: the smallest libcurl binding a user could write for
 * Lua 5.4 to call this API (not part of truedy).  One reused easy handle
 * (keep-alive), truedy's header lines built once, a fresh UUIDv4 key per
 * call made in C (baseline.h), the answer returned as a Lua string; the Lua
 * side encodes the body and decodes the answer with lua-cjson itself.
 *
 *   local minicurl = require "minicurl"
 *   local h = minicurl.new(url, api_key, user_agent)
 *   local status, body = h:post(json)      -- nil, message on a transport error
 *   h:close()                              -- or let the collector do it
 */
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "baseline.h"

#define MINICURL_MT "minicurl.handle"

typedef struct handle {
    CURL *easy;
    bench_headers h;
    bench_body body;
} handle;

static handle *check(lua_State *L) {
    handle *h = luaL_checkudata(L, 1, MINICURL_MT);
    luaL_argcheck(L, h->easy != NULL, 1, "closed handle");
    return h;
}

static int l_new(lua_State *L) {
    const char *url = luaL_checkstring(L, 1);
    const char *key = luaL_checkstring(L, 2);
    const char *ua = luaL_checkstring(L, 3);
    handle *h = lua_newuserdatauv(L, sizeof *h, 0);
    memset(h, 0, sizeof *h);
    luaL_setmetatable(L, MINICURL_MT);
    if (bench_headers_init(&h->h, key, ua) != 0 || (h->easy = curl_easy_init()) == NULL)
        return luaL_error(L, "minicurl: out of memory");
    curl_easy_setopt(h->easy, CURLOPT_URL, url);
    curl_easy_setopt(h->easy, CURLOPT_HTTPHEADER, h->h.list);
    curl_easy_setopt(h->easy, CURLOPT_WRITEFUNCTION, bench_body_write);
    curl_easy_setopt(h->easy, CURLOPT_WRITEDATA, &h->body);
    curl_easy_setopt(h->easy, CURLOPT_NOSIGNAL, 1L);
    return 1;
}

static int l_post(lua_State *L) {
    handle *h = check(L);
    size_t len;
    const char *json = luaL_checklstring(L, 2, &len); /* stays on the stack during perform */
    long status = 0;
    CURLcode rc;
    h->body.len = 0;
    if (bench_headers_new_key(&h->h) != 0)
        return luaL_error(L, "minicurl: no randomness");
    curl_easy_setopt(h->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(h->easy, CURLOPT_POSTFIELDS, json);
    rc = curl_easy_perform(h->easy);
    if (rc != CURLE_OK) {
        luaL_pushfail(L);
        lua_pushstring(L, curl_easy_strerror(rc));
        return 2;
    }
    curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &status);
    lua_pushinteger(L, status);
    lua_pushlstring(L, h->body.data ? h->body.data : "", h->body.len);
    return 2;
}

static int l_close(lua_State *L) {
    handle *h = luaL_checkudata(L, 1, MINICURL_MT);
    if (h->easy != NULL)
        curl_easy_cleanup(h->easy);
    h->easy = NULL;
    bench_headers_free(&h->h);
    bench_body_free(&h->body);
    return 0;
}

int luaopen_minicurl(lua_State *L);

int luaopen_minicurl(lua_State *L) {
    static const luaL_Reg methods[] = {{"post", l_post}, {"close", l_close}, {NULL, NULL}};
    if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
        return luaL_error(L, "minicurl: curl_global_init failed");
    luaL_newmetatable(L, MINICURL_MT);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_close);
    lua_setfield(L, -2, "__close");
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, l_new);
    lua_setfield(L, -2, "new");
    return 1;
}
