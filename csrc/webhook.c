/*
 * webhook.c - truedy.webhook: verify and make Truedy's webhook signatures.
 *
 * Truedy signs each delivery with X-Truedy-Timestamp (Unix seconds) and
 * X-Truedy-Signature, the hex HMAC-SHA256 of "<timestamp>.<raw body>" keyed
 * with the webhook secret.  The MAC is libcrypto's one-shot HMAC() (not
 * deprecated in OpenSSL 3.0, unlike HMAC_CTX_*), compared with
 * CRYPTO_memcmp so the time taken says nothing about how many bytes matched.
 *
 * verify checks, in this order: both headers present and well formed, the
 * timestamp within the tolerance, the signature, and only then the body as
 * JSON, so nothing an unsigned sender wrote is parsed.  A refusal is
 * nil + {kind = "webhook", code = ...}; wrong argument types raise.  The
 * secret never reaches a message: every text here is made from constants,
 * numbers and the header names.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "truedy.h"

#define TS_HEADER "X-Truedy-Timestamp"
#define SIG_HEADER "X-Truedy-Signature"
#define DEFAULT_TOLERANCE 300.0
#define MAC_LEN 32               /* SHA-256 */
#define MAC_HEX_LEN (2 * MAC_LEN)
/* Unix seconds have 10 digits until 2286; 18 still fit a long long. */
#define TS_MAX_DIGITS 18

/* Stack slots of verify, after its four arguments. */
enum { SLOT_TS = 5, SLOT_SIG, SLOT_TOP = SLOT_SIG };

static const char *const verify_options[] = {"tolerance", "now", NULL};

