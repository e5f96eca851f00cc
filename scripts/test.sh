#!/usr/bin/env bash
# `make test`: every suite against both configurations, plain and under ASan + UBSan.
#
#   embedded   SQLite store, no cache, local bus
#   servers    MariaDB store + Redis cache (started here, stopped on exit, also on failure)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh build
scripts/services.sh up
trap 'scripts/services.sh down >/dev/null 2>&1 || true' EXIT
eval "$(scripts/services.sh urls | sed 's/^/export /')"

for sanitize in "" 1; do
  label=${sanitize:+" (ASan + UBSan)"}
  echo "== unit tests$label"
  make --no-print-directory ${sanitize:+SANITIZE=1} unit
  echo "== end-to-end, embedded default$label"
  env -u TALLY_TEST_MYSQL -u TALLY_TEST_REDIS make --no-print-directory ${sanitize:+SANITIZE=1} e2e
  echo "== end-to-end, MariaDB + Redis$label"
  make --no-print-directory ${sanitize:+SANITIZE=1} e2e
done
