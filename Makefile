# truedy - Lua C module for the Truedy voice-agent API.
#
#   make            build the module for $(LUA_VERSION) (default 5.4)
#   make demo       README command one: place a call (emulator unless TRUEDY_API_KEY is set)
#   make test       README command two: the whole suite against a real emulator
#   make install    copy the module under $(DESTDIR)$(PREFIX)
#
# Lua versions: LUA_VERSION=5.1|5.2|5.3|5.4|luajit.  Headers and flags come
# from pkg-config; override LUA_INCDIR / LUA_CFLAGS / CURL_CFLAGS when needed.

LUA_VERSION ?= 5.4
PREFIX      ?= /usr/local
DESTDIR     ?=
CC          ?= cc
PKG_CONFIG  ?= pkg-config

ifeq ($(LUA_VERSION),luajit)
  LUA_PC    ?= luajit
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

LUA_CMOD ?= $(PREFIX)/lib/lua/$(LUA_ABI)
LUA_LMOD ?= $(PREFIX)/share/lua/$(LUA_ABI)

CFLAGS  ?= -O2 -g
WARN    := -std=c99 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
ALL_CFLAGS := $(WARN) $(CFLAGS) -fPIC -fvisibility=hidden $(LUA_CFLAGS) $(CURL_CFLAGS)
LDFLAGS ?=
ALL_LDFLAGS := -shared $(LDFLAGS)
LIBS    := $(CURL_LIBS) -lpthread -lm

SRCS := csrc/truedy.c csrc/client.c csrc/request.c csrc/params.c csrc/json.c \
        csrc/errors.c csrc/util.c
HDRS := csrc/truedy.h csrc/compat.h
BUILD ?= build/$(LUA_VERSION)
OBJS := $(SRCS:csrc/%.c=$(BUILD)/%.o)
MODULE := $(BUILD)/truedy.so

.PHONY: all deps demo test lint install uninstall clean valgrind sanitize emulator bench

all: $(MODULE)

$(BUILD)/%.o: csrc/%.c $(HDRS)
	@mkdir -p $(BUILD)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(MODULE): $(OBJS)
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
	@$(MAKE) --no-print-directory -s all
	@scripts/run-tests

# The suite under valgrind memcheck (definite leaks and errors fail it).
valgrind:
	@scripts/ensure-deps valgrind
	@$(MAKE) --no-print-directory -s all
	@TRUEDY_TEST_LUAS= TRUEDY_TEST_WRAPPER=valgrind scripts/run-tests

# The suite with the module built under AddressSanitizer + UBSan.
sanitize:
	@scripts/ensure-deps test
	@$(MAKE) --no-print-directory all BUILD=build/sanitize \
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
	@$(MAKE) --no-print-directory all LUA_VERSION=5.4 BUILD=$(OOM_BUILD) \
	  CFLAGS="$(OOM_SAN)" LDFLAGS="-fsanitize=address,undefined"
	$(CC) $(WARN) $(OOM_SAN) $(shell $(PKG_CONFIG) --cflags lua5.4) $(CURL_CFLAGS) \
	  spec/oom/oom_sweep.c -o $(OOM_BUILD)/oom_sweep \
	  $(shell $(PKG_CONFIG) --libs lua5.4) $(CURL_LIBS) -ldl
	@spec/oom/run $(OOM_BUILD) $(OOM_BURSTS)

# Static checks: luacheck, clang-tidy, cppcheck.
# clang-tidy runs once per file: clang 14's analyzer mixes state between
# translation units given in one run (a false va_list report in util.c).
lint:
	luacheck --quiet .
	@set -e; for f in $(SRCS); do clang-tidy --quiet $$f -- $(WARN) $(LUA_CFLAGS) $(CURL_CFLAGS); done
	cppcheck --quiet --error-exitcode=1 --enable=warning,style,performance,portability --std=c99 \
	  --inline-suppr --suppress=missingIncludeSystem --suppress=toomanyconfigs \
	  $(LUA_CFLAGS) $(CURL_CFLAGS) csrc

emulator:
	emulator/truedy-emulator run

# Ratios against raw libcurl and LuaSocket, measured in one run (bench/run).
bench:
	@scripts/ensure-deps test
	@bench/run

LUA_SRCS := lua/truedy/follow.lua lua/truedy/resty.lua
# truedy.resty's parts (OpenResty)
LUA_RESTY_SRCS := lua/truedy/resty/gate.lua lua/truedy/resty/thread.lua

install: $(MODULE)
	install -d $(DESTDIR)$(LUA_CMOD) $(DESTDIR)$(LUA_LMOD)/truedy $(DESTDIR)$(LUA_LMOD)/truedy/resty
	install -m 0755 $(MODULE) $(DESTDIR)$(LUA_CMOD)/truedy.so
	install -m 0644 $(LUA_SRCS) $(DESTDIR)$(LUA_LMOD)/truedy/
	install -m 0644 $(LUA_RESTY_SRCS) $(DESTDIR)$(LUA_LMOD)/truedy/resty/

uninstall:
	rm -f $(DESTDIR)$(LUA_CMOD)/truedy.so $(LUA_SRCS:lua/%=$(DESTDIR)$(LUA_LMOD)/%) \
	  $(LUA_RESTY_SRCS:lua/%=$(DESTDIR)$(LUA_LMOD)/%)
	rmdir $(DESTDIR)$(LUA_LMOD)/truedy/resty 2>/dev/null || true

# Prints a variable, for scripts: make -s LUA_VERSION=luajit print-BUILD
print-%:
	@echo '$($*)'

clean:
	rm -rf build
