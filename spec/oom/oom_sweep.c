/*
 * oom_sweep.c - allocation-failure sweep for the truedy module.
 *
 * For N = 1, 2, 3, ... a fresh lua_State whose allocator refuses the N-th
 * growing request (and, by default, every one after it) runs the workload in
 * spec/oom/scenario.lua under lua_pcall: require "truedy", a client, creates
 * (good, refused, faulted), reads, errors, close.  The state is closed after
 * every run.  The sweep stops at the first N the workload gets through
 * without meeting a refusal: every allocation point has then been failed.
 *
 * Out of memory may surface as a Lua error anywhere; that is fine.  What is
 * not fine, and makes this program exit non-zero:
 *   - a run with no injected failure (N = 0 and the last N) that errors or
 *     sees a result other than the expected one;
 *   - an error whose message is not an out-of-memory one;
 *   - a run that hangs (per-run timeout, SIGALRM);
 *   - a crash, and, when built with -fsanitize=address,undefined, any
 *     AddressSanitizer / UBSan / LeakSanitizer report.  LeakSanitizer is
 *     asked after every run (after lua_close), so a leak is pinned to the
 *     first N that made it; run with ASAN_OPTIONS=leak_check_at_exit=0, the
 *     program does its own checks and its exit status says what they found.
 *
 * Lua 5.4 cannot always call a finalizer under memory pressure (calling it
 * may itself need memory); it then warns "error in __gc" and frees the
 * object without its __gc.  The warnings are counted and shown next to the
 * failure they explain.
 *
 * The module and lua-cjson stay loaded (RTLD_NODELETE) after lua_close, so
 * that leak reports can still name the functions that allocated.
 *
 * Outcomes that are not errors but hide an out-of-memory condition (a
 * successful create reported as an unreadable answer, say) are listed as
 * "masked" results; --strict makes them fail the sweep too.
 *
 * The emulator's control surface (reset, config, faults) is driven from C
 * with libcurl, outside the Lua allocator.
 */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#if LUA_VERSION_NUM != 504
#error "oom_sweep needs Lua 5.4"
#endif

/* LeakSanitizer's interface, when the program is built with it. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OOM_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define OOM_ASAN 1
#endif
#ifdef OOM_ASAN
#include <sanitizer/common_interface_defs.h>
#include <sanitizer/lsan_interface.h>
#endif

/* ---- the failing allocator ------------------------------------------- */

typedef struct oom_ctl {
    unsigned long count;    /* growing requests seen while armed */
    unsigned long fail_at;  /* the first one refused; 0: none */
    unsigned long burst;    /* refusals from fail_at on; 0: all of them */
    unsigned long injected; /* refusals made in this run */
    int armed;
    int trace; /* print a C stack at the first refusal */
} oom_ctl;

static oom_ctl ctl;

static void *oom_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    oom_ctl *c = ud;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    if (ptr == NULL)
        osize = 0; /* osize then encodes the type of the new object */
    /* Lua assumes shrinking never fails: only growing requests can be refused */
    if (c->armed && nsize > osize) {
        c->count++;
        if (c->fail_at != 0 && c->count >= c->fail_at &&
            (c->burst == 0 || c->count < c->fail_at + c->burst)) {
            if (c->injected++ == 0 && c->trace) {
                fprintf(stderr, "oom_sweep: refusing allocation #%lu (%zu bytes) here:\n",
                        c->count, nsize);
#ifdef OOM_ASAN
                __sanitizer_print_stack_trace();
#endif
            }
            return NULL;
        }
    }
    return realloc(ptr, nsize);
}

/* ---- options ---------------------------------------------------------- */

static struct {
    const char *module;     /* path of truedy.so */
    const char *scenario;   /* the Lua workload */
    const char *base_url;
    const char *api_key;
    const char *emulator_url;
    unsigned long max_n;
    unsigned long from_n;
    unsigned long only_n;   /* 0: sweep */
    unsigned long burst;
    unsigned long repeat;   /* with --only: how many times */
    unsigned timeout;       /* seconds per run */
    int strict;
    int verbose;
    int leak_each;
} opt = {NULL, "spec/oom/scenario.lua", NULL, NULL, NULL, 20000, 1, 0, 0, 1, 60, 0, 0, 1};

