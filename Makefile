# truedy - Lua C module for the Truedy voice-agent API.
#
#   make            build the module for $(LUA_VERSION) (default 5.4)
#   make demo       README command one: place a call (emulator unless TRUEDY_API_KEY is set)
#   make test       README command two: the whole suite against a real emulator
#   make install    copy the module under $(DESTDIR)$(PREFIX) (LuaLS annotations: $(TYPES_DIR))
#   make rock       a .src.rock of HEAD, made offline (scripts/make-rock)
#
# Lua versions: LUA_VERSION=5.1|5.2|5.3|5.4|luajit.  Headers and flags come
# from pkg-config; override LUA_INCDIR / LUA_CFLAGS / CURL_CFLAGS when needed.
# LuaJIT and PUC Lua 5.1 share one build (build/5.1, against PUC 5.1's
# headers): the same truedy.so loads in both, as lua-cjson's does.
# Warnings are errors only in the project's own targets (test, lint, CI):
# a user's `make` or `make install` must not break on a newer compiler.

LUA_VERSION ?= 5.4
PREFIX      ?= /usr/local
DESTDIR     ?=
CC          ?= cc
PKG_CONFIG  ?= pkg-config

ifeq ($(LUA_VERSION),luajit)
  # the 5.1 ABI; LuaJIT's own headers only where PUC 5.1's are missing
  LUA_PC    ?= $(shell $(PKG_CONFIG) --exists lua5.1 2>/dev/null && echo lua5.1 || echo luajit)
  LUA       ?= luajit
  LUA_ABI   := 5.1
else
  LUA_PC    ?= lua$(LUA_VERSION)
  LUA       ?= lua$(LUA_VERSION)
  LUA_ABI   := $(LUA_VERSION)
endif

ifdef LUA_INCDIR
  LUA_CFLAGS ?= -I$(LUA_INCDIR)
else
  LUA_CFLAGS ?= $(shell $(PKG_CONFIG) --cflags $(LUA_PC) 2>/dev/null)
endif
CURL_CFLAGS ?= $(shell $(PKG_CONFIG) --cflags libcurl 2>/dev/null)
CURL_LIBS   ?= $(shell $(PKG_CONFIG) --libs libcurl 2>/dev/null || echo -lcurl)
# OpenSSL's libcrypto: HMAC-SHA256 for truedy.webhook (csrc/webhook.c)
CRYPTO_CFLAGS ?= $(shell $(PKG_CONFIG) --cflags libcrypto 2>/dev/null)
CRYPTO_LIBS   ?= $(shell $(PKG_CONFIG) --libs libcrypto 2>/dev/null || echo -lcrypto)

LUA_CMOD ?= $(PREFIX)/lib/lua/$(LUA_ABI)
LUA_LMOD ?= $(PREFIX)/share/lua/$(LUA_ABI)

CFLAGS  ?= -O2 -g
WARN    := -std=c99 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
WERROR  ?=
ALL_CFLAGS := $(WARN) $(WERROR) $(CFLAGS) -fPIC -fvisibility=hidden $(LUA_CFLAGS) $(CURL_CFLAGS) $(CRYPTO_CFLAGS)
LDFLAGS ?=
ALL_LDFLAGS := -shared $(LDFLAGS)
LIBS    := $(CURL_LIBS) $(CRYPTO_LIBS) -lpthread -lm

SRCS := csrc/truedy.c csrc/options.c csrc/client.c csrc/calls.c csrc/handle.c csrc/run.c \
        csrc/engine.c csrc/transfer.c csrc/policy.c csrc/outcome.c csrc/errors.c \
        csrc/params.c csrc/json.c csrc/util.c csrc/webhook.c
HDRS := csrc/truedy.h csrc/compat.h
BUILD ?= build/$(LUA_ABI)
OBJS := $(SRCS:csrc/%.c=$(BUILD)/%.o)
MODULE := $(BUILD)/truedy.so
# The flags the build dir was made with: a change (WERROR, CFLAGS, ...) rebuilds.
FLAGS_STAMP := $(BUILD)/flags
BUILD_FLAGS := $(CC) $(ALL_CFLAGS) | $(ALL_LDFLAGS) $(LIBS)

.PHONY: all deps demo test lint install uninstall clean valgrind sanitize emulator bench rock FORCE \
        bench-instr bench-programs bench-resty bench-async

all: $(MODULE)

$(FLAGS_STAMP): FORCE
	@mkdir -p $(BUILD)
	@printf '%s\n' '$(subst ','\'',$(BUILD_FLAGS))' | cmp -s - $@ || \
	  printf '%s\n' '$(subst ','\'',$(BUILD_FLAGS))' >$@

$(BUILD)/%.o: csrc/%.c $(HDRS) $(FLAGS_STAMP)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(MODULE): $(OBJS) $(FLAGS_STAMP)
	$(CC) $(ALL_LDFLAGS) -o $@ $(OBJS) $(LIBS)

# Installs missing Debian packages when root, otherwise names them.
deps:
	@scripts/ensure-deps test

