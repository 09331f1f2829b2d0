/*
 * json.c - JSON for truedy.
 *
 * Encoding is done here, in C, rather than by lua-cjson: cjson 2.1.0 prints
 * numbers with 14 significant digits (1234567890123456 would be sent as
 * 1.2345678901235e+15), cannot say which field made it fail, and writes keys
 * in table order.  Walking the tables ourselves checks, names and encodes in
 * one pass, writes every integer exactly and sorts object keys so the same
 * parameters always produce the same bytes -- which the API's idempotency
 * store needs to recognise a replay.
 *
 * Decoding uses a private lua-cjson instance (cjson.new(), so the user's own
 * cjson settings are never touched), followed by a normalising walk.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "truedy.h"

#define TD_MAX_DEPTH 32        /* nesting accepted in parameters */
#define TD_DECODE_MAX_DEPTH 128 /* nesting accepted in responses */
#define TD_SMALL_KEYS 16

static const char decode_key = 'd'; /* registry slot of the cjson decoder */

int td_is_null(lua_State *L, int idx) {
    return lua_type(L, idx) == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == NULL;
}

/* ---- encoding ------------------------------------------------------------ */

int td_number_text(lua_State *L, int idx, char *out, size_t cap) {
    lua_Number d;
    if (td_isinteger(L, idx)) {
        snprintf(out, cap, "%lld", (long long)lua_tointeger(L, idx));
        return 0;
    }
    d = lua_tonumber(L, idx);
    if (d != d || d == HUGE_VAL || d == -HUGE_VAL)
        return -1;
    td_format_double(out, cap, (double)d);
    return 0;
}

int td_json_encode_string(td_buf *out, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    size_t i, run = 0;
    if (td_buf_reserve(out, n + 2) != 0 || td_buf_putc(out, '"') != 0)
        return -1;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[7];
        size_t elen = 2;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        /* flush the plain run before this byte */
        if (td_buf_append(out, s + run, i - run) != 0)
            return -1;
        run = i + 1;
        esc[0] = '\\';
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            elen = 6;
        }
        if (td_buf_append(out, esc, elen) != 0)
            return -1;
    }
    if (td_buf_append(out, s + run, n - run) != 0)
        return -1;
    return td_buf_putc(out, '"');
}

static int key_cmp(const void *a, const void *b) {
    const td_key *x = a, *y = b;
    size_t n = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->s, y->s, n);
    if (c != 0)
        return c;
    return (x->n > y->n) - (x->n < y->n);
}

const char *td_type_phrase(lua_State *L, int idx) {
    if (td_is_null(L, idx))
        return "truedy.null";
    switch (lua_type(L, idx)) {
    case LUA_TFUNCTION: return "a function";
    case LUA_TUSERDATA: return "a userdata";
    case LUA_TLIGHTUSERDATA: return "a light userdata";
    case LUA_TTHREAD: return "a coroutine";
    case LUA_TTABLE: return "a table";
    case LUA_TSTRING: return "a string";
    case LUA_TNUMBER: return "a number";
    case LUA_TBOOLEAN: return "a boolean";
    default: return "nil";
    }
}

/* Shape of a table: 0 empty, 1 array (keys 1..n), 2 object (string keys);
 * -1 otherwise (f filled). *count gets the number of entries. */
static int table_shape(lua_State *L, int idx, int *count, td_path *path, td_fail *f) {
    int n = 0, strings = 0, ints = 0;
    lua_Number max_index = 0;
    idx = td_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        int kt = lua_type(L, -2);
        lua_pop(L, 1);
        n++;
        if (kt == LUA_TSTRING) {
            strings++;
        } else if (kt == LUA_TNUMBER) {
            lua_Number k = lua_tonumber(L, -1);
            if (k < 1 || k != floor(k)) {
                lua_pop(L, 1);
                td_fail_set(f, path, "has a number key that is not a positive whole number; "
                                     "JSON arrays need keys 1..n");
                return -1;
            }
            ints++;
            if (k > max_index)
                max_index = k;
        } else {
            const char *what = td_type_phrase(L, -1);
            lua_pop(L, 1);
            td_fail_set(f, path, "has a key that is %s; JSON objects need string keys", what);
            return -1;
        }
    }
    *count = n;
    if (n == 0)
        return 0;
    if (strings > 0 && ints > 0) {
        td_fail_set(f, path, "mixes array items and named fields; JSON needs one or the other");
        return -1;
    }
    if (ints > 0) {
        if (max_index != (lua_Number)n) {
            td_fail_set(f, path, "is a sparse array (holes or nil items); JSON arrays need items 1..n");
            return -1;
        }
        return 1;
    }
    return 2;
}

