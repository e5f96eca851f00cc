#!/usr/bin/env bash
# Compares "hello" throughput of the HTTP libraries considered for tallyd.
# Same wrk settings for each; wrk pinned to CPU 1, servers free to use both.
# usage: bench/http_compare.sh [DURATION_S]
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-5}
scripts/deps.sh bench >/dev/null
dpkg-query -W -f='${Status}' libmicrohttpd-dev 2>/dev/null | grep -q 'install ok' ||
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libmicrohttpd-dev >/dev/null
mkdir -p build/bench
cc -O2 -o build/bench/hello bench/hello.c -levent -levent_pthreads -lpthread
cc -O2 -o build/bench/hello_mhd bench/hello_mhd.c -lmicrohttpd
run() {
  local name=$1; shift
  "$@" & local pid=$!
  sleep 0.5
  local rps
  rps=$(taskset -c 1 wrk -t1 -c32 -d"${dur}s" "http://127.0.0.1:$port/" | awk '/Requests\/sec/ {print $2}')
  kill "$pid"; wait "$pid" 2>/dev/null || true
  printf '| %-28s | %10s |\n' "$name" "$rps"
}
echo "| server (2 threads)           | requests/s |"
echo "| ---------------------------- | ---------- |"
port=18481; run "libevent 2.1 evhttp" build/bench/hello $port 2
port=18482; run "libmicrohttpd 0.9 epoll pool" build/bench/hello_mhd $port 2
