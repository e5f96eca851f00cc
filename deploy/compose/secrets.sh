#!/usr/bin/env bash
# Makes the secrets deploy/compose.yaml gives its containers, in deploy/compose/secrets/
# (git-ignored): new random passwords, the URLs tallyd reads with @PATH, API keys.
#
#   deploy/compose/secrets.sh        writes what is missing; an existing file is kept
#
# The directory is mode 0700, so nobody else on this machine reads it; the files in it are
# 0444, because each container reads its own with a user of its own (tally 10001, MariaDB
# 999, Grafana 472, ...) and compose mounts the files as they are. Passwords are hex: nothing
# to escape in a URL. The API keys come from `tallyctl key` (build/tallyctl, or the image's):
# keys holds their hashes only; site_token is the token for your site's backend
# (scopes read,write), prometheus_token the one Prometheus scrapes with (metrics).
set -euo pipefail
cd "$(dirname "$0")"
umask 022
mkdir -p secrets
chmod 0700 secrets
cd secrets

tallyctl() {
  if [ -x ../../../build/tallyctl ]; then
    ../../../build/tallyctl "$@"
  else
    engine=$(command -v podman || command -v docker) || {
      echo "secrets.sh: needs build/tallyctl, or podman or docker with the tally image" >&2
      exit 1
    }
    "$engine" run --rm --network none --entrypoint /usr/local/bin/tallyctl \
      "localhost/tally:$(cat ../../../VERSION)" "$@"
  fi
}
new() { [ -s "$1" ] || { echo "secrets.sh: $1"; printf '%s\n' "$2" > "$1.tmp" && mv "$1.tmp" "$1"; }; }
password() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }

new db_root_password "$(password)"
new db_password "$(password)"
new redis_password "$(password)"
new grafana_admin_password "$(password)"
new tally_store_url "mysql://tally:$(cat db_password)@mariadb:3306/tally"
new tally_cache_url "redis://:$(cat redis_password)@redis:6379"
new redis_conf "requirepass $(cat redis_password)"
if [ ! -s tally_keys ]; then
  site=$(tallyctl key site-backend read,write)
  prom=$(tallyctl key prometheus metrics)
  printf '%s\n' "$site" | sed -n 1p > site_token
  printf '%s\n' "$prom" | sed -n 1p > prometheus_token
  { printf '%s\n' "$site" | sed -n 2p; printf '%s\n' "$prom" | sed -n 2p; } > tally_keys.tmp
  mv tally_keys.tmp tally_keys
  echo "secrets.sh: tally_keys (site-backend read,write; prometheus metrics), site_token, prometheus_token"
fi
chmod 0444 ./*
