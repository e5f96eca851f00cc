#!/usr/bin/env bash
# Installs the Debian packages tally needs to build and test, only when missing.
# Usage: scripts/deps.sh [build|services|cluster|bench|contract|dashboard|ui|image]
#
# cluster: what scripts/cluster.sh needs beside the services' set: Galera, mariadb-backup and
# socat for its state transfers, and HAProxy (socat also reads its stats socket). A system
# HAProxy service that the install started is stopped and disabled, as Prometheus's is below
# (cluster.sh runs its own).
#
# dashboard: Prometheus, for the test that runs every query of deploy/grafana/tally.json. The
# Debian package starts a system service where systemd runs; a service started by this
# install is stopped and disabled again (the test runs its own on a free port).
#
# contract: Schemathesis, pinned in tests/contract/requirements.txt, from PyPI into a venv at
# .cache/contract-venv (never into the system Python, which Debian manages). Reinstalled only
# when the pin changes.
#
# bench: wrk, gnuplot, and gRPC's C core (libgrpc-dev 1.51), only for the "hello" server that
# bench/run.py compares tallyd's gRPC layer with (bench/grpc_core_hello.c); tallyd never links it.
#
# image: podman with Debian's runc (scripts/image.sh, tests/e2e/test_image.py; podman reads
# deploy/image/containers.conf) and mmdebstrap for the image's base. Containers run as root
# with --network host: no uidmap, slirp4netns or fuse-overlayfs.
#
# ui: Debian's chromium, and Playwright (pinned in tests/e2e/ui-requirements.txt) in a venv at
# .cache/ui-venv made with the python3 that runs the tests (tests/e2e/test_ui.py puts its
# site-packages on sys.path). Playwright drives the system chromium: never `playwright
# install`. A failure here is not fatal: the page's browser test skips, saying why.
set -euo pipefail

build_pkgs=(gcc make pkg-config xxd libevent-dev libhttp-parser-dev libjwt-dev libssl-dev libjansson-dev libsqlite3-dev libcmocka-dev
            libmariadb-dev librdkafka-dev libnghttp2-dev libprotobuf-c-dev protobuf-c-compiler
            protobuf-compiler python3)
service_pkgs=(mariadb-server redis-server default-jre-headless maven)

case "${1:-build}" in
  build) want=("${build_pkgs[@]}") ;;
  services) want=("${service_pkgs[@]}") ;;
  cluster) want=(galera-4 mariadb-backup haproxy socat) ;;
  bench) want=(wrk gnuplot-nox libgrpc-dev) ;;
  contract) want=(python3) ;;
  dashboard) want=(prometheus) ;;
  ui) want=(chromium) ;;
  image) want=(podman runc mmdebstrap) ;;
  *) echo "deps.sh: unknown set '$1'" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  # A JDK and Maven may come with the machine rather than from Debian: take them as they are.
  case "$p" in
    default-jre-headless) command -v java >/dev/null && continue ;;
    maven) command -v mvn >/dev/null && continue ;;
  esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ] && [ "${1:-build}" = ui ]; then
  echo "deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
      --no-install-recommends "${missing[@]}" >/dev/null; } ||
    echo "deps: could not install ${missing[*]}; tests/e2e/test_ui.py will skip" >&2
  missing=()
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  for svc in prometheus haproxy; do
    if [[ " ${missing[*]} " == *" $svc "* ]] && command -v systemctl >/dev/null &&
       systemctl is-enabled -q "$svc" 2>/dev/null; then
      $sudo systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
  done
fi

# The bench's peer (bench/course) is Go; Go comes with the machine, not from Debian.
if [ "${1:-build}" = bench ] && ! command -v go >/dev/null; then
  echo "deps: bench needs Go (the go command) for bench/course, and none is on PATH" >&2
  exit 1
fi
if [ "${1:-build}" = build ] && ! python3 -c 'import pytest' 2>/dev/null; then
  echo "deps: installing pytest"
  python3 -m pip install -q pytest 2>/dev/null || {
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-pytest >/dev/null
  }
fi
# The auth tests make keys, certificates and signed tokens with the `cryptography` module.
if [ "${1:-build}" = build ] && ! python3 -c 'import cryptography' 2>/dev/null; then
  echo "deps: installing cryptography"
  python3 -m pip install -q cryptography 2>/dev/null || {
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-cryptography >/dev/null
  }
fi
# The gRPC port's hostile tests speak raw HTTP/2 with the `h2` module.
if [ "${1:-build}" = build ] && ! python3 -c 'import h2' 2>/dev/null; then
  echo "deps: installing h2"
  python3 -m pip install -q h2==4.1.0 2>/dev/null || {
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-h2 >/dev/null
  }
fi
if [ "${1:-build}" = contract ]; then
  venv=.cache/contract-venv
  req=tests/contract/requirements.txt
  cd "$(dirname "$0")/.."
  # Running st (not just finding it) also catches a venv whose Python has gone away.
  if cmp -s "$req" "$venv/requirements.txt" && "$venv/bin/st" --version >/dev/null 2>&1; then
    exit 0
  fi
  echo "deps: installing $(grep -v '^#' "$req" | xargs) into $venv"
  rm -rf "$venv"
  # `python3 -m venv` needs ensurepip, which Debian ships apart in python3-venv; when the
  # python3 on PATH cannot make one, install that and use Debian's own python3.
  if ! python3 -m venv "$venv" 2>/dev/null; then
    rm -rf "$venv"
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if ! dpkg-query -W -f='${Status}' python3-venv 2>/dev/null | grep -q 'install ok installed'; then
      $sudo apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        python3-venv >/dev/null
    fi
    /usr/bin/python3 -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
  cp "$req" "$venv/requirements.txt"
fi
if [ "${1:-build}" = ui ]; then
  cd "$(dirname "$0")/.."
  venv=.cache/ui-venv
  req=tests/e2e/ui-requirements.txt
  if cmp -s "$req" "$venv/requirements.txt" && "$venv/bin/python" -c 'import playwright' 2>/dev/null; then
    exit 0
  fi
  echo "deps: installing $(grep -v '^#' "$req" | xargs) into $venv"
  rm -rf "$venv"
  if python3 -m venv "$venv" && "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req"; then
    cp "$req" "$venv/requirements.txt"
  else
    rm -rf "$venv"
    echo "deps: could not install Playwright; tests/e2e/test_ui.py will skip" >&2
  fi
fi
exit 0
