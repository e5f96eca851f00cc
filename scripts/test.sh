#!/usr/bin/env bash
# `make test`: every suite against both configurations, under ASan + UBSan, and on the release
# build what depends on it.
#
#   embedded   SQLite store, no cache, local bus (and the Kafka tests on SQLite)
#   servers    MariaDB store + Redis + Kafka (and the Kafka tests on MariaDB)
#
# The release build (plain -O2, what ships) runs the unit tests, the OpenAPI contract
# (Schemathesis), and the end-to-end tests marked `release` on both configurations: the API
# and lifecycle suites, and every test whose figures, memory bounds or scale belong to the
# release build (the 1,000,000-event kill -9 test, RSS bounds, latency figures). Every
# end-to-end test then runs under ASan + UBSan on both configurations, and the contract again;
# then the unit tests and the embedded suites with the local bus under ThreadSanitizer; then a
# 3-minute soak on the release build. Running every functional test plain as well as
# sanitized doubled the run (35 minutes) for no failure the sanitized run would not show.
# MariaDB, Redis and Kafka are started here and stopped on exit, also on failure.
# The Kafka crash test consumes 1,000,000 events on the release build and 200,000 under the
# sanitizers (which slow tallyd several times over; five kills still fit, and what they look
# for is memory misuse on the restart paths, not scale). Suites marked `any_config` (they
# depend on no store, cache or bus: tokens, the page, the dashboard, HTTP/2 framing, the
# pid file, the probe, the unit files) run under the sanitizers on the embedded default
# only.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh build
scripts/deps.sh dashboard   # Prometheus, for tests/e2e/test_dashboard.py
scripts/deps.sh ui  # chromium + Playwright for the page's browser test (skips without them)
scripts/services.sh up
trap 'scripts/services.sh down >/dev/null 2>&1 || true' EXIT
eval "$(scripts/services.sh urls | sed 's/^/export /')"

export TALLY_REPORT=$PWD/build/test-report.jsonl
summary=$PWD/build/test-summary.log
mkdir -p build && : >"$TALLY_REPORT" && : >"$summary"

for sanitize in "" 1; do
  label=${sanitize:+" (ASan + UBSan)"}
  # On the release build only the tests marked `release`; sanitized, all of them.
  only=$([ -n "$sanitize" ] || echo "-m release")
  export TALLY_CRASH_EVENTS=$([ -n "$sanitize" ] && echo 200000 || echo 1000000)
  echo "== unit tests$label"
  make --no-print-directory ${sanitize:+SANITIZE=1} unit 2>&1 | tee -a "$summary"
  echo "== end-to-end, embedded default$label${only:+, release tests}"
  env -u TALLY_TEST_MYSQL -u TALLY_TEST_REDIS make --no-print-directory ${sanitize:+SANITIZE=1} \
    E2E_ARGS="$only" e2e 2>&1 | tee -a "$summary"
  # One line per API operation, then "N passed, N failed" like pytest's: Schemathesis's own
  # output stays in build*/contract/schemathesis.log, out of the counts below.
  echo "== contract (Schemathesis, docs/openapi.yaml), embedded default$label"
  make --no-print-directory ${sanitize:+SANITIZE=1} contract 2>&1 | tee -a "$summary"
  echo "== end-to-end, MariaDB + Redis$label${only:+, release tests}"
  make --no-print-directory ${sanitize:+SANITIZE=1} \
    E2E_ARGS="${only:-"-m 'not any_config'"}" e2e 2>&1 | tee -a "$summary"
done

# ThreadSanitizer: the unit tests (against the servers, as above) and the end-to-end suites on
# the embedded default with the local bus: HTTP loops, worker pools, the read consumer's reader
# and applier, the store pool. About 4 minutes (docs/architecture.md). Any report fails the run:
# a unit binary exits 66 (TSan's exitcode), and tests/e2e/conftest.py fails the test during
# which any process it started wrote one. The Kafka suites are left out (see the same doc).
echo "== unit tests (TSan)"
make --no-print-directory SANITIZE=thread unit 2>&1 | tee -a "$summary"
echo "== end-to-end, embedded default, local bus (TSan)"
env -u TALLY_TEST_MYSQL -u TALLY_TEST_REDIS -u TALLY_TEST_KAFKA -u TALLY_TEST_KAFKA_SASL \
  make --no-print-directory SANITIZE=thread e2e 2>&1 | tee -a "$summary"

# The soak (docs/soak.md): 3 minutes of traffic and churn on servers of its own (other ports,
# under .services/soak), so it neither disturbs nor needs the ones above. It ends with
# "soak: N passed, N failed", counted below; its figures go to build/soak/latest.md.
echo "== soak, MariaDB + Redis + Kafka (3 minutes)"
SOAK_MINUTES=3 SOAK_DOC=0 make --no-print-directory soak 2>&1 | tee -a "$summary"

echo "== measured figures"
cat "$TALLY_REPORT"
# One closing line for the whole run: cmocka's and pytest's counts added up.
awk '/^\[  PASSED  \] [0-9]+ test/ { p += $4 }
     /^\[  FAILED  \] [0-9]+ test/ { f += $4 }
     /^ [0-9]+ SKIPPED TEST/ { s += $1 }
     / passed/ && /[0-9]+ passed/ && !/^\[/ {
       for (i = 1; i < NF; i++) {
         if ($(i + 1) ~ /^passed/) p += $i
         if ($(i + 1) ~ /^failed/) f += $i
         if ($(i + 1) ~ /^skipped/) s += $i
       } }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$summary"