static void usage(void) {
    fprintf(stderr,
            "usage: oom_sweep [--module PATH] [--scenario PATH] [--base-url URL] [--api-key KEY]\n"
            "                 [--emulator-url URL] [--max N] [--from N] [--only N] [--burst K]\n"
            "                 [--repeat R] [--timeout SECONDS] [--strict] [--no-leak-check-each] [-v]\n"
            "  --module        truedy.so to test ($TRUEDY_OOM_MODULE, default build/5.4/truedy.so)\n"
            "  --base-url, --api-key, --emulator-url\n"
            "                  default $TRUEDY_BASE_URL, $TRUEDY_API_KEY, $TRUEDY_EMULATOR_URL\n"
            "  --max N         give up (and fail) if N reaches this without a clean run (20000)\n"
            "  --from N        start the sweep at N (1)\n"
            "  --only N        run N = 0 and N only, tracing the refused allocation and the\n"
            "                  Lua stack (to study one failure)\n"
            "  --repeat R      with --only: run N that many times (the string hash seed, hence\n"
            "                  table order, changes from run to run)\n"
            "  --burst K       refuse K allocations from the N-th on, then recover; 0 (default):\n"
            "                  refuse every allocation from the N-th on.  K = 1 only makes Lua\n"
            "                  run an emergency collection at every point; K = 2 makes exactly\n"
            "                  one out-of-memory error at every point, after which the program\n"
            "                  carries on\n"
            "  --timeout S     per-run limit (60)\n"
            "  --strict        out-of-memory results that do not surface as errors fail too\n");
    exit(2);
}

static unsigned long parse_ulong(const char *s) {
    char *end;
    unsigned long v;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        usage();
    return v;
}

static void parse_args(int argc, char **argv) {
    int i;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define WITH_VALUE(name) (strcmp(a, name) == 0 && (v != NULL || (usage(), 0)) && ++i)
        if (WITH_VALUE("--module"))
            opt.module = v;
        else if (WITH_VALUE("--scenario"))
            opt.scenario = v;
        else if (WITH_VALUE("--base-url"))
            opt.base_url = v;
        else if (WITH_VALUE("--api-key"))
            opt.api_key = v;
        else if (WITH_VALUE("--emulator-url"))
            opt.emulator_url = v;
        else if (WITH_VALUE("--max"))
            opt.max_n = parse_ulong(v);
        else if (WITH_VALUE("--from"))
            opt.from_n = parse_ulong(v);
        else if (WITH_VALUE("--only"))
            opt.only_n = parse_ulong(v);
        else if (WITH_VALUE("--repeat"))
            opt.repeat = parse_ulong(v);
        else if (WITH_VALUE("--burst"))
            opt.burst = parse_ulong(v);
        else if (WITH_VALUE("--timeout"))
            opt.timeout = (unsigned)parse_ulong(v);
        else if (strcmp(a, "--strict") == 0)
            opt.strict = 1;
        else if (strcmp(a, "--no-leak-check-each") == 0)
            opt.leak_each = 0;
        else if (strcmp(a, "-v") == 0)
            opt.verbose = 1;
        else
            usage();
#undef WITH_VALUE
    }
    if (opt.module == NULL)
        opt.module = getenv("TRUEDY_OOM_MODULE");
    if (opt.module == NULL)
        opt.module = "build/5.4/truedy.so";
    if (opt.base_url == NULL)
        opt.base_url = getenv("TRUEDY_BASE_URL");
    if (opt.api_key == NULL)
        opt.api_key = getenv("TRUEDY_API_KEY");
    if (opt.emulator_url == NULL)
        opt.emulator_url = getenv("TRUEDY_EMULATOR_URL");
    if (opt.base_url == NULL || opt.api_key == NULL || opt.emulator_url == NULL) {
        fprintf(stderr, "oom_sweep: needs the emulator: TRUEDY_BASE_URL, TRUEDY_API_KEY and "
                        "TRUEDY_EMULATOR_URL (eval \"$(emulator/truedy-emulator start)\")\n");
        exit(2);
    }
    if (opt.from_n == 0 || opt.max_n < opt.from_n || opt.timeout == 0 || opt.repeat == 0)
        usage();
}

