# warren: hand-written GNU make over what configure writes (config.mk).
# A fresh clone needs only `make`: missing packages are installed, then autoconf and configure run.

.DEFAULT_GOAL := all
SHELL := /bin/bash

-include config.mk

BUILD := build
WARREN_CXXFLAGS := -std=c++20 -Wall -Wextra -Werror -Isrc -I. -MMD -MP $(SANITIZE_FLAGS) $(COVERAGE_FLAGS)
CXXFLAGS ?= -O2 -g
ALL_LDFLAGS = $(LDFLAGS) $(SANITIZE_FLAGS) $(COVERAGE_FLAGS)

core_src := $(filter-out src/main.cc,$(wildcard src/*.cc src/*/*.cc))
OBJ := $(BUILD)/obj
core_obj := $(core_src:%.cc=$(OBJ)/%.o)
ctl_src := $(wildcard warrenctl/*.cc)
test_src := $(wildcard t/*_test.cc t/*/*_test.cc)
bench_src := $(wildcard bench/*_bench.cc)
fuzz_src := $(wildcard t/fuzz/*_fuzz.cc)
FUZZ_NAMES := $(patsubst t/fuzz/%_fuzz.cc,%,$(fuzz_src))

WARREND := $(BUILD)/warrend
WARRENCTL := $(BUILD)/warrenctl
UNIT_TESTS := $(BUILD)/unit_tests
MICRO_BENCH := $(BUILD)/micro_bench
# Fuzz targets linked with t/fuzz/replay_main.cc: the seed corpora as tests (t/checks/fuzz-corpora).
FUZZ_REPLAY := $(FUZZ_NAMES:%=$(BUILD)/fuzz/%_replay)
BENCH_TOOLS := $(patsubst bench/%.cc,$(BUILD)/%,$(wildcard bench/*_tool.cc))
MAN_KEYS := $(BUILD)/man_keys

# --- configuration: installs packages and runs configure when config.mk is missing or stale ---
# `make` needs only the --build packages; a first `make check` or `make bench` installs the
# test packages (GoogleTest, Google Benchmark, ...) before configure, which then finds them.
DEPS_SET := $(if $(filter check check-sanitizers check-cluster bench bench-cluster,$(MAKECMDGOALS)),--test,--build)
configure: configure.ac
	scripts/install-deps $(DEPS_SET)
	autoconf

# config.status writes buildinfo.h (the version, from AC_INIT) along with config.mk.
config.mk: config.mk.in buildinfo.h.in configure
	@if [ -x config.status ]; then ./config.status --recheck && ./config.status; \
	 else ./configure; fi

# GoogleTest and Google Benchmark are optional at configure: `make` builds warrend and warrenctl
# without them. What needs one depends on need-GTEST or need-BENCHMARK, which stops the build
# with configure's line naming the package to install (X_MISSING, empty when it was found).
.PHONY: need-GTEST need-BENCHMARK
need-GTEST need-BENCHMARK: need-%:
	@$(if $($*_MISSING),echo "$($*_MISSING)" >&2; exit 1,true)

# make check and make bench: install what they need (scripts/install-deps --test says which
# packages are missing when it cannot), and run configure again when it ran before GoogleTest
# or Google Benchmark were there. The targets that follow are built by a new make, which reads
# the new config.mk.
.PHONY: test-deps
test-deps: config.mk
	scripts/install-deps --test
	@if [ -n "$(GTEST_MISSING)$(BENCHMARK_MISSING)" ]; then \
	  ./config.status --recheck && ./config.status; fi

# --- build ---
.PHONY: all
all: $(WARREND) $(WARRENCTL)

$(OBJ)/%.o: %.cc config.mk
	@mkdir -p $(@D)
	$(CXX) $(WARREN_CXXFLAGS) $(CXXFLAGS) $(DEP_CFLAGS) -c -o $@ $<

$(OBJ)/t/%.o: WARREN_CXXFLAGS += $(GTEST_CFLAGS)
$(OBJ)/bench/%.o: WARREN_CXXFLAGS += $(BENCHMARK_CFLAGS)
$(test_src:%.cc=$(OBJ)/%.o): | need-GTEST
$(bench_src:%.cc=$(OBJ)/%.o): | need-BENCHMARK

$(BUILD)/libwarren.a: $(core_obj)
	@rm -f $@
	ar rcs $@ $^

$(WARREND): $(OBJ)/src/main.o $(BUILD)/libwarren.a
	$(CXX) $(ALL_LDFLAGS) -o $@ $^ $(DEP_LIBS)

$(WARRENCTL): $(ctl_src:%.cc=$(OBJ)/%.o) $(BUILD)/libwarren.a
	$(CXX) $(ALL_LDFLAGS) -o $@ $^ $(DEP_LIBS)

$(UNIT_TESTS): $(test_src:%.cc=$(OBJ)/%.o) $(BUILD)/libwarren.a
	$(CXX) $(ALL_LDFLAGS) -o $@ $^ $(DEP_LIBS) $(GTEST_LIBS) -lpthread

$(MICRO_BENCH): $(bench_src:%.cc=$(OBJ)/%.o) $(BUILD)/libwarren.a
	$(CXX) $(ALL_LDFLAGS) -o $@ $^ $(DEP_LIBS) $(BENCHMARK_LIBS) -lbenchmark_main -lpthread

$(BUILD)/%_tool: $(OBJ)/bench/%_tool.o $(BUILD)/libwarren.a
	$(CXX) $(ALL_LDFLAGS) -o $@ $^ $(DEP_LIBS)

$(MAN_KEYS): $(OBJ)/man/man_keys.o $(BUILD)/libwarren.a
	$(CXX) $(ALL_LDFLAGS) -o $@ $^ $(DEP_LIBS)

# man/warren.yml.5 is committed; `make man` refreshes its key entries from the key table
# (t/checks/man-keys fails while it is stale). Not a dependency of all or install: a tarball
# installs the committed page without building the generator.
.PHONY: man
man: $(MAN_KEYS)
	$(MAN_KEYS) man/warren.yml.5.in > man/warren.yml.5.tmp
	mv man/warren.yml.5.tmp man/warren.yml.5

$(BUILD)/fuzz/%_replay: $(OBJ)/t/fuzz/%_fuzz.o $(OBJ)/t/fuzz/replay_main.o $(BUILD)/libwarren.a
	@mkdir -p $(@D)
	$(CXX) $(ALL_LDFLAGS) -o $@ $^ $(DEP_LIBS)

# The libFuzzer binaries (`make fuzz` builds these with clang into $(FUZZ_BUILD)).
$(BUILD)/fuzz/%_fuzz: $(OBJ)/t/fuzz/%_fuzz.o $(BUILD)/libwarren.a
	@mkdir -p $(@D)
	$(CXX) $(ALL_LDFLAGS) -fsanitize=fuzzer -o $@ $^ $(DEP_LIBS)

# Kept: otherwise make deletes them as intermediates and relinks every time.
.SECONDARY: $(FUZZ_NAMES:%=$(OBJ)/t/fuzz/%_fuzz.o) $(OBJ)/t/fuzz/replay_main.o
.PHONY: fuzz-replay fuzz-binaries
fuzz-replay: $(FUZZ_REPLAY)
fuzz-binaries: $(FUZZ_NAMES:%=$(BUILD)/fuzz/%_fuzz)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# --- the two commands ---
RUN_DIR ?= /tmp/warren-run
# make run NODES=3: a 3-node cluster on 5672-5674, warrend connected to every node.
NODES ?= 1
.PHONY: run check
run: all
	scripts/install-deps --run
	NODES=$(NODES) scripts/run-dev $(RUN_DIR)

check: test-deps
	$(MAKE) all $(UNIT_TESTS) $(MAN_KEYS) $(FUZZ_REPLAY)
	t/run-tests

# warren on a 3-node RabbitMQ cluster: node failures and restarts under traffic (t/cluster/).
.PHONY: check-cluster
check-cluster: test-deps
	$(MAKE) all
	t/run-tests --cluster

# The same tests on a build with AddressSanitizer + UndefinedBehaviorSanitizer (leak checks on)
# in its own directory. Every report lands in $(ASAN_BUILD)/sanitizer-logs; t/run-tests fails the
# run when that directory holds any (a forked worker's report would otherwise go unseen).
ASAN_BUILD := build-asan
# -O1: ASan's advice for useful stacks at a bearable speed. GCC 12 reports false
# maybe-uninitialized warnings inside <regex>/<functional> under -fsanitize=address.
ASAN_CXXFLAGS := -O1 -g -Wno-maybe-uninitialized
ASAN_LOGS = $(abspath $(ASAN_BUILD))/sanitizer-logs
.PHONY: check-sanitizers
check-sanitizers: test-deps
	$(MAKE) BUILD=$(ASAN_BUILD) SANITIZE_FLAGS="$(ASAN_FLAGS)" CXXFLAGS="$(ASAN_CXXFLAGS)" \
	  all $(ASAN_BUILD)/unit_tests fuzz-replay
	rm -rf $(ASAN_LOGS) && mkdir -p $(ASAN_LOGS)
	WARREN_BUILD=$(abspath $(ASAN_BUILD)) WARREN_SANITIZER_LOGS=$(ASAN_LOGS) \
	  ASAN_OPTIONS=detect_leaks=1:log_path=$(ASAN_LOGS)/asan \
	  LSAN_OPTIONS=suppressions=$(abspath t/lsan.supp) \
	  UBSAN_OPTIONS=print_stacktrace=1:log_path=$(ASAN_LOGS)/ubsan \
	  t/run-tests

# libFuzzer (clang) on every t/fuzz target for FUZZ_SECONDS each, seeded from t/fuzz/<target>/;
# new inputs go to $(FUZZ_BUILD)/corpus, crashes to $(FUZZ_BUILD)/artifacts (scripts/fuzz).
FUZZ_BUILD := build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_FLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined \
  -fno-omit-frame-pointer
.PHONY: fuzz
fuzz: config.mk
	scripts/install-deps --fuzz
	$(MAKE) BUILD=$(FUZZ_BUILD) CXX=clang++ SANITIZE_FLAGS="$(FUZZ_FLAGS)" \
	  CXXFLAGS="-O1 -g -Wno-unknown-warning-option -Wno-unused-private-field" \
	  fuzz-binaries
	scripts/fuzz $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_NAMES)

# Publishing (bench/run), then forwarding (bench/forward_run): each starts and stops its own
# broker, warrend and peers; bench/README.md says what each figure means.
.PHONY: bench
bench: test-deps
	$(MAKE) all $(MICRO_BENCH) $(BENCH_TOOLS)
	bench/run
	bench/forward_run

# A quorum queue on a 3-node cluster against a classic queue on one node (about 90 s; apart
# from make bench, which stays near 5 minutes).
.PHONY: bench-cluster
bench-cluster: test-deps
	$(MAKE) all
	bench/cluster_run

# --- install ---
# Binaries and man pages; the sample config (kept if one is there); the service files: the init
# script, its defaults file (kept if there), the systemd unit, the logrotate file; the nginx
# front-end as an example only (an nginx conf.d file would go live at nginx's next reload).
# The service files name /usr/sbin/warrend, /etc/warren/warren.yml and /etc/default/warrend:
# installing rewrites them to this prefix. A Debian layout is
#   ./configure --prefix=/usr --sysconfdir=/etc && make && make install
systemdunitdir ?= $(prefix)/lib/systemd/system
examplesdir = $(docdir)/examples
REWRITE_PATHS = sed -e 's|/usr/sbin/warrend|$(sbindir)/warrend|g' \
	-e 's|/etc/warren/warren.yml|$(sysconfdir)/warren/warren.yml|g' \
	-e 's|/etc/default/warrend|$(sysconfdir)/default/warrend|g'
MAN_PAGES := $(wildcard man/*.[0-9])

.PHONY: install uninstall
install: all
	install -d $(DESTDIR)$(sbindir) $(DESTDIR)$(bindir) $(DESTDIR)$(sysconfdir)/warren \
	  $(DESTDIR)$(sysconfdir)/init.d $(DESTDIR)$(sysconfdir)/default \
	  $(DESTDIR)$(sysconfdir)/logrotate.d $(DESTDIR)$(systemdunitdir) $(DESTDIR)$(examplesdir)
	install -m 755 $(WARREND) $(DESTDIR)$(sbindir)/warrend
	install -m 755 $(WARRENCTL) $(DESTDIR)$(bindir)/warrenctl
	for page in $(MAN_PAGES); do \
	  sect=$${page##*.}; install -d $(DESTDIR)$(mandir)/man$$sect; \
	  install -m 644 $$page $(DESTDIR)$(mandir)/man$$sect/; done
	test -e $(DESTDIR)$(sysconfdir)/warren/warren.yml || \
	  install -m 644 etc/warren.yml $(DESTDIR)$(sysconfdir)/warren/warren.yml
	test -e $(DESTDIR)$(sysconfdir)/default/warrend || \
	  { $(REWRITE_PATHS) etc/default/warrend > $(DESTDIR)$(sysconfdir)/default/warrend && \
	    chmod 644 $(DESTDIR)$(sysconfdir)/default/warrend; }
	$(REWRITE_PATHS) etc/init.d/warrend > $(DESTDIR)$(sysconfdir)/init.d/warrend
	chmod 755 $(DESTDIR)$(sysconfdir)/init.d/warrend
	$(REWRITE_PATHS) etc/warrend.service > $(DESTDIR)$(systemdunitdir)/warrend.service
	chmod 644 $(DESTDIR)$(systemdunitdir)/warrend.service
	install -m 644 etc/logrotate.d/warrend $(DESTDIR)$(sysconfdir)/logrotate.d/warrend
	install -m 644 etc/nginx-warren.conf etc/warren.yml $(DESTDIR)$(examplesdir)/

# Config files go only when unchanged from what install wrote.
uninstall:
	rm -f $(DESTDIR)$(sbindir)/warrend $(DESTDIR)$(bindir)/warrenctl
	for page in $(MAN_PAGES); do \
	  rm -f $(DESTDIR)$(mandir)/man$${page##*.}/$${page##*/}; done
	! cmp -s etc/warren.yml $(DESTDIR)$(sysconfdir)/warren/warren.yml || \
	  rm -f $(DESTDIR)$(sysconfdir)/warren/warren.yml
	! $(REWRITE_PATHS) etc/default/warrend | cmp -s - $(DESTDIR)$(sysconfdir)/default/warrend || \
	  rm -f $(DESTDIR)$(sysconfdir)/default/warrend
	rm -f $(DESTDIR)$(sysconfdir)/init.d/warrend $(DESTDIR)$(systemdunitdir)/warrend.service
	rm -f $(DESTDIR)$(sysconfdir)/logrotate.d/warrend
	rm -f $(DESTDIR)$(examplesdir)/nginx-warren.conf $(DESTDIR)$(examplesdir)/warren.yml
	rmdir $(DESTDIR)$(examplesdir) $(DESTDIR)$(docdir) $(DESTDIR)$(sysconfdir)/warren 2>/dev/null || true

