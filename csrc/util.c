/*
 * util.c - byte buffers, clocks, randomness, ISO 8601 and UTF-8 checks.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/random.h>
#endif

#include "truedy.h"

/* ---- td_buf ---------------------------------------------------------- */

int td_buf_reserve(td_buf *b, size_t extra) {
    size_t need, cap;
    char *p;
    if (extra > SIZE_MAX - b->len - 1)
        return -1;
    need = b->len + extra + 1; /* +1 keeps room for a terminating NUL */
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = (cap > SIZE_MAX / 2) ? need : cap * 2;
    p = realloc(b->data, cap);
    if (p == NULL)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int td_buf_append(td_buf *b, const void *p, size_t n) {
    if (td_buf_reserve(b, n) != 0)
        return -1;
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int td_buf_puts(td_buf *b, const char *s) { return td_buf_append(b, s, strlen(s)); }

int td_buf_putc(td_buf *b, char c) { return td_buf_append(b, &c, 1); }

void td_buf_free(td_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ---- clocks ------------------------------------------------------------ */

double td_monotonic(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double td_wallclock(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- randomness -------------------------------------------------------- */

int td_random_bytes(void *out, size_t n) {
    unsigned char *p = out;
#if defined(__linux__)
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            break; /* ENOSYS on very old kernels: fall back to the device */
        }
        p += got;
        n -= (size_t)got;
    }
    if (n == 0)
        return 0;
#endif
    {
        int fd = open("/dev/urandom", O_RDONLY);
        if (fd < 0)
            return -1;
        while (n > 0) {
            ssize_t got = read(fd, p, n);
            if (got <= 0) {
                if (got < 0 && errno == EINTR)
                    continue;
                close(fd);
                return -1;
            }
            p += got;
            n -= (size_t)got;
        }
        close(fd);
    }
    return 0;
}

double td_random01(void) {
    uint32_t x = 0;
    if (td_random_bytes(&x, sizeof x) != 0)
        x = (uint32_t)(td_monotonic() * 1e6);
    return (double)x / 4294967296.0;
}

void td_uuid4(char out[37]) {
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    int i, j = 0;
    if (td_random_bytes(b, sizeof b) != 0) {
        /* No CSPRNG at all is a broken system; still never reuse a key
         * within this process: mix the clock and an address. */
        double t = td_wallclock() * 1e6;
        uint64_t x = (uint64_t)t ^ (uint64_t)(uintptr_t)&t;
        for (i = 0; i < 16; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b[i] = (unsigned char)x;
        }
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    for (i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[j++] = '-';
        out[j++] = hex[b[i] >> 4];
        out[j++] = hex[b[i] & 15];
    }
    out[j] = '\0';
}

/* ---- ISO 8601 ---------------------------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date (civil calendar). */
static long days_from_civil(long y, long m, long d) {
    long era, yoe, doy, doe;
    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int read_digits(const char **s, int n, long *out) {
    long v = 0;
    int i;
    for (i = 0; i < n; i++) {
        char c = (*s)[i];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *s += n;
    *out = v;
    return 0;
}

int td_parse_iso8601(const char *s, double *epoch) {
    long y, mo, d, h, mi, sec, oh = 0, om = 0;
    double frac = 0.0;
    int sign = 0;
    if (s == NULL)
        return -1;
    if (read_digits(&s, 4, &y) || *s++ != '-' || read_digits(&s, 2, &mo) || *s++ != '-' ||
        read_digits(&s, 2, &d) || (*s != 'T' && *s != 't' && *s != ' '))
        return -1;
    s++;
    if (read_digits(&s, 2, &h) || *s++ != ':' || read_digits(&s, 2, &mi) || *s++ != ':' ||
        read_digits(&s, 2, &sec))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return -1;
    if (*s == '.' || *s == ',') {
        double scale = 0.1;
        s++;
        if (*s < '0' || *s > '9')
            return -1;
        while (*s >= '0' && *s <= '9') {
            frac += (*s - '0') * scale;
            scale /= 10;
            s++;
        }
    }
    if (*s == 'Z' || *s == 'z') {
        s++;
    } else if (*s == '+' || *s == '-') {
        sign = (*s == '-') ? -1 : 1;
        s++;
        if (read_digits(&s, 2, &oh))
            return -1;
        if (*s == ':')
            s++;
        if (*s != '\0' && read_digits(&s, 2, &om))
            return -1;
    } /* no zone at all: the API's clocks are UTC */
    if (*s != '\0')
        return -1;
    *epoch = (double)days_from_civil(y, mo, d) * 86400.0 + (double)(h * 3600 + mi * 60 + sec) +
             frac - (double)sign * (double)(oh * 3600 + om * 60);
    return 0;
}

/* ---- text checks ------------------------------------------------------- */

int td_utf8_valid(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t need;
        unsigned cp, min;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
            cp = c & 0x1f;
            min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            cp = c & 0x0f;
            min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            cp = c & 0x07;
            min = 0x10000;
        } else {
            return 0;
        }
        if (n - i <= need)
            return 0;
        {
            size_t k;
            for (k = 1; k <= need; k++) {
                if ((s[i + k] & 0xc0) != 0x80)
                    return 0;
                cp = (cp << 6) | (s[i + k] & 0x3f);
            }
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += need + 1;
    }
    return 1;
}

int td_has_ctl(const char *s, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return 1;
    }
    return 0;
}

/* ---- numbers ----------------------------------------------------------- */

int td_format_double(char *out, size_t cap, double d) {
    int n = 0, prec;
    char *p;
    if (d == 0.0)
        return snprintf(out, cap, "0");
    if (d == floor(d) && fabs(d) < 9007199254740992.0)
        return snprintf(out, cap, "%.0f", d);
    for (prec = 15; prec <= 17; prec++) {
        n = snprintf(out, cap, "%.*g", prec, d);
        if (strtod(out, NULL) == d)
            break;
    }
    /* A locale may have put ',' (or something else) as the decimal point;
     * JSON and the API want '.'. */
    for (p = out; *p; p++)
        if (!((*p >= '0' && *p <= '9') || *p == '-' || *p == '+' || *p == 'e' || *p == 'E'))
            *p = '.';
    return n;
}

/* ---- field paths and refusals ------------------------------------------ */

size_t td_path_push_key(td_path *p, const char *key, size_t keylen) {
    size_t saved = p->len, room;
    if (p->len > 0 && p->len < sizeof p->text - 1)
        p->text[p->len++] = '.';
    room = sizeof p->text - 1 - p->len;
    if (keylen > room)
        keylen = room;
    memcpy(p->text + p->len, key, keylen);
    p->len += keylen;
    p->text[p->len] = '\0';
    return saved;
}

size_t td_path_push_index(td_path *p, lua_Integer i) {
    size_t saved = p->len;
    int n = snprintf(p->text + p->len, sizeof p->text - p->len, "[%lld]", (long long)i);
    if (n > 0)
        p->len += ((size_t)n < sizeof p->text - p->len) ? (size_t)n : sizeof p->text - 1 - p->len;
    return saved;
}

void td_path_pop(td_path *p, size_t saved_len) {
    p->len = saved_len;
    p->text[p->len] = '\0';
}

void td_fail_field(td_fail *f, const char *field, const char *fmt, ...) {
    va_list ap;
    snprintf(f->field, sizeof f->field, "%s", field);
    va_start(ap, fmt);
    vsnprintf(f->rule, sizeof f->rule, fmt, ap);
    va_end(ap);
}

void td_fail_set(td_fail *f, const td_path *p, const char *fmt, ...) {
    va_list ap;
    snprintf(f->field, sizeof f->field, "%s", p->text);
    va_start(ap, fmt);
    vsnprintf(f->rule, sizeof f->rule, fmt, ap);
    va_end(ap);
}

/* ---- redaction ------------------------------------------------------------ */

/* The byte of the key to look for first: an upper-case letter or a digit
 * (rare in JSON and headers, unlike the 't' every key starts with). */
static size_t key_anchor(const char *key, size_t klen) {
    size_t i;
    for (i = 0; i < klen; i++)
        if ((key[i] >= 'A' && key[i] <= 'Z') || (key[i] >= '0' && key[i] <= '9'))
            return i;
    return 0;
}

size_t td_find_key(const char *buf, size_t n, size_t from, const char *key, size_t klen) {
    size_t a = key_anchor(key, klen);
    while (from + klen <= n) {
        const char *hit = memchr(buf + from + a, key[a], n - klen + 1 - from);
        if (hit == NULL)
            break;
        from = (size_t)(hit - buf) - a;
        if (memcmp(buf + from, key, klen) == 0)
            return from;
        from++;
    }
    return n;
}

void td_redact(char *buf, size_t *n, const char *key) {
    static const char mark[] = "[redacted]";
    const size_t mlen = sizeof mark - 1;
    size_t klen, r, w;
    if (buf == NULL || key == NULL)
        return;
    klen = strlen(key);
    if (klen < mlen) /* too short to find safely, and the mark would not fit */
        return;
    r = w = td_find_key(buf, *n, 0, key, klen); /* nearly always: none, nothing to move */
    while (r < *n) {
        if (r + klen <= *n && buf[r] == key[0] && memcmp(buf + r, key, klen) == 0) {
            memcpy(buf + w, mark, mlen);
            w += mlen;
            r += klen;
        } else {
            buf[w++] = buf[r++];
        }
    }
    *n = w;
}

void td_redact_cstr(char *text, const char *key) {
    size_t n = strlen(text);
    td_redact(text, &n, key);
    text[n] = '\0';
}

void td_free_secret(char **p) {
    if (*p) {
        volatile char *v = *p;
        while (*v)
            *v++ = '\0'; /* do not leave the key in freed memory */
        free(*p);
        *p = NULL;
    }
}

char *td_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}
