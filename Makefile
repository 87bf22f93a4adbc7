# perf_manual — one front door: `make` builds bin/perf_manual (host + BPF
# objects), `make test` runs every test, `make demo` the built-in demo.
# Quiet by default; V=1 shows the full commands.

.DELETE_ON_ERROR:
.SECONDARY:
.PHONY: FORCE all deps demo test test-c test-lua test-fuzz test-e2e bench lint install clean workloads

PREFIX   ?= /usr/local
VERSION  := 0.1.0
CC       ?= cc
CLANG    ?= clang
BPFTOOL  ?= bpftool
ARCH     := $(shell uname -m | sed 's/x86_64/x86/;s/aarch64/arm64/')
# <asm/...> for BPF objects that include libbpf's usdt.bpf.h (probe)
MULTIARCH := $(shell $(CC) -dumpmachine 2>/dev/null)

PKGS       := luajit libbpf libelf zlib
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
# LuaJIT, libbpf, libelf and zlib go into the binary (Debian's .a files): fewer
# libraries for the loader to map and relocate at every start (about 1 ms of
# the time to "attached" on this VM), and nothing to keep in step at run time.
# Lua C modules loaded later (lpeg, posix, cjson) find Lua's API in the
# binary, which exports it (-Wl,-E). OpenSSL (red-check over https) is not
# linked: runtime/http.c opens libssl.so.3 when an https run needs it (linked,
# its relocations doubled the CPU time of every start).
STATIC_LIBS := -Wl,-Bstatic -lluajit-5.1 -lbpf -lelf -lz -Wl,-Bdynamic -ldl

CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -Wall -Wextra -D_GNU_SOURCE -DPM_VERSION='"$(VERSION)"' \
            -Iruntime -Ibuild $(PKG_CFLAGS)
LDLIBS   += $(STATIC_LIBS) -lm -lpthread
LDFLAGS  += -Wl,-E

ifeq ($(V),1)
  Q =
  msg =
else
  Q = @
  msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

# Debian packages the project needs to build, test and demo.
DEB_PKGS := build-essential pkg-config clang llvm libclang-rt-14-dev libluajit-5.1-dev luajit libbpf-dev \
            libelf-dev zlib1g-dev libsqlite3-dev bpftool linux-perf bpftrace lua-lpeg \
            lua-busted lua-argparse lua-yaml lua-cjson lua-sql-sqlite3 lua-cosmo lua-posix \
            lua-check lua-expat util-linux procps strace libc6-dbg \
            nginx libnginx-mod-http-echo chromium wrk nftables \
            prometheus prometheus-node-exporter golang-go libssl-dev openssl \
            tmux htop
# Daemons (nginx, prometheus, node-exporter) are not started on install: the
# tests run their own copies, and a resident scraper would disturb the
# machine-judging tests. policy-rc.d is Debian's switch for that.
POLICY_RC := /usr/sbin/policy-rc.d
DEB_STAMP := build/.deps-ok
# npm packages for the browser tests, into the git-ignored build/node; Node.js
# itself comes from apt when the machine has none. No browser is downloaded:
# the tests drive Debian's /usr/bin/chromium.
NPM_PKGS   := playwright-core@1.61.1
NPM_STAMP  := build/node/.installed-$(subst @,-,$(subst $() ,+,$(NPM_PKGS)))