static int encode_table(lua_State *L, int idx, td_buf *out, td_path *path, td_fail *f, int depth);

int td_json_encode_value(lua_State *L, int idx, td_buf *out, td_path *path, td_fail *f, int depth) {
    idx = td_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN:
        return td_buf_puts(out, lua_toboolean(L, idx) ? "true" : "false") == 0 ? 0 : -2;
    case LUA_TNUMBER: {
        char num[64];
        if (td_number_text(L, idx, num, sizeof num) != 0) {
            td_fail_set(f, path, "must be a finite number (NaN and infinity have no JSON form)");
            return -1;
        }
        return td_buf_puts(out, num) == 0 ? 0 : -2;
    }
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        if (!td_utf8_valid(s, n)) {
            td_fail_set(f, path, "must be valid UTF-8 text");
            return -1;
        }
        return td_json_encode_string(out, s, n) == 0 ? 0 : -2;
    }
    case LUA_TTABLE:
        return encode_table(L, idx, out, path, f, depth);
    case LUA_TLIGHTUSERDATA:
        if (td_is_null(L, idx))
            return td_buf_puts(out, "null") == 0 ? 0 : -2;
        /* fall through */
    default:
        td_fail_set(f, path, "cannot be sent as JSON (it is %s)", td_type_phrase(L, idx));
        return -1;
    }
}

/* Collect the string keys of the object at idx, sorted.  Every key is
 * anchored while its pointer is held -- on the stack for small objects, in a
 * fresh table for large ones -- so that no collection step (a weak table
 * losing an entry, a finalizer editing the table) can free a key under us.
 * Large key arrays live in a userdata so an error cannot leak them.
 * Returns how many keys were collected; *pushed says how many stack slots to
 * pop afterwards, *anchor is the anchor table (0: keys on the stack). */
static int sorted_keys(lua_State *L, int idx, int count, td_key *small, int small_cap,
                       td_key **out, int *anchor, int *pushed) {
    td_key *keys = small;
    int i = 0;
    *anchor = 0;
    if (count <= small_cap) {
        luaL_checkstack(L, count + 4, "truedy: JSON object");
    } else {
        lua_createtable(L, count, 0);
        *anchor = lua_gettop(L);
        keys = td_newuserdata(L, sizeof(td_key) * (size_t)count);
    }
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        if (i < count && lua_type(L, -1) == LUA_TSTRING) {
            lua_pushvalue(L, -1);
            if (*anchor) {
                lua_rawseti(L, *anchor, i + 1);
                keys[i].at = i + 1;
            } else {
                lua_insert(L, -2); /* the copy stays; the key goes back to lua_next */
                keys[i].at = lua_gettop(L) - 1;
            }
            keys[i].s = lua_tolstring(L, -1, &keys[i].n);
            i++;
        }
    }
    qsort(keys, (size_t)i, sizeof *keys, key_cmp);
    *pushed = *anchor ? 2 : i;
    *out = keys;
    return i;
}

