"""MariaDB + Redis: concurrency, the cache race, and servers that fail under load.

These run only when `make test` provides the servers (TALLY_TEST_MYSQL and TALLY_TEST_REDIS);
they stop, kill and restart those servers through scripts/services.sh.
"""
import os
import random
import signal
import subprocess
import threading
import time

import pytest

from tallyd import CLUSTER, MYSQL, REDIS, redis_all, redis_cli, store_write_lock

pytestmark = pytest.mark.skipif(not (MYSQL and REDIS), reason="needs MariaDB and Redis")

ROOT = os.path.join(os.path.dirname(__file__), "../..")


def services(*args):
    subprocess.run([os.path.join(ROOT, "scripts/services.sh"), *args], check=True,
                   capture_output=True)


def redis(*args):
    return redis_cli(*args, check=False)


def cached(biz, id):
    """The counters Redis holds for an item, or None."""
    fields = redis("HGETALL", f"interactive:{biz}:{id}").split("\n")
    h = dict(zip(fields[::2], fields[1::2]))
    if "read_cnt" not in h:
        return None
    return {k: int(h[k]) for k in ("read_cnt", "like_cnt", "collect_cnt")}


def stored(db, biz, id):
    rows = db.sql(f"SELECT read_cnt, like_cnt, collect_cnt FROM interactive"
                  f" WHERE biz='{biz}' AND biz_id=?", (id,))
    r = rows[0] if rows else (0, 0, 0)
    return {"read_cnt": r[0], "like_cnt": r[1], "collect_cnt": r[2]}


def counts_of(state):
    return {k: state[k] for k in ("read_cnt", "like_cnt", "collect_cnt")}


# Tests that stop or pause scripts/services.sh's single servers. On make test-cluster's
# clusters the failover drill (tests/cluster/drill.py) kills nodes instead.
single_servers = pytest.mark.skipif(CLUSTER, reason="stops a single server; on the clusters"
                                    " tests/cluster/drill.py kills nodes")


@pytest.fixture(autouse=True)
def servers_back_up():
    """Whatever a test did to the servers, the next test finds them running."""
    yield
    if not CLUSTER:
        services("up")


def test_fifty_parallel_identical_likes(tallyd, db):
    barrier = threading.Barrier(50)
    statuses = []

    def like():
        conn = tallyd.connect()
        barrier.wait()
        statuses.append(tallyd.request("PUT", "/v1/users/42/likes/article/7", conn=conn).status)
        conn.close()

    threads = [threading.Thread(target=like) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 50
    assert db.sql("SELECT count(*) FROM user_like") == [(1,)]
    assert stored(db, "article", 7)["like_cnt"] == 1
    assert tallyd.get("/v1/items/article/7?uid=42").json["like_cnt"] == 1


def test_queries_are_served_by_indexes(tallyd, db):
    tallyd.request("PUT", "/v1/users/1/likes/article/1")
    plans = {
        "top": "EXPLAIN SELECT biz_id, read_cnt, like_cnt, collect_cnt FROM interactive"
               " WHERE biz = 'article' ORDER BY like_cnt DESC, biz_id ASC LIMIT 10",
        "likes": "EXPLAIN SELECT id, biz, biz_id, utime FROM user_like WHERE uid = 1"
                 " AND biz = 'article' AND status = 1 AND (utime < 9 OR (utime = 9 AND id < 9))"
                 " ORDER BY utime DESC, id DESC LIMIT 20",
        "collection": "EXPLAIN SELECT id, biz, biz_id, utime FROM user_collection WHERE uid = 1"
                      " AND cid = 1 AND status = 1 AND (utime < 9 OR (utime = 9 AND id < 9))"
                      " ORDER BY utime DESC, id DESC LIMIT 20",
    }
    keys = {"top": "top_like", "likes": "list", "collection": "list"}
    for name, sql in plans.items():
        (row,) = db.sql(sql)
        # id, select_type, table, type, possible_keys, key, key_len, ref, rows, Extra
        assert row[5] == keys[name], (name, row)
        assert "filesort" not in str(row[9]) and row[3] != "ALL", (name, row)
    # The windowed top list reads the window's index in order and joins each row to its
    # totals; without STRAIGHT_JOIN MariaDB drove from interactive and sorted.
    rows = db.sql("EXPLAIN SELECT STRAIGHT_JOIN w.biz_id, w.like_cnt, i.read_cnt, i.like_cnt,"
                  " i.collect_cnt FROM interactive_window w JOIN interactive i"
                  " ON i.biz = w.biz AND i.biz_id = w.biz_id WHERE w.biz = 'article'"
                  " AND w.win = 24 AND w.like_cnt > 0 ORDER BY w.like_cnt DESC, w.biz_id ASC"
                  " LIMIT 10")
    assert [(r[2], r[5]) for r in rows] == [("w", "top_like"), ("i", "uk_biz")], rows
    assert all("filesort" not in str(r[9]) and "temporary" not in str(r[9]) for r in rows), rows


def test_cache_is_filled_and_incremented(tallyd, db):
    assert cached("article", 7) is None
    tallyd.get("/v1/items/article/7")
    assert cached("article", 7) == {"read_cnt": 0, "like_cnt": 0, "collect_cnt": 0}
    tallyd.request("PUT", "/v1/users/1/likes/article/7")
    tallyd.request("PUT", "/v1/users/1/collections/2/items/article/7")
    for _ in range(3):
        tallyd.request("POST", "/v1/items/article/7/reads")
    deadline = time.time() + 10
    while stored(db, "article", 7)["read_cnt"] < 3 and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.1)
    assert cached("article", 7) == {"read_cnt": 3, "like_cnt": 1, "collect_cnt": 1}
    assert 0 < int(redis("TTL", "interactive:article:7")) <= 900
    # The cache is read first: a value only Redis has is what the API answers.
    redis("HSET", "interactive:article:7", "like_cnt", "1000")
    assert tallyd.get("/v1/items/article/7").json["like_cnt"] == 1000
    redis("DEL", "interactive:article:7")  # losing the cache loses nothing
    assert tallyd.get("/v1/items/article/7").json["like_cnt"] == 1


