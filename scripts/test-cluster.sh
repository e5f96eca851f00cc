#!/usr/bin/env bash
# make test-cluster: tally on clusters (scripts/cluster.sh), as a site that outgrew one
# machine runs it.
#
#   1. scripts/cluster.sh up: a Redis Cluster (6 nodes, TLS), three Kafka brokers and a
#      Galera cluster of three behind HAProxy.
#   2. The API suite and the cache suite (tests/e2e/test_api.py, test_servers.py) on them:
#      the store is Galera through HAProxy, the cache the Redis Cluster over TLS; the tests
#      that stop a single server skip (the drill kills nodes instead).
#   3. The failover drills (tests/cluster/drill.py): three tallyd behind HAProxy under steady
#      mixed traffic while a Redis master, a Kafka broker, the Galera writer and a tallyd are
#      killed in turn and brought back, then a rolling restart; every count checked, each
#      kill's cost written to docs/scaling.md (DRILL_DOC=0: only to build/cluster/).
#   4. scripts/cluster.sh down, also on failure.
#
# Uses the release build (./build). About 10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh build
make --no-print-directory all
scripts/cluster.sh up
trap 'scripts/cluster.sh down >/dev/null 2>&1 || true' EXIT
eval "$(scripts/cluster.sh urls | sed 's/^/export /')"

summary=$PWD/build/test-cluster-summary.log
mkdir -p build && : >"$summary"

echo "== API and cache suites on the clusters (Galera via HAProxy, Redis Cluster over TLS)"
TALLY_TEST_MYSQL=$TALLY_CLUSTER_STORE TALLY_TEST_REDIS=$TALLY_CLUSTER_CACHE \
  TALLYD=$PWD/build/tallyd TALLYCTL=$PWD/build/tallyctl TALLY_PRODUCE=$PWD/build/tally-produce \
  python3 -m pytest -q -p no:cacheprovider tests/e2e/test_api.py tests/e2e/test_servers.py \
  2>&1 | tee -a "$summary"

echo "== failover drills"
TALLYD=$PWD/build/tallyd TALLY_PRODUCE=$PWD/build/tally-produce \
  SOAK_DOC=${DRILL_DOC:-1} python3 tests/cluster/drill.py 2>&1 | tee -a "$summary"