int td_json_encode_object(lua_State *L, int idx, int count, td_buf *out, td_path *path,
                          td_fail *f, int depth, td_lookup_fn lookup, td_emit_fn values) {
    td_key small[TD_SMALL_KEYS], *keys;
    int i, rc = 0, pushed, anchor;
    idx = td_absindex(L, idx);
    luaL_checkstack(L, 6, "truedy: JSON nesting");
    count = sorted_keys(L, idx, count, small, TD_SMALL_KEYS, &keys, &anchor, &pushed);
    if (td_buf_putc(out, '{') != 0)
        rc = -2;
    for (i = 0; i < count && rc == 0; i++) {
        size_t saved = td_path_push_key(path, keys[i].s, keys[i].n);
        td_emit_fn special = lookup ? lookup(keys[i].s, keys[i].n) : NULL;
        if (!td_utf8_valid(keys[i].s, keys[i].n)) {
            td_path_pop(path, saved);
            td_fail_set(f, path, "has a field name that is not valid UTF-8");
            rc = -1;
            break;
        }
        if ((i > 0 && td_buf_putc(out, ',') != 0) ||
            td_json_encode_string(out, keys[i].s, keys[i].n) != 0 || td_buf_putc(out, ':') != 0) {
            rc = -2;
        } else {
            if (anchor)
                lua_rawgeti(L, anchor, keys[i].at);
            else
                lua_pushvalue(L, keys[i].at);
            lua_rawget(L, idx);
            if (special)
                rc = special(L, lua_gettop(L), out, path, f);
            else if (values)
                rc = values(L, lua_gettop(L), out, path, f);
            else
                rc = td_json_encode_value(L, lua_gettop(L), out, path, f, depth + 1);
            lua_pop(L, 1);
        }
        td_path_pop(path, saved);
    }
    if (rc == 0 && td_buf_putc(out, '}') != 0)
        rc = -2;
    lua_pop(L, pushed);
    return rc;
}

static int encode_table(lua_State *L, int idx, td_buf *out, td_path *path, td_fail *f, int depth) {
    int count, shape;
    if (depth >= TD_MAX_DEPTH) {
        td_fail_set(f, path, "is nested more than %d levels deep (a table that contains itself?)",
                    TD_MAX_DEPTH);
        return -1;
    }
    luaL_checkstack(L, 6, "truedy: JSON nesting");
    shape = table_shape(L, idx, &count, path, f);
    if (shape < 0)
        return -1;
    if (shape == 0) /* an empty table is an empty object, like lua-cjson */
        return td_buf_puts(out, "{}") == 0 ? 0 : -2;
    if (shape == 1) {
        int i, rc = 0;
        if (td_buf_putc(out, '[') != 0)
            return -2;
        for (i = 1; i <= count && rc == 0; i++) {
            size_t saved = td_path_push_index(path, i);
            if (i > 1 && td_buf_putc(out, ',') != 0)
                rc = -2;
            lua_rawgeti(L, idx, i);
            if (rc == 0)
                rc = td_json_encode_value(L, -1, out, path, f, depth + 1);
            lua_pop(L, 1);
            td_path_pop(path, saved);
        }
        if (rc == 0 && td_buf_putc(out, ']') != 0)
            rc = -2;
        return rc;
    }
    return td_json_encode_object(L, idx, count, out, path, f, depth, NULL, NULL);
}

/* ---- decoding ------------------------------------------------------------ */

void td_json_init(lua_State *L) {
    /* require "cjson" and make a private instance of it */
    lua_getglobal(L, "require");
    lua_pushstring(L, "cjson");
    {
        int status = lua_pcall(L, 1, 1, 0);
        if (status == LUA_ERRMEM)
            lua_error(L); /* not a missing cjson: pass the memory error on */
        if (status != LUA_OK)
            luaL_error(L, "truedy needs lua-cjson (Debian: lua-cjson; LuaRocks: lua-cjson): %s",
                       lua_tostring(L, -1));
    }
    lua_getfield(L, -1, "new");
    if (lua_isfunction(L, -1)) {
        lua_call(L, 0, 1);
        lua_remove(L, -2);
    } else {
        lua_pop(L, 1); /* very old cjson: share it, but change nothing */
    }
    lua_getfield(L, -1, "decode_max_depth");
    if (lua_isfunction(L, -1)) {
        lua_pushinteger(L, TD_DECODE_MAX_DEPTH);
        lua_call(L, 1, 0);
    } else {
        lua_pop(L, 1);
    }
    lua_getfield(L, -1, "decode_invalid_numbers");
    if (lua_isfunction(L, -1)) {
        lua_pushboolean(L, 0); /* NaN, Infinity, hex: not JSON */
        lua_call(L, 1, 0);
    } else {
        lua_pop(L, 1);
    }
    lua_getfield(L, -1, "decode");
    if (!lua_isfunction(L, -1))
        luaL_error(L, "truedy: the installed lua-cjson has no decode function");
    td_rawsetp(L, LUA_REGISTRYINDEX, &decode_key);
    lua_pop(L, 1);
}

