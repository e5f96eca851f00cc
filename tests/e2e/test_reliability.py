"""Faults on the read-counting path: tallyd never loses an accepted read in silence.

Invariant checked by each test: reads applied + reads reported lost (+ dead-lettered,
for poison) = reads answered 202.

- A full disk under the SQLite file (a 2 MiB tmpfs, so root is needed to mount it):
  /healthz answers 503 while commits fail, reads are held, and either the disk comes
  back and everything is applied, or a stop gives up after --stop-timeout-ms, logs one
  line `lost N accepted read events` and exits 1.
- A Kafka broker nobody listens for: every 202'd read is reported lost at stop, exit 1.
- A counter that would pass 2^63-1 (both stores): the poisoned events go to
  read_dead_letter, every other read is counted.
"""
import os
import re
import subprocess
import time

import pytest

from tallyd import MYSQL, Tallyd, free_port, report

LOST = re.compile(r"lost (\d+) accepted read events")
INT64_MAX = 9223372036854775807


def wait_for(cond, timeout=30, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def lost_lines(t):
    """The `lost N` lines of t's log; fails on any sanitizer report."""
    out = t.output()
    assert "ERROR: AddressSanitizer" not in out and "runtime error" not in out, out[-3000:]
    return [line for line in out.splitlines() if LOST.search(line)]


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs for the SQLite file; unmounted afterwards."""
    if MYSQL:
        pytest.skip("fills the disk under a SQLite file")
    disk = tmp_path / "disk"
    disk.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def fill(disk, leave):
    """Takes all but `leave` bytes of the disk with a filler file; returns its path."""
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    path = disk / "filler"
    with open(path, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return path


def post_until_failing(t, start_id=1):
    """POSTs reads to new items until /healthz says the store fails; then 300 more.
    Returns (202s, 503s)."""
    conn = t.connect()
    accepted = refused = 0
    i = start_id
    failing_at = None
    while failing_at is None or i < failing_at + 300:
        r = t.request("POST", f"/v1/items/article/{i}/reads", conn=conn)
        assert r.status in (202, 503), r
        accepted += r.status == 202
        refused += r.status == 503
        i += 1
        if failing_at is None and i % 50 == 0 and t.get("/healthz").status == 503:
            failing_at = i
        assert i < 60000, "the disk never filled"
    conn.close()
    return accepted, refused


def applied(db):
    return int(db.sql("SELECT COALESCE(sum(read_cnt), 0) FROM interactive")[0][0])


def write_sql(db, query):
    """Runs a statement that changes the store (Database.sql does not commit on SQLite)."""
    if MYSQL:
        db.sql(query)
        return
    import sqlite3
    con = sqlite3.connect(db.path, timeout=30)
    try:
        con.execute(query)
        con.commit()
    finally:
        con.close()


def applied_sqlite(path):
    import sqlite3
    con = sqlite3.connect(path)
    try:
        return int(con.execute("SELECT COALESCE(sum(read_cnt), 0) FROM interactive").fetchone()[0])
    finally:
        con.close()


def test_disk_full_holds_reads_and_reports_loss_at_stop(tmp_path, small_disk, db):
    t = Tallyd(tmp_path, "--flush-ms", "20", "--batch", "200", "--queue", "3000",
               "--stop-timeout-ms", "1500", store=f"sqlite:{small_disk}/tally.db").start()
    try:
        filler = fill(small_disk, 300 * 1024)
        accepted, refused = post_until_failing(t)
        assert t.get("/healthz").status == 503
        assert t.metric("tally_read_store_failing") == 1
        assert t.metric("tally_read_batch_failures_total") > 0
        t0 = time.time()
        rc = t.stop(timeout=60)
        stop_s = time.time() - t0
    finally:
        t.stop()
    filler.unlink()  # room for the reader's files; tallyd is gone, nothing more is applied
    lines = lost_lines(t)
    assert rc == 1, t.output()[-3000:]
    assert len(lines) == 1, lines
    lost = int(LOST.search(lines[0]).group(1))
    got = applied_sqlite(small_disk / "tally.db")
    report("disk_full_stop", accepted=accepted, refused_503=refused, applied=got, lost=lost,
           exit=rc, stop_s=round(stop_s, 1))
    assert lost > 0 and got > 0
    assert got + lost == accepted
    assert stop_s < 1.5 + 5  # the deadline plus the HTTP drain, not the backoff cap


def test_disk_full_then_space_freed_applies_everything(tmp_path, small_disk, db):
    t = Tallyd(tmp_path, "--flush-ms", "20", "--batch", "200", "--queue", "3000",
               store=f"sqlite:{small_disk}/tally.db").start()
    try:
        filler = fill(small_disk, 300 * 1024)
        accepted, refused = post_until_failing(t)
        assert t.get("/healthz").status == 503
        held = accepted - t.metric("tally_read_events_applied_total")
        assert held > 0
        t0 = time.time()
        filler.unlink()
        assert wait_for(lambda: t.metric("tally_read_events_applied_total") == accepted, 60), (
            accepted, t.metric("tally_read_events_applied_total"))
        recovered_s = time.time() - t0
        assert wait_for(lambda: t.get("/healthz").status == 200, 10)
        assert t.metric("tally_read_store_failing") == 0
        rc = t.stop(timeout=60)
    finally:
        t.stop()
    assert rc == 0, t.output()[-3000:]
    assert lost_lines(t) == []
    got = applied_sqlite(small_disk / "tally.db")
    report("disk_full_recovers", accepted=accepted, refused_503=refused, held=int(held),
           applied=got, lost=0, exit=rc, recovered_s=round(recovered_s, 1))
    assert got == accepted


def test_kafka_unreachable_at_stop_reports_every_read_lost(spawn, db):
    port = free_port()  # nothing listens there
    t = spawn("--bus", f"kafka://127.0.0.1:{port}/t?group=g", "--stop-timeout-ms", "1000").start()
    conn = t.connect()
    accepted = sum(t.request("POST", f"/v1/items/article/{i % 7 + 1}/reads", conn=conn).status
                   == 202 for i in range(300))
    conn.close()
    t0 = time.time()
    rc = t.stop(timeout=60)
    stop_s = time.time() - t0
    lines = lost_lines(t)
    assert rc == 1, t.output()[-3000:]
    assert len(lines) == 1, lines
    lost = int(LOST.search(lines[0]).group(1))
    got = applied(db)
    report("kafka_unreachable_stop", accepted=accepted, applied=got, lost=lost, exit=rc,
           stop_s=round(stop_s, 1), store="mysql" if MYSQL else "sqlite")
    assert accepted == 300
    assert got + lost == accepted
    assert stop_s < 15


def test_counter_past_int64_max_is_dead_lettered_and_others_count(spawn, db):
    """Item 100 sits at 2^63-1 (every read is poison); item 101 at 2^63-2 (one more read
    fits, the rest are poison). Reads of ten other items share their batches."""
    t = spawn("--flush-ms", "200").start()
    write_sql(db, "INSERT INTO interactive (biz, biz_id, read_cnt, like_cnt, collect_cnt, ctime, utime)"
           f" VALUES ('article', 100, {INT64_MAX}, 0, 0, 0, 0),"
           f" ('article', 101, {INT64_MAX - 1}, 0, 0, 0, 0)")
    ids = list(range(1, 11)) + [100, 101]
    conn = t.connect()
    for i in range(600):
        r = t.request("POST", f"/v1/items/article/{ids[i % 12]}/reads",
                      body={"uid": i + 1}, conn=conn)
        assert r.status == 202
    conn.close()

    def settled():
        return (t.metric("tally_read_events_applied_total")
                + t.metric("tally_read_events_dead_total") == 600)
    assert wait_for(settled, 60), (t.metric("tally_read_events_applied_total"),
                                   t.metric("tally_read_events_dead_total"))
    rows = dict(db.sql("SELECT biz_id, read_cnt FROM interactive WHERE biz = 'article'"))
    dead = db.sql("SELECT biz_id, count(*), count(DISTINCT uid), min(error)"
                  " FROM read_dead_letter GROUP BY biz_id ORDER BY biz_id")
    assert {i: int(rows[i]) for i in range(1, 11)} == {i: 50 for i in range(1, 11)}
    assert int(rows[100]) == INT64_MAX  # unchanged, not wrapped
    assert int(rows[101]) == INT64_MAX  # one read fitted, exactly
    assert [(int(b), int(n), int(u)) for b, n, u, _ in dead] == [(100, 50, 50), (101, 49, 49)]
    assert dead[0][3] == "rejected by the store"
    if not MYSQL:
        assert db.sql("SELECT DISTINCT typeof(read_cnt) FROM interactive") == [("integer",)]
    assert t.metric("tally_read_events_dead_total") == 99
    assert t.metric('tally_read_events_dead_total{reason="rejected"}') == 99
    assert t.metric("tally_read_events_applied_total") == 501
    assert t.get("/v1/items/article/100").json["read_cnt"] == INT64_MAX
    report("poison_counter", store="mysql" if MYSQL else "sqlite", events=600, dead=99,
           counted_others=500, counted_101=1)
    assert t.stop() == 0
    assert lost_lines(t) == []