# --- distribution ---
DIST_NAME := warren-$(PACKAGE_VERSION)
.PHONY: dist distcheck
dist:
	rm -rf $(BUILD)/$(DIST_NAME) && mkdir -p $(BUILD)
	git archive --prefix=$(DIST_NAME)/ -o $(BUILD)/$(DIST_NAME).tar HEAD
	tar -C $(BUILD) -xf $(BUILD)/$(DIST_NAME).tar && rm $(BUILD)/$(DIST_NAME).tar
	cd $(BUILD)/$(DIST_NAME) && autoconf && rm -rf autom4te.cache
	tar -C $(BUILD) -czf $(DIST_NAME).tar.gz $(DIST_NAME) && rm -rf $(BUILD)/$(DIST_NAME)
	@echo "wrote $(DIST_NAME).tar.gz"

distcheck: dist
	rm -rf $(BUILD)/distcheck && mkdir -p $(BUILD)/distcheck
	tar -C $(BUILD)/distcheck -xzf $(DIST_NAME).tar.gz
	cd $(BUILD)/distcheck/$(DIST_NAME) && ./configure -q --prefix=$(abspath $(BUILD)/distcheck/inst) \
	  && $(MAKE) all && $(MAKE) install && $(MAKE) uninstall
	test -z "$$(find $(BUILD)/distcheck/inst -type f)"
	rm -rf $(BUILD)/distcheck
	@echo "$(DIST_NAME).tar.gz is ready for distribution"

.PHONY: clean distclean
clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)

distclean: clean
	rm -rf config.mk buildinfo.h config.status config.log configure autom4te.cache