static void to_hex(const unsigned char *in, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    size_t i;
    for (i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Exactly 2 * n hex digits (either case) into n bytes; -1 otherwise.  The
 * text is the sender's, so branching on it reveals nothing of the secret. */
static int from_hex(const char *s, size_t len, unsigned char *out, size_t n) {
    size_t i;
    if (len != 2 * n)
        return -1;
    for (i = 0; i < n; i++) {
        int hi = hex_value(s[2 * i]), lo = hex_value(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

/* HMAC-SHA256 of msg keyed with key into out; raises when libcrypto fails. */
static void hmac_sha256(lua_State *L, const char *key, size_t key_len, const void *msg,
                        size_t msg_len, unsigned char out[MAC_LEN]) {
    unsigned int out_len = 0;
    if (key_len > (size_t)INT_MAX)
        luaL_error(L, "truedy.webhook: the key is too long");
    /* a zero-length key is still a valid pointer (Lua strings always are) */
    if (HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)msg, msg_len, out, &out_len) ==
            NULL ||
        out_len != MAC_LEN)
        luaL_error(L, "truedy.webhook: HMAC-SHA256 failed in libcrypto");
}

/* A string argument, no coercion from numbers: a body must be bytes. */
static const char *check_bytes(lua_State *L, int arg, const char *fname, const char *what,
                               size_t *len) {
    if (lua_type(L, arg) != LUA_TSTRING)
        luaL_error(L, "%s: %s must be a string, got %s", fname, what, luaL_typename(L, arg));
    return lua_tolstring(L, arg, len);
}

/* The secret at arg: a non-empty string, or (allow_list) a non-empty array
 * of them.  Returns how many secrets there are. */
static int check_secret(lua_State *L, int arg, const char *fname, int allow_list) {
    int n, count = 0;
    if (lua_type(L, arg) == LUA_TSTRING) {
        if (td_rawlen(L, arg) == 0)
            luaL_error(L, "%s: the secret must not be empty", fname);
        return 1;
    }
    if (!allow_list || lua_type(L, arg) != LUA_TTABLE)
        luaL_error(L, "%s: the secret must be a string%s, got %s", fname,
                   allow_list ? " or an array of strings" : "", luaL_typename(L, arg));
    n = (int)td_rawlen(L, arg);
    lua_pushnil(L);
    while (lua_next(L, arg) != 0) {
        lua_pop(L, 1);
        count++;
    }
    if (n == 0 || count != n)
        luaL_error(L, "%s: the secret array must be a non-empty sequence of strings", fname);
    for (count = 1; count <= n; count++) {
        lua_rawgeti(L, arg, count);
        if (lua_type(L, -1) != LUA_TSTRING || td_rawlen(L, -1) == 0)
            luaL_error(L, "%s: secret[%d] must be a non-empty string, got %s", fname, count,
                       lua_type(L, -1) == LUA_TSTRING ? "an empty string" : luaL_typename(L, -1));
        lua_pop(L, 1);
    }
    return n;
}

/* nil, {kind = "webhook", code = code, message = message} */
static int refuse(lua_State *L, const char *code, const char *message) {
    lua_pushnil(L);
    td_error_new(L, "webhook", message);
    td_set_str(L, "code", code);
    return 2;
}

/* ---- headers --------------------------------------------------------------- */

/* One header as found in the table: how many values it was given (a
 * repeated header arrives as an array, or under two spellings of its name),
 * the first value kept in the stack slot. */
typedef struct header {
    const char *name;
    int slot;
    int count;
} header;

static void take_value(lua_State *L, header *h, int value) {
    h->count++;
    if (h->count == 1) {
        lua_pushvalue(L, value);
        lua_tostring(L, -1); /* a number given by hand becomes its text, on the copy */
        lua_replace(L, h->slot);
    }
}

/* Value at the top of the stack, under the name h matched. */
static void collect(lua_State *L, header *h, const char *fname) {
    int t = lua_type(L, -1);
    if (t == LUA_TSTRING || t == LUA_TNUMBER) {
        take_value(L, h, lua_gettop(L));
    } else if (t == LUA_TTABLE) {
        int i, n = (int)td_rawlen(L, -1);
        for (i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, i);
            if (lua_type(L, -1) != LUA_TSTRING)
                luaL_error(L, "%s: headers['%s'][%d] must be a string, got %s", fname, h->name, i,
                           luaL_typename(L, -1));
            take_value(L, h, lua_gettop(L));
            lua_pop(L, 1);
        }
    } else {
        luaL_error(L, "%s: headers['%s'] must be a string or an array of strings, got %s", fname,
                   h->name, luaL_typename(L, -1));
    }
}

/* Both headers from the table at idx, names matched case-insensitively. */
static void find_headers(lua_State *L, int idx, header *ts, header *sig, const char *fname) {
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        if (lua_type(L, -2) == LUA_TSTRING) {
            const char *name = lua_tostring(L, -2);
            if (strcasecmp(name, TS_HEADER) == 0)
                collect(L, ts, fname);
            else if (strcasecmp(name, SIG_HEADER) == 0)
                collect(L, sig, fname);
        }
        lua_pop(L, 1);
    }
}

/* The value without the optional white space HTTP allows around it. */
static const char *trimmed(lua_State *L, int slot, size_t *len) {
    size_t n = 0;
    const char *s = lua_tolstring(L, slot, &n);
    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    *len = n;
    return s;
}

/* Unix seconds: 1 to TS_MAX_DIGITS ASCII digits, nothing else. */
static int parse_seconds(const char *s, size_t n, long long *out) {
    long long v = 0;
    size_t i;
    if (n == 0 || n > TS_MAX_DIGITS)
        return -1;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/* ---- options ----------------------------------------------------------------- */

static double opt_seconds(lua_State *L, int t, const char *name, double def, double min) {
    double v = def;
    lua_getfield(L, t, name);
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TNUMBER)
            luaL_error(L, "truedy.webhook.verify: option '%s' must be a number, got %s", name,
                       luaL_typename(L, -1));
        v = (double)lua_tonumber(L, -1);
        if (!(v >= min && v > -HUGE_VAL && v < HUGE_VAL)) /* NaN fails every test */
            luaL_error(L, "truedy.webhook.verify: option '%s' must be a finite number%s", name,
                       min == 0 ? " of seconds, 0 or more" : "");
    }
    lua_pop(L, 1);
    return v;
}

static void read_options(lua_State *L, int t, double *tolerance, double *now) {
    *tolerance = DEFAULT_TOLERANCE;
    *now = floor(td_wallclock()); /* whole seconds, like the header */
    if (lua_isnoneornil(L, t))
        return;
    if (lua_type(L, t) != LUA_TTABLE)
        luaL_error(L, "truedy.webhook.verify: options must be a table, got %s",
                   luaL_typename(L, t));
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
        const char *const *known;
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "truedy.webhook.verify: option names must be strings");
        for (known = verify_options; *known; known++)
            if (strcmp(lua_tostring(L, -1), *known) == 0)
                break;
        if (*known == NULL)
            luaL_error(L, "truedy.webhook.verify: unknown option '%s'", lua_tostring(L, -1));
    }
    *tolerance = opt_seconds(L, t, "tolerance", DEFAULT_TOLERANCE, 0);
    *now = opt_seconds(L, t, "now", *now, -HUGE_VAL);
}

/* ---- the signed message -------------------------------------------------- */

/* Push "<timestamp>.<body>" as a scratch userdata (Lua owns it, so an error
 * anywhere later leaks nothing); returns its bytes. */