/* Whole numbers below 2^53 in magnitude are exact in a double and become
 * integers (on Luas that have them); anything larger was already rounded by
 * the decoder (lua-cjson 2.1.0 reads numbers as doubles), so it stays a
 * float: never an integer that looks exact and is wrong. */
#define TD_EXACT_LIMIT 9007199254740992.0 /* 2^53 */

#if TD_HAS_INTEGERS
static int exact_integer(lua_State *L, int idx) {
    lua_Number d;
    if (lua_isinteger(L, idx))
        return 0;
    d = lua_tonumber(L, idx);
    return d == floor(d) && d > -TD_EXACT_LIMIT && d < TD_EXACT_LIMIT;
}
#endif

/* Push the string at idx with every occurrence of secret replaced; 0 when
 * it has none (nothing pushed). */
static int push_redacted(lua_State *L, int idx, const char *secret) {
    size_t n, klen = strlen(secret), run = 0, hit;
    const char *s = lua_tolstring(L, idx, &n);
    luaL_Buffer b;
    if (td_find_key(s, n, 0, secret, klen) == n)
        return 0;
    luaL_buffinit(L, &b);
    while ((hit = td_find_key(s, n, run, secret, klen)) < n) {
        luaL_addlstring(&b, s + run, hit - run);
        luaL_addstring(&b, "[redacted]");
        run = hit + klen;
    }
    luaL_addlstring(&b, s + run, n - run);
    luaL_pushresult(&b);
    return 1;
}

/* null in an object: the key goes away; null in an array stays as
 * truedy.null (the same light userdata as cjson.null).  Whole numbers
 * become integers by the rule above.  Strings, values and keys, holding
 * the secret get it redacted. */
static void normalise(lua_State *L, int idx, int depth, const char *secret) {
    int renames = 0; /* a table of keys to rename, made only when needed */
    luaL_checkstack(L, 6, "truedy: JSON nesting");
    idx = td_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        int vt = lua_type(L, -1);
        if (vt == LUA_TTABLE) {
            if (depth < TD_DECODE_MAX_DEPTH + 2)
                normalise(L, -1, depth + 1, secret);
        } else if (vt == LUA_TLIGHTUSERDATA && lua_type(L, -2) == LUA_TSTRING &&
                   td_is_null(L, -1)) {
            /* clearing an existing field during lua_next is allowed */
            lua_pushvalue(L, -2);
            lua_pushnil(L);
            lua_rawset(L, idx);
        } else if (vt == LUA_TSTRING && secret != NULL && push_redacted(L, -1, secret)) {
            lua_pushvalue(L, -3);
            lua_insert(L, -2);
            lua_rawset(L, idx); /* an existing field: allowed */
        }
#if TD_HAS_INTEGERS
        else if (vt == LUA_TNUMBER && exact_integer(L, -1)) {
            lua_Integer whole = (lua_Integer)lua_tonumber(L, -1);
            lua_pushvalue(L, -2);
            lua_pushinteger(L, whole);
            lua_rawset(L, idx);
        }
#endif
        lua_pop(L, 1);
        if (secret != NULL && lua_type(L, -1) == LUA_TSTRING &&
            td_find_key(lua_tostring(L, -1), td_rawlen(L, -1), 0, secret, strlen(secret)) <
                td_rawlen(L, -1)) {
            /* a new key cannot be added during the traversal: later */
            if (!renames) {
                lua_newtable(L);
                lua_insert(L, -2);
                renames = lua_gettop(L) - 1;
            }
            lua_pushvalue(L, -1);
            lua_rawseti(L, renames, (int)td_rawlen(L, renames) + 1);
        }
    }
    if (renames) {
        int i, n = (int)td_rawlen(L, renames);
        for (i = 1; i <= n; i++) {
            lua_rawgeti(L, renames, i);                  /* old key */
            push_redacted(L, -1, secret);                /* new key */
            lua_pushvalue(L, -2);
            lua_rawget(L, idx);                          /* the value */
            lua_rawset(L, idx);                          /* t[new] = value */
            lua_pushnil(L);
            lua_rawset(L, idx);                          /* t[old] = nil */
        }
        lua_remove(L, renames);
    }
}