/* ---- the emulator's control surface (C only, never the Lua allocator) -- */

static CURL *control_easy;

static size_t discard(char *p, size_t size, size_t n, void *ud) {
    (void)p;
    (void)ud;
    return size * n;
}

/* POST a JSON body to $TRUEDY_EMULATOR_URL/__emulator/<path>; 0 on a 2xx. */
static int control(const char *path, const char *json) {
    char url[1024];
    long status = 0;
    CURLcode rc;
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    if (h == NULL)
        return -1;
    snprintf(url, sizeof url, "%s/__emulator/%s", opt.emulator_url, path);
    curl_easy_reset(control_easy);
    curl_easy_setopt(control_easy, CURLOPT_URL, url);
    curl_easy_setopt(control_easy, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(control_easy, CURLOPT_POSTFIELDS, json);
    curl_easy_setopt(control_easy, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(control_easy, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(control_easy, CURLOPT_NOSIGNAL, 1L);
    rc = curl_easy_perform(control_easy);
    curl_easy_getinfo(control_easy, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    if (rc != CURLE_OK || status < 200 || status >= 300) {
        fprintf(stderr, "oom_sweep: emulator %s: %s (HTTP %ld)\n", path, curl_easy_strerror(rc),
                status);
        return -1;
    }
    return 0;
}

/* ---- per-run record, filled by the scenario through the oom table ----- */

#define TEXT_MAX 240

static void copy_text(char *dst, size_t cap, const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n >= cap)
        n = cap - 1;
    if (n)
        memcpy(dst, s, n);
    dst[n] = '\0';
}

static struct {
    char step[TEXT_MAX];     /* the scenario's step when the run ended */
    char failure[TEXT_MAX * 2]; /* the first oom.fail() */
    int setup_failed;        /* oom.fault() was refused */
    char warning[TEXT_MAX];  /* the Lua warning being assembled */
    unsigned long gc_errors; /* "error in __gc" warnings: finalizers Lua could not run */
    char gc_error[TEXT_MAX];
} run;

/* Lua 5.4 turns an error while calling a finalizer (out of memory included:
 * the call itself may need a CallInfo or stack) into a warning, and then
 * frees the object without its __gc having run.  Count those: they are
 * what a module's ownership rule cannot see coming. */
static void l_warn(void *ud, const char *msg, int tocont) {
    size_t n = strlen(run.warning);
    (void)ud;
    snprintf(run.warning + n, sizeof run.warning - n, "%s", msg);
    if (tocont)
        return;
    if (strstr(run.warning, "__gc") != NULL) {
        if (run.gc_errors++ == 0)
            copy_text(run.gc_error, sizeof run.gc_error, run.warning);
    }
    run.warning[0] = '\0';
}

/* Masked out-of-memory outcomes, by (step, kind, message start). */
#define MASKED_MAX 64
static struct masked {
    char key[TEXT_MAX];
    unsigned long count, first_n;
} masked[MASKED_MAX];
static int masked_len;
static unsigned long current_n;

/* None of these may allocate from Lua: they read strings that exist. */
static int l_step(lua_State *L) {
    copy_text(run.step, sizeof run.step, lua_tostring(L, 1));
    return 0;
}

static int l_injected(lua_State *L) {
    lua_pushboolean(L, ctl.injected > 0);
    return 1;
}

static int l_fault(lua_State *L) {
    const char *json = lua_tostring(L, 1);
    int ok = json != NULL && control("faults", json) == 0;
    if (!ok)
        run.setup_failed = 1;
    lua_pushboolean(L, ok);
    return 1;
}

static int l_note(lua_State *L) {
    char key[TEXT_MAX];
    const char *msg = lua_tostring(L, 3);
    int i;
    /* the start of the message: enough to tell the cases apart, not the ids */
    snprintf(key, sizeof key, "%s: %s: %.90s", lua_tostring(L, 1) ? lua_tostring(L, 1) : "?",
             lua_tostring(L, 2) ? lua_tostring(L, 2) : "?", msg ? msg : "?");
    for (i = 0; i < masked_len; i++)
        if (strcmp(masked[i].key, key) == 0) {
            masked[i].count++;
            return 0;
        }
    if (masked_len < MASKED_MAX) {
        copy_text(masked[masked_len].key, TEXT_MAX, key);
        masked[masked_len].count = 1;
        masked[masked_len].first_n = current_n;
        masked_len++;
        printf("oom_sweep: masked out-of-memory result at N=%lu: %s\n", current_n, key);
    }
    return 0;
}

static int l_fail(lua_State *L) {
    if (run.failure[0] == '\0')
        snprintf(run.failure, sizeof run.failure, "%s: %s",
                 lua_tostring(L, 1) ? lua_tostring(L, 1) : "?",
                 lua_tostring(L, 2) ? lua_tostring(L, 2) : "?");
    return 0;
}

/* Message handler: stop refusing (the failure has happened), then add the
 * Lua stack so the report says what was running.  Not called for
 * LUA_ERRMEM; the step name covers those. */
static int l_msgh(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    ctl.armed = 0;
    luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
    return 1;
}

/* ---- one run ------------------------------------------------------------ */

typedef struct outcome {
    int status;              /* lua_pcall's */
    unsigned long allocs;    /* growing requests counted */
    unsigned long injected;  /* refusals */
    char message[4096];
} outcome;

static void on_alarm(int sig) {
    char buf[512];
    int n;
    (void)sig;
    n = snprintf(buf, sizeof buf,
                 "oom_sweep: FAIL: run N=%lu did not finish in %u s (step: %s)\n", current_n,
                 opt.timeout, run.step);
    if (n > 0)
        (void)!write(2, buf, (size_t)n);
    _exit(3);
}

static char *scenario_text;
static size_t scenario_len;

static void load_scenario(void) {
    FILE *f = fopen(opt.scenario, "rb");
    long n;
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fprintf(stderr, "oom_sweep: cannot read %s: %s\n", opt.scenario, strerror(errno));
        exit(2);
    }
    scenario_text = malloc((size_t)n + 1);
    if (scenario_text == NULL || fread(scenario_text, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "oom_sweep: cannot read %s\n", opt.scenario);
        exit(2);
    }
    scenario_len = (size_t)n;
    fclose(f);
}

static char module_dir[1024];

/* Run the scenario once, refusing from the n-th growing request (0: never). */
static void run_once(unsigned long n, outcome *out) {
    static const luaL_Reg funcs[] = {
        {"step", l_step}, {"injected", l_injected}, {"fault", l_fault},
        {"note", l_note}, {"fail", l_fail},         {NULL, NULL},
    };
    lua_State *L;
    int base;
    memset(&run, 0, sizeof run);
    copy_text(run.step, sizeof run.step, "(scenario start)");
    memset(&ctl, 0, sizeof ctl);
    memset(out, 0, sizeof *out);
    current_n = n;
    ctl.trace = opt.only_n != 0 && n != 0;
    /* a known emulator: forget the calls and faults, no rate limit */
    if (control("reset", "{}") != 0 || control("config", "{\"rate_limit\": 0}") != 0) {
        fprintf(stderr, "oom_sweep: FAIL: the emulator at %s does not answer\n", opt.emulator_url);
        exit(1);
    }

    L = lua_newstate(oom_alloc, &ctl);
    if (L == NULL) {
        fprintf(stderr, "oom_sweep: lua_newstate failed\n");
        exit(1);
    }
    lua_setwarnf(L, l_warn, NULL);
    luaL_openlibs(L);
    lua_pushcfunction(L, l_msgh);
    base = lua_gettop(L);
    if (luaL_loadbuffer(L, scenario_text, scenario_len, "@spec/oom/scenario.lua") != LUA_OK) {
        fprintf(stderr, "oom_sweep: %s\n", lua_tostring(L, -1));
        exit(2);
    }
    luaL_newlib(L, funcs);
    lua_pushstring(L, module_dir);
    lua_pushstring(L, opt.base_url);
    lua_pushstring(L, opt.api_key);

    ctl.fail_at = n;
    ctl.burst = opt.burst;
    alarm(opt.timeout);
    ctl.armed = 1; /* from here on: require, the client, the calls */
    out->status = lua_pcall(L, 4, 0, base);
    ctl.armed = 0;
    alarm(0);
    out->allocs = ctl.count;
    out->injected = ctl.injected;
    if (out->status != LUA_OK) {
        const char *m = lua_tostring(L, -1);
        copy_text(out->message, sizeof out->message, m ? m : "(error object is not a string)");
    }
    /* the finalizers run with memory available: a refusal there would lose
     * them, which says nothing about the module */
    alarm(opt.timeout);
    lua_close(L);
    alarm(0);
}

static const char *status_name(int status) {
    switch (status) {
    case LUA_OK: return "ok";
    case LUA_ERRRUN: return "LUA_ERRRUN";
    case LUA_ERRMEM: return "LUA_ERRMEM";
    case LUA_ERRERR: return "LUA_ERRERR";
    default: return "other";
    }
}

static int is_oom_message(const char *m) {
    return strstr(m, "not enough memory") != NULL || strstr(m, "out of memory") != NULL;
}

/* Outcomes per step where the runs ended, for the summary. */
#define STEPS_MAX 64
static struct {
    char step[TEXT_MAX];
    unsigned long errmem, errrun, errerr, completed;
} steps[STEPS_MAX];
static int steps_len;

static void count_step(const char *step, int status) {
    int i;
    for (i = 0; i < steps_len && strcmp(steps[i].step, step) != 0; i++)
        ;
    if (i == steps_len) {
        if (steps_len == STEPS_MAX)
            return;
        copy_text(steps[steps_len++].step, TEXT_MAX, step);
    }
    if (status == LUA_OK)
        steps[i].completed++;
    else if (status == LUA_ERRMEM)
        steps[i].errmem++;
    else if (status == LUA_ERRERR)
        steps[i].errerr++;
    else
        steps[i].errrun++;
}

static unsigned long failures;
static unsigned long gc_error_runs, gc_error_first_n;
static char gc_error_first[TEXT_MAX];

#ifdef OOM_ASAN
/* AddressSanitizer / UBSan stop the process on the first error: say which run it was. */
static int in_sweep;
static void on_sanitizer_death(void) {
    if (!in_sweep)
        return; /* the leak report at exit */
    fprintf(stderr, "oom_sweep: FAIL: the sanitizer stopped run N=%lu (burst %lu) at step '%s'%s%s\n",
            current_n, opt.burst, run.step,
            run.gc_errors ? "; Lua had warned: " : "", run.gc_error);
}
#endif

static void fail(unsigned long n, const outcome *o, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "oom_sweep: FAIL at N=%lu (step: %s, %s, %lu refusals): ", n, run.step,
            status_name(o->status), o->injected);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    failures++;
}

/* Judge one run; returns 1 when nothing was refused (the sweep is over). */
static int judge(unsigned long n, const outcome *o) {
    if (run.setup_failed)
        fail(n, o, "the emulator refused a scripted fault");
    if (o->injected == 0) {
        if (o->status != LUA_OK)
            fail(n, o, "the run failed without any refused allocation:\n%s", o->message);
        if (run.failure[0])
            fail(n, o, "unexpected result without any refused allocation: %s", run.failure);
        if (strcmp(run.step, "done") != 0)
            fail(n, o, "the scenario stopped early");
        return 1;
    }
    if (run.failure[0]) /* impossible: fail() is only called before a refusal */
        fail(n, o, "unexpected result: %s", run.failure);
    if (o->status != LUA_OK && o->status != LUA_ERRMEM && !is_oom_message(o->message))
        fail(n, o, "an error that is not out of memory:\n%s", o->message);
    return 0;
}

/* ---- leaks, run by run -------------------------------------------------
 *
 * LeakSanitizer reports every leak it can see, old and new, at each check,
 * merging the ones with the same allocation stack ("in 3 object(s)").  The
 * report of each check is read back and compared with the previous one: a
 * stack whose object count went up leaked in this run.  A new stack is
 * printed in full, with N and the step; later runs that leak on the same
 * stack are only counted.
 */
#define LEAKS_MAX 128
static struct leak {
    char *signature;     /* kind + the frames, without addresses */
    unsigned long objects; /* in the last report */
    unsigned long first_n, runs;
    char first_step[TEXT_MAX];
} leaks[LEAKS_MAX];
static int leaks_len;
static unsigned long leaking_runs;

#ifdef OOM_ASAN
/* One "Direct leak of ..." block: its signature and object count. */
static char *leak_block_signature(const char *block, size_t len, unsigned long *objects) {
    char *sig = malloc(len + 1), *o = sig;
    const char *p = block, *end = block + len, *objs = strstr(block, " object(s)");
    if (sig == NULL)
        return NULL;
    *objects = 1;
    if (objs && objs < end) {
        const char *q = objs;
        while (q > block && q[-1] >= '0' && q[-1] <= '9')
            q--;
        *objects = strtoul(q, NULL, 10);
    }
    /* the first word (Direct / Indirect), then the frames from " in " on;
     * past the first three, only frames with a function name (the others
     * are offsets inside the Lua interpreter, which differ with the Lua
     * code that made the call, not with the leak) */
    while (p < end && *p != ' ')
        *o++ = *p++;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *in;
        int frame;
        if (eol == NULL)
            eol = end;
        in = strstr(p, " in ");
        frame = strncmp(p, "    #", 5) == 0 ? atoi(p + 5) : -1;
        if (frame >= 0 && in != NULL && in < eol && strncmp(in, " in run_once ", 13) == 0)
            break; /* the harness from here down */
        if (frame >= 0 && (in == NULL || in > eol) && frame < 3)
            in = strchr(p, '('); /* no function name: the module+offset */
        if (frame >= 0 && in != NULL && in < eol) {
            *o++ = '|';
            memcpy(o, in, (size_t)(eol - in));
            o += eol - in;
        }
        p = eol + 1;
    }
    *o = '\0';
    return sig;
}

