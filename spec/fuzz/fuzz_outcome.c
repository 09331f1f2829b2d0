/*
 * fuzz_outcome.c - libFuzzer target for the response path: hostile bytes
 * as status, headers and body, through the transfer layer's redaction, the
 * real decoding (lua-cjson and the normalisation) and outcome.c, to the
 * envelope or the error object the caller gets.
 *
 * Input: byte 0-1 status, byte 2 flags (bit 0: a transfer error, bit 1: the
 * body overflowed, bit 2: a Retry-After), byte 3 curl code or Retry-After,
 * byte 4 content type (picked), byte 5 request id (picked), the rest the
 * body.  The echoed key may be spliced in (byte 2 bits 3-4).
 *
 * Checked: no crash or sanitizer report; the result is an envelope table
 * or nil + an error table with kind, message and retryable; tostring(err)
 * is one printable line; no string handed back holds the key; and decoding
 * a body with null members stripped from the text gives exactly what
 * decoding it as it is and walking gives.
 */
#include "harness.h"

static const char *const content_types[] = {
    "application/json", "text/html; charset=utf-8", "", "application/json\x1b[2J", "text/plain"};
static const char *const request_ids[] = {"", "req_1", "req\r\nX-Evil: 1", FUZZ_KEY, "\xff\xfe"};

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    lua_State *L = fuzz_state();
    td_attempt a;
    td_outcome_in in;
    td_outcome_info info;
    td_buf body = {0};
    int top = lua_gettop(L), n, ok1, ok2;
    if (size < 6)
        return 0;
    memset(&a, 0, sizeof a);
    a.status = (long)((data[0] << 8 | data[1]) % 600);
    if (data[2] & 1)
        a.result = (CURLcode)(1 + data[3] % 95);
    a.overflow = (data[2] & 2) != 0;
    a.retry_after = (data[2] & 4) ? (double)data[3] : -1;
    snprintf(a.content_type, sizeof a.content_type, "%s", content_types[data[4] % 5]);
    snprintf(a.request_id, sizeof a.request_id, "%s", request_ids[data[5] % 5]);
    /* the body, maybe with the key spliced in, raw or JSON-escaped */
    if (td_buf_append(&body, data + 6, size - 6) != 0)
        abort();
    if (data[2] & 8)
        td_buf_puts(&body, FUZZ_KEY);
    if (data[2] & 16) {
        const char *k;
        for (k = FUZZ_KEY; *k; k++) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", (unsigned char)*k);
            td_buf_puts(&body, esc);
        }
    }
    /* what td_transfer_end does to every answer */
    td_redact(body.data, &body.len, FUZZ_KEY);
    td_redact_cstr(a.request_id, FUZZ_KEY);

    in.a = &a;
    in.body = body.data;
    in.body_len = body.len;
    in.attempts = 1 + data[3] % 3;
    in.idem_key = (data[2] & 32) ? "key-1" : NULL;
    in.attempt_timeout = 30;
    in.connect_timeout = 10;
    in.max_response_bytes = 4194304;
    in.secret = FUZZ_KEY;
    n = td_outcome_push(L, &in, &info);
    if (n == 1)
        lua_pushnil(L);
    lua_pushinteger(L, n);
    lua_insert(L, -3);
    fuzz_check(L, "check_outcome", 3);

    /* differential: stripped and plain decoding agree */
    td_json_set_strip(1);
    ok1 = td_json_decode(L, body.data ? body.data : "", body.len, FUZZ_KEY);
    lua_pushboolean(L, ok1);
    lua_insert(L, -2);
    td_json_set_strip(0);
    ok2 = td_json_decode(L, body.data ? body.data : "", body.len, FUZZ_KEY);
    td_json_set_strip(1);
    lua_pushboolean(L, ok2);
    lua_insert(L, -2);
    fuzz_check(L, "check_same", 4);

    lua_settop(L, top);
    td_buf_free(&body);
    return 0;
}
