# Tollgate: build manual.
#
#   make            build build/tollgate (the gateway) from runtime/*.c, and
#                   build/libtollgate.so (the same C core for Lua outside the
#                   binary: busted specs run the real JWT and shared-dictionary
#                   code through it)
#   make run        install what is missing, build, and start examples/coffee-shop
#                   with its demo upstream services (Ctrl-C stops everything)
#   make test       install what is missing, build, and run every test:
#                   C unit tests (spec/c), the fuzz targets over their corpora
#                   (fuzz-regress), busted specs (spec/), lint
#   make deps       install the Debian packages the build and tests need (root)
#   make bench      run bench/run.sh: tollgate vs nginx, side by side
#   make install    install under PREFIX (/usr/local): bin/tollgate, and
#                   share/tollgate/{lua,policies,lib/libtollgate.so}; for busted
#                   in your own project: LUA_PATH="$(PREFIX)/share/tollgate/lua/?.lua;;"
#   make test-asan  build with ASan+UBSan (SAN=1, into build-asan/) and run the
#                   whole suite against it: C unit tests, then busted with the
#                   sanitized gateway and libtollgate.so; fails on any ASan,
#                   UBSan or LeakSanitizer report a gateway process wrote
#                   (reports: build-asan/reports/; suppressions:
#                   fuzz/asan/lsan.supp)
#   make test-tsan  build the gateway with ThreadSanitizer (clang, into
#                   build-tsan/) and run the specs that exercise its threads
#                   (reloads, TLS, Lua, policies) against it; fails on any report
#   make fuzz       build the libFuzzer targets (clang) into build-fuzz/ and run
#                   each for FUZZ_TIME seconds (default 60), FUZZ_JOBS at a time
#                   (default 1), on its seeds in fuzz/corpus/<target>/; fails on
#                   a crash (the input is left in build-fuzz/artifacts/<target>/).
#                   FUZZ_TARGETS picks targets: request response config jwt
#                   template. See fuzz/README.md
#   make fuzz-regress  run every fuzz target once over its corpus (no fuzzing):
#                   seeds and past crashes; part of `make test`
#   make clean      remove build/, build-asan/, build-tsan/ and build-fuzz/
#
# Dependencies come from Debian packages only (see DEPS). LuaJIT is the
# OpenResty fork (libluajit2-5.1-dev, luajit2). The binary exports its
# symbols (-rdynamic) so Lua reaches the C core through ffi.C.
#
# Variables: CC, CFLAGS, BUILD (output directory), SAN=1 (ASan+UBSan build
# into build-asan/), FUZZ_CC (clang), FUZZ_TIME, FUZZ_JOBS, FUZZ_TARGETS.

CC      ?= cc
BUILD   ?= build
PREFIX  ?= /usr/local
DATADIR ?= $(PREFIX)/share/tollgate

DEPS = build-essential pkg-config libluajit2-5.1-dev luajit2 libev-dev libhttp-parser-dev \
       libssl-dev libyaml-dev lua-busted lua-cjson lua-socket lua-sec lua-check \
       wrk nginx curl libpcre2-8-0

# Only for `make bench`: the OpenResty-style comparison (nginx + Lua), and
# valgrind for bench/reload-cost.sh.
BENCH_DEPS = libnginx-mod-http-lua valgrind

# For the fuzz targets (make fuzz, make fuzz-regress, and so make test).
FUZZ_DEPS = clang libclang-rt-14-dev

LUAJIT_CFLAGS := $(shell pkg-config --cflags luajit 2>/dev/null || echo -I/usr/include/luajit-2.1)
LUAJIT_LIBS   := $(shell pkg-config --libs luajit 2>/dev/null || echo -lluajit-5.1)

WARN    = -Wall -Wextra -Wshadow -Wno-unused-parameter -Wstrict-prototypes
CFLAGS ?= -O2 -g
ALL_CFLAGS = -std=gnu11 $(WARN) $(CFLAGS) $(LUAJIT_CFLAGS) -D_GNU_SOURCE \
             -DTG_DATADIR='"$(DATADIR)"' -fno-strict-aliasing
LDLIBS  = $(LUAJIT_LIBS) -lev -lhttp_parser -lyaml -lssl -lcrypto -lpthread -lm -ldl
LDFLAGS += -rdynamic

ifeq ($(SAN),1)
BUILD = build-asan
ALL_CFLAGS += -O1 -fno-omit-frame-pointer -fsanitize=address,undefined
LDFLAGS += -fsanitize=address,undefined
# Workers end with _exit(), which skips LeakSanitizer: the gateway's _exit()
# runs the leak check first (fuzz/asan/lsan_exit.c).
SAN_OBJS = $(BUILD)/lsan_exit.o
SAN_LDFLAGS = -Wl,--wrap=_exit
endif

