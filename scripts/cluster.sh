#!/usr/bin/env bash
# Starts and stops, on loopback, the clusters tallyd is tested against as it runs in
# production: a Redis Cluster, a Kafka cluster and a MariaDB Galera cluster behind HAProxy.
# Data, pid files, logs and configuration are under .cluster/ (git-ignored). Installs what
# is missing from Debian (scripts/deps.sh services and cluster).
#
#   scripts/cluster.sh up          start everything, from a clean .cluster/ (its TLS files
#                                  are kept); does nothing when all is running, and refuses
#                                  when only some nodes are (start them, or down first)
#   scripts/cluster.sh down        stop every node: SIGTERM, SIGKILL after 30 s; the data
#                                  stays until the next up wipes it
#   scripts/cluster.sh urls        the URLs to give tallyd, as NAME='VALUE' lines for eval
#   scripts/cluster.sh nodes       one line per node, NAME KIND ROLE PORT PID, with the role
#                                  the servers give now; a dead node's is "down", its PID "-"
#   scripts/cluster.sh kill NODE   SIGKILL one node
#   scripts/cluster.sh start NODE  restart one node; returns once it has rejoined its cluster
#
# The nodes:
#   redis1..redis6    Redis Cluster, 3 masters and 3 replicas (which is which moves with
#                     failovers: see `nodes`). TLS only, a password. cluster-node-timeout is
#                     2 s, so a killed master's replica takes over within about 4 s; `start`
#                     brings the old master back as a replica. No persistence: a master
#                     restarted before its replica took over comes back empty, as a cache may.
#   kafka1..kafka3    Apache Kafka in KRaft mode, each node a broker and a controller (a static
#                     quorum of three). Topics get 3 replicas and min.insync.replicas 2, so one
#                     node may be down; tally.reads is made with 8 partitions. `start` waits
#                     until no partition is under-replicated.
#   galera1..galera3  MariaDB Galera; a joining node's first state transfer is by mariabackup
#                     (rsync's daemon would run as nobody under a root mariadbd, and fail). A
#                     restarted node recovers its position from InnoDB and catches up by IST;
#                     with all three down there is no group to rejoin: down, then up. The
#                     tally user connects over TLS only, as in scripts/services.sh.
#   haproxy           in front of Galera and of three tallyd (which the tests start).
#
# Ports, from TALLY_CLUSTER_PORT_BASE (B, default 17000):
#   B+1..B+6      redis1..6, TLS; their cluster bus on B+10001..B+10006 (Redis's own rule:
#                 redis-cli's CLUSTER MEET names no other)
#   B+91..B+93    kafka1..3, PLAINTEXT; SASL_PLAINTEXT (PLAIN, user tally) on B+94..B+96;
#                 the controllers on B+97..B+99
#   B+306..B+308  galera1..3; group communication B+311..B+313, IST B+321..B+323, SST
#                 B+331..B+333
#   B+300         HAProxy to Galera
#   B+80          HAProxy to tallyd on B+81..B+83
# TALLY_CLUSTER_DIR puts .cluster/ elsewhere (a relative path is from the repository's root),
# so that a second cluster on another base can run beside the first.
#
# HAProxy to Galera: one writer at a time, since writes on two Galera nodes at once fail each
# other's certification. galera1 is the server, galera2 and galera3 backups (only the first
# one up is used); a stick table of one entry keyed on the destination (the same for every
# client) remembers the server in use, so when galera1 comes back the writes stay where they
# went. Checks log in as haproxy_check (no password, no grants) every 0.5 s: down after two
# failures, and its sessions cut, so that clients reconnect to the next writer at once. The
# check sees a server that accepts logins, not one that is Synced. The table lives in the
# HAProxy process: a restarted HAProxy starts again from galera1 (its clients' sessions
# went with the old one, so there is still one writer at a time).
#
# HAProxy to tallyd: round robin among those whose /readyz answers 200. A request is tried
# again, on another tallyd, when the connection failed (it never reached tallyd), and when a
# tallyd closed the connection without a byte of answer, except for a POST without an
# Idempotency-Key: that one may have been counted before tallyd died, and a second try would
# count it twice. PUT and DELETE set a state, and a POST with a key counts once per key (24 h,
# decided in the store whichever tallyd took it), so those are safe to send twice.
set -euo pipefail
cd "$(dirname "$0")/.."
prog=cluster
root=${TALLY_CLUSTER_DIR:-$PWD/.cluster}
case $root in /*) ;; *) root=$PWD/$root ;; esac
. scripts/lib.sh
tls=$root/tls
base=${TALLY_CLUSTER_PORT_BASE:-17000}
topic=tally.reads
galera_port=$((base + 300))
http_port=$((base + 80))
nodes=(redis1 redis2 redis3 redis4 redis5 redis6 kafka1 kafka2 kafka3 galera1 galera2 galera3
       haproxy)
brokers=127.0.0.1:$((base + 91)),127.0.0.1:$((base + 92)),127.0.0.1:$((base + 93))

usage() {
  echo "usage: scripts/cluster.sh up|down|urls|nodes|kill NODE|start NODE" >&2
  echo "  NODE: redis1..redis6, kafka1..kafka3, galera1..galera3, haproxy" >&2
  exit 2
}

pidfile() { # node
  case $1 in
    redis*) echo "$root/$1/redis.pid" ;;
    kafka*) echo "$root/$1/kafka.pid" ;;
    galera*) echo "$root/$1/mariadbd.pid" ;;
    haproxy) echo "$root/haproxy/haproxy.pid" ;;
  esac
}

port() { # node
  case $1 in
    redis*) echo $((base + ${1#redis})) ;;
    kafka*) echo $((base + 90 + ${1#kafka})) ;;
    galera*) echo $((base + 305 + ${1#galera})) ;;
    haproxy) echo "$galera_port" ;;
  esac
}

# --- Redis ------------------------------------------------------------------------------------

rcli() { # n, redis-cli arguments...
  local n=$1; shift
  REDISCLI_AUTH=$redis_password redis-cli --tls --cacert "$tls/ca.pem" -h 127.0.0.1 \
    -p $((base + n)) "$@"
}

redis_start() { # n
  local n=$1 dir=$root/redis$1
  if [ ! -f "$dir/redis.conf" ]; then
    mkdir -p "$dir"
    # The password is in this file (0600), not in argv.
    (umask 077 && cat >"$dir/redis.conf") <<EOF
bind 127.0.0.1
port 0
tls-port $((base + n))
tls-cert-file $tls/server.pem
tls-key-file $tls/server.key
tls-ca-cert-file $tls/ca.pem
tls-auth-clients no
tls-replication yes
tls-cluster yes
cluster-enabled yes
cluster-config-file $dir/nodes.conf
cluster-node-timeout 2000
cluster-replica-validity-factor 0
repl-diskless-sync-delay 0
requirepass $redis_password
masterauth $redis_password
dir $dir
daemonize yes
pidfile $dir/redis.pid
logfile $dir/redis.log
save ""
appendonly no
EOF
  fi
  redis-server "$dir/redis.conf" >/dev/null
}

# The node sees the cluster whole, a replica's link to its master is up, and every other
# running node sees this one connected and not failed.
redis_ready() { # n
  local n=$1 m out
  out=$(rcli "$n" cluster info) && [[ $out == *cluster_state:ok* ]] || return 1
  out=$(rcli "$n" info replication) || return 1
  [[ $out == *role:master* || $out == *master_link_status:up* ]] || return 1
  for m in 1 2 3 4 5 6; do
    [ "$m" != "$n" ] && alive "$(pidfile "redis$m")" || continue
    out=$(rcli "$m" cluster nodes | grep " 127.0.0.1:$((base + n))@") || return 1
    [[ $out == *" connected"* && $out != *fail* ]] || return 1
  done
}

redis_up() {
  local n
  for n in 1 2 3 4 5 6; do redis_start "$n"; done
  for n in 1 2 3 4 5 6; do wait_for "redis$n" 10 rcli "$n" ping; done
  REDISCLI_AUTH=$redis_password timeout 60 redis-cli --tls --cacert "$tls/ca.pem" --cluster create \
    $(for n in 1 2 3 4 5 6; do echo "127.0.0.1:$((base + n))"; done) \
    --cluster-replicas 1 --cluster-yes >"$root/redis-create.log" 2>&1 ||
    { cat "$root/redis-create.log" >&2; return 1; }
}

redis_wait() {
  local n
  for n in 1 2 3 4 5 6; do wait_for "redis$n" 30 redis_ready "$n"; done
}

# --- Kafka ------------------------------------------------------------------------------------

# A Kafka command-line tool from the broker's jars, e.g. kafka_tool TopicCommand --list.
kafka_tool() { # class, arguments...
  local class=$1; shift
  java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$PWD/scripts/kafka/log4j2.properties" \
    -cp "$kafka_libs/*" "org.apache.kafka.tools.$class" "$@"
}

kafka_conf() { # n
  local n=$1 dir=$root/kafka$1 voters
  voters=1@127.0.0.1:$((base + 97)),2@127.0.0.1:$((base + 98)),3@127.0.0.1:$((base + 99))
  mkdir -p "$dir"
  sed -e "s|@NODE_ID@|$n|g" -e "s|@PORT@|$((base + 90 + n))|g" \
      -e "s|@SASL_PORT@|$((base + 93 + n))|g" -e "s|@CONTROLLER_PORT@|$((base + 96 + n))|g" \
      -e "s|@VOTERS@|$voters|g" -e "s|@SASL_PASSWORD@|$kafka_password|g" \
      -e "s|@DATA@|$dir/data|g" scripts/kafka/cluster.properties >"$dir/server.properties"
}

kafka_format() { # n, cluster id
  java -cp "$kafka_libs/*" kafka.tools.StorageTool format -t "$2" \
    -c "$root/kafka$1/server.properties" >"$root/kafka$1/format.log" 2>&1 ||
    { cat "$root/kafka$1/format.log" >&2; return 1; }
}

kafka_start() { # n
  local dir=$root/kafka$1
  nohup java -Xms128m -Xmx384m -XX:+UseG1GC \
    -Dlog4j2.configurationFile="$PWD/scripts/kafka/log4j2.properties" \
    -cp "$kafka_libs/*" kafka.Kafka "$dir/server.properties" >"$dir/kafka.log" 2>&1 </dev/null &
  echo $! >"$dir/kafka.pid"
}

kafka_ready() { build/tally-produce "127.0.0.1:$((base + 90 + $1))" --check; }

kafka_in_sync() { # every partition of every topic has all its replicas in sync
  local out
  out=$(kafka_tool TopicCommand --bootstrap-server "$brokers" --describe \
    --under-replicated-partitions 2>&1) && [ -z "$out" ]
}

kafka_topic() {
  kafka_tool TopicCommand --bootstrap-server "$brokers" --create --if-not-exists \
    --topic "$topic" --partitions 8 --replication-factor 3 --config min.insync.replicas=2
}

# The active controller: the leader in the quorum state of the latest epoch any node wrote
# (each node rewrites its file on every change of leader or vote).
kafka_leader() {
  python3 - "$root"/kafka?/data/__cluster_metadata-0/quorum-state <<'EOF' 2>/dev/null || echo -1
import json, sys
best = {}
for path in sys.argv[1:]:
    try:
        with open(path) as f:
            state = json.load(f)
    except (OSError, ValueError):
        continue
    if state.get("leaderEpoch", -1) > best.get("leaderEpoch", -1):
        best = state
print(best.get("leaderId", -1))
EOF
}

# --- Galera -----------------------------------------------------------------------------------

sql() { # n, mariadb arguments...
  local n=$1; shift
  mariadb --no-defaults --socket="$root/galera$n/mariadbd.sock" -uroot -N -B "$@"
}

galera_conf() { # n
  local n=$1 dir=$root/galera$1
  mkdir -p "$dir/data"
  cat >"$dir/my.cnf" <<EOF
[mariadbd]
datadir=$dir/data
port=$((base + 305 + n))
bind-address=127.0.0.1
socket=$dir/mariadbd.sock
pid-file=$dir/mariadbd.pid
log-error=$dir/mariadbd.log
user=root
skip-name-resolve
max-connections=500
max-connect-errors=1000000
innodb-buffer-pool-size=128M
innodb-log-file-size=48M
innodb-flush-log-at-trx-commit=2
ssl-ca=$tls/ca.pem
ssl-cert=$tls/server.pem
ssl-key=$tls/server.key
binlog-format=ROW
default-storage-engine=InnoDB
innodb-autoinc-lock-mode=2
wsrep-on=ON
wsrep-provider=/usr/lib/galera/libgalera_smm.so
wsrep-cluster-name=tally
wsrep-cluster-address=gcomm://127.0.0.1:$((base + 311)),127.0.0.1:$((base + 312)),127.0.0.1:$((base + 313))
wsrep-node-name=galera$n
wsrep-node-address=127.0.0.1:$((base + 310 + n))
wsrep-node-incoming-address=127.0.0.1:$((base + 305 + n))
wsrep-sst-method=mariabackup
wsrep-sst-auth=root:
wsrep-sst-receive-address=127.0.0.1:$((base + 330 + n))
# A killed node leaves the group after 2 to 4 s (defaults: 5 to 15).
wsrep-provider-options="base_port=$((base + 310 + n)); gmcast.listen_addr=tcp://127.0.0.1:$((base + 310 + n)); ist.recv_addr=127.0.0.1:$((base + 320 + n)); gcache.size=128M; evs.keepalive_period=PT0.5S; evs.inactive_check_period=PT0.5S; evs.suspect_timeout=PT2S; evs.inactive_timeout=PT4S"

# The state transfer would take the ssl-* above for its own and encrypt with them: on
# loopback, plain.
[sst]
ssl-mode=DISABLED
EOF
}

galera_start() { # n, mariadbd arguments...
  local n=$1 dir=$root/galera$1; shift
  nohup mariadbd --defaults-file="$dir/my.cnf" "$@" >>"$dir/mariadbd.out" 2>&1 </dev/null &
  # mariadbd writes it too, but only once a joiner's state transfer is over.
  echo $! >"$dir/mariadbd.pid"
}

# A node killed mid-write left no position in grastate.dat; without one it would rejoin by a
# full state transfer (a copy of the whole datadir, by a donor that blocks writes at the end
# of it). Read it from InnoDB, as the system unit's galera_recovery does, so that the node
# catches up by IST.
galera_position() { # n
  local dir=$root/galera$1
  mariadbd --defaults-file="$dir/my.cnf" --wsrep-recover --log-error="$dir/recover.log" \
    >/dev/null 2>&1 || return 0
  sed -n 's/.*WSREP: Recovered position: *//p' "$dir/recover.log" | tail -n 1
}