demo:
	@scripts/ensure-deps demo
	@$(MAKE) --no-print-directory -s all
	@scripts/demo

test:
	@scripts/ensure-deps test
	@$(MAKE) --no-print-directory -s all WERROR=-Werror
	@scripts/run-tests

# The suite under valgrind memcheck (definite leaks and errors fail it).
valgrind:
	@scripts/ensure-deps valgrind
	@$(MAKE) --no-print-directory -s all WERROR=-Werror
	@TRUEDY_TEST_LUAS= TRUEDY_TEST_WRAPPER=valgrind scripts/run-tests

# The suite with the module built under AddressSanitizer + UBSan.
sanitize:
	@scripts/ensure-deps test
	@$(MAKE) --no-print-directory all BUILD=build/sanitize WERROR=-Werror \
	  CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all" \
	  LDFLAGS="-fsanitize=address,undefined"
	@TRUEDY_TEST_LUAS= TRUEDY_TEST_WRAPPER=sanitize TRUEDY_BUILD=build/sanitize scripts/run-tests

# Allocation-failure sweep (spec/oom/): the module and spec/oom/oom_sweep.c
# built with AddressSanitizer + UBSan, against an emulator of its own.  For
# N = 1, 2, ... a Lua 5.4 state whose allocator refuses the N-th allocation
# runs spec/oom/scenario.lua, until a run meets no refusal.  Any leak,
# sanitizer report, crash, hang, or error other than out of memory fails it.
# OOM_BURSTS: the refusal patterns swept, one process each (0: every
# allocation from the N-th on; 2: one out-of-memory error, then the program
# goes on; 1: an emergency collection at every allocation, slower).
OOM_BUILD  ?= build/oom
OOM_BURSTS ?= 0 2
OOM_SAN    := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
.PHONY: oom
oom:
	@scripts/ensure-deps demo
	@$(MAKE) --no-print-directory all LUA_VERSION=5.4 BUILD=$(OOM_BUILD) WERROR=-Werror \
	  CFLAGS="$(OOM_SAN)" LDFLAGS="-fsanitize=address,undefined"
	$(CC) $(WARN) -Werror $(OOM_SAN) $(shell $(PKG_CONFIG) --cflags lua5.4 2>/dev/null) $(CURL_CFLAGS) \
	  spec/oom/oom_sweep.c -o $(OOM_BUILD)/oom_sweep \
	  $(shell $(PKG_CONFIG) --libs lua5.4 2>/dev/null) $(CURL_LIBS) -ldl
	@spec/oom/run $(OOM_BUILD) $(OOM_BURSTS)

# Static checks: luacheck, clang-tidy, cppcheck.
# clang-tidy runs once per file: clang 14's analyzer mixes state between
# translation units given in one run (a false va_list report in util.c).
lint:
	@scripts/ensure-deps lint
	luacheck --quiet --no-color .
	@# clang-tidy counts the warnings it suppressed in system headers: only its findings are shown
	@set -e; for f in $(SRCS); do \
	  out=$$(clang-tidy --quiet $$f -- $(WARN) -Werror $(LUA_CFLAGS) $(CURL_CFLAGS) $(CRYPTO_CFLAGS) 2>&1) && rc=0 || rc=$$?; \
	  printf '%s\n' "$$out" | grep -v '^[0-9]* warnings\{0,1\} generated\.$$' || true; \
	  [ $$rc -eq 0 ] || exit $$rc; done
	cppcheck --quiet --error-exitcode=1 --enable=warning,style,performance,portability --std=c99 \
	  --inline-suppr --suppress=missingIncludeSystem --suppress=toomanyconfigs \
	  $(LUA_CFLAGS) $(CURL_CFLAGS) $(CRYPTO_CFLAGS) csrc

emulator:
	emulator/truedy-emulator run

# Benchmarks (bench/; not part of make test).  make bench: calls/s of truedy and of each
# baseline, pinned with the server to one CPU, interleaved, min/median/max of each ratio, and
# memory over 100,000 calls (bench/run -h for the options; BENCH_ARGS passes them).
# make bench-instr: callgrind instructions per call, the number to compare across commits.
BENCH_BUILD := build/bench
BENCH_LUA_CFLAGS := $(shell $(PKG_CONFIG) --cflags lua5.4 2>/dev/null)
BENCH_PROGRAMS := $(BENCH_BUILD)/c_easy $(BENCH_BUILD)/c_multi $(BENCH_BUILD)/minicurl.so

bench:
	@scripts/ensure-deps test
	@bench/run $(BENCH_ARGS)

bench-instr:
	@scripts/ensure-deps valgrind
	@bench/instr

# make bench-async: the asynchronous API's numbers (issue 7): 16 calls in flight against the
# C multi loop (the harness above), then poll(0)'s cost and a game loop's frame times
# (bench/async; BENCH_ASYNC_ARGS passes its options).
bench-async:
	@scripts/ensure-deps test
	@BENCH_CLIENTS="truedy-async16 c-multi16" bench/run -m 0 $(BENCH_ARGS)
	@echo
	@bench/async $(BENCH_ASYNC_ARGS)