def test_cache_matches_store_after_fills_race_writes(tallyd, db):
    """Stress: readers refill the cache while writers commit and the key keeps vanishing.

    The exact interleavings are played step by step in tests/unit/test_redis.c; this
    checks the whole path end to end: afterwards the cache equals the store.
    """
    stop = threading.Event()
    errors = []
    items = [1, 2, 3]

    def reader(seed):
        rng, conn = random.Random(seed), tallyd.connect()
        while not stop.is_set():
            ids = ",".join(map(str, items))
            uid = rng.choice(["", f"&uid={rng.randint(1, 30)}"])  # and the users' flags
            r = tallyd.request("GET", f"/v1/items/video?ids={ids}{uid}", conn=conn)
            if r.status != 200:
                errors.append(r)

    def writer(seed):
        rng, conn = random.Random(seed), tallyd.connect()
        while not stop.is_set():
            uid, item = rng.randint(1, 30), rng.choice(items)
            method = rng.choice(["PUT", "DELETE"])
            path = rng.choice([f"/v1/users/{uid}/likes/video/{item}",
                               f"/v1/users/{uid}/collections/{rng.randint(1, 2)}/items/video/{item}"])
            r = tallyd.request(method, path, conn=conn)
            if r.status != 200:
                errors.append(r)
            if rng.random() < 0.3:
                tallyd.request("POST", f"/v1/items/video/{item}/reads", conn=conn)

    def evictor():
        rng = random.Random(99)
        while not stop.is_set():
            redis("DEL", *[f"interactive:video:{i}" for i in items],
                  *[f"user_flags:{rng.randint(1, 30)}" for _ in range(5)])
            time.sleep(0.005)

    threads = ([threading.Thread(target=reader, args=(s,)) for s in range(6)] +
               [threading.Thread(target=writer, args=(s,)) for s in range(6)] +
               [threading.Thread(target=evictor)])
    for t in threads:
        t.start()
    time.sleep(4)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    queued = tallyd.metric("tally_read_events_queued_total")
    deadline = time.time() + 10
    while tallyd.metric("tally_read_events_applied_total") < queued and time.time() < deadline:
        time.sleep(0.05)
    for i in items:
        truth = stored(db, "video", i)
        assert counts_of(tallyd.get(f"/v1/items/video/{i}").json) == truth
        assert cached("video", i) == truth, i
    # Every user's flags, as served and as cached, are the rows'.
    liked = set(db.sql("SELECT uid, biz_id FROM user_like WHERE biz = 'video' AND status = 1"))
    collected = set(db.sql("SELECT uid, biz_id FROM user_collection"
                           " WHERE biz = 'video' AND status = 1"))
    assert liked and collected
    ids = ",".join(map(str, items))
    for uid in range(1, 31):
        cached_flags = dict(zip(*[iter(redis("HGETALL", f"user_flags:{uid}").split())] * 2))
        for it in tallyd.get(f"/v1/items/video?ids={ids}&uid={uid}").json["items"]:
            want = ((uid, it["id"]) in liked, (uid, it["id"]) in collected)
            assert (it["liked"], it["collected"]) == want, (uid, it)
            field = cached_flags.get(f"video:{it['id']}")
            if field is not None:
                assert int(field) == want[0] | want[1] << 1, (uid, it, field)