#if TD_HAS_INTEGERS
/* Is there a number outside strings (whole ones change type on 5.3+)? */
static int has_number(const char *s, size_t n) {
    size_t i;
    int in_string = 0;
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = 0;
        } else if (c == '"') {
            in_string = 1;
        } else if ((c >= '0' && c <= '9') || c == '-') {
            return 1;
        }
    }
    return 0;
}
#endif

/* Does the text contain the two-byte sequence a b?  memchr jumps to each
 * `a` (glibc's memmem is several times slower on texts this short). */
static int has_pair(const char *s, size_t n, char a, char b) {
    const char *p = s, *end = s + n;
    while (p + 1 < end && (p = memchr(p, a, (size_t)(end - p - 1))) != NULL) {
        if (p[1] == b)
            return 1;
        p++;
    }
    return 0;
}

static int has_null(const char *s, size_t n) {
    const char *p = s, *end = s + n;
    while (p + 3 < end && (p = memchr(p, 'n', (size_t)(end - p - 3))) != NULL) {
        if (p[1] == 'u' && p[2] == 'l' && p[3] == 'l')
            return 1;
        p++;
    }
    return 0;
}

/* ---- dropping null members before decoding ---------------------------- */

/* What the stripped text still holds that the walk would change. */
enum { HAS_NUMBER = 1, HAS_U_ESCAPE = 2 };

#define STRIP_MAX 4096 /* larger texts (long lists) are decoded as they are, then walked */

static size_t skip_ws(const char *s, size_t n, size_t i) {
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
        i++;
    return i;
}

/* Copy the string token at s[i] (a '"') to out; returns the index after
 * it, or 0 when it does not end. */
static size_t copy_string(const char *s, size_t n, size_t i, char *out, size_t *o, int *flags) {
    size_t start = i++;
    for (;;) {
        /* the next quote; a backslash before it means escapes to read */
        const char *quote = memchr(s + i, '"', n - i);
        const char *slash;
        if (quote == NULL)
            return 0;
        slash = memchr(s + i, '\\', (size_t)(quote - (s + i)));
        if (slash == NULL) {
            i = (size_t)(quote - s) + 1;
            break;
        }
        i = (size_t)(slash - s);
        if (i + 1 >= n)
            return 0;
        if (s[i + 1] == 'u')
            *flags |= HAS_U_ESCAPE;
        i += 2; /* the escaped character (an escaped quote included) */
    }
    memcpy(out + *o, s + start, i - start);
    *o += i - start;
    return i;
}

/* Switch null stripping off and on (the differential fuzz target compares
 * both ways of decoding). */
static int strip_enabled = 1;

void td_json_set_strip(int on) { strip_enabled = on; }

/* Is the literal word at s[i] exactly `word`?  Returns the index after it, or 0. */
static size_t literal(const char *s, size_t n, size_t i, const char *word) {
    size_t k = strlen(word);
    if (i + k > n || memcmp(s + i, word, k) != 0)
        return 0;
    if (i + k < n && ((s[i + k] >= 'a' && s[i + k] <= 'z') || (s[i + k] >= '0' && s[i + k] <= '9')))
        return 0;
    return i + k;
}

