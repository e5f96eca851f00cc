# tally - build, run and test.
#
#   make                 build ./build/tallyd and ./build/tallyctl
#   make run             install what is missing, build, start tallyd on the embedded default
#   make test            install, start MariaDB + Redis, run every suite on both stores
#                        (plain and under ASan+UBSan), stop the servers
#   make services-up     start MariaDB (13306, TLS), Redis (16379, password) and Kafka
#                        (19092, SASL on 19094) under .services/
#   make services-down   stop them
#   make cluster-up      start a Redis Cluster (6 nodes, TLS), Kafka (3 brokers) and MariaDB
#                        Galera (3 nodes) behind HAProxy under .cluster/, print their URLs
#                        (scripts/cluster.sh; ports from TALLY_CLUSTER_PORT_BASE, 17000)
#   make cluster-down    stop them
#   make test-cluster    the API and cache suites on those clusters, then the failover drills
#                        (a node of each kind killed under load; docs/scaling.md)
#   make dist            dist/: the source tarball of HEAD, a Debian package built from it,
#                        SHA256SUMS (scripts/dist.sh; docs/operations.md)
#   make SANITIZE=1      build into ./build-asan with AddressSanitizer + UBSan
#   make SANITIZE=thread build into ./build-tsan with ThreadSanitizer (see docs/architecture.md)
#   make soak            SOAK_MINUTES (10) of traffic and churn on servers of its own, then
#                        every count checked (docs/soak.md)
#   make bench           benchmarks against a bare server, --batch 1 and a Go peer built
#                        on the webook course's design (QUICK=1: a few minutes)
#   make fuzz            libFuzzer on the API, the HTTP layer, the gRPC methods, the Kafka
#                        message parser and the URL parser (FUZZ_SECONDS each)
#   make contract        Schemathesis against docs/openapi.yaml on a live tallyd (BUILD's)
#   make image           the OCI image tally:VERSION of BUILD's tallyd and tallyctl, with podman,
#                        on a base made from Debian 12's packages (scripts/image.sh)

CC ?= cc
ifeq ($(origin CC),default)
CC = cc
endif

ifeq ($(SANITIZE),thread)
BUILD ?= build-tsan
OPT = -O1 -g -fsanitize=thread -fno-omit-frame-pointer
else ifdef SANITIZE
BUILD ?= build-asan
OPT = -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD ?= build
OPT = -O2 -g
endif

# One version for the binaries, /metrics and docs/openapi.yaml (a test checks they agree).
VERSION := $(shell cat VERSION)
COMMIT := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
CFLAGS += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
          -Wno-missing-field-initializers -Isrc -I/usr/include/mariadb -Ithird_party/libvalkey/include -I$(BUILD)/gen $(OPT)
LDFLAGS += $(OPT)
LIBS = -levent -levent_pthreads -levent_openssl -lhttp_parser -ljwt -lssl -lcrypto -ljansson -lsqlite3 -lmariadb -lrdkafka -lnghttp2 -lprotobuf-c -lpthread