static unsigned char *push_signed_message(lua_State *L, const char *ts, size_t ts_len,
                                          const char *body, size_t body_len, size_t *len) {
    unsigned char *m;
    if (body_len > SIZE_MAX - ts_len - 1)
        luaL_error(L, "truedy.webhook: the body is too large");
    *len = ts_len + 1 + body_len;
    m = td_newuserdata(L, *len);
    memcpy(m, ts, ts_len);
    m[ts_len] = '.';
    if (body_len > 0)
        memcpy(m + ts_len + 1, body, body_len);
    return m;
}

/* ---- truedy.webhook.verify ----------------------------------------------- */

/* Does any of the secrets at arg sign msg as sig?  Every secret is tried,
 * whatever matched before, so the time taken does not say which one did. */
static int signature_matches(lua_State *L, int arg, int nsecrets, const unsigned char *msg,
                             size_t msg_len, const unsigned char sig[MAC_LEN]) {
    unsigned char expected[MAC_LEN];
    int i, matched = 0;
    for (i = 1; i <= nsecrets; i++) {
        size_t key_len = 0;
        const char *key;
        if (lua_type(L, arg) == LUA_TSTRING)
            lua_pushvalue(L, arg);
        else
            lua_rawgeti(L, arg, i);
        key = lua_tolstring(L, -1, &key_len);
        hmac_sha256(L, key, key_len, msg, msg_len, expected);
        lua_pop(L, 1);
        matched |= CRYPTO_memcmp(expected, sig, MAC_LEN) == 0;
    }
    OPENSSL_cleanse(expected, sizeof expected);
    return matched;
}

/* The body (already authenticated) as the event: a JSON object with a
 * string "event", decoded like the API's answers. */
static int push_event(lua_State *L, const char *body, size_t len) {
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\n' || body[i] == '\r'))
        i++;
    /* JSON never holds a raw NUL, and lua-cjson stops reading at one: what
     * follows it would be signed yet unread */
    if (memchr(body, '\0', len) != NULL)
        return refuse(L, "bad_body", "the body is not JSON: it contains a NUL byte");
    if (!td_json_decode(L, body, len, NULL)) {
        char message[256];
        snprintf(message, sizeof message, "the body is not JSON: %s", lua_tostring(L, -1));
        return refuse(L, "bad_body", message);
    }
    /* cjson reads [] and {} alike as an empty table: ask the text */
    if (lua_type(L, -1) != LUA_TTABLE || i == len || body[i] != '{')
        return refuse(L, "bad_body", "the body is not a JSON object");
    lua_getfield(L, -1, "event");
    if (lua_type(L, -1) != LUA_TSTRING)
        return refuse(L, "bad_body", "the body has no string \"event\" field");
    lua_pop(L, 1);
    return 1;
}

static int webhook_verify(lua_State *L) {
    static const char fname[] = "truedy.webhook.verify";
    header ts = {TS_HEADER, SLOT_TS, 0}, sig = {SIG_HEADER, SLOT_SIG, 0};
    unsigned char given[MAC_LEN];
    const char *body, *ts_text = "", *sig_text = "";
    size_t body_len = 0, ts_len = 0, sig_len = 0, msg_len = 0;
    long long seconds = 0;
    double tolerance, now, skew;
    unsigned char *msg;
    int nsecrets, matched;

    body = check_bytes(L, 1, fname, "raw_body (the exact bytes received)", &body_len);
    if (lua_type(L, 2) != LUA_TTABLE)
        luaL_error(L, "%s: headers must be a table, got %s", fname, luaL_typename(L, 2));
    nsecrets = check_secret(L, 3, fname, 1);
    read_options(L, 4, &tolerance, &now);
    lua_settop(L, SLOT_TOP); /* the header slots start as nil */

    /* 1. both headers, once each, well formed */
    find_headers(L, 2, &ts, &sig, fname);
    if (sig.count > 0)
        sig_text = trimmed(L, SLOT_SIG, &sig_len);
    if (ts.count > 0)
        ts_text = trimmed(L, SLOT_TS, &ts_len);
    if (sig.count == 0 || (sig.count == 1 && sig_len == 0))
        return refuse(L, "missing_signature", "no " SIG_HEADER " header");
    if (ts.count == 0 || (ts.count == 1 && ts_len == 0))
        return refuse(L, "missing_signature", "no " TS_HEADER " header");
    if (sig.count > 1 || memchr(sig_text, ',', sig_len) != NULL)
        return refuse(L, "bad_signature", SIG_HEADER " was given more than once");
    if (ts.count > 1 || memchr(ts_text, ',', ts_len) != NULL)
        return refuse(L, "bad_signature", TS_HEADER " was given more than once");
    if (from_hex(sig_text, sig_len, given, MAC_LEN) != 0)
        return refuse(L, "bad_signature", SIG_HEADER " is not 64 hex digits (HMAC-SHA256)");
    /* a malformed header rather than a clock problem: bad_signature, not stale */
    if (parse_seconds(ts_text, ts_len, &seconds) != 0)
        return refuse(L, "bad_signature", TS_HEADER " is not a whole number of Unix seconds");

    /* 2. fresh, in both directions (a future time is a replay set up ahead) */
    skew = now - (double)seconds;
    if (fabs(skew) > tolerance) {
        char message[256];
        snprintf(message, sizeof message,
                 TS_HEADER " is %.0f seconds in the %s (tolerance %g seconds)", fabs(skew),
                 skew > 0 ? "past" : "future", tolerance);
        return refuse(L, "stale_timestamp", message);
    }

    /* 3. the signature, over the header's own text (never a reformatted number) */
    msg = push_signed_message(L, ts_text, ts_len, body, body_len, &msg_len);
    matched = signature_matches(L, 3, nsecrets, msg, msg_len, given);
    lua_pop(L, 1);
    if (!matched)
        return refuse(L, "bad_signature",
                      SIG_HEADER " does not match: another secret, or the body or "
                                 "timestamp changed on the way");

    /* 4. the body */
    return push_event(L, body, body_len);
}