galera_status() { # n, variable...: their values, in the order of their names
  local n=$1 names; shift
  names=$(printf "'%s'," "$@")
  sql "$n" -e "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS
               WHERE VARIABLE_NAME IN (${names%,}) ORDER BY VARIABLE_NAME"
}

galera_synced() { # n
  [ "$(galera_status "$1" wsrep_cluster_status wsrep_local_state_comment)" = $'Primary\nSynced' ]
}

galera_whole() { # all three Synced, in one group of three
  local n
  for n in 1 2 3; do
    [ "$(galera_status "$n" wsrep_cluster_size wsrep_local_state_comment)" = $'3\nSynced' ] ||
      return 1
  done
}

galera_up() {
  local n
  for n in 1 2 3; do galera_conf "$n"; done
  mariadb-install-db --no-defaults --datadir="$root/galera1/data" --user=root \
    --auth-root-authentication-method=normal --skip-test-db >"$root/galera1/install.log" 2>&1 ||
    { cat "$root/galera1/install.log" >&2; return 1; }
  galera_start 1 --wsrep-new-cluster
  wait_for galera1 60 galera_synced 1
  # Before the others join: their state transfer copies the users over.
  mysql_grant_tally "$root/galera1/mariadbd.sock"
  sql 1 -e "CREATE USER IF NOT EXISTS 'haproxy_check'@'127.0.0.1'"
  # One joiner at a time: two state transfers from one donor at once fail one of them (two
  # mariadb-backup runs contend for the donor's backup stage; seen here, one start in four).
  galera_start 2
  wait_for galera2 120 galera_synced 2
  galera_start 3
}

