# Shell helpers shared by scripts/services.sh (one MariaDB, Redis and Kafka) and
# scripts/cluster.sh (the same three as clusters): sourced, never run. Both scripts set
# `prog` (the name their messages start with) and `root` (where their logs are) first, and
# run from the repository's root.
#
# One copy of everything the two must agree on: the test passwords (distinctive, so that a
# test can grep tallyd's output for them), the CA that signs the servers' certificates, the
# Kafka jars, and the MariaDB user tally connects as.

mysql_password='mysql-pw/K4v9'   # in URLs as mysql-pw%2FK4v9
mysql_password_url='mysql-pw%2FK4v9'
redis_password='redis-pw-Q7x2'
kafka_password='kafka-pw-Z8m3'   # of the SASL user "tally"
kafka_libs=$PWD/.cache/kafka/libs

# A process that exited but was never reaped (a zombie: where PID 1 does not reap orphans, as
# in some containers) has a pid that kill -0 still finds; it does not run.
running() { # pid
  local stat
  kill -0 "$1" 2>/dev/null || return 1
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

alive() { [ -f "$1" ] && running "$(cat "$1")"; }

# Polls the command every 0.1 s until it succeeds or `seconds` have passed (measured on the
# clock, so a command that itself takes seconds cannot stretch the wait).
wait_for() { # what, seconds, command...
  local what=$1 end=$((SECONDS + $2)); shift 2
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$end" ]; then
      echo "$prog: $what did not come up; see the logs under $root" >&2
      return 1
    fi
    sleep 0.1
  done
}

# A CA and a certificate for 127.0.0.1/localhost signed by it, made once into dir. The
# certificate serves clients and is one: Redis Cluster's nodes present it to each other.
tls_up() { # dir
  local tls=$1
  [ -f "$tls/server.pem" ] && return 0
  mkdir -p "$tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=tally test CA" \
    -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
  printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
    "extendedKeyUsage=serverAuth,clientAuth" >"$tls/server.ext"
  openssl x509 -req -days 3650 -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" \
    -CAcreateserial -extfile "$tls/server.ext" -out "$tls/server.pem.tmp" 2>/dev/null
  mv "$tls/server.pem.tmp" "$tls/server.pem"
}

# The Kafka broker's jars (scripts/kafka/pom.xml), fetched with Maven into kafka_libs once;
# later runs need no network.
kafka_jars() { # log
  [ -f "$kafka_libs/.complete" ] && return 0
  echo "$prog: fetching the Kafka broker jars (once)"
  rm -rf "$kafka_libs"
  mvn -q -B -f scripts/kafka/pom.xml dependency:copy-dependencies \
    -DoutputDirectory="$kafka_libs" >"$1" 2>&1 || { cat "$1" >&2; return 1; }
  touch "$kafka_libs/.complete"
}

# A cluster id as Kafka makes them (base64url of a random UUID), never starting with "-":
# the storage tool would take one that does for a flag (one start in 64 failed that way).
kafka_cluster_id() {
  python3 -c 'import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not s.startswith("-"):
        print(s)
        break'
}

# The database and the tally user, who connects over TLS or not at all (a test run without
# TLS would fail). Run as root over the server's socket.
mysql_grant_tally() { # socket
  mariadb --no-defaults --socket="$1" -uroot <<SQL
DELETE FROM mysql.global_priv WHERE User = '';
FLUSH PRIVILEGES;
CREATE DATABASE IF NOT EXISTS tally;
CREATE USER IF NOT EXISTS 'tally'@'%';
CREATE USER IF NOT EXISTS 'tally'@'localhost';
ALTER USER 'tally'@'%' IDENTIFIED BY '$mysql_password' REQUIRE SSL;
ALTER USER 'tally'@'localhost' IDENTIFIED BY '$mysql_password' REQUIRE SSL;
GRANT ALL ON *.* TO 'tally'@'%';
GRANT ALL ON *.* TO 'tally'@'localhost';
SQL
}

# SIGTERM to every process named by the pid files at once, SIGKILL to those still there after
# 30 s; the pid files are removed.
stop_pids() { # pidfile...
  local f pids=() end=$((SECONDS + 30))
  for f in "$@"; do
    if alive "$f"; then pids+=("$(cat "$f")"); kill "${pids[-1]}" 2>/dev/null || true; fi
  done
  for pid in "${pids[@]}"; do
    while running "$pid" && [ "$SECONDS" -lt "$end" ]; do sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -f "$@"
}