bench-programs: $(BENCH_PROGRAMS)

# make bench-resty: truedy.resty in nginx (bench/resty: /ping latency with 50 calls in flight,
# 16 concurrent /dial against the C multi loop); BENCH_RESTY_ARGS passes its options.
bench-resty:
	@scripts/ensure-deps test
	@bench/resty $(BENCH_RESTY_ARGS)

$(BENCH_BUILD)/%: bench/%.c bench/baseline.c bench/baseline.h
	@mkdir -p $(BENCH_BUILD)
	$(CC) $(WARN) $(CFLAGS) $(CURL_CFLAGS) -o $@ $< bench/baseline.c $(CURL_LIBS)

$(BENCH_BUILD)/minicurl.so: bench/minicurl.c bench/baseline.c bench/baseline.h
	@mkdir -p $(BENCH_BUILD)
	$(CC) $(WARN) $(CFLAGS) -fPIC $(BENCH_LUA_CFLAGS) $(CURL_CFLAGS) -shared -o $@ bench/minicurl.c \
	  bench/baseline.c $(CURL_LIBS)

# A .src.rock of the committed HEAD (git archive), installable offline:
# `luarocks --lua-version 5.4 install --deps-mode=none build/rock/*.src.rock`.
ROCK_DIR ?= build/rock
rock:
	@scripts/ensure-deps rock
	@scripts/make-rock $(ROCK_DIR)

LUA_SRCS := lua/truedy/follow.lua lua/truedy/pager.lua lua/truedy/batch.lua lua/truedy/resty.lua
# truedy.resty's parts (OpenResty)
LUA_RESTY_SRCS := lua/truedy/resty/gate.lua lua/truedy/resty/thread.lua
# LuaLS annotations (types/*.d.lua), for editors' workspace.library: a data directory, one for
# every Lua version, never on package.path (README, "Editor support").
TYPES_SRCS := $(wildcard types/*.d.lua)
TYPES_DIR  ?= $(PREFIX)/share/truedy/types

install: $(MODULE)
	install -d $(DESTDIR)$(LUA_CMOD) $(DESTDIR)$(LUA_LMOD)/truedy $(DESTDIR)$(LUA_LMOD)/truedy/resty
	install -m 0755 $(MODULE) $(DESTDIR)$(LUA_CMOD)/truedy.so
	install -m 0644 $(LUA_SRCS) $(DESTDIR)$(LUA_LMOD)/truedy/
	install -m 0644 $(LUA_RESTY_SRCS) $(DESTDIR)$(LUA_LMOD)/truedy/resty/
	install -d $(DESTDIR)$(TYPES_DIR)
	install -m 0644 $(TYPES_SRCS) $(DESTDIR)$(TYPES_DIR)/

uninstall:
	rm -f $(DESTDIR)$(LUA_CMOD)/truedy.so $(LUA_SRCS:lua/%=$(DESTDIR)$(LUA_LMOD)/%) \
	  $(LUA_RESTY_SRCS:lua/%=$(DESTDIR)$(LUA_LMOD)/%) $(TYPES_SRCS:types/%=$(DESTDIR)$(TYPES_DIR)/%)
	rmdir $(DESTDIR)$(LUA_LMOD)/truedy/resty $(DESTDIR)$(TYPES_DIR) 2>/dev/null || true

# Prints a variable, for scripts: make -s LUA_VERSION=luajit print-BUILD
print-%:
	@echo '$($*)'

clean:
	rm -rf build

# libFuzzer targets (spec/fuzz/): the response path (status, headers, body ->
# envelope or error, with a differential check of the null stripping) and the
# create_call params encoder.  Each runs FUZZ_SECONDS (default 180) from the
# seeds in spec/fuzz/corpus/<target> (kept in the repository); what it finds
# new goes to build/fuzz/corpus-<target>.  Not part of make test.
FUZZ_SECONDS ?= 180
FUZZ_BUILD   := build/fuzz
FUZZ_FLAGS   = -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=all $(shell $(PKG_CONFIG) --cflags lua5.4 2>/dev/null) $(CURL_CFLAGS) $(CRYPTO_CFLAGS)
FUZZ_LIBS    = $(shell $(PKG_CONFIG) --libs lua5.4 2>/dev/null) $(CURL_LIBS) $(CRYPTO_LIBS) -lpthread -lm
FUZZ_TARGETS := outcome params
.PHONY: fuzz fuzz-build
fuzz-build: $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)

$(FUZZ_BUILD)/fuzz_%: spec/fuzz/fuzz_%.c spec/fuzz/harness.h $(SRCS) $(HDRS)
	@mkdir -p $(FUZZ_BUILD)
	clang -std=c99 $(WARN) -Werror $(FUZZ_FLAGS) -o $@ $< $(SRCS) $(FUZZ_LIBS)

fuzz:
	@scripts/ensure-deps fuzz
	@$(MAKE) --no-print-directory fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus-$$t; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  $(FUZZ_BUILD)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=8192 -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_BUILD)/$$t- $(FUZZ_BUILD)/corpus-$$t spec/fuzz/corpus/$$t; \
	done
