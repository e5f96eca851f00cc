#!/usr/bin/env python3
"""make test-cluster: failover drills on the multi-node deployment, then every count checked.

Three tallyd behind HAProxy share a Redis Cluster (3 masters, 3 replicas, TLS), three Kafka
brokers (replication 3, min.insync.replicas 2) and a Galera cluster of three behind HAProxy
(one writer), all from scripts/cluster.sh. Under the soak's steady mixed traffic (page views
with uid, likes and unlikes, collections, reads with and without keys), sent through
HAProxy, the drill kills -9, in turn, a Redis master, a Kafka broker, the Galera writer and a
tallyd, and brings each back after DOWN_S; then it restarts every tallyd in turn with
SIGTERM and --drain-ms, which must fail no request. At the end the soak's checks run unchanged (the
client's ledger against the rows, the cache's hashes, the windows, the API) and each kill's
cost is measured from the client's side: the seconds between its first and last failed
request, how many failed, and the p99 latency of every request sent from the kill until
GRACE_S after the node was back. docs/scaling.md keeps the figures of the last run.

DESIGN
  The soak's machinery (tests/soak/soak.py) with three things of the drill's own:
  - servers: scripts/cluster.sh instead of scripts/services.sh;
  - routing: every request goes to HAProxy (one "member" for the workers); the tallyd behind
    it are started on the ports HAProxy checks;
  - the cache's hashes are read from each master (a cluster has no KEYS across nodes).
  The tallyd kill is the soak's: HAProxy stops sending it requests first (state maint), its
  producer delivers what it accepted, then kill -9 (a read answered 202 sits a few ms in the
  producer's queue; docs/kafka.md). Its consumer is still committing when it dies.

Environment: DRILL_DOWN_S (20), DRILL_RATE (requests/s, 120), SOAK_SEED (1), SOAK_DOC (1:
rewrite the figures in docs/scaling.md), TALLYD, TALLY_PRODUCE, TALLY_CLUSTER_PORT_BASE.
"""
import collections
import os
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "../.."))
sys.path.insert(0, os.path.join(ROOT, "tests/soak"))
sys.path.insert(0, os.path.join(ROOT, "tests/e2e"))
import soak  # noqa: E402
from soak import (Cluster, Member, Soak, log, now, redis_cli, redis_hashes, sql,  # noqa: E402
                  wait_for, with_path)
from tallyd import Tallyd  # noqa: E402

DOWN_S = float(os.environ.get("DRILL_DOWN_S", "20"))
soak.RATE = float(os.environ.get("DRILL_RATE", "120"))
CLUSTER_SH = os.path.join(ROOT, "scripts/cluster.sh")
KILLS = ("redis_master", "kafka_broker", "galera_writer", "tallyd", "rolling_restart")
DRAIN_MS = 2000  # --drain-ms: above HAProxy's 2 checks x 0.5 s, so it stops sending first
MEMBERS = ("a", "b", "c")


def cluster_sh(*args, timeout=600):
    out = subprocess.run([CLUSTER_SH, *args], capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"cluster.sh {' '.join(args)} failed:\n{out.stdout}{out.stderr}")
    return out.stdout


def nodes():
    """[(name, kind, role, port)] as cluster.sh nodes says now."""
    return [tuple(line.split()[:4]) for line in cluster_sh("nodes").splitlines() if line.strip()]


class ClusterServices:
    """The servers: scripts/cluster.sh's Redis Cluster, Kafka and Galera + HAProxy."""

    def __init__(self):
        self.urls = {}

    def up(self):
        cluster_sh("up", timeout=900)
        for line in cluster_sh("urls").splitlines():
            k, v = line.split("=", 1)
            self.urls[k] = v.strip("'")

    def down(self):
        cluster_sh("down", timeout=300)


class Proxied(Cluster):
    """The tallyd behind HAProxy, on the ports it checks; the workers send every request to
    HAProxy, one member that never goes away."""

    def __init__(self, args, env, store, cache, logdir, http_url, ports):
        super().__init__(args, env, store, cache, logdir)
        self.ports = dict(zip(MEMBERS, ports))
        host, port = http_url.split("://", 1)[1].rsplit(":", 1)
        self.proxy = Member("haproxy", 1, Tallyd(logdir, port=int(port)))
        self.proxy.routable = True

    def port_of(self, name):
        return self.ports[name]

    def pick(self, rr, read):
        return self.proxy

    def done(self, m, read):
        pass


def haproxy(command):
    """One command on HAProxy's admin socket (cluster.sh nodes gives its pid; the socket is
    .cluster/haproxy/haproxy.sock)."""
    path = os.path.join(os.environ.get("TALLY_CLUSTER_DIR", os.path.join(ROOT, ".cluster")),
                        "haproxy/haproxy.sock")
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        s.sendall(command.encode() + b"\n")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out.decode()