# libvalkey (Redis and Valkey, standalone and cluster, with TLS), vendored unedited under
# third_party/libvalkey (release and source: third_party/VENDORED.md). Its sources are built
# here, as its own Makefile builds them (C99, its include folder), into every build of
# tallyd, sanitized ones included; rdma.c needs an RDMA stack and is left out.
VALKEY_DIR = third_party/libvalkey
VALKEY_SRC = $(filter-out $(VALKEY_DIR)/src/rdma.c,$(wildcard $(VALKEY_DIR)/src/*.c))
VALKEY_OBJ = $(VALKEY_SRC:%.c=$(BUILD)/%.o)
$(BUILD)/$(VALKEY_DIR)/%.o: $(VALKEY_DIR)/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -pedantic -I$(VALKEY_DIR)/include/valkey -I$(VALKEY_DIR)/src $(OPT) \
	  -fvisibility=hidden -MMD -MP -c $< -o $@

# The gRPC contracts (api/): protoc-c (Debian's protobuf-c-compiler) makes their C messages
# into $(BUILD)/gen at build time, as xxd makes the page below; nothing generated is committed.
PROTOS = api/intr/v1/intr.proto api/grpc/health/v1/health.proto
PROTO_C = $(PROTOS:api/%.proto=$(BUILD)/gen/%.pb-c.c)
$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: api/%.proto
	@mkdir -p $(BUILD)/gen
	protoc-c --c_out=$(BUILD)/gen -Iapi $<
$(BUILD)/gen/%.pb-c.o: $(BUILD)/gen/%.pb-c.c
	$(CC) $(CFLAGS) -Wno-unused-parameter -c $< -o $@

SRC = $(wildcard src/util/*.c src/model/*.c src/store/*.c src/cache/*.c src/bus/*.c \
                 src/service/*.c src/http/*.c src/grpc/*.c) src/config.c
OBJ = $(SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/ui_assets.o $(PROTO_C:.c=.o) $(VALKEY_OBJ)
# Sources that include generated headers wait for them.
$(SRC:%.c=$(BUILD)/%.o): | $(PROTO_C)
UNIT_SRC = $(wildcard tests/unit/test_*.c)
UNIT_BIN = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all deps run test unit e2e contract clean bench fuzz services-up services-down cluster-up \
        cluster-down test-cluster FORCE
# The benchmarks' two hello servers too: they link tallyd's HTTP layer, and a layer that
# grew a file must not break `make bench` unseen.
all: $(BUILD)/tallyd $(BUILD)/tallyctl $(BUILD)/tally-produce $(BUILD)/bench/hello \
  $(BUILD)/bench/hello_tally

# The bare "hello" server with tallyd's HTTP library and threads: the benchmarks' ceiling.
$(BUILD)/bench/hello: bench/hello.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS) -levent -levent_pthreads -lpthread

# tallyd's own HTTP layer serving a fixed body: what the layer costs next to bare evhttp.
HELLO_OBJ = $(filter $(BUILD)/src/util/%.o $(BUILD)/src/model/%.o,$(OBJ)) \
            $(filter-out $(BUILD)/src/http/api.o,$(filter $(BUILD)/src/http/%.o,$(OBJ)))
$(BUILD)/bench/hello_tally: bench/hello_tally.c $(HELLO_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) -levent -levent_pthreads -levent_openssl -lhttp_parser \
	  -ljwt -lssl -lcrypto -ljansson -lpthread

# The benchmarks' peer: the webook course's design in Go (see bench/course/main.go). Its
# modules and build cache live under .cache/go; go.sum is committed and never updated here.
GO_ENV = GOFLAGS="-mod=readonly -buildvcs=false" GOTOOLCHAIN=local \
         GOPATH=$(CURDIR)/.cache/go GOMODCACHE=$(CURDIR)/.cache/go/mod GOCACHE=$(CURDIR)/.cache/go/build
$(BUILD)/bench/course: $(wildcard bench/course/*.go bench/course/*.lua) bench/course/go.mod \
                       bench/course/go.sum
	@mkdir -p $(dir $@)
	cd bench/course && $(GO_ENV) go build -trimpath -o $(CURDIR)/$@ .

# The gRPC rows' load generator, through the client protoc-gen-go-grpc makes (bench/grpcload:
# its generate.sh writes intrv1/, not committed), and gRPC's C core serving a fixed answer, the
# library tallyd did not choose (built by `make bench` only where libgrpc-dev is installed).
$(BUILD)/bench/grpcload: bench/grpcload/main.go bench/grpcload/go.mod bench/grpcload/go.sum \
                         bench/grpcload/generate.sh api/intr/v1/intr.proto
	@mkdir -p $(dir $@)
	bench/grpcload/generate.sh
	cd bench/grpcload && $(GO_ENV) go build -trimpath -o $(CURDIR)/$@ .
$(BUILD)/bench/grpc_core_hello: bench/grpc_core_hello.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS) $$(pkg-config --cflags --libs grpc) -lpthread

# A plain librdkafka producer for the tests and benchmarks (not part of tallyd). It links
# src/util/tsan_threads.c, empty except under TSan, where librdkafka's threads need it.
$(BUILD)/tally-produce: tools/produce.c $(BUILD)/src/util/tsan_threads.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Wno-shadow -o $@ $^ $(LDFLAGS) -lrdkafka -lm

# The one object that knows the version and the commit; rebuilt every time.
$(BUILD)/src/util/version.o: src/util/version.c FORCE
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DTALLY_VERSION='"$(VERSION)"' -DTALLY_COMMIT='"$(COMMIT)"' -c $< -o $@
FORCE:

# The operator's page (GET /ui), embedded: ui/index.html becomes a C array in a generated
# file, so a tallyd binary needs nothing beside it at run time and nothing generated is
# committed. xxd (Debian's `xxd`, scripts/deps.sh build) is the one build-time tool; its -i
# output, named after the path given (ui_index_html, ui_index_html_len), is made const here
# to match src/http/ui_assets.h. A pattern rule: `make fuzz` makes build-fuzz/gen/ui_assets.c.
UI_FILES = ui/index.html
%/gen/ui_assets.c: $(UI_FILES) src/http/ui_assets.h
	@mkdir -p $(dir $@)
	{ echo '#include "http/ui_assets.h"'; for f in $(UI_FILES); do xxd -i $$f; done; } | \
	  sed 's/^unsigned /const unsigned /' > $@.tmp && mv $@.tmp $@

$(BUILD)/gen/ui_assets.o: $(BUILD)/gen/ui_assets.c
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/tallyd: $(OBJ) $(BUILD)/src/main.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

CTL_SRC = $(wildcard src/ctl/*.c)
$(BUILD)/tallyctl: $(CTL_SRC:%.c=$(BUILD)/%.o) $(OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# A test that includes a source file (to reach its statics) is linked without its object.
$(BUILD)/tests/%: tests/unit/%.c $(OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit -o $@ $< \
	  $(filter-out $(patsubst %.c,$(BUILD)/src/%.o,$(shell sed -n 's/^#include "\(.*\.c\)"/\1/p' $<)),$(OBJ)) \
	  $(LDFLAGS) $(LIBS) -lcmocka

-include $(OBJ:.o=.d) $(BUILD)/src/main.d $(CTL_SRC:%.c=$(BUILD)/%.d)

deps:
	@scripts/deps.sh build

run: deps
	@$(MAKE) --no-print-directory all
	./$(BUILD)/tallyd

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

# E2E_ARGS: more pytest arguments, e.g. E2E_ARGS='-m release' (scripts/test.sh).
e2e: $(BUILD)/tallyd $(BUILD)/tallyctl $(BUILD)/tally-produce
	TALLYD=$(CURDIR)/$(BUILD)/tallyd TALLYCTL=$(CURDIR)/$(BUILD)/tallyctl TALLY_PRODUCE=$(CURDIR)/$(BUILD)/tally-produce python3 -m pytest -q -p no:cacheprovider tests/e2e $(E2E_ARGS)

# The OpenAPI contract, checked by Schemathesis (pinned in tests/contract/requirements.txt)
# against a tallyd of its own on a temporary SQLite file: see tests/contract/run.py.
contract: $(BUILD)/tallyd
	@scripts/deps.sh contract
	python3 tests/contract/run.py --tallyd $(CURDIR)/$(BUILD)/tallyd --out $(CURDIR)/$(BUILD)/contract

# The container image (deploy/image/, docs/operations.md "Container image").
.PHONY: image
image: $(BUILD)/tallyd $(BUILD)/tallyctl
	@scripts/image.sh $(BUILD)

# Everything, on SQLite and on MariaDB + Redis, plain and sanitized: see scripts/test.sh.
test:
	@scripts/test.sh

# The soak (docs/soak.md): two tallyd on MariaDB + Redis + Kafka of its own (23306, 26379,
# 29092 under .services/soak, never the shared ones) under steady traffic and churn for
# SOAK_MINUTES, then checked exactly against the client's ledger. make test runs 3 minutes.
SOAK_MINUTES ?= 10
.PHONY: soak
soak: deps
	@$(MAKE) --no-print-directory $(BUILD)/tallyd $(BUILD)/tally-produce
	SOAK_MINUTES=$(SOAK_MINUTES) TALLYD=$(CURDIR)/$(BUILD)/tallyd \
	  TALLY_PRODUCE=$(CURDIR)/$(BUILD)/tally-produce python3 tests/soak/soak.py

# Benchmarks (never part of `make test`): QUICK=1 for a run under 3 minutes.
bench: deps
	@scripts/deps.sh bench
	@$(MAKE) --no-print-directory $(BUILD)/tallyd $(BUILD)/tallyctl $(BUILD)/tally-produce $(BUILD)/bench/hello \
	  $(BUILD)/bench/hello_tally $(BUILD)/bench/course $(BUILD)/bench/grpcload
	@! pkg-config --exists grpc || $(MAKE) --no-print-directory $(BUILD)/bench/grpc_core_hello
	@scripts/services.sh up
	BENCH_BUILD=$(CURDIR)/$(BUILD) python3 bench/run.py $(if $(QUICK),--quick)

# libFuzzer targets for the parsers of outside input (clang from Debian), FUZZ_SECONDS each.
FUZZ_SECONDS ?= 30
FUZZ_TARGETS = fuzz_api fuzz_kafka_parse fuzz_http fuzz_url fuzz_grpc
FUZZ_PROTO_C = $(PROTOS:api/%.proto=build-fuzz/gen/%.pb-c.c)
build-fuzz/gen/%.pb-c.c: api/%.proto
	@mkdir -p build-fuzz/gen
	protoc-c --c_out=build-fuzz/gen -Iapi $<
fuzz: build-fuzz/gen/ui_assets.c $(FUZZ_PROTO_C)
	@command -v clang >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang >/dev/null
	@mkdir -p build-fuzz
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=clang OPT="-g -O1 -fsanitize=address,undefined" \
	  $(VALKEY_SRC:%.c=build-fuzz/%.o)
	@set -e; for t in $(FUZZ_TARGETS); do \
	  clang -std=c11 -D_GNU_SOURCE -g -O1 -Isrc -I/usr/include/mariadb -I$(VALKEY_DIR)/include -Ibuild-fuzz/gen \
	    -fsanitize=fuzzer,address,undefined -o build-fuzz/$$t fuzz/$$t.c \
	    $(filter-out src/main.c,$(SRC)) build-fuzz/gen/ui_assets.c $(FUZZ_PROTO_C) \
	    $(VALKEY_SRC:%.c=build-fuzz/%.o) $(LIBS); \
	  mkdir -p build-fuzz/corpus-$$t; \
	  build-fuzz/$$t -max_total_time=$(FUZZ_SECONDS) build-fuzz/corpus-$$t \
	    $$(test -d fuzz/corpus-$${t#fuzz_} && echo fuzz/corpus-$${t#fuzz_}); \
	done

services-up:
	@scripts/services.sh up

services-down:
	@scripts/services.sh down

# The clusters' suites and failover drills (scripts/test-cluster.sh); .ci/run runs it after test.
test-cluster:
	@scripts/test-cluster.sh

cluster-up:
	@scripts/cluster.sh up
	@scripts/cluster.sh urls

cluster-down:
	@scripts/cluster.sh down

# Release artifacts from the commit at HEAD, never the working tree (scripts/dist.sh):
# dist/tally-V.tar.gz, dist/tally_V-1_ARCH.deb built from that tarball, dist/SHA256SUMS.
.PHONY: dist
dist: deps
	@scripts/dist.sh dist

clean:
	rm -rf build build-asan build-tsan build-fuzz dist