static void leak_check(unsigned long n) {
    char path[] = "/tmp/oom_sweep_lsan.XXXXXX";
    int fd, saved, found;
    FILE *f;
    char *text;
    long size;
    const char *p;
    int new_in_run = 0, i;
    if (!opt.leak_each)
        return;
    fflush(stderr);
    fd = mkstemp(path);
    if (fd < 0)
        return;
    unlink(path);
    saved = dup(2);
    dup2(fd, 2);
    found = __lsan_do_recoverable_leak_check();
    dup2(saved, 2);
    close(saved);
    if (!found) {
        close(fd);
        return;
    }
    f = fdopen(fd, "rb");
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) != 0 || (text = malloc((size_t)size + 1)) == NULL) {
        fprintf(stderr, "oom_sweep: cannot read the leak report\n");
        exit(2);
    }
    size = (long)fread(text, 1, (size_t)size, f);
    text[size] = '\0';
    fclose(f);
    for (p = text; (p = strstr(p, "leak of ")) != NULL;) {
        const char *start = p, *stop = strstr(p, "\n\n");
        unsigned long objects;
        char *sig;
        while (start > text && start[-1] != '\n')
            start--;
        if (stop == NULL)
            stop = text + size;
        sig = leak_block_signature(start, (size_t)(stop - start), &objects);
        p = stop;
        if (sig == NULL)
            continue;
        for (i = 0; i < leaks_len && strcmp(leaks[i].signature, sig) != 0; i++)
            ;
        if (i < leaks_len) {
            free(sig);
            if (objects > leaks[i].objects) {
                leaks[i].runs++;
                new_in_run = 1;
            }
            leaks[i].objects = objects;
        } else if (leaks_len < LEAKS_MAX) {
            leaks[i].signature = sig;
            leaks[i].objects = objects;
            leaks[i].first_n = n;
            leaks[i].runs = 1;
            copy_text(leaks[i].first_step, TEXT_MAX, run.step);
            leaks_len++;
            new_in_run = 1;
            fprintf(stderr, "oom_sweep: FAIL: leak #%d, first in run N=%lu (the run ended at step: %s):\n%.*s\n\n",
                    i + 1, n, run.step, (int)(stop - start), start);
        } else {
            free(sig);
        }
    }
    free(text);
    if (new_in_run)
        leaking_runs++;
}
#else
static void leak_check(unsigned long n) { (void)n; }
#endif