# --- HAProxy ----------------------------------------------------------------------------------

hap() { # command: its answer over the stats socket
  echo "$1" | socat -t 2 stdio "UNIX-CONNECT:$root/haproxy/haproxy.sock"
}

haproxy_start() {
  local dir=$root/haproxy n
  mkdir -p "$dir"
  cat >"$dir/haproxy.cfg" <<EOF
# Written by scripts/cluster.sh (its header says why each setting).
global
    stats socket $dir/haproxy.sock mode 600 level admin
    maxconn 4096

defaults
    timeout connect 1s
    timeout check 1s
    timeout client 1h
    timeout server 1h

listen galera
    bind 127.0.0.1:$galera_port
    mode tcp
    option mysql-check user haproxy_check post-41
    stick-table type ip size 1
    stick on dst
    default-server inter 500 fall 2 rise 2 on-marked-down shutdown-sessions
$(for n in 1 2 3; do
    echo "    server galera$n 127.0.0.1:$((base + 305 + n)) check$([ "$n" = 1 ] || echo " backup")"
  done)

listen tallyd
    bind 127.0.0.1:$http_port
    mode http
    balance roundrobin
    timeout client 30s
    timeout server 30s
    option httpchk GET /readyz
    http-check expect status 200
    retries 2
    option redispatch 1
    retry-on conn-failure empty-response
    http-request disable-l7-retry if METH_POST !{ req.hdr(idempotency-key) -m found }
    default-server inter 500 fall 2 rise 2
$(for n in 1 2 3; do echo "    server tallyd$n 127.0.0.1:$((base + 80 + n)) check"; done)
EOF
  haproxy -D -f "$dir/haproxy.cfg" -p "$dir/haproxy.pid" >"$dir/haproxy.log" 2>&1 ||
    { cat "$dir/haproxy.log" >&2; return 1; }
  wait_for HAProxy 10 hap "show info"
}