def test_a_users_cached_flags_stay_bounded(tallyd, db):
    """A user who views 3,000 distinct items: the user's flags hash in Redis stays near its
    bound (1,000 items, plus at most one request's 100 and the two fence fields) instead of
    growing a field per item, and the flags served stay right after it starts over."""
    uid, biz = 4242, "bounded"
    assert tallyd.request("PUT", f"/v1/users/{uid}/likes/{biz}/5").status == 200
    sizes = []
    for first in range(1, 3001, 100):
        ids = ",".join(str(i) for i in range(first, first + 100))
        r = tallyd.get(f"/v1/items/{biz}?ids={ids}&uid={uid}")
        assert r.status == 200, r
        assert [it["liked"] for it in r.json["items"]] == [i == 5 for i in range(first, first + 100)]
        sizes.append(int(redis("HLEN", f"user_flags:{uid}")))
    assert max(sizes) <= 1000 + 100 + 2, sizes
    assert sizes[-1] < 3000 and min(sizes[10:]) < 1000, sizes  # it started over, and filled
    again = tallyd.get(f"/v1/items/{biz}?ids=5,6&uid={uid}").json["items"]
    assert [(it["id"], it["liked"]) for it in again] == [(5, True), (6, False)]


@single_servers
@pytest.mark.skipif(not os.environ.get("TALLY_TEST_REDIS_TLS"), reason="needs services.sh's TLS port")
def test_the_cache_over_tls(spawn, db):
    """The same Redis through its TLS port (rediss://, the services' CA): writes and fills
    land in the hashes the plain port shows."""
    t = spawn(cache=os.environ["TALLY_TEST_REDIS_TLS"]).start()
    assert t.request("PUT", "/v1/users/1/likes/article/3").json["like_cnt"] == 1
    assert t.get("/v1/items/article/3?uid=1").json["liked"] is True
    assert cached("article", 3) == {"read_cnt": 0, "like_cnt": 1, "collect_cnt": 0}
    assert t.request("PUT", "/v1/users/2/likes/article/3").json["like_cnt"] == 2
    assert cached("article", 3)["like_cnt"] == 2  # the write's end ran over TLS
    assert t.metric("tally_cache_errors_total") == 0
    assert t.stop() == 0


def test_script_flush_is_recovered(tallyd, db):
    tallyd.get("/v1/items/article/1")
    redis_all("SCRIPT", "FLUSH")
    r = tallyd.request("PUT", "/v1/users/1/likes/article/1")
    assert r.status == 200 and r.json["like_cnt"] == 1
    assert cached("article", 1)["like_cnt"] == 1  # the increment ran after the reload
    redis_all("SCRIPT", "FLUSH")
    redis("DEL", "interactive:article:1")
    assert tallyd.get("/v1/items/article/1").json["like_cnt"] == 1
    assert cached("article", 1)["like_cnt"] == 1  # the fill ran after the reload
    assert tallyd.metric("tally_cache_errors_total") == 0


@single_servers
def test_redis_killed_and_restarted(tallyd, db):
    tallyd.request("PUT", "/v1/users/1/likes/article/1")
    tallyd.get("/v1/items/article/1")
    services("kill", "redis")
    for i in range(2, 40):  # every call still answers, from the store
        r = tallyd.request("PUT", f"/v1/users/{i}/likes/article/1")
        assert r.status == 200 and r.json["like_cnt"] == i
        r = tallyd.get("/v1/items/article?ids=1,2")
        assert r.status == 200 and r.json["items"][0]["like_cnt"] == i
        assert tallyd.request("POST", "/v1/items/article/1/reads").status == 202
    assert tallyd.get("/healthz").status == 200
    assert tallyd.metric("tally_cache_errors_total") > 0
    services("up", "redis")
    time.sleep(1.2)  # connections are retried once a second
    deadline = time.time() + 10
    while cached("article", 1) is None and time.time() < deadline:
        tallyd.get("/v1/items/article/1")
        time.sleep(0.1)
    truth = stored(db, "article", 1)
    assert truth["like_cnt"] == 39
    assert cached("article", 1)["like_cnt"] == 39


