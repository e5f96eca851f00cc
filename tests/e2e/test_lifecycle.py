"""Command line, concurrency invariants and stopping."""
import random
import signal
import subprocess
import threading
import time

import pytest

from tallyd import BINARY, Tallyd

# Concurrent writes and stopping, also on the release build (see conftest.py).
pytestmark = pytest.mark.release


def run_binary(*args, env=None):
    return subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=20, env=env)


def test_help_and_version():
    r = run_binary("--help")
    assert r.returncode == 0 and "--store URL" in r.stdout
    r = run_binary("--version")
    assert r.returncode == 0 and r.stdout.startswith("tallyd ")


def test_bad_flags_exit_2_with_one_line(tmp_path):
    for args in [["--listen", "nope"], ["--store", "mysql:x"], ["--store", "sqlite:"],
                 ["--cache", "memcached://x"], ["--bus", "nats://x"], ["--batch", "0"],
                 ["--flush-ms", "abc"], ["--bogus"], ["stray"]]:
        r = run_binary(*args, "--listen" if args[0] != "--listen" else "--batch",
                       "127.0.0.1:1" if args[0] != "--listen" else "10")
        assert r.returncode == 2, (args, r)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("tallyd: "), (args, r.stderr)
    import os
    r = run_binary(env=dict(os.environ, TALLY_BATCH="lots"))
    assert r.returncode == 2 and "'lots'" in r.stderr


def test_listen_failure_is_reported(tmp_path):
    first = Tallyd(tmp_path).start()
    try:
        r = run_binary("--listen", f"127.0.0.1:{first.port}", "--store",
                       f"sqlite:{tmp_path}/other.db")
        assert r.returncode == 1 and "cannot listen" in r.stderr
    finally:
        assert first.stop() == 0


def test_counts_equal_active_rows_after_concurrent_toggles(tallyd, db):
    """1,000 random like/unlike/collect/uncollect calls from 20 threads."""
    ops = []
    rng = random.Random(7)
    for _ in range(1000):
        uid, item, cid = rng.randint(1, 5), rng.randint(1, 4), rng.randint(1, 3)
        kind = rng.choice(["like", "unlike", "collect", "uncollect"])
        if kind == "like":
            ops.append(("PUT", f"/v1/users/{uid}/likes/article/{item}"))
        elif kind == "unlike":
            ops.append(("DELETE", f"/v1/users/{uid}/likes/article/{item}"))
        elif kind == "collect":
            ops.append(("PUT", f"/v1/users/{uid}/collections/{cid}/items/article/{item}"))
        else:
            ops.append(("DELETE", f"/v1/users/{uid}/collections/{cid}/items/article/{item}"))
    failures = []

    def worker(chunk):
        conn = tallyd.connect()
        for method, path in chunk:
            r = tallyd.request(method, path, conn=conn)
            if r.status != 200:
                failures.append((method, path, r))
        conn.close()

    threads = [threading.Thread(target=worker, args=(ops[i::20],)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []

    for item in range(1, 5):
        [(likes,)] = db.sql("SELECT count(*) FROM user_like WHERE biz='article' AND biz_id=?"
                            " AND status=1", (item,))
        [(colls,)] = db.sql("SELECT count(*) FROM user_collection WHERE biz='article'"
                            " AND biz_id=? AND status=1", (item,))
        got = tallyd.get(f"/v1/items/article/{item}").json
        assert (got["like_cnt"], got["collect_cnt"]) == (likes, colls), item
        for uid in range(1, 6):
            [(liked,)] = db.sql("SELECT count(*) FROM user_like WHERE uid=? AND biz_id=?"
                                " AND status=1", (uid, item))
            assert tallyd.get(f"/v1/items/article/{item}?uid={uid}").json["liked"] == bool(liked)
    [(negative,)] = db.sql("SELECT count(*) FROM interactive WHERE like_cnt < 0"
                           " OR collect_cnt < 0")
    assert negative == 0
    # Soft delete: rows are never removed, so every (uid, item) touched is still there.
    [(rows,)] = db.sql("SELECT count(*) FROM user_like")
    assert rows == len({p for m, p in ops if "/likes/" in p})


def test_graceful_stop_flushes_pending_reads(spawn):
    """With a 60 s flush window nothing is applied until the stop drains the bus."""
    t = spawn("--flush-ms", "60000", "--batch", "100000").start()
    for i in range(500):
        assert t.request("POST", f"/v1/items/article/{i % 7 + 1}/reads").status == 202
    assert t.metric("tally_read_events_applied_total") == 0
    assert t.stop(signal.SIGINT) == 0
    assert "stopped cleanly" in t.output()
    t2 = spawn().start()
    total = sum(i["read_cnt"] for i in
                t2.get("/v1/items/article?ids=1,2,3,4,5,6,7").json["items"])
    assert total == 500
    assert t2.stop() == 0


def test_stop_finishes_requests_in_flight(spawn):
    """SIGTERM while 10 clients are busy: every request sent before it gets an answer."""
    t = spawn().start()
    answered, errors, stop = [0], [], threading.Event()

    def client(uid):
        conn = t.connect()
        i = 0
        while not stop.is_set():
            i += 1
            try:
                r = t.request("PUT", f"/v1/users/{uid}/likes/article/{i}", conn=conn)
            except OSError:
                return  # the server closed the connection between requests
            except Exception as e:  # a request cut off mid-way
                errors.append(e)
                return
            if r.status != 200:
                errors.append(r)
            answered[0] += 1

    threads = [threading.Thread(target=client, args=(u,)) for u in range(1, 11)]
    for th in threads:
        th.start()
    time.sleep(0.5)
    assert t.stop() == 0
    stop.set()
    for th in threads:
        th.join()
    assert answered[0] > 0
    assert not [e for e in errors if not isinstance(e, Exception)], errors