# The server HAProxy sends writes to: the one in the stick table while it is up, else the
# first one up (galera1, the only non-backup, comes first), as HAProxy itself chooses.
# Nothing when HAProxy is down (every Galera node is then a backup in `nodes`).
galera_writer() {
  alive "$(pidfile haproxy)" || return 0
  local stuck
  stuck=$(hap "show table galera" | sed -n 's/.* server_id=\([0-9]*\).*/\1/p')
  hap "show servers state galera" | awk -v stuck="${stuck:--1}" '
    /^#/ { for (i = 2; i <= NF; i++) col[$i] = i - 1; next }
    NF > 5 && $col["srv_op_state"] == 2 {
      if ($col["srv_id"] == stuck) { print $col["srv_name"]; found = 1; exit }
      if (first == "") first = $col["srv_name"]
    }
    END { if (!found && first != "") print first }'
}

# --- The whole ------------------------------------------------------------------------------

nodes_alive() { # how many nodes run
  local node count=0
  for node in "${nodes[@]}"; do alive "$(pidfile "$node")" && count=$((count + 1)); done
  echo "$count"
}

down_all() {
  local node pidfiles=()
  for node in "${nodes[@]}"; do pidfiles+=("$(pidfile "$node")"); done
  stop_pids "${pidfiles[@]}"
}

