# tpops: build, run, check, fuzz, bench, install.
# `make run` and `make check` first install missing Debian packages
# (scripts/deps.sh), so both work on a fresh machine.

PREFIX ?= /usr/local
SBINDIR ?= $(PREFIX)/sbin
SYSCONFDIR ?= /etc/tpops
DATADIR ?= $(PREFIX)/share/tpops
MANDIR ?= $(PREFIX)/share/man
DESTDIR ?=
VERSION := 0.9.0

CC ?= cc
PKGS := libevent libevent_pthreads libevent_openssl sqlite3 openssl libcrypt libargon2 libmariadb
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wformat=2 -Wvla
CFLAGS ?= -O2 -g
ALL_CFLAGS = -std=gnu17 $(WARN) $(CFLAGS) $(PKG_CFLAGS) -D_GNU_SOURCE \
	-DTPOPS_VERSION='"$(VERSION)"' -DSYSCONFDIR='"$(SYSCONFDIR)"' -Isrc -Ibuild-gen -pthread
LDLIBS_ALL = $(PKG_LIBS) -pthread

# BUILD selects the flavour: build (optimised), build-asan (tests) or
# build-tsan (ThreadSanitizer: make tsan).
BUILD ?= build
ifeq ($(BUILD),build-asan)
CFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif
ifeq ($(BUILD),build-tsan)
CFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=thread
LDFLAGS += -fsanitize=thread
endif

