#!/usr/bin/env bash
# Starts and stops the servers tally runs against, on loopback, with their data under
# .services/ (git-ignored). Installs them from Debian when missing.
#
#   scripts/services.sh up [mysql|redis|kafka]    start MariaDB (13306), Redis (16379) and
#                                                 Kafka (19092), or one of them; harmless
#                                                 when running
#   scripts/services.sh down [mysql|redis|kafka]  stop what `up` started, by pid
#   scripts/services.sh kill redis|mysql|kafka    SIGKILL one server (for the fault tests)
#   scripts/services.sh urls                 print the URLs to pass to tallyd, as
#                                            NAME='VALUE' lines for `eval "export ..."`
#
# Kafka (19092, KRaft, single node) runs from Maven Central jars cached in .cache/kafka/libs:
# the first `up` fetches them with Maven, later ones need no network.
#
# Secured like production, so that every suite exercises it: Redis requires a password (and
# listens for TLS on its port + 1, beside the plain port the suites use), MariaDB's tally
# user must connect over TLS (a CA and a server certificate, self-signed,
# generated once into .services/tls/ with the openssl CLI), and Kafka has a second
# listener, SASL_PLAINTEXT with PLAIN, beside the PLAINTEXT one. The passwords are test
# passwords, distinctive so that a test can grep tallyd's output for them.
#
# Ports: TALLY_MYSQL_PORT, TALLY_REDIS_PORT (and that port + 1 for TLS), TALLY_KAFKA_PORT
# (and that port + 1 for the Kafka controller, + 2 for its SASL listener). Data, pid files, logs, TLS files and the
# Kafka configuration: under TALLY_SERVICES_DIR (default .services; a relative path is from
# the repository's root), so that a second set on other ports (make soak's) can run beside
# the first without touching it.
set -euo pipefail
cd "$(dirname "$0")/.."
prog=services
root=${TALLY_SERVICES_DIR:-$PWD/.services}
case $root in /*) ;; *) root=$PWD/$root ;; esac
tls=$root/tls
mysql_port=${TALLY_MYSQL_PORT:-13306}
redis_port=${TALLY_REDIS_PORT:-16379}
kafka_port=${TALLY_KAFKA_PORT:-19092}
kafka_sasl_port=$((kafka_port + 2))
. scripts/lib.sh
mysql_url="mysql://tally:$mysql_password_url@127.0.0.1:$mysql_port/tally?ssl=1&ssl_ca=$tls/ca.pem"
redis_url="redis://:$redis_password@127.0.0.1:$redis_port"
redis_tls_url="rediss://:$redis_password@127.0.0.1:$((redis_port + 1))?tls_ca=$tls/ca.pem"
kafka_url="kafka://127.0.0.1:$kafka_port/tally.reads?group=tally"
kafka_sasl_url="kafka://127.0.0.1:$kafka_sasl_port/?security.protocol=SASL_PLAINTEXT&sasl.mechanism=PLAIN&sasl.username=tally&sasl.password=$kafka_password"

mysql_up() {
  local dir=$root/mariadb
  mkdir -p "$dir"
  if alive "$dir/mariadbd.pid"; then return 0; fi
  tls_up "$tls"
  if [ ! -d "$dir/data/mysql" ]; then
    mariadb-install-db --no-defaults --datadir="$dir/data" --user="$(id -un)" \
      --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1
  fi
  # --no-defaults: nothing from /etc/mysql leaks in. Small buffers: a test server.
  nohup mariadbd --no-defaults --datadir="$dir/data" --port="$mysql_port" \
    --bind-address=127.0.0.1 --socket="$dir/mariadbd.sock" --pid-file="$dir/mariadbd.pid" \
    --user="$(id -un)" --innodb-buffer-pool-size=256M --innodb-log-file-size=256M \
    --innodb-flush-log-at-trx-commit=2 --max-connections=500 --skip-name-resolve \
    --ssl-ca="$tls/ca.pem" --ssl-cert="$tls/server.pem" --ssl-key="$tls/server.key" \
    --log-error="$dir/mariadbd.log" >/dev/null 2>&1 &
  wait_for MariaDB 60 mariadb-admin --no-defaults --socket="$dir/mariadbd.sock" -uroot ping
  wait_for MariaDB 10 test -f "$dir/mariadbd.pid"
  mysql_grant_tally "$dir/mariadbd.sock"
}

redis_up() {
  local dir=$root/redis
  mkdir -p "$dir"
  if alive "$dir/redis.pid"; then return 0; fi
  # The password goes in through stdin, not argv: a config file of one line.
  tls_up "$tls"
  printf 'requirepass %s\n' "$redis_password" | redis-server - --port "$redis_port" \
    --tls-port "$((redis_port + 1))" --tls-cert-file "$tls/server.pem" \
    --tls-key-file "$tls/server.key" --tls-ca-cert-file "$tls/ca.pem" --tls-auth-clients no \
    --bind 127.0.0.1 --dir "$dir" --daemonize yes --pidfile "$dir/redis.pid" \
    --logfile "$dir/redis.log" --save '' --appendonly no >/dev/null
  wait_for Redis 10 env REDISCLI_AUTH="$redis_password" redis-cli -p "$redis_port" ping
}

kafka_up() {
  local dir=$root/kafka
  mkdir -p "$dir"
  if alive "$dir/kafka.pid"; then return 0; fi
  kafka_jars "$dir/maven.log"
  sed -e "s|@PORT@|$kafka_port|g" -e "s|@CONTROLLER_PORT@|$((kafka_port + 1))|g" \
      -e "s|@SASL_PORT@|$kafka_sasl_port|g" -e "s|@SASL_PASSWORD@|$kafka_password|g" \
      -e "s|@DATA@|$dir/data|g" scripts/kafka/server.properties >"$dir/server.properties"
  if [ ! -f "$dir/data/meta.properties" ]; then
    local cluster_id
    cluster_id=$(kafka_cluster_id)
    java -cp "$kafka_libs/*" kafka.tools.StorageTool format --standalone -t "$cluster_id" \
      -c "$dir/server.properties" >"$dir/format.log" 2>&1 || { cat "$dir/format.log" >&2; return 1; }
  fi
  nohup java -Xms256m -Xmx512m -XX:+UseG1GC -Dlog4j2.configurationFile="$PWD/scripts/kafka/log4j2.properties" \
    -cp "$kafka_libs/*" kafka.Kafka "$dir/server.properties" >"$dir/kafka.log" 2>&1 &
  echo $! >"$dir/kafka.pid"
  make -s --no-print-directory build/tally-produce >/dev/null
  wait_for Kafka 90 build/tally-produce "127.0.0.1:$kafka_port" --check
}

want() { [ -z "${2:-}" ] || [ "$2" = "$1" ]; }

case "${1:-}" in
  up)
    scripts/deps.sh services
    scripts/deps.sh build
    if want mysql "${2:-}"; then mysql_up; fi
    if want redis "${2:-}"; then redis_up; fi
    if want kafka "${2:-}"; then kafka_up; fi
    echo "services: MariaDB on 127.0.0.1:$mysql_port (TLS), Redis on 127.0.0.1:$redis_port (TLS on $((redis_port + 1)))" \
         "(password), Kafka on 127.0.0.1:$kafka_port (SASL on $kafka_sasl_port)"
    echo "  ./build/tallyd --store '$mysql_url' --cache '$redis_url' --bus '$kafka_url'"
    ;;
  down)
    if want kafka "${2:-}"; then stop_pids "$root/kafka/kafka.pid"; fi
    if want redis "${2:-}"; then stop_pids "$root/redis/redis.pid"; fi
    if want mysql "${2:-}"; then stop_pids "$root/mariadb/mariadbd.pid"; fi
    echo "services: stopped ${2:-all}"
    ;;
  kill)
    case "${2:-}" in
      redis) pidfile=$root/redis/redis.pid ;;
      mysql) pidfile=$root/mariadb/mariadbd.pid ;;
      kafka) pidfile=$root/kafka/kafka.pid ;;
      *) echo "usage: scripts/services.sh kill redis|mysql|kafka" >&2; exit 2 ;;
    esac
    if alive "$pidfile"; then
      pid=$(cat "$pidfile"); kill -9 "$pid"
      for _ in $(seq 100); do running "$pid" || break; sleep 0.05; done
    fi
    rm -f "$pidfile"
    ;;
  urls)
    # Quoted: the values hold '&'. TALLY_TEST_KAFKA_SASL has no topic (it goes after the '/').
    echo "TALLY_TEST_MYSQL='$mysql_url'"
    echo "TALLY_TEST_REDIS='$redis_url'"
    echo "TALLY_TEST_REDIS_TLS='$redis_tls_url'"
    echo "TALLY_TEST_KAFKA='127.0.0.1:$kafka_port'"
    echo "TALLY_TEST_KAFKA_SASL='$kafka_sasl_url'"
    ;;
  *) echo "usage: scripts/services.sh up|down|kill|urls [mysql|redis|kafka]" >&2; exit 2 ;;
esac