SRCS := $(wildcard runtime/*.c)
OBJS := $(SRCS:runtime/%.c=$(BUILD)/%.o)
PIC_OBJS := $(patsubst runtime/%.c,$(BUILD)/pic/%.o,$(filter-out runtime/main.c,$(SRCS)))
LIB_LDLIBS = -lev -lhttp_parser -lyaml -lssl -lcrypto -lpthread -lm
HDRS := $(wildcard runtime/*.h)
CTESTS := $(patsubst spec/c/%.c,$(BUILD)/spec/%,$(wildcard spec/c/test_*.c))

.PHONY: all run test deps bench-deps install-packages bench clean check-c lint busted install \
        fuzz fuzz-deps fuzz-build fuzz-regress test-asan test-tsan

all: $(BUILD)/tollgate $(BUILD)/libtollgate.so

$(BUILD)/tollgate: $(OBJS) $(SAN_OBJS)
	$(CC) $(LDFLAGS) $(SAN_LDFLAGS) -o $@ $(OBJS) $(SAN_OBJS) $(LDLIBS)

$(BUILD)/lsan_exit.o: fuzz/asan/lsan_exit.c | $(BUILD)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/%.o: runtime/%.c $(HDRS) | $(BUILD)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# Lua symbols come from the host (luajit exports them), so the library does
# not link a second LuaJIT.
$(BUILD)/libtollgate.so: $(PIC_OBJS)
	$(CC) -shared $(filter -fsanitize%,$(LDFLAGS)) -o $@ $(PIC_OBJS) $(LIB_LDLIBS)

$(BUILD)/pic/%.o: runtime/%.c $(HDRS) | $(BUILD)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fPIC -c -o $@ $<

$(BUILD):
	mkdir -p $(BUILD) $(BUILD)/spec $(BUILD)/pic

# C unit tests include the .c file they test.
$(BUILD)/spec/%: spec/c/%.c spec/c/tap.h $(SRCS) $(HDRS) | $(BUILD)
	$(CC) $(ALL_CFLAGS) -O1 -fsanitize=address,undefined -iquote runtime -o $@ $< \
	    $(LDLIBS) -fsanitize=address,undefined

# ---- fuzzing: libFuzzer targets (fuzz/fuzz_<target>.c) over the runtime's
# objects, built once with clang, the fuzzer's coverage and ASan+UBSan
# (UBSan aborts, so libFuzzer counts it as a crash). Linked with -rdynamic
# like the binary, so Lua code in the config and template targets reaches
# the C core through ffi.C.
FUZZ_CC      ?= clang
FUZZ_BUILD    = build-fuzz
FUZZ_TIME    ?= 60
FUZZ_JOBS    ?= 1
FUZZ_TARGETS ?= request response config jwt template
FUZZ_SAN      = -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS   = -std=gnu11 $(WARN) -Werror=implicit-function-declaration -O1 -g -fno-omit-frame-pointer $(LUAJIT_CFLAGS) \
                -D_GNU_SOURCE -DTG_DATADIR='"$(DATADIR)"' -fno-strict-aliasing $(FUZZ_SAN)
FUZZ_OBJS    := $(patsubst runtime/%.c,$(FUZZ_BUILD)/obj/%.o,$(filter-out runtime/main.c,$(SRCS)))

fuzz-build: $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)

.SECONDARY: $(FUZZ_OBJS)

$(FUZZ_BUILD)/obj/%.o: runtime/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz.h fuzz/fuzz_lua.h $(FUZZ_OBJS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -iquote runtime -DTG_FUZZ_HOME='"$(CURDIR)"' \
	    -rdynamic -o $@ $< \
	    $(FUZZ_OBJS) $(LDLIBS)

fuzz-deps:
	@$(MAKE) -s install-packages PACKAGES="$(FUZZ_DEPS)"

fuzz: fuzz-deps
	$(MAKE) fuzz-build
	@FUZZ_TIME=$(FUZZ_TIME) FUZZ_JOBS=$(FUZZ_JOBS) fuzz/run.sh fuzz $(FUZZ_TARGETS)

fuzz-regress: fuzz-deps
	$(MAKE) fuzz-build
	@fuzz/run.sh regress $(FUZZ_TARGETS)

# ---- sanitizers: the suite against build-asan/. busted's luajit loads the
# sanitized libtollgate.so, so it runs with gcc's ASan runtime preloaded:
# fuzz/asan/bin/luajit, first on PATH, does that for every luajit the specs
# start, and keeps the preload from the other programs they run (curl with
# ASan preloaded hangs). Every process writes its reports to
# build-asan/reports/<asan|ubsan>.<program>.<pid>; leak detection is on only
# for the gateway (fuzz/asan/tollgate.options, included by program name): in
# luajit the Lua heap is LuaJIT's own mmap arena, which LeakSanitizer does
# not scan. A leak does not change an exit status (exitcode=0): the reports
# decide, fuzz/asan/check-reports.sh reads them. spec/04-reload/07-memory is
# left out: it bounds RSS growth across reloads, and ASan's allocator (freed
# memory held in quarantine, not given back) makes RSS measure ASan, not
# the gateway; LeakSanitizer checks what it is after.
ASAN_RT     := $(shell $(CC) -print-file-name=libasan.so)
SAN_REPORTS  = $(CURDIR)/build-asan/reports
SAN_ENV      = ASAN_OPTIONS=detect_leaks=0:log_path=$(SAN_REPORTS)/asan:log_exe_name=1:include_if_exists=$(CURDIR)/fuzz/asan/%b.options \
               LSAN_OPTIONS=suppressions=$(CURDIR)/fuzz/asan/lsan.supp:exitcode=0 \
               UBSAN_OPTIONS=print_stacktrace=1:log_path=$(SAN_REPORTS)/ubsan:log_exe_name=1 \
               TG_ASAN_RT=$(ASAN_RT) TG_LUAJIT=$(shell command -v luajit) \
               PATH=$(CURDIR)/fuzz/asan/bin:$(PATH)

test-asan: deps
	$(MAKE) SAN=1 all
	$(MAKE) SAN=1 check-c
	rm -rf $(SAN_REPORTS) && mkdir -p $(SAN_REPORTS)
	$(SAN_ENV) TOLLGATE_BIN=$(CURDIR)/build-asan/tollgate \
	    TOLLGATE_LIB=$(CURDIR)/build-asan/libtollgate.so busted --lua=luajit \
	    --exclude-pattern=07%-memory_spec; \
	    rc=$$?; fuzz/asan/check-reports.sh $(SAN_REPORTS) || rc=1; exit $$rc

# ---- ThreadSanitizer: a worker builds and closes generations in threads
# beside its loop, the resolver and the master's check have threads of
# their own; the specs that exercise them run against a gateway built with
# -fsanitize=thread (clang, into build-tsan/). Fails on any report a gateway
# process wrote (build-tsan/reports/). The C core loaded by busted's luajit
# is not instrumented (LuaJIT is not): this checks the gateway's threads.
TSAN_REPORTS = $(CURDIR)/build-tsan/reports
TSAN_SPECS   = spec/04-reload spec/05-tls spec/06-lua spec/03-policies

test-tsan: deps fuzz-deps
	$(MAKE) BUILD=build-tsan CC=clang CFLAGS="-O1 -g -fsanitize=thread" \
	    LDFLAGS="-fsanitize=thread -rdynamic" build-tsan/tollgate
	rm -rf $(TSAN_REPORTS) && mkdir -p $(TSAN_REPORTS)
	TSAN_OPTIONS=log_path=$(TSAN_REPORTS)/tsan TOLLGATE_BIN=$(CURDIR)/build-tsan/tollgate \
	    busted --lua=luajit --exclude-pattern=07%-memory_spec $(TSAN_SPECS); \
	    rc=$$?; if ls $(TSAN_REPORTS)/tsan.* >/dev/null 2>&1; then \
	        cat $(TSAN_REPORTS)/tsan.*; echo "test-tsan: reports above"; rc=1; \
	    else echo "test-tsan: no ThreadSanitizer report"; fi; exit $$rc

deps:
	@$(MAKE) -s install-packages PACKAGES="$(DEPS)"

bench-deps:
	@$(MAKE) -s install-packages PACKAGES="$(DEPS) $(BENCH_DEPS)"

install-packages:
	@missing=""; for p in $(PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" \
	        || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    if [ "$$(id -u)" != 0 ]; then echo "make deps needs root (apt-get install -y$$missing)"; exit 1; fi; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

check-c: $(CTESTS)
	@for t in $(CTESTS); do echo "== $$t"; $$t || exit 1; done

lint:
	luacheck -q lua policies spec examples

busted: $(BUILD)/tollgate
	TOLLGATE_BIN=$(abspath $(BUILD)/tollgate) busted --lua=luajit

test: deps
	$(MAKE) all
	$(MAKE) check-c
	$(MAKE) fuzz-regress
	$(MAKE) lint
	$(MAKE) busted

run: deps
	$(MAKE) all
	./examples/coffee-shop/run.sh

bench: bench-deps
	$(MAKE) all
	./bench/run.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(DATADIR)/lua/tollgate/testing \
	    $(DESTDIR)$(DATADIR)/policies $(DESTDIR)$(DATADIR)/lib
	install -m 755 $(BUILD)/tollgate $(DESTDIR)$(PREFIX)/bin/tollgate
	install -m 644 $(BUILD)/libtollgate.so $(DESTDIR)$(DATADIR)/lib/libtollgate.so
	install -m 644 lua/tollgate/*.lua $(DESTDIR)$(DATADIR)/lua/tollgate/
	install -m 644 lua/tollgate/testing/*.lua $(DESTDIR)$(DATADIR)/lua/tollgate/testing/
	install -m 644 policies/*.lua $(DESTDIR)$(DATADIR)/policies/

clean:
	rm -rf build build-asan build-fuzz build-tsan