/* ---- truedy.webhook.sign and hmac_sha256 ---------------------------------- */

/* sign's timestamp: a whole number of seconds, or their digits as a string. */
static const char *push_timestamp(lua_State *L, int arg, size_t *len) {
    long long seconds = 0;
    if (lua_isnoneornil(L, arg)) {
        seconds = (long long)floor(td_wallclock());
    } else if (lua_type(L, arg) == LUA_TNUMBER) {
        double d = (double)lua_tonumber(L, arg);
        if (!(d >= 0 && d < 1e15 && d == floor(d)))
            luaL_error(L, "truedy.webhook.sign: timestamp must be whole Unix seconds, 0 or more");
        seconds = (long long)d;
    } else if (lua_type(L, arg) == LUA_TSTRING) {
        const char *s = lua_tolstring(L, arg, len);
        if (parse_seconds(s, *len, &seconds) != 0)
            luaL_error(L, "truedy.webhook.sign: timestamp must be the digits of Unix seconds");
        lua_pushvalue(L, arg);
        return s;
    } else {
        luaL_error(L, "truedy.webhook.sign: timestamp must be a number or a string, got %s",
                   luaL_typename(L, arg));
    }
    {
        char text[32];
        snprintf(text, sizeof text, "%lld", seconds);
        lua_pushstring(L, text);
    }
    return lua_tolstring(L, -1, len);
}

static int webhook_sign(lua_State *L) {
    static const char fname[] = "truedy.webhook.sign";
    unsigned char mac[MAC_LEN];
    char hex[MAC_HEX_LEN + 1];
    const char *body, *secret, *ts;
    size_t body_len = 0, secret_len = 0, ts_len = 0, msg_len = 0;
    const unsigned char *msg;

    body = check_bytes(L, 1, fname, "raw_body", &body_len);
    check_secret(L, 2, fname, 0);
    secret = lua_tolstring(L, 2, &secret_len);
    lua_settop(L, 3);
    ts = push_timestamp(L, 3, &ts_len); /* at 4 */
    msg = push_signed_message(L, ts, ts_len, body, body_len, &msg_len);
    hmac_sha256(L, secret, secret_len, msg, msg_len, mac);
    lua_pop(L, 1);
    to_hex(mac, MAC_LEN, hex);
    lua_pushstring(L, hex);
    return 2;
}

/* truedy.webhook.hmac_sha256(key, message) -> lower-case hex, so the
 * library's MAC can be checked against published vectors (RFC 4231). */
static int webhook_hmac_sha256(lua_State *L) {
    static const char fname[] = "truedy.webhook.hmac_sha256";
    unsigned char mac[MAC_LEN];
    char hex[MAC_HEX_LEN + 1];
    size_t key_len = 0, msg_len = 0;
    const char *key = check_bytes(L, 1, fname, "key", &key_len);
    const char *msg = check_bytes(L, 2, fname, "message", &msg_len);
    hmac_sha256(L, key, key_len, msg, msg_len, mac);
    to_hex(mac, MAC_LEN, hex);
    lua_pushstring(L, hex);
    return 1;
}

void td_webhook_init(lua_State *L) {
    static const luaL_Reg functions[] = {
        {"verify", webhook_verify},
        {"sign", webhook_sign},
        {"hmac_sha256", webhook_hmac_sha256},
        {NULL, NULL},
    };
    lua_createtable(L, 0, 3);
    td_setfuncs(L, functions, 0);
    lua_setfield(L, -2, "webhook");
}