LIB_SRC := $(filter-out src/main.c,$(wildcard src/*.c))
LIB_OBJ := $(LIB_SRC:src/%.c=$(BUILD)/obj/%.o)
TOOL_COMMON_OBJ := $(BUILD)/obj/tools/tool_common.o
TOOL_SRC := $(wildcard tools/tpops-*.c)
TOOLS := $(TOOL_SRC:tools/%.c=$(BUILD)/%)
PROGRAMS := $(BUILD)/tpops $(TOOLS)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all deps run check check-galera check-ktls unit integration tsan fuzz fuzz-check bench install uninstall clean format
all: $(PROGRAMS)

deps:
	@scripts/deps.sh build

GEN := build-gen/schema_sqlite.h build-gen/schema_mysql.h
build-gen/schema_sqlite.h: sql/sqlite.sql scripts/embed.sh
	@mkdir -p build-gen
	scripts/embed.sh $< schema_sqlite_sql > $@
build-gen/schema_mysql.h: sql/mysql.sql scripts/embed.sh
	@mkdir -p build-gen
	scripts/embed.sh $< schema_mysql_sql > $@

$(BUILD)/obj/%.o: src/%.c $(wildcard src/*.h) $(GEN) | $(BUILD)/obj
	$(CC) $(ALL_CFLAGS) -c -o $@ $<
$(BUILD)/obj/tools/%.o: tools/%.c $(wildcard src/*.h tools/*.h) | $(BUILD)/obj/tools
	$(CC) $(ALL_CFLAGS) -Itools -c -o $@ $<
$(BUILD)/libtpops.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $^
$(BUILD)/tpops: $(BUILD)/obj/main.o $(BUILD)/libtpops.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS_ALL)
$(BUILD)/tpops-%: $(BUILD)/obj/tools/tpops-%.o $(TOOL_COMMON_OBJ) $(BUILD)/libtpops.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS_ALL)
# tpops-import is made of several files (tools/import_*.c)
IMPORT_OBJ := $(patsubst tools/%.c,$(BUILD)/obj/tools/%.o,$(wildcard tools/import_*.c))
$(BUILD)/tpops-import: $(BUILD)/obj/tools/tpops-import.o $(IMPORT_OBJ) $(TOOL_COMMON_OBJ) $(BUILD)/libtpops.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS_ALL)
$(BUILD)/tests/test_%: tests/unit/test_%.c $(BUILD)/libtpops.a | $(BUILD)/tests
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libtpops.a $(LDLIBS_ALL) $(shell pkg-config --libs cmocka 2>/dev/null)
$(BUILD)/obj $(BUILD)/obj/tools $(BUILD)/tests:
	mkdir -p $@

# Builds and starts the daemon on the embedded default (SQLite) in ./run.
run: deps
	$(MAKE) all
	scripts/dev-run.sh $(BUILD)

# Every test, against the ASan+UBSan build: unit tests, then the daemon and
# tools with real clients (pytest), then each fuzzer for a short time.
check:
	@scripts/deps.sh test
	$(MAKE) BUILD=build-asan all unit-bins
	$(MAKE) BUILD=build-asan unit
	$(MAKE) BUILD=build-asan integration
	$(MAKE) fuzz-check

unit-bins: $(UNIT_BIN)
unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

PYTEST ?= /usr/bin/python3 -m pytest
# TESTS: which tests (default all of them), e.g.
#   make BUILD=build-asan integration TESTS=tests/integration/test_tls.py PYTEST_ARGS=-x
TESTS ?= tests/integration
integration:
	TPOPS_BUILD=$(abspath $(BUILD)) $(PYTEST) -q -ra $(TESTS) $(PYTEST_ARGS)

# The daemon and tools under ThreadSanitizer, with the integration tests
# that drive its threads hardest: sessions and their ends on every store,
# TLS, SASL, limits, hostile files and the fault test (shortened). A data
# race report ends the daemon (halt_on_error) and fails the test.
# TSAN_TESTS picks other tests; .ci/run calls it under timeout.
TSAN_TESTS ?= tests/integration/test_lifetime.py tests/integration/test_sessions.py \
	tests/integration/test_tls.py tests/integration/test_sasl.py \
	tests/integration/test_limits.py tests/integration/test_hostile_files.py \
	tests/integration/test_faults.py tests/integration/test_lmtp.py
tsan:
	@scripts/deps.sh test
	$(MAKE) BUILD=build-tsan all
	TPOPS_BUILD=$(abspath build-tsan) TPOPS_SANITIZER=thread FAULT_SESSIONS=300 FAULT_FREE_WITHIN=5 \
		$(PYTEST) -q -ra $(TSAN_TESTS) $(PYTEST_ARGS)

# tpops on a real 3-node MariaDB Galera cluster on loopback (tests/galera):
# failover, conflicts, the ledger. A few minutes; not part of `make check`
# (CI runs it on its own, under a time limit).
check-galera:
	@scripts/deps.sh test
	$(MAKE) BUILD=build-asan all
	TPOPS_BUILD=$(abspath build-asan) $(PYTEST) -q -ra -s --durations=0 tests/galera $(PYTEST_ARGS)

# tpops with kernel TLS, in a QEMU VM with Debian's kernel (tests/ktls/run.sh)
check-ktls:
	@scripts/deps.sh ktls
	$(MAKE) BUILD=build-asan all
	tests/ktls/run.sh build-asan

# libFuzzer targets (clang). FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 20
FUZZ_SRC := $(wildcard fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=build-fuzz/%)
# The library is compiled once with the fuzzer's instrumentation
# (fuzzer-no-link: no main of libFuzzer's in it) and linked into each target.
FUZZ_CFLAGS = -std=gnu17 -g -O1 -D_GNU_SOURCE -DTPOPS_VERSION='"$(VERSION)"' \
	-DSYSCONFDIR='"$(SYSCONFDIR)"' -Isrc -Ibuild-gen $(PKG_CFLAGS)
FUZZ_LIB_OBJ := $(LIB_SRC:src/%.c=build-fuzz/obj/%.o)
build-fuzz/obj/%.o: src/%.c $(wildcard src/*.h) $(GEN)
	@mkdir -p build-fuzz/obj
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined -c -o $@ $<
build-fuzz/libtpops.a: $(FUZZ_LIB_OBJ)
	rm -f $@ && ar rcs $@ $^
build-fuzz/%: fuzz/%.c build-fuzz/libtpops.a
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $< build-fuzz/libtpops.a $(LDLIBS_ALL)
fuzz-bins: $(FUZZ_BIN)
fuzz: fuzz-bins
	scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_BIN)
fuzz-check: fuzz-bins
	scripts/fuzz.sh 10 $(FUZZ_BIN)

bench: deps
	$(MAKE) all
	bench/run.sh

format:
	clang-format -i src/*.[ch] tools/*.[ch] tests/unit/*.c fuzz/*.c

# Installation. SYSCONFDIR is also compiled into the programs as the
# directory of their default tpops.conf: build with the same value.
# The configuration is installed only when absent (mode 640, group tpops
# when that group exists); uninstall leaves it.
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
MAN5 := $(wildcard man/*.5)
MAN8 := $(wildcard man/*.8)
# the installed paths, in the man pages and the systemd unit
INSTALL_SED = sed -e 's|/etc/tpops|$(SYSCONFDIR)|g' -e 's|/usr/share/tpops|$(DATADIR)|g' \
	-e 's|/usr/sbin/|$(SBINDIR)/|g' -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g'
.PHONY: check-man deb
install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(SYSCONFDIR) $(DESTDIR)$(DATADIR)/sql \
		$(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(SYSTEMDUNITDIR)
	install -m 755 $(PROGRAMS) $(DESTDIR)$(SBINDIR)/
	install -m 644 sql/*.sql $(DESTDIR)$(DATADIR)/sql/
	install -m 644 docs/tpops.conf.example $(DESTDIR)$(DATADIR)/tpops.conf.example
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/tpops.conf ]; then \
		echo "keeping the existing $(DESTDIR)$(SYSCONFDIR)/tpops.conf"; \
	else \
		echo "install -m 640 docs/tpops.conf.example $(DESTDIR)$(SYSCONFDIR)/tpops.conf"; \
		install -m 640 docs/tpops.conf.example $(DESTDIR)$(SYSCONFDIR)/tpops.conf; \
		if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && getent group tpops >/dev/null; then \
			chgrp tpops $(SYSCONFDIR)/tpops.conf; \
		fi; \
	fi
	for f in $(MAN5); do $(INSTALL_SED) $$f > $(DESTDIR)$(MANDIR)/man5/$$(basename $$f) && \
		chmod 644 $(DESTDIR)$(MANDIR)/man5/$$(basename $$f) || exit 1; done
	for f in $(MAN8); do $(INSTALL_SED) $$f > $(DESTDIR)$(MANDIR)/man8/$$(basename $$f) && \
		chmod 644 $(DESTDIR)$(MANDIR)/man8/$$(basename $$f) || exit 1; done
	$(INSTALL_SED) systemd/tpops.service.in > $(DESTDIR)$(SYSTEMDUNITDIR)/tpops.service
	chmod 644 $(DESTDIR)$(SYSTEMDUNITDIR)/tpops.service
	install -m 644 systemd/tpops.socket $(DESTDIR)$(SYSTEMDUNITDIR)/tpops.socket
uninstall:
	rm -f $(addprefix $(DESTDIR)$(SBINDIR)/,$(notdir $(PROGRAMS)))
	rm -rf $(DESTDIR)$(DATADIR)
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man5/,$(notdir $(MAN5)))
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man8/,$(notdir $(MAN8)))
	rm -f $(DESTDIR)$(SYSTEMDUNITDIR)/tpops.service $(DESTDIR)$(SYSTEMDUNITDIR)/tpops.socket
	@echo "kept $(DESTDIR)$(SYSCONFDIR)/tpops.conf"

# The manual pages, with every groff and man-db warning as an error.
check-man:
	scripts/check-man.sh

# The Debian package, built from a copy of the tree in build-deb/ (which
# also receives the .deb): dpkg-buildpackage -us -uc -b.
deb:
	@scripts/deps.sh deb
	scripts/build-deb.sh build-deb

clean:
	rm -rf build build-asan build-tsan build-fuzz build-gen