@single_servers
def test_redis_unreachable_then_back_drops_entries_that_missed_writes(tallyd, db):
    """A Redis that keeps its data but misses writes must not serve the old counts after."""
    tallyd.get("/v1/items/article/5")
    assert cached("article", 5)["like_cnt"] == 0
    pid = open(os.path.join(ROOT, ".services/redis/redis.pid")).read().strip()
    os.kill(int(pid), 19)  # SIGSTOP: up, but not answering
    try:
        r = tallyd.request("PUT", "/v1/users/1/likes/article/5")
        assert r.status == 200 and r.json["like_cnt"] == 1
    finally:
        os.kill(int(pid), 18)  # SIGCONT
    time.sleep(1.2)
    assert tallyd.get("/v1/items/article/5").json["like_cnt"] == 1
    assert cached("article", 5) in (None, {"read_cnt": 0, "like_cnt": 1, "collect_cnt": 0})
    # The outage is logged as what it was (a receive timeout), not as errno's EAGAIN.
    assert "redis: timed out" in tallyd.output(), tallyd.output()[-2000:]
    assert "Resource temporarily unavailable" not in tallyd.output()


def test_a_write_killed_in_flight_leaves_no_stale_cache(spawn, db):
    """tallyd is killed (-9) while a like waits on a row lock, between the cache's begin and
    end; MariaDB commits the like afterwards. The item's hash keeps the old count and an
    orphaned fence. Once the fence is past its deadline (30 s; the test moves `until` into
    the past rather than wait), the item is served from the store and the hash deleted,
    then filled again: the served and cached count is the rows', not the old one."""
    key = "interactive:article:7"
    t = spawn().start()
    assert t.request("PUT", "/v1/users/1/likes/article/7").status == 200
    assert t.get("/v1/items/article/7").json["like_cnt"] == 1
    assert cached("article", 7)["like_cnt"] == 1
    with store_write_lock(db):
        stuck = threading.Thread(target=lambda: _quietly(
            lambda: t.request("PUT", "/v1/users/2/likes/article/7", conn=t.connect())))
        stuck.start()
        deadline = time.time() + 10
        while redis("HGET", key, "inflight") != "1":
            assert time.time() < deadline, "the like never began"
            time.sleep(0.01)
        assert int(redis("HGET", key, "until")) > time.time() * 1000  # a deadline ahead
        assert t.stop(signal.SIGKILL) == -9
        stuck.join()
    deadline = time.time() + 30
    while stored(db, "article", 7)["like_cnt"] != 2:  # the orphaned CALL commits
        assert time.time() < deadline, stored(db, "article", 7)
        time.sleep(0.05)
    assert cached("article", 7)["like_cnt"] == 1 and redis("HGET", key, "inflight") == "1"
    redis("HSET", key, "until", "1")  # 30 s later, as far as the fence can tell
    t = spawn().start()
    assert t.get("/v1/items/article/7").json["like_cnt"] == 2  # served from the store
    deadline = time.time() + 10
    while cached("article", 7) != {"read_cnt": 0, "like_cnt": 2, "collect_cnt": 0}:
        assert time.time() < deadline, redis("HGETALL", key)
        t.get("/v1/items/article/7")  # the hash is deleted, then filled again
        time.sleep(0.05)
    assert t.get("/v1/items/article/7").json["like_cnt"] == 2
    assert t.stop() == 0


def _quietly(fn):
    try:
        fn()
    except OSError:  # the connection dies with the killed tallyd
        pass


@single_servers
def test_mariadb_down_gives_503_then_recovers_exactly(spawn, db):
    t = spawn().start()
    for i in range(1, 11):
        t.request("PUT", f"/v1/users/{i}/likes/article/1")
    accepted = 0
    for _ in range(100):
        accepted += t.request("POST", "/v1/items/article/1/reads").status == 202
    services("down", "mysql")
    try:
        started = time.time()
        r = t.request("PUT", "/v1/users/99/likes/article/1")
        assert r.status == 503 and r.json["error"]["code"] == "unavailable"
        assert t.get("/healthz").status == 503
        assert t.get("/v1/items/article/2").status == 503  # not cached: needs the store
        for _ in range(100):  # reads are queued and wait for the store
            accepted += t.request("POST", "/v1/items/article/1/reads").status == 202
        assert time.time() - started < 30  # answers, never a hang
        time.sleep(3)
    finally:
        services("up", "mysql")
    deadline = time.time() + 30
    while t.get("/healthz").status != 200 and time.time() < deadline:
        time.sleep(0.2)
    assert t.get("/healthz").status == 200
    while stored(db, "article", 1)["read_cnt"] < accepted and time.time() < deadline:
        time.sleep(0.2)
    assert accepted == 200
    assert stored(db, "article", 1) == {"read_cnt": 200, "like_cnt": 10, "collect_cnt": 0}
    r = t.request("PUT", "/v1/users/99/likes/article/1")
    assert r.status == 200 and r.json["like_cnt"] == 11
    assert counts_of(t.get("/v1/items/article/1").json) == stored(db, "article", 1)
    assert t.metric("tally_read_batch_failures_total") > 0
    assert t.stop() == 0