class Drill(Soak):
    out = os.path.join(ROOT, "build/cluster")
    doc = os.path.join(ROOT, "docs/scaling.md")
    name = "drill"

    def __init__(self):
        super().__init__()
        self.services = ClusterServices()
        self.duration = 30 + len(KILLS) * (DOWN_S + 40)
        self.schedule = self.plan()

    def plan(self):
        # The hour turns before the first kill; then one kill every DOWN_S + 40 s, which
        # leaves each node's return and 20 s of steady traffic before the next.
        return [(10.0, "hour")] + [(25.0 + k * (DOWN_S + 40), kind)
                                   for k, kind in enumerate(KILLS)]

    def setup(self):
        log("starting the clusters (scripts/cluster.sh up)")
        self.services.up()
        u = self.services.urls
        self.db = with_path(u["TALLY_CLUSTER_STORE"], "tally_drill")
        self.redis = u["TALLY_CLUSTER_CACHE"]
        bus = u["TALLY_CLUSTER_BUS"]
        self.broker = u["TALLY_CLUSTER_KAFKA"]
        sql(self.db, "DROP DATABASE IF EXISTS tally_drill; CREATE DATABASE tally_drill",
            db="mysql")
        self.flush_cache()
        self.topic = f"tally.drill.{self.run_id}"
        out = subprocess.run([soak.PRODUCE, self.broker, "--create", self.topic,
                              str(soak.PARTITIONS)], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"tally-produce --create: {out.stderr}")
        slot = next(t for t, k in self.schedule if k == "hour")
        self.t_origin = now() + soak.STARTUP_S
        self.cross_real_ms = int((self.t_origin + slot) * 1000)
        self.boundary_ms = self.cross_real_ms // soak.HOUR * soak.HOUR
        self.offset_ms = self.boundary_ms - self.cross_real_ms
        self.hour0 = self.boundary_ms // soak.HOUR - 1
        topic_url = bus.split("?", 1)[0].rsplit("/", 1)[0] + "/" + self.topic
        args = ["--bus", f"{topic_url}?group=drill-{self.run_id}", "--read-window",
                soak.READ_WINDOW, "--test-clock", "--drain-ms", str(DRAIN_MS)]
        self.cluster = Proxied(args, {"TALLY_TEST_CLOCK_OFFSET_MS": str(self.offset_ms)},
                               self.db, self.redis, self.logdir, u["TALLY_CLUSTER_HTTP"],
                               [int(p) for p in u["TALLY_CLUSTER_TALLYD_PORTS"].split()])
        for name in MEMBERS:
            self.cluster.route(self.cluster.spawn(name), True)
        wait_for(lambda: self.http_up() == len(MEMBERS), 30, "HAProxy to see every tallyd up")

    def http_up(self):
        """How many tallyd HAProxy sends requests to."""
        return sum(1 for line in haproxy("show stat").splitlines()
                   if line.startswith("tallyd,tallyd") and ",UP," in line)

    # -- the cache of a cluster: each master's keys
    def masters(self):
        return [port for _, kind, role, port in nodes() if kind == "redis" and role == "master"]

    def node_url(self, port):
        head, rest = self.redis.split("://", 1)
        auth, hosts_opts = rest.rsplit("@", 1)
        opts = hosts_opts.split("?", 1)[1] if "?" in hosts_opts else ""
        return f"{head.replace('-cluster', '')}://{auth}@127.0.0.1:{port}?{opts}"

    def hashes(self, pattern):
        got = {}
        for port in self.masters():
            got.update(redis_hashes(self.node_url(port), pattern))
        return got

    def flush_cache(self):
        for port in self.masters():
            redis_cli("FLUSHALL", url=self.node_url(port))

    # -- the kills
    def outage(self, kind, node, restart):
        """kill -9 of node, DOWN_S seconds down, restart() brings it back."""
        f = self.fault(kind)
        cluster_sh("kill", node)
        t_kill = now()
        # The outage itself, not a wait for a condition: the node stays dead this long.
        time.sleep(DOWN_S)
        t_start = now()
        restart()
        f[2] = now()
        return {"node": node, "down_s": round(t_start - t_kill, 1),
                "rejoin_s": round(f[2] - t_start, 1)}

    def ev_redis_master(self):
        node = next(n for n, kind, role, _ in nodes() if kind == "redis" and role == "master")
        fig = self.outage("redis_master", node, lambda: cluster_sh("start", node))
        fig["promoted"] = [n for n, kind, role, _ in nodes() if kind == "redis" and
                           role == "master"]
        return fig

    def ev_kafka_broker(self):
        fig = self.outage("kafka_broker", "kafka2", lambda: cluster_sh("start", "kafka2"))
        caught = wait_for(lambda: all(self.drained(m) for m in self.cluster.live()), 90,
                          "the producers to deliver what they queued")
        fig["producers_caught_up"] = bool(caught)
        return fig

    def ev_galera_writer(self):
        node = next(n for n, kind, role, _ in nodes() if kind == "galera" and role == "writer")
        fig = self.outage("galera_writer", node, lambda: cluster_sh("start", node))
        fig["writer_after"] = next((n for n, kind, role, _ in nodes()
                                    if kind == "galera" and role == "writer"), None)
        return fig

    def ev_tallyd(self):
        victim = self.cluster.current["a"]
        f = self.fault("tallyd")
        server = f"tallyd/tallyd{MEMBERS.index(victim.name) + 1}"
        haproxy(f"set server {server} state maint")
        haproxy(f"shutdown sessions server {server}")
        drained = wait_for(lambda: self.drained(victim), 30,
                           f"{victim.label}'s producer to deliver every read it accepted",
                           step=0.05)
        rc = self.cluster.end(victim, signal.SIGKILL, "kill -9")
        t_kill = now()
        time.sleep(DOWN_S)  # the outage: the member stays dead this long
        m = self.cluster.spawn(victim.name)
        haproxy(f"set server {server} state ready")
        wait_for(lambda: self.http_up() == len(MEMBERS), 30, "HAProxy to see it up again")
        self.cluster.route(m, True)
        f[2] = now()
        if not drained:
            self.drain_failures.append(victim.label)
        return {"node": f"tallyd {victim.label}", "exit": rc, "reads_drained_first":
                bool(drained), "down_s": round(now() - t_kill, 1), "new": m.label}

    def ev_rolling_restart(self):
        """Each tallyd in turn: SIGTERM (it answers /readyz 503 and keeps serving for
        --drain-ms while HAProxy takes it out), then a new one on its port. Not a fault: no
        request may fail."""
        f = self.fault("rolling_restart")
        exits = []
        for name in MEMBERS:
            old = self.cluster.current[name]
            exits.append(self.cluster.end(old, signal.SIGTERM, "SIGTERM"))
            m = self.cluster.spawn(name)
            wait_for(lambda: self.http_up() == len(MEMBERS), 30, f"HAProxy to see {name} up")
            self.cluster.route(m, True)
        f[2] = now()
        return {"node": "every tallyd, one at a time", "exits": exits}

    # -- what each kill cost the clients
    def cost(self):
        lat = sorted((t, d, ok) for w in self.workers for t, d, ok in w.ledger.latency)
        before = [d for t, d, _ in lat if t < self.faults[0][1]] if self.faults else []
        self.figures["p99_ms_steady"] = p99_ms(before)
        for e in self.events:
            f = next((f for f in self.faults if f[0] == e["kind"]), None)
            if f is None:
                continue
            during = [(t, d, ok) for t, d, ok in lat if f[1] <= t <= f[2] + soak.GRACE_S]
            failed = [t for t, _, ok in during if not ok]
            e["requests"] = len(during)
            e["failed"] = len(failed)
            e["failing_s"] = round(failed[-1] - failed[0], 1) if failed else 0
            e["p99_ms"] = p99_ms([d for _, d, _ in during])

    def markdown(self, r):
        """The soak's report, opened by what the drill measures: each kill's cost."""
        soak_md = super().markdown(r).split("\n", 1)[1]  # its first line describes a soak
        lines = [f"Run `{r['run']}` (UTC), `{r['commit']}`; {r['machine']}; {soak.RATE:g}"
                 f" requests/s through HAProxy to three tallyd; each node down {DOWN_S:g} s;"
                 f" wall time {r['wall_s']:.0f} s (clusters, traffic, settling, checks).", "",
                 "| kill -9 of | node | back after | requests meanwhile | failed | failing for"
                 " | p99 meanwhile |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for e in r["events"]:
            if e["kind"] == "hour" or "requests" not in e:
                continue
            lines.append(f"| {e['kind'].replace('_', ' ')} | {e.get('node')} |"
                         f" {e.get('down_s', '-')} s | {e['requests']} | {e['failed']} |"
                         f" {e['failing_s']} s | {e['p99_ms']} ms |")
        lines += ["", f"p99 of the steady traffic before the first kill:"
                  f" {r['figures'].get('p99_ms_steady')} ms. The rolling restart is SIGTERM with"
                  f" --drain-ms {DRAIN_MS}, one tallyd at a time, not a kill.", ""]
        return "\n".join(lines) + soak_md

    def verify(self, settled):
        self.cost()
        super().verify(settled)
        rolling = next((e for e in self.events if e["kind"] == "rolling_restart"), {})
        self.check("a rolling restart with --drain-ms fails no request and every tallyd exits 0",
                   rolling.get("failed") == 0 and rolling.get("exits") == [0] * len(MEMBERS),
                   f"{rolling.get('failed')} failed of {rolling.get('requests')} requests,"
                   f" exits {rolling.get('exits')}")


def p99_ms(durations):
    if not durations:
        return None
    s = sorted(durations)
    return round(s[min(len(s) - 1, int(len(s) * 0.99))] * 1000, 1)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, soak.on_signal)
    sys.exit(Drill().main())