up() {
  local running n cluster_id formats=() start=$SECONDS
  running=$(nodes_alive)
  if [ "$running" = "${#nodes[@]}" ]; then echo "cluster: running"; return 0; fi
  if [ "$running" != 0 ]; then
    echo "cluster: $running of ${#nodes[@]} nodes are running: start the others" \
         "(scripts/cluster.sh start NODE) or stop them (down) first" >&2
    return 1
  fi
  scripts/deps.sh services
  scripts/deps.sh cluster
  scripts/deps.sh build
  make -s --no-print-directory build/tally-produce >/dev/null
  mkdir -p "$root"
  kafka_jars "$root/maven.log"
  rm -rf "$root"/redis? "$root"/kafka? "$root"/galera? "$root"/haproxy "$root"/*.log
  tls_up "$tls"
  # Whatever fails, nothing is left running (the logs stay).
  trap 'echo "cluster: up failed; stopping what it started (logs under $root)" >&2; down_all' EXIT
  trap 'exit 1' INT TERM

  # The JVMs that format Kafka's storage run while Redis starts, the brokers while Galera does.
  cluster_id=$(kafka_cluster_id)
  for n in 1 2 3; do kafka_conf "$n"; kafka_format "$n" "$cluster_id" & formats+=($!); done
  redis_up
  for pid in "${formats[@]}"; do wait "$pid"; done
  for n in 1 2 3; do kafka_start "$n"; done
  galera_up
  haproxy_start
  wait_for Galera 120 galera_whole
  for n in 1 2 3; do wait_for "kafka$n" 90 kafka_ready "$n"; done
  wait_for "the topic $topic" 60 kafka_topic
  redis_wait
  trap - EXIT INT TERM
  echo "cluster: up in $((SECONDS - start)) s: Redis Cluster on" \
       "127.0.0.1:$((base + 1))..$((base + 6)) (TLS), Kafka on $brokers, Galera behind" \
       "127.0.0.1:$galera_port, tallyd expected behind 127.0.0.1:$http_port"
}

start_node() { # node
  local node=$1 n pos
  if [ ! -d "$root/$node" ]; then
    echo "cluster: $node was never set up; run scripts/cluster.sh up" >&2
    return 1
  fi
  case $node in
    redis*)
      n=${node#redis}
      alive "$(pidfile "$node")" || redis_start "$n"
      wait_for "$node" 60 redis_ready "$n"
      ;;
    kafka*)
      n=${node#kafka}
      alive "$(pidfile "$node")" || kafka_start "$n"
      wait_for "$node" 90 kafka_ready "$n"
      wait_for "$node's replicas" 90 kafka_in_sync
      ;;
    galera*)
      n=${node#galera}
      if ! alive "$(pidfile "$node")"; then
        pos=$(galera_position "$n")
        galera_start "$n" ${pos:+--wsrep-start-position="$pos"}
      fi
      wait_for "$node" 120 galera_synced "$n"
      ;;
    haproxy) alive "$(pidfile haproxy)" || haproxy_start ;;
  esac
}

nodes_report() {
  local node pid role writer leader
  writer=$(galera_writer)
  leader=$(kafka_leader)
  for node in "${nodes[@]}"; do
    if ! alive "$(pidfile "$node")"; then
      echo "$node ${node%%[0-9]*} down $(port "$node") -"
      continue
    fi
    pid=$(cat "$(pidfile "$node")")
    case $node in
      redis*)
        role=$(rcli "${node#redis}" role 2>/dev/null | head -n 1)
        case $role in master) ;; slave) role=replica ;; *) role=starting ;; esac
        ;;
      kafka*) role=broker; [ "${node#kafka}" = "$leader" ] && role=controller-leader ;;
      galera*) role=backup; [ "$node" = "$writer" ] && role=writer ;;
      haproxy) role=proxy ;;
    esac
    echo "$node ${node%%[0-9]*} $role $(port "$node") $pid"
  done
}

case "${1:-}" in
  up) [ $# = 1 ] || usage; up ;;
  down)
    [ $# = 1 ] || usage
    down_all
    echo "cluster: stopped"
    ;;
  urls)
    [ $# = 1 ] || usage
    # Quoted: the values hold '&'. TALLY_CLUSTER_KAFKA is the brokers alone (tally-produce).
    echo "TALLY_CLUSTER_STORE='mysql://tally:$mysql_password_url@127.0.0.1:$galera_port/tally?ssl=1&ssl_ca=$tls/ca.pem'"
    echo "TALLY_CLUSTER_CACHE='rediss-cluster://:$redis_password@127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2)),127.0.0.1:$((base + 3))?tls_ca=$tls/ca.pem'"
    echo "TALLY_CLUSTER_BUS='kafka://$brokers/$topic?group=tally'"
    echo "TALLY_CLUSTER_KAFKA='$brokers'"
    echo "TALLY_CLUSTER_HTTP='http://127.0.0.1:$http_port'"
    echo "TALLY_CLUSTER_TALLYD_PORTS='$((base + 81)) $((base + 82)) $((base + 83))'"
    ;;
  nodes) [ $# = 1 ] || usage; nodes_report ;;
  kill | start)
    [ $# = 2 ] && [[ " ${nodes[*]} " == *" $2 "* ]] || usage
    if [ "$1" = start ]; then start_node "$2"; exit; fi
    f=$(pidfile "$2")
    if alive "$f"; then
      pid=$(cat "$f"); kill -9 "$pid"
      for _ in $(seq 100); do running "$pid" || break; sleep 0.05; done
    fi
    rm -f "$f"
    ;;
  *) usage ;;
esac
