"""The cache on a Redis Cluster (redis-cluster://), against real redis-server nodes.

Each test starts its own cluster of three masters on free ports (no replicas: failover is
tests/cluster/drill.py's, on scripts/cluster.sh's six nodes) and a tallyd on the embedded
store whose cache is that cluster. Needs redis-server and redis-cli (Debian).
"""
import os
import shutil
import socket
import subprocess
import time

import pytest

from tallyd import MYSQL, Tallyd

pytestmark = [
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
    # Its own Redis and the embedded store: the same test in every configuration, so once.
    pytest.mark.skipif(bool(MYSQL), reason="runs in the embedded configuration"),
]

PASSWORD = "cluster-redis-pw-C3n5"


def two_free_ports():
    """A port p whose cluster bus port p + 10000 is free too."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p + 10000))
                return p
            except OSError:
                continue
    raise RuntimeError("no free pair of ports")


class RedisCluster:
    def __init__(self, d, masters=3):
        self.ports, self.procs = [], []
        for _ in range(masters):
            p = two_free_ports()
            nd = os.path.join(d, str(p))
            os.makedirs(nd)
            self.procs.append(subprocess.Popen(
                ["redis-server", "--port", str(p), "--bind", "127.0.0.1", "--cluster-enabled",
                 "yes", "--cluster-config-file", "nodes.conf", "--dir", nd, "--save", "",
                 "--appendonly", "no", "--requirepass", PASSWORD, "--masterauth", PASSWORD],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            self.ports.append(p)
        for p in self.ports:
            self.wait(lambda: self.cli(p, "PING", check=False) == "PONG", "a node to start")
        self.cli(self.ports[0], "--cluster", "create",
                 *[f"127.0.0.1:{p}" for p in self.ports], "--cluster-yes")
        self.wait(lambda: all("cluster_state:ok" in self.cli(p, "CLUSTER", "INFO")
                              for p in self.ports), "the cluster to be ok")

    @staticmethod
    def wait(cond, what, timeout=30):
        deadline = time.time() + timeout
        while not cond():
            assert time.time() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)

    def cli(self, port, *args, check=True):
        r = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True,
                           text=True, env=dict(os.environ, REDISCLI_AUTH=PASSWORD), check=check,
                           timeout=60)
        return r.stdout.strip()

    def url(self):
        return f"redis-cluster://:{PASSWORD}@127.0.0.1:{self.ports[0]}"

    def hash(self, key):
        out = self.cli(self.ports[0], "-c", "HGETALL", key).split("\n")
        return dict(zip(out[::2], out[1::2]))

    def node_of(self, key):
        """(port, node id) of the master that owns key's slot."""
        slot = int(self.cli(self.ports[0], "CLUSTER", "KEYSLOT", key))
        for line in self.cli(self.ports[0], "CLUSTER", "NODES").splitlines():
            f = line.split()
            for r in f[8:]:
                lo, _, hi = r.partition("-")
                if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                    return int(f[1].split(":")[1].split("@")[0]), f[0], slot
        raise AssertionError(f"no node owns slot {slot}")

    def node_id(self, port):
        return self.cli(port, "CLUSTER", "MYID")

    def move_slot(self, slot, src, dst):
        """Moves one slot with its keys from port src to port dst, as a resharding does:
        importing/migrating, MIGRATE of each key, then the new owner told to every node."""
        src_id, dst_id = self.node_id(src), self.node_id(dst)
        self.cli(dst, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", src_id)
        self.cli(src, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", dst_id)
        while keys := self.cli(src, "CLUSTER", "GETKEYSINSLOT", str(slot), "100").split():
            self.cli(src, "MIGRATE", "127.0.0.1", str(dst), "", "0", "5000", "AUTH", PASSWORD,
                     "KEYS", *keys)
        for p in self.ports:
            self.cli(p, "CLUSTER", "SETSLOT", str(slot), "NODE", dst_id)

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait()


@pytest.fixture
def cluster(tmp_path):
    c = RedisCluster(str(tmp_path / "redis-cluster"))
    yield c
    c.stop()


def settle(t, item_id, want):
    deadline = time.time() + 10
    while (got := t.get(f"/v1/items/article/{item_id}").json["read_cnt"]) != want:
        assert time.time() < deadline, f"read_cnt {got}, want {want}"
        time.sleep(0.02)


def test_a_batch_across_every_master_is_cached_by_slot(tmp_path, cluster):
    """A page of 100 items lands on all three masters; one batch of reads ends on each of
    their hashes (begin/end grouped by slot: a script's keys must share one), and a page
    view afterwards is served from the cache with the same counts."""
    t = Tallyd(tmp_path, cache=cluster.url()).start()
    try:
        ids = ",".join(str(i) for i in range(1, 101))
        assert t.get(f"/v1/items/article?ids={ids}").status == 200  # fills all 100
        assert len({cluster.node_of(f"interactive:article:{i}")[0] for i in range(1, 101)}) == 3
        for i in range(1, 101):
            for _ in range(i % 3 + 1):
                assert t.request("POST", f"/v1/items/article/{i}/reads").status == 202
        settle(t, 100, 100 % 3 + 1)
        for i in range(1, 101):
            settle(t, i, i % 3 + 1)
            assert cluster.hash(f"interactive:article:{i}").get("read_cnt") == str(i % 3 + 1)
        assert t.metric("tally_cache_errors_total") == 0
    finally:
        assert t.stop() == 0


def test_a_slot_moved_under_traffic_is_followed(tmp_path, cluster):
    """The slot of a liked item moves to another master while tallyd keeps using it: the
    commands that hit the old owner answer MOVED, are sent again to the new one (so every
    write's increment reaches the cache), and the counts served and cached stay the
    store's."""
    t = Tallyd(tmp_path, cache=cluster.url()).start()
    try:
        key = "interactive:article:7"
        assert t.request("PUT", "/v1/users/1/likes/article/7").json["like_cnt"] == 1
        assert t.get("/v1/items/article/7?uid=1").json["liked"] is True
        assert cluster.hash(key).get("like_cnt") == "1"
        src, _, slot = cluster.node_of(key)
        dst = next(p for p in cluster.ports if p != src)
        cluster.move_slot(slot, src, dst)
        assert cluster.node_of(key)[0] == dst
        for uid in range(2, 12):  # each connection's first command meets MOVED
            r = t.request("PUT", f"/v1/users/{uid}/likes/article/7")
            assert r.status == 200 and r.json["like_cnt"] == uid, r
            # Followed, not dropped: the write's increment reached the cached hash (a
            # fence's end that ran without its begin would have dropped the counters).
            assert cluster.hash(key).get("like_cnt") == str(uid), cluster.hash(key)
        assert t.request("DELETE", "/v1/users/1/likes/article/7").json["like_cnt"] == 10
        got = t.get("/v1/items/article/7?uid=1").json
        assert (got["like_cnt"], got["liked"]) == (10, False)
        assert cluster.hash(key).get("like_cnt") == "10"
        assert cluster.cli(dst, "EXISTS", key) == "1"  # on its new owner
        assert t.metric("tally_cache_errors_total") == 0
    finally:
        assert t.stop() == 0


def test_a_dead_master_is_served_from_the_store(tmp_path, cluster):
    """A master lost with no replica to take over: its slots fail, every answer still comes
    right from the store, and the other masters keep caching."""
    t = Tallyd(tmp_path, cache=cluster.url()).start()
    try:
        for i in range(1, 31):
            assert t.request("PUT", f"/v1/users/1/likes/article/{i}").status == 200
        victim = cluster.node_of("interactive:article:1")[0]
        cluster.procs[cluster.ports.index(victim)].kill()
        for i in range(1, 31):
            r = t.request("PUT", f"/v1/users/2/likes/article/{i}")
            assert r.status == 200 and r.json["like_cnt"] == 2, r
        ids = ",".join(str(i) for i in range(1, 31))
        r = t.get(f"/v1/items/article?ids={ids}&uid=2")
        assert r.status == 200
        assert all(e["like_cnt"] == 2 and e["liked"] for e in r.json["items"]), r
    finally:
        assert t.stop() == 0