RUNTIME_SRC := $(sort $(wildcard runtime/*.c runtime/*/*.c))
RUNTIME_OBJ := $(patsubst runtime/%.c,build/runtime/%.o,$(RUNTIME_SRC))
BPF_SRC     := $(sort $(wildcard bpf/*.bpf.c))
BPF_OBJ     := $(patsubst bpf/%.bpf.c,build/bpf/%.bpf.o,$(BPF_SRC))
BPF_NAMES   := $(patsubst bpf/%.bpf.c,%,$(BPF_SRC))
WORKLOAD_SRC := $(sort $(wildcard tests/workloads/*.c))
WORKLOADS    := $(patsubst tests/workloads/%.c,build/workloads/%,$(WORKLOAD_SRC))
CTEST_SRC    := $(sort $(wildcard tests/c/test_*.c))
CTESTS       := $(patsubst tests/c/%.c,build/tests/%,$(CTEST_SRC))

all: bin/perf_manual workloads build/lj/.stamp

# ---- dependencies -------------------------------------------------------
deps: $(DEB_STAMP) $(NPM_STAMP)

$(DEB_STAMP):
	$(Q)missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "  DEPS     installing:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "make deps: run as root to install:$$missing" >&2; exit 2; fi; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  own_policy=; if [ ! -e $(POLICY_RC) ]; then printf '#!/bin/sh\nexit 101\n' > $(POLICY_RC) && chmod +x $(POLICY_RC) && own_policy=1; fi; \
	  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; rc=$$?; \
	  if [ -n "$$own_policy" ]; then rm -f $(POLICY_RC); fi; \
	  [ $$rc = 0 ] || exit 1; \
	fi
	$(Q)mkdir -p $(@D) && touch $@

$(NPM_STAMP): | $(DEB_STAMP)
	$(Q)if ! command -v node >/dev/null || ! command -v npm >/dev/null; then \
	  echo "  DEPS     installing: nodejs npm"; \
	  if [ "$$(id -u)" != 0 ]; then echo "make deps: run as root to install: nodejs npm" >&2; exit 2; fi; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null || exit 1; \
	fi
	$(call msg,NPM,$(NPM_PKGS))
	$(Q)rm -rf build/node && mkdir -p build/node
	$(Q)PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix build/node --prefer-offline --save-exact --no-audit --no-fund \
	  --no-update-notifier --loglevel=error $(NPM_PKGS) >/dev/null
	$(Q)touch $@

# ---- host ---------------------------------------------------------------
bin/perf_manual: $(RUNTIME_OBJ) build/runtime/modules.o build/runtime/bpf_objects.o
	$(call msg,LINK,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

build/runtime/%.o: runtime/%.c runtime/pm.h $(wildcard runtime/*.h runtime/*/*.h bpf/*.h) | build/bpf/.dir
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

# every `int luaopen_pm_<name>(lua_State *L)` in runtime/ becomes
# package.preload["perf_manual._c.<name>"]
build/runtime/modules.c: $(RUNTIME_SRC) Makefile
	$(call msg,GEN,$@)
	$(Q)mkdir -p $(@D)
	$(Q)names=$$(sed -n 's/^int luaopen_pm_\([a-z0-9_]*\)(lua_State \*L)$$/\1/p' $(RUNTIME_SRC) | sort -u); \
	{ echo '#include <lauxlib.h>'; echo '#include "pm.h"'; \
	  for n in $$names; do echo "int luaopen_pm_$$n(lua_State *L);"; done; \
	  echo 'void pm_modules_register(lua_State *L) {'; \
	  echo '  lua_getglobal(L, "package"); lua_getfield(L, -1, "preload");'; \
	  for n in $$names; do echo "  lua_pushcfunction(L, luaopen_pm_$$n); lua_setfield(L, -2, \"perf_manual._c.$$n\");"; done; \
	  echo '  lua_pop(L, 2);'; echo '}'; } > $@

build/runtime/modules.o: build/runtime/modules.c
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

# syscall number -> name table for pm.bpf (runtime/bpf.c), from the kernel's
# syscall headers
build/syscall_names.h: | build/bpf/.dir
	$(call msg,GEN,$@)
	$(Q){ echo 'static const struct { int nr; const char *name; } pm_syscall_names[] = {'; \
	  echo '#include <sys/syscall.h>' | $(CC) -E -dM -x c - | \
	    sed -n 's/^#define __NR_\([a-z0-9_]*\) \([0-9][0-9]*\)$$/  { \2, "\1" },/p' | sort -t, -k1.4n; \
	  echo '};'; } > $@

build/runtime/bpf.o: build/syscall_names.h

# ---- BPF: bpf/%.bpf.c -> build/bpf/%.bpf.o, embedded into the binary -------
build/bpf/.dir:
	$(Q)mkdir -p build/bpf && touch $@

build/vmlinux.h: | build/bpf/.dir
	$(call msg,BTF,$@)
	$(Q)test -r /sys/kernel/btf/vmlinux || { echo "build: /sys/kernel/btf/vmlinux is missing: this kernel has no BTF, BPF objects cannot be built" >&2; exit 2; }
	$(Q)$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@

build/bpf/%.bpf.o: bpf/%.bpf.c build/vmlinux.h $(wildcard bpf/*.h bpf/common/*.h)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) -g -O2 -target bpf -D__TARGET_ARCH_$(ARCH) -Ibuild -Ibpf -idirafter /usr/include/$(MULTIARCH) -c $< -o $@
	$(Q)llvm-strip -g $@ 2>/dev/null || true

# CO-RE needs the kernel's BTF, and libbpf parses all of it (megabytes, twice
# in memory) for every object it loads. The few types the objects use, cut out
# here, serve instead on the kernel they were cut from: runtime/bpf.c compares
# the fingerprint (/proc/version and the BTF's size) before using them.
build/bpf/min_core.id: FORCE | build/bpf/.dir
	$(Q){ cat /proc/version; stat -c %s /sys/kernel/btf/vmlinux 2>/dev/null; } > $@.tmp; \
	  if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi

build/bpf/min_core.btf: $(BPF_OBJ) build/bpf/min_core.id
	$(call msg,BTFGEN,$@)
	$(Q)$(BPFTOOL) gen min_core_btf /sys/kernel/btf/vmlinux $@ $(BPF_OBJ) >/dev/null 2>&1 || : > $@

FORCE:

build/runtime/bpf_objects.c: $(BPF_OBJ) Makefile | build/bpf/.dir
	$(call msg,GEN,$@)
	$(Q)mkdir -p $(@D)
	$(Q){ echo '#include <stddef.h>'; echo '#include "bpf_objects.h"'; \
	  for n in $(BPF_NAMES) min_core_btf min_core_id; do \
	    f="$(CURDIR)/build/bpf/$$n.bpf.o"; \
	    case $$n in min_core_btf) f="$(CURDIR)/build/bpf/min_core.btf";; min_core_id) f="$(CURDIR)/build/bpf/min_core.id";; esac; \
	    printf '__asm__(".section .rodata\\n.balign 8\\n.global pm_bpfobj_%s_start\\npm_bpfobj_%s_start:\\n.incbin \\"%s\\"\\n.global pm_bpfobj_%s_end\\npm_bpfobj_%s_end:\\n.previous");\n' $$n $$n "$$f" $$n $$n; \
	    echo "extern const char pm_bpfobj_$${n}_start[], pm_bpfobj_$${n}_end[];"; \
	  done; \
	  echo 'const struct pm_bpf_object pm_bpf_objects[] = {'; \
	  for n in $(BPF_NAMES); do echo "  { \"$$n\", pm_bpfobj_$${n}_start, pm_bpfobj_$${n}_end },"; done; \
	  echo '  { NULL, NULL, NULL } };'; \
	  echo 'const struct pm_bpf_object pm_min_core_btf = { "min_core_btf", pm_bpfobj_min_core_btf_start, pm_bpfobj_min_core_btf_end };'; \
	  echo 'const struct pm_bpf_object pm_min_core_id = { "min_core_id", pm_bpfobj_min_core_id_start, pm_bpfobj_min_core_id_end };'; \
	} > $@

build/runtime/bpf_objects.o: build/runtime/bpf_objects.c $(BPF_OBJ) build/bpf/min_core.btf build/bpf/min_core.id
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

# ---- Lua bytecode cache (runtime/main.c loads it in place of a source it
# is not older than): every module and playbook, and argparse
LUA_SRC := $(sort $(shell find lib playbooks -name '*.lua' 2>/dev/null))
SYS_LUA := $(wildcard /usr/share/lua/5.1/argparse.lua)
build/lj/.stamp: bin/perf_manual $(LUA_SRC) $(SYS_LUA)
	$(call msg,LUAC,build/lj)
	$(Q)bin/perf_manual --lua lib/perf_manual/bytecode.lua -- $(LUA_SRC) $(SYS_LUA)
	$(Q)touch $@

# ---- workloads and C tests ---------------------------------------------------
workloads: $(WORKLOADS)

# nofp_*: as distributions build, for the DWARF unwinder's tests
build/workloads/nofp_%: tests/workloads/nofp_%.c
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) -std=gnu11 -O2 -g -fomit-frame-pointer -Wall -Wextra -o $@ $< -lpthread -lm -ldl

# nofp_leak is leaky.c built as distributions build
build/workloads/nofp_leak: tests/workloads/leaky.c

# fp_tree is nofp_tree.c built with frame pointers (glibc below it has none)
build/workloads/fp_tree: tests/workloads/fp_tree.c tests/workloads/nofp_tree.c
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) -std=gnu11 -O2 -g -fno-omit-frame-pointer -Wall -Wextra -o $@ $< -lpthread -lm -ldl

build/workloads/%: tests/workloads/%.c
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) -std=gnu11 -O1 -g -fno-omit-frame-pointer -fno-inline -Wall -Wextra -o $@ $< -lpthread -lm

build/tests/%: tests/c/%.c $(filter-out build/runtime/main.o,$(RUNTIME_OBJ)) build/runtime/modules.o build/runtime/bpf_objects.o \
               $(wildcard tests/c/*.h runtime/*.h)
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.o,$^) $(LDLIBS)

# ---- tests ---------------------------------------------------------------
# test-c and test-lua append their counts to build/test-results; the last
# line is the summary CI reads.
test: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)rm -f build/test-results
	$(Q)$(MAKE) --no-print-directory -k test-c test-lua test-fuzz lint; rc=$$?; \
	  tests/summary.sh build/test-results; s=$$?; [ $$rc = 0 ] && exit $$s || exit $$rc

test-c: $(CTESTS)
	$(Q)tests/run_c_tests.sh $(CTESTS)

# libFuzzer targets (tests/fuzz/): the stored corpus plus a fixed number of
# mutated inputs each (FUZZ_RUNS=10 for ten times as many)
test-fuzz:
	$(Q)tests/fuzz/run_tests.sh

BUSTED_ARGS ?=
TEST_FILE ?= tests/spec tests/e2e
test-lua: bin/perf_manual workloads build/lj/.stamp
	$(Q)bin/perf_manual --lua tests/busted_runner.lua -- $(BUSTED_ARGS) $(TEST_FILE)

bench: bin/perf_manual workloads build/lj/.stamp
	$(Q)tests/bench/run.sh

# the benches, then their results recorded with this commit in the store's
# regression history (perf_manual regress; BENCHES="startup fold": only those)
.PHONY: bench-record
bench-record: bin/perf_manual workloads
	$(Q)mkdir -p build && { tests/bench/run.sh $(BENCHES); echo $$? > build/bench-status; } \
	  | tee build/bench-output.txt
	$(Q)bin/perf_manual regress record --from build/bench-output.txt --commit "$$(git rev-parse HEAD)" \
	  --version "$$(git describe --always --dirty)" && exit $$(cat build/bench-status)

lint:
	$(Q)luacheck -q lib playbooks tests/spec tests/e2e

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)tests/demo.sh

# ---- install ---------------------------------------------------------------
install: bin/perf_manual
	$(Q)install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/perf_manual
	$(Q)install -m 755 bin/perf_manual $(DESTDIR)$(PREFIX)/bin/perf_manual
	$(Q)cp -R lib playbooks templates $(DESTDIR)$(PREFIX)/share/perf_manual/
	$(Q)install -d $(DESTDIR)$(PREFIX)/share/perf_manual/docs && cp -R docs/prometheus $(DESTDIR)$(PREFIX)/share/perf_manual/docs/
	$(Q)echo "installed $(DESTDIR)$(PREFIX)/bin/perf_manual"

clean:
	$(Q)rm -rf build bin