static void leak_summary(void) {
    int i;
    if (leaks_len == 0)
        return;
    fprintf(stderr, "oom_sweep: %d leak stack(s) in %lu run(s):\n", leaks_len, leaking_runs);
    for (i = 0; i < leaks_len; i++) {
        fprintf(stderr, "  leak #%d: first at N=%lu (run ended at step: %s), in %lu run(s)\n", i + 1,
                leaks[i].first_n, leaks[i].first_step, leaks[i].runs);
        free(leaks[i].signature);
    }
    failures++;
}

/* Keep a library mapped after Lua's dlclose, so that leak reports can still
 * name the functions inside it. */
static void pin_library(const char *path) {
    if (dlopen(path, RTLD_NOW | RTLD_NODELETE) == NULL) {
        fprintf(stderr, "oom_sweep: %s\n", dlerror());
        exit(2);
    }
}

static void pin_cjson(void) {
    lua_State *L = luaL_newstate();
    const char *path;
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchpath");
    lua_pushliteral(L, "cjson");
    lua_getfield(L, -3, "cpath");
    lua_call(L, 2, 1);
    path = lua_tostring(L, -1);
    if (path)
        pin_library(path);
    lua_close(L);
}

int main(int argc, char **argv) {
    outcome o;
    unsigned long n, first, last, completed_at = 0, total_allocs = 0, injected_runs = 0;
    struct timespec t0, t1;
    double secs;
    char *slash;
    int i;

    setvbuf(stdout, NULL, _IOLBF, 0);
    parse_args(argc, argv);
    load_scenario();
    copy_text(module_dir, sizeof module_dir, opt.module);
    slash = strrchr(module_dir, '/');
    if (slash)
        *slash = '\0';
    else
        copy_text(module_dir, sizeof module_dir, ".");
    if (strlen(opt.module) < 10 || strcmp(opt.module + strlen(opt.module) - 9, "truedy.so") != 0 ||
        access(opt.module, R_OK) != 0) {
        fprintf(stderr, "oom_sweep: no module at %s (build it first)\n", opt.module);
        return 2;
    }
    pin_library(opt.module);
    pin_cjson();
    signal(SIGALRM, on_alarm);
#ifdef OOM_ASAN
    __sanitizer_set_death_callback(on_sanitizer_death);
#endif
    if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK || (control_easy = curl_easy_init()) == NULL) {
        fprintf(stderr, "oom_sweep: libcurl would not start\n");
        return 2;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
#ifdef OOM_ASAN
    in_sweep = 1;
#endif

    /* N = 0: nothing refused; the scenario must pass as a plain test */
    run_once(0, &o);
    if (o.injected != 0 || !judge(0, &o)) {
        fail(0, &o, "refusals with N = 0");
    }
    total_allocs = o.allocs;
    leak_check(0);
    printf("oom_sweep: N=0 (no refusal): %s, %lu growing allocations in the scenario\n",
           status_name(o.status), o.allocs);
    if (failures) {
        fprintf(stderr, "oom_sweep: the scenario fails without any refused allocation; "
                        "fix that first\n");
        return 1;
    }

    first = opt.only_n ? opt.only_n : opt.from_n;
    last = opt.only_n ? opt.only_n : opt.max_n;
    for (n = first; n <= last && !completed_at; n++) {
        unsigned long r;
        for (r = 0; r < (opt.only_n ? opt.repeat : 1); r++) {
            run_once(n, &o);
            count_step(o.injected ? run.step : "(no refusal)", o.status);
            if (run.gc_errors) {
                if (gc_error_runs++ == 0) {
                    gc_error_first_n = n;
                    copy_text(gc_error_first, sizeof gc_error_first, run.gc_error);
                }
            }
            if (opt.verbose || opt.only_n)
                printf("N=%lu: %s at step '%s', %lu refusals, %lu allocations%s%s%s%s\n", n,
                       status_name(o.status), run.step, o.injected, o.allocs,
                       run.gc_errors ? "; Lua warned: " : "", run.gc_error,
                       o.message[0] ? "\n  " : "", o.message);
            if (o.injected)
                injected_runs++;
            if (judge(n, &o))
                completed_at = n;
            leak_check(n);
        }
        if (completed_at && o.allocs != total_allocs)
            printf("oom_sweep: note: the clean run at N=%lu counted %lu allocations, "
                   "N=0 counted %lu\n", n, o.allocs, total_allocs);
        if (!opt.verbose && !opt.only_n && n % 500 == 0)
            printf("oom_sweep: ... N=%lu\n", n);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
#ifdef OOM_ASAN
    in_sweep = 0;
#endif
    secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;

    printf("oom_sweep: where the runs ended (step: LUA_ERRMEM / other OOM error / "
           "LUA_ERRERR / completed despite a refusal):\n");
    for (i = 0; i < steps_len; i++)
        printf("  %-40s %6lu %6lu %6lu %6lu\n", steps[i].step, steps[i].errmem, steps[i].errrun,
               steps[i].errerr, steps[i].completed);
    if (gc_error_runs)
        printf("oom_sweep: in %lu run(s) Lua could not call a finalizer (out of memory while "
               "calling it; the object is then freed without its __gc), first at N=%lu: %s\n",
               gc_error_runs, gc_error_first_n, gc_error_first);
    if (masked_len) {
        printf("oom_sweep: out-of-memory conditions that came back as a result, not an error "
               "(step: kind: message; runs; first N):\n");
        for (i = 0; i < masked_len; i++)
            printf("  %s; %lu; N=%lu\n", masked[i].key, masked[i].count, masked[i].first_n);
        if (opt.strict) {
            fprintf(stderr, "oom_sweep: FAIL: --strict and %d kinds of masked out-of-memory "
                            "results\n", masked_len);
            failures++;
        }
    }
    if (opt.only_n == 0) {
        if (completed_at == 0) {
            fprintf(stderr, "oom_sweep: FAIL: no clean run up to N=%lu (--max)\n", opt.max_n);
            failures++;
        } else {
            printf("oom_sweep: burst %lu: %lu runs with refusals, clean at N=%lu "
                   "(each of the %lu allocation points was refused in turn), %.1f s\n",
                   opt.burst, injected_runs, completed_at, completed_at - 1, secs);
        }
    }
#ifdef OOM_ASAN
    if (!opt.leak_each) { /* one check for the whole sweep */
        opt.leak_each = 1;
        copy_text(run.step, sizeof run.step, "(unknown: checked once, after the sweep)");
        leak_check(current_n);
    }
#endif
    leak_summary();
    curl_easy_cleanup(control_easy);
    free(scenario_text);
    if (failures) {
        fprintf(stderr, "oom_sweep: %lu failure(s)\n", failures);
        return 1;
    }
    printf("oom_sweep: OK\n");
    return 0;
}