/* Would dropping the null member whose key is out[at..at+len) (plain:
 * no escape) change what the object decodes to?  It would when an earlier
 * member wrote the same key (lua-cjson keeps the last value, here the
 * null, which the walk then deletes); an earlier key with an escape may
 * spell the same, so it counts as the same. */
static int repeats_key(const char *out, const uint16_t *key_at, const uint16_t *key_len,
                       int from, int to, size_t at, size_t len) {
    int k;
    for (k = from; k < to; k++) {
        const char *key = out + key_at[k];
        if ((key_len[k] == len && memcmp(key, out + at, len) == 0) ||
            memchr(key, '\\', key_len[k]) != NULL)
            return 1;
    }
    return 0;
}

/* Copy the JSON text s[0..n) to out (at least n bytes) without the object
 * members whose value is null: lua-cjson then has fewer entries to build
 * and the walk nothing to delete.  Nulls inside arrays stay (positions
 * matter).  Whitespace outside strings is dropped.  Returns the length
 * written, or -1 when the text is not what this scanner expects (invalid
 * JSON, too deep, a null member repeating a key): the caller then decodes
 * the text as it is, and walks. */
static long strip_null_members(const char *s, size_t n, char *out, int *flags) {
    char kind[TD_DECODE_MAX_DEPTH + 1];  /* '{' or '[' per open level */
    int count[TD_DECODE_MAX_DEPTH + 1];  /* members or items written at that level */
    /* the keys written in the objects open now (offset and length in out),
     * each object's from keys_from[its level]: a member takes 4 bytes or more */
    uint16_t key_at[STRIP_MAX / 4 + 1], key_len[STRIP_MAX / 4 + 1];
    int keys_from[TD_DECODE_MAX_DEPTH + 1], nkeys = 0;
    int depth = 0;
    size_t i = 0, o = 0, mark, key;
    *flags = 0;
    goto value;

value: /* a value starts here */
    i = skip_ws(s, n, i);
    if (i >= n)
        return -1;
    switch (s[i]) {
    case '{':
    case '[':
        if (depth == TD_DECODE_MAX_DEPTH)
            return -1;
        kind[++depth] = s[i];
        count[depth] = 0;
        keys_from[depth] = nkeys;
        out[o++] = s[i++];
        i = skip_ws(s, n, i);
        if (i < n && s[i] == (kind[depth] == '{' ? '}' : ']')) { /* empty */
            out[o++] = s[i++];
            depth--;
            goto after_value;
        }
        if (kind[depth] == '{')
            goto member;
        count[depth] = 1;
        goto value;
    case '"':
        if ((i = copy_string(s, n, i, out, &o, flags)) == 0)
            return -1;
        goto after_value;
    case 't':
    case 'f':
    case 'n': {
        const char *word = s[i] == 't' ? "true" : s[i] == 'f' ? "false" : "null";
        size_t end = literal(s, n, i, word);
        if (end == 0)
            return -1;
        memcpy(out + o, word, end - i);
        o += end - i;
        i = end;
        goto after_value;
    }
    default:
        if (!((s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return -1;
        *flags |= HAS_NUMBER;
        while (i < n && ((s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '+' ||
                         s[i] == '.' || s[i] == 'e' || s[i] == 'E'))
            out[o++] = s[i++];
        goto after_value;
    }

member: /* in an object, a "key": value member starts here */
    i = skip_ws(s, n, i);
    if (i >= n || s[i] != '"')
        return -1;
    mark = o; /* rewound here if the value is null */
    if (count[depth] > 0)
        out[o++] = ',';
    key = o + 1; /* after the opening quote */
    if ((i = copy_string(s, n, i, out, &o, flags)) == 0)
        return -1;
    i = skip_ws(s, n, i);
    if (i >= n || s[i] != ':')
        return -1;
    out[o++] = ':';
    i = skip_ws(s, n, i + 1);
    if (i < n && s[i] == 'n') {
        size_t end = literal(s, n, i, "null"), k;
        if (end == 0)
            return -1;
        /* a dropped key must be plainly valid (no escape, no control byte):
         * dropping it must never turn invalid JSON into valid JSON */
        for (k = key; k + 2 < o; k++)
            if ((unsigned char)out[k] < 0x20 || out[k] == '\\')
                return -1;
        if (repeats_key(out, key_at, key_len, keys_from[depth], nkeys, key, o - 2 - key))
            return -1;
        o = mark; /* the member is dropped */
        i = end;
        goto after_member;
    }
    key_at[nkeys] = (uint16_t)key;
    key_len[nkeys++] = (uint16_t)(o - 2 - key); /* without '":' */
    count[depth]++;
    goto value;

after_value: /* a value just ended */
    if (depth == 0) {
        i = skip_ws(s, n, i);
        return i == n ? (long)o : -1;
    }
    if (kind[depth] == '{')
        goto after_member;
    i = skip_ws(s, n, i);
    if (i < n && s[i] == ',') {
        out[o++] = ',';
        i++;
        count[depth]++;
        goto value;
    }
    if (i < n && s[i] == ']') {
        out[o++] = s[i++];
        depth--;
        goto after_value;
    }
    return -1;

after_member: /* in an object, after a member (written or dropped) */
    i = skip_ws(s, n, i);
    if (i < n && s[i] == ',') {
        i++;
        goto member;
    }
    if (i < n && s[i] == '}') {
        out[o++] = s[i++];
        nkeys = keys_from[depth];
        depth--;
        goto after_value;
    }
    return -1;
}

int td_json_decode(lua_State *L, const char *s, size_t n, const char *secret) {
    int status, flags = 0, walk;
    const char *redact;
    char stripped[STRIP_MAX];
    long sn = -1;
    if (n > 0 && memchr(s, '\0', n) != NULL) {
        /* never valid JSON, and lua-cjson would stop reading at it: what
         * follows would be silently ignored */
        lua_pushliteral(L, "a NUL byte in the text");
        return 0;
    }
    /* The caller redacted the raw text: only a \u escape could spell the
     * secret in a decoded string now.  The walk runs only when the text
     * shows it has something to do. */
    if (strip_enabled && n > 0 && n <= STRIP_MAX)
        sn = strip_null_members(s, n, stripped, &flags);
    if (sn >= 0) {
        s = stripped;
        n = (size_t)sn;
        redact = secret != NULL && (flags & HAS_U_ESCAPE) ? secret : NULL;
        walk = redact != NULL || (TD_HAS_INTEGERS && (flags & HAS_NUMBER));
    } else {
        redact = secret != NULL && has_pair(s, n, '\\', 'u') ? secret : NULL;
        walk = redact != NULL || has_null(s, n)
#if TD_HAS_INTEGERS
               || has_number(s, n)
#endif
            ;
    }
    td_rawgetp(L, LUA_REGISTRYINDEX, &decode_key);
    lua_pushlstring(L, s, n);
    status = lua_pcall(L, 1, 1, 0);
    if (status == LUA_ERRMEM)
        lua_error(L); /* out of memory is not "invalid JSON": pass it on */
    if (status != LUA_OK) {
        if (!lua_isstring(L, -1)) {
            lua_pop(L, 1);
            lua_pushstring(L, "invalid JSON");
        }
        return 0;
    }
    if (lua_type(L, -1) == LUA_TTABLE) {
        if (walk)
            normalise(L, -1, 0, redact);
    } else if (lua_type(L, -1) == LUA_TSTRING && redact != NULL) {
        if (push_redacted(L, -1, secret))
            lua_remove(L, -2);
    }
#if TD_HAS_INTEGERS
    else if (lua_type(L, -1) == LUA_TNUMBER && exact_integer(L, -1)) {
        lua_Integer i = (lua_Integer)lua_tonumber(L, -1);
        lua_pop(L, 1);
        lua_pushinteger(L, i);
    }
#endif
    return 1;
}
