#!/usr/bin/env bash
# Starts and stops the servers tally runs against, on loopback, with their data under
# .services/ (git-ignored). Installs them from Debian when missing.
#
#   scripts/services.sh up [mysql|redis]     start MariaDB (13306) and Redis (16379), or one
#                                            of them; harmless when running
#   scripts/services.sh down [mysql|redis]   stop what `up` started, by pid
#   scripts/services.sh kill redis|mysql     SIGKILL one server (for the fault tests)
#   scripts/services.sh urls                 print the URLs to pass to tallyd
#
# Ports: TALLY_MYSQL_PORT, TALLY_REDIS_PORT.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD/.services
mysql_port=${TALLY_MYSQL_PORT:-13306}
redis_port=${TALLY_REDIS_PORT:-16379}
mysql_url="mysql://tally:tally@127.0.0.1:$mysql_port/tally"
redis_url="redis://127.0.0.1:$redis_port"

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() { # what, seconds, command...
  local what=$1 secs=$2; shift 2
  for _ in $(seq $((secs * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "services: $what did not come up; see $root/*.log" >&2
  return 1
}

mysql_up() {
  local dir=$root/mariadb
  mkdir -p "$dir"
  if alive "$dir/mariadbd.pid"; then return 0; fi
  if [ ! -d "$dir/data/mysql" ]; then
    mariadb-install-db --no-defaults --datadir="$dir/data" --user="$(id -un)" \
      --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1
  fi
  # --no-defaults: nothing from /etc/mysql leaks in. Small buffers: a test server.
  nohup mariadbd --no-defaults --datadir="$dir/data" --port="$mysql_port" \
    --bind-address=127.0.0.1 --socket="$dir/mariadbd.sock" --pid-file="$dir/mariadbd.pid" \
    --user="$(id -un)" --innodb-buffer-pool-size=256M --innodb-log-file-size=256M \
    --innodb-flush-log-at-trx-commit=2 --max-connections=500 --skip-name-resolve \
    --log-error="$dir/mariadbd.log" >/dev/null 2>&1 &
  wait_for MariaDB 60 mariadb-admin --no-defaults --socket="$dir/mariadbd.sock" -uroot ping
  wait_for MariaDB 10 test -f "$dir/mariadbd.pid"
  mariadb --no-defaults --socket="$dir/mariadbd.sock" -uroot <<'SQL'
DELETE FROM mysql.global_priv WHERE User = '';
FLUSH PRIVILEGES;
CREATE DATABASE IF NOT EXISTS tally;
CREATE USER IF NOT EXISTS 'tally'@'%' IDENTIFIED BY 'tally';
CREATE USER IF NOT EXISTS 'tally'@'localhost' IDENTIFIED BY 'tally';
GRANT ALL ON *.* TO 'tally'@'%';
GRANT ALL ON *.* TO 'tally'@'localhost';
SQL
}

redis_up() {
  local dir=$root/redis
  mkdir -p "$dir"
  if alive "$dir/redis.pid"; then return 0; fi
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$dir" --daemonize yes \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --save '' --appendonly no
  wait_for Redis 10 redis-cli -p "$redis_port" ping
}

stop_pid() { # pidfile
  local pidfile=$1
  alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  local pid; pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

want() { [ -z "${2:-}" ] || [ "$2" = "$1" ]; }

case "${1:-}" in
  up)
    scripts/deps.sh services
    if want mysql "${2:-}"; then mysql_up; fi
    if want redis "${2:-}"; then redis_up; fi
    echo "services: MariaDB on 127.0.0.1:$mysql_port, Redis on 127.0.0.1:$redis_port"
    echo "  ./build/tallyd --store $mysql_url --cache $redis_url"
    ;;
  down)
    if want redis "${2:-}"; then stop_pid "$root/redis/redis.pid"; fi
    if want mysql "${2:-}"; then stop_pid "$root/mariadb/mariadbd.pid"; fi
    echo "services: stopped ${2:-all}"
    ;;
  kill)
    case "${2:-}" in
      redis) pidfile=$root/redis/redis.pid ;;
      mysql) pidfile=$root/mariadb/mariadbd.pid ;;
      *) echo "usage: scripts/services.sh kill redis|mysql" >&2; exit 2 ;;
    esac
    if alive "$pidfile"; then
      pid=$(cat "$pidfile"); kill -9 "$pid"
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    fi
    rm -f "$pidfile"
    ;;
  urls)
    echo "TALLY_TEST_MYSQL=$mysql_url"
    echo "TALLY_TEST_REDIS=$redis_url"
    ;;
  *) echo "usage: scripts/services.sh up|down|kill|urls [mysql|redis]" >&2; exit 2 ;;
esac
