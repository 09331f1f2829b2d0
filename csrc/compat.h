/*
 * compat.h - every difference between Lua 5.1, 5.2, 5.3 and 5.4 that truedy
 * cares about, in one place.  The rest of the sources use only the td_*
 * names below and the API common to all versions.
 *
 * LuaJIT has no branch here: like lua-cjson, truedy is built once for the
 * 5.1 ABI, against PUC Lua 5.1's headers, and that one truedy.so loads in
 * both PUC Lua 5.1 and LuaJIT.  So nothing may use what only LuaJIT exports
 * (luaL_setfuncs, luaL_testudata, ...): PUC 5.1 would fail to load it with
 * "undefined symbol".  Which of the two runs is known only at run time
 * (the User-Agent asks the `jit` global, see truedy.c).
 */
#ifndef TRUEDY_COMPAT_H
#define TRUEDY_COMPAT_H

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#ifndef LUA_OK
#define LUA_OK 0
#endif

/* The registry key pattern of 5.2+ (lua_rawgetp/rawsetp) written for all. */
static inline void td_rawgetp(lua_State *L, int idx, const void *key) {
    idx = (idx > 0 || idx <= LUA_REGISTRYINDEX) ? idx : lua_gettop(L) + idx + 1;
    lua_pushlightuserdata(L, (void *)key);
    lua_rawget(L, idx);
}

/* Pops the value on top and stores it at t[key] (t at idx). */
static inline void td_rawsetp(lua_State *L, int idx, const void *key) {
    idx = (idx > 0 || idx <= LUA_REGISTRYINDEX) ? idx : lua_gettop(L) + idx + 1;
    lua_pushlightuserdata(L, (void *)key);
    lua_insert(L, -2);
    lua_rawset(L, idx);
}

/* Call f with the light userdata ud as its only argument, in protected mode,
 * allocating nothing outside the protection (5.1's lua_pushcfunction makes a
 * closure, hence lua_cpcall there).  On error the error object is left on the
 * stack, as lua_pcall does. */
static inline int td_cpcall(lua_State *L, lua_CFunction f, void *ud) {
#if LUA_VERSION_NUM >= 502
    lua_pushcfunction(L, f); /* a light C function: no allocation */
    lua_pushlightuserdata(L, ud);
    return lua_pcall(L, 1, 0, 0);
#else
    return lua_cpcall(L, f, ud);
#endif
}

static inline int td_absindex(lua_State *L, int idx) {
    return (idx > 0 || idx <= LUA_REGISTRYINDEX) ? idx : lua_gettop(L) + idx + 1;
}

#if LUA_VERSION_NUM >= 502
#define td_rawlen(L, i) lua_rawlen((L), (i))
#else
#define td_rawlen(L, i) lua_objlen((L), (i))
#endif

/* luaL_setfuncs / luaL_testudata exist in 5.2+; the 5.1 ABI needs them
 * written out (LuaJIT 2.1 has them, PUC 5.1 does not). */
#if LUA_VERSION_NUM >= 502
#define td_setfuncs(L, l, n) luaL_setfuncs((L), (l), (n))
#define td_testudata(L, i, t) luaL_testudata((L), (i), (t))
#else
static inline void td_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
    luaL_checkstack(L, nup + 1, "too many upvalues");
    for (; l->name != NULL; l++) {
        int i;
        for (i = 0; i < nup; i++)
            lua_pushvalue(L, -nup);
        lua_pushcclosure(L, l->func, nup);
        lua_setfield(L, -(nup + 2), l->name);
    }
    lua_pop(L, nup);
}

static inline void *td_testudata(lua_State *L, int ud, const char *tname) {
    void *p = lua_touserdata(L, ud);
    if (p != NULL && lua_getmetatable(L, ud)) {
        luaL_getmetatable(L, tname);
        if (!lua_rawequal(L, -1, -2))
            p = NULL;
        lua_pop(L, 2);
        return p;
    }
    return NULL;
}
#endif

/* Full userdata without user values (5.4 lets us ask for zero). */
#if LUA_VERSION_NUM >= 504
#define td_newuserdata(L, sz) lua_newuserdatauv((L), (sz), 0)
#else
#define td_newuserdata(L, sz) lua_newuserdata((L), (sz))
#endif

/* Full userdata with one user value (a table): 5.4 asks for the slot,
 * 5.2/5.3 have one, 5.1 and LuaJIT use the userdata's environment. */
#if LUA_VERSION_NUM >= 504
#define td_newuserdata_uv(L, sz) lua_newuserdatauv((L), (sz), 1)
#define td_setuv(L, idx) ((void)lua_setiuservalue((L), (idx), 1))
#define td_getuv(L, idx) ((void)lua_getiuservalue((L), (idx), 1))
#elif LUA_VERSION_NUM >= 502
#define td_newuserdata_uv(L, sz) lua_newuserdata((L), (sz))
#define td_setuv(L, idx) lua_setuservalue((L), (idx))
#define td_getuv(L, idx) ((void)lua_getuservalue((L), (idx)))
#else
#define td_newuserdata_uv(L, sz) lua_newuserdata((L), (sz))
#define td_setuv(L, idx) ((void)lua_setfenv((L), (idx)))
#define td_getuv(L, idx) lua_getfenv((L), (idx))
#endif

/* Integer subtype: 5.3+ has one; older Luas only have doubles. */
#if LUA_VERSION_NUM >= 503
#define TD_HAS_INTEGERS 1
#define td_isinteger(L, i) lua_isinteger((L), (i))
#else
#define TD_HAS_INTEGERS 0
#define td_isinteger(L, i) 0
#endif

#endif /* TRUEDY_COMPAT_H */
