"""Read de-duplication (--read-window) and idempotency keys, decided in the consumer.

Every expected count is the test's own: it knows which reads it sent, by whom, with which
key, and when. Waits are on conditions with deadlines (every read sent has been decided:
applied + deduplicated + repeats == sent), never on fixed sleeps. Runs on SQLite + local
bus and on MariaDB + Redis (TALLY_TEST_MYSQL); the Kafka tests need TALLY_TEST_KAFKA.
"""
import os
import random
import signal
import socket
import subprocess
import time

import pytest

from tallyd import BINARY, MYSQL, report, store_write_lock

KAFKA = os.environ.get("TALLY_TEST_KAFKA")
PRODUCE = os.environ.get("TALLY_PRODUCE",
                         os.path.join(os.path.dirname(__file__), "../../build/tally-produce"))
CRASH_EVENTS = int(os.environ.get("TALLY_CRASH_EVENTS", "1000000"))
DECIDED = ("tally_read_events_applied_total", "tally_read_events_deduplicated_total",
           "tally_read_events_idempotent_repeats_total")


def decided(*instances):
    return sum(t.metric(m) for t in instances for m in DECIDED)


def wait_decided(n, *instances, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if decided(*instances) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"only {decided(*instances)} of {n} reads decided")


def read(t, item, body=None, key=None):
    headers = {"Idempotency-Key": key} if key is not None else None
    r = t.request("POST", f"/v1/items/article/{item}/reads", body=body, headers=headers)
    return r.status


def read_cnt(t, item):
    return t.get(f"/v1/items/article/{item}").json["read_cnt"]


def stored(db, item):
    rows = db.sql(f"SELECT read_cnt FROM interactive WHERE biz = 'article' AND biz_id = {item}")
    return int(rows[0][0]) if rows else 0


def test_bodies_and_keys_are_checked(tallyd):
    bad_bodies = [{"uid": 1, "viewer": "a"}, {"viewer": ""}, {"viewer": "x" * 65},
                  {"viewer": 7}, {"viewer": "caf\u00e9"}, {"viewer": "a\tb"}, {"who": "a"}]
    for body in bad_bodies:
        assert read(tallyd, 1, body=body) == 400, body
    for key in ["", "k" * 129, "a\u00e9"]:
        assert read(tallyd, 1, key=key) == 400, key
    assert read(tallyd, 1, body={"viewer": "x" * 64}, key="k" * 128) == 202
    assert read(tallyd, 1, body={"viewer": " ~"}) == 202
    # Two Idempotency-Key headers: refused by the HTTP layer.
    with socket.create_connection(("127.0.0.1", tallyd.port)) as s:
        s.sendall(b"POST /v1/items/article/1/reads HTTP/1.1\r\nHost: x\r\n"
                  b"Idempotency-Key: a\r\nIdempotency-Key: b\r\nContent-Length: 0\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 400")
    wait_decided(2, tallyd)
    assert read_cnt(tallyd, 1) == 2


def test_idempotency_keys_count_once_across_instances_and_restarts(spawn, db):
    a = spawn().start()
    b = spawn().start()
    sent = 0
    for t in (a, b, a, b):
        assert read(t, 1, key="order-42") == 202
        assert read(t, 2, key="order-43", body={"uid": 7}) == 202
        sent += 2
    for i in range(5):  # no key: each counts
        assert read(b, 3) == 202
        sent += 1
    wait_decided(sent, a, b)
    assert (stored(db, 1), stored(db, 2), stored(db, 3)) == (1, 1, 5)
    assert a.metric(DECIDED[2]) + b.metric(DECIDED[2]) == 6
    assert a.stop() == 0 and b.stop() == 0
    c = spawn().start()  # the key is remembered in the store, not in a process
    assert read(c, 1, key="order-42") == 202
    assert read(c, 1, key="order-44") == 202
    wait_decided(2, c)
    assert stored(db, 1) == 2 and c.metric(DECIDED[2]) == 1
    assert c.stop() == 0


@pytest.mark.parametrize("who", [{"uid": 5}, {"viewer": "203.0.113.9#ua"}])
def test_read_window_counts_a_reader_once_per_window(spawn, db, who):
    t = spawn("--read-window", "2s", "--flush-ms", "20").start()
    start = time.time()
    for _ in range(6):
        assert read(t, 1, body=who) == 202
    for _ in range(3):
        assert read(t, 1) == 202  # nobody: always counts
    assert read(t, 1, body={"viewer": "someone else"}) == 202
    assert read(t, 2, body=who) == 202  # another item
    wait_decided(11, t)
    assert time.time() - start < 1.5, "the reads did not all fall in the window"
    assert (stored(db, 1), stored(db, 2)) == (5, 1)
    assert t.metric(DECIDED[1]) == 5
    while time.time() - start < 2.2:  # the window (from the first counted read) passes
        time.sleep(0.05)
    assert read(t, 1, body=who) == 202
    assert read(t, 1, body=who) == 202
    wait_decided(13, t)
    assert stored(db, 1) == 6 and t.metric(DECIDED[1]) == 6
    assert t.stop() == 0


def test_read_window_holds_across_two_instances_on_one_store(spawn, db):
    a = spawn("--read-window", "8h", "--flush-ms", "5").start()
    b = spawn("--read-window", "8h", "--flush-ms", "5").start()
    sent = 0
    for i in range(40):
        for t in (a, b):
            assert read(t, 1 + i % 4, body={"uid": 1 + i % 3}) == 202
            assert read(t, 9, body={"viewer": f"v{i % 5}"}) == 202
            sent += 2
    wait_decided(sent, a, b)
    # 4 items x 3 uids, each (uid, item) pair once; item 9: 5 viewers once each.
    assert sum(stored(db, i) for i in range(1, 5)) == 12 and stored(db, 9) == 5
    assert a.metric(DECIDED[1]) + b.metric(DECIDED[1]) == sent - 17
    assert a.stop() == 0 and b.stop() == 0


GROWTH_KIB = 512  # after the warm-up: see test_memory_stays_bounded_with_many_viewers
# Under ASan (its quarantine holds freed memory) and TSan (shadow memory) RSS says nothing
# of tallyd's own: one round there, for the counts.
SANITIZED = "build-asan" in BINARY or "build-tsan" in BINARY


ACCEPTED = b'{"accepted":true}'


def read_request(item, viewer):
    body = b'{"viewer":"%s"}' % viewer.encode()
    return (b"POST /v1/items/article/%d/reads HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (item, len(body), body))


@pytest.mark.release
def test_memory_stays_bounded_with_many_viewers(spawn, db):
    """tallyd keeps nothing per viewer (that state is read_seen, in the store): once its fixed
    buffers are warm, rounds of new viewers leave its resident memory where it was.

    The warm-up round must reach every fixed buffer. The bus ring (--queue events) is written
    whole by a round as long as the ring. The batch arrays (672 bytes per --batch event:
    read-ahead, batch, scratch, offsets, deltas, hours, memo keys) are touched only as far as
    the largest batch so far, and a batch gathers while the one before commits, so its size
    follows the store's latency, not the test. At the default --batch 10000 a commit held up
    a few seconds in a later round first touches up to 6.4 MiB of them (3.8 MiB measured
    with the store locked for 8 s in round two, nothing more in round three). That is how
    the former version of this test (two rounds of 100,000, round two allowed 4 MiB) failed
    on a fresh machine: it took round one to have warmed them all. Here the warm-up holds
    the store's write lock while the first 1,000 reads arrive, so a full batch (--batch 200)
    follows whatever the machine, and --queue 50000 is lapped. The 150,000 viewers after it
    may then add GROWTH_KIB in all, 3.5 bytes a viewer: the most compact record tallyd could
    keep per viewer, its 8-byte key in an array, would add 1.2 MiB.

    No cache: a read touches only its item's keys in Redis, nothing per viewer, and the Redis
    client's own allocations settle late and by chance (up to 0.8 MiB within the first
    100 s measured, flat for the 300,000 viewers after), which would be noise here.
    """
    n, rounds = 50000, 1 if SANITIZED else 4
    t = spawn("--read-window", "8h", "--batch", "200", "--queue", str(n), cache="none").start()
    rss = lambda: int(next(l.split()[1] for l in open(f"/proc/{t.proc.pid}/status")
                           if l.startswith("VmRSS:")))
    # The metrics on a connection of their own, opened now: the fixture's may have idled
    # past tallyd's 30 s, and http.client does not reconnect by itself.
    conn = t.connect()

    def metric(*names):
        body = t.request("GET", "/metrics", conn=conn).body
        return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
                   if line.split("{")[0].split(" ")[0] in names)

    def send(r, first, end, per=250):
        """Pipelined, `per` reads to a write (one at a time, this test took a minute)."""
        with socket.create_connection(("127.0.0.1", t.port), timeout=30) as s:
            for lo in range(first, end, per):
                n_sent = min(end, lo + per) - lo
                s.sendall(b"".join(read_request(1 + i % 100, f"viewer-{r}-{i}")
                                   for i in range(lo, lo + n_sent)))
                got = b""
                while got.count(ACCEPTED) < n_sent:  # a recv timeout fails the test
                    chunk = s.recv(1 << 16)
                    assert chunk, f"tallyd closed the connection: {got[-300:]!r}"
                    got += chunk
                assert got.count(b"HTTP/1.1 202 ") == n_sent, got[:300]

    sizes = [rss()]
    for r in range(rounds):
        if r == 0:
            with store_write_lock(db):  # the applier waits, the reader gathers a full batch
                send(r, 0, 1000)
        send(r, 1000 if r == 0 else 0, n)
        deadline = time.time() + 120
        while metric(*DECIDED) < (r + 1) * n:
            assert time.time() < deadline, f"round {r + 1}: only {metric(*DECIDED)} decided"
            time.sleep(0.05)
        sizes.append(rss())
    seen = int(db.sql("SELECT count(*) FROM read_seen")[0][0])
    growth = sizes[-1] - sizes[1]  # 0 when sanitized
    report("dedupe_rss", store="mysql" if MYSQL else "sqlite", viewers=rounds * n,
           rss_kib=sizes, growth_after_warmup_kib=growth, read_seen_rows=seen)
    assert seen == rounds * n and metric(DECIDED[0]) == rounds * n
    if not SANITIZED:
        assert growth < GROWTH_KIB, (
            f"RSS grew {growth} KiB over {(rounds - 1) * n} viewers after the warm-up round "
            f"(bound {GROWTH_KIB} KiB); RSS after start and each round: {sizes} KiB")
    assert t.stop() == 0


# ------------------------------------------------------------------ Kafka


def produce(topic, count, items, env, dist="uniform"):
    out = subprocess.run([PRODUCE, KAFKA, topic, str(count), str(items), dist],
                         env=dict(os.environ, **env), capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stderr


def expected(count, items, viewers, keys, every):
    """What tally must count, message by message in each item's (partition's) order: the
    counts per item, and how many reads repeat a header key (a key is scoped to its item)."""
    seen_keys, seen_pairs, counts, repeats = set(), set(), [0] * (items + 1), 0
    for i in range(count):
        item = i % items + 1
        if i % every == 0:
            k = (i % keys, item)
            if k in seen_keys:
                repeats += 1
                continue
            seen_keys.add(k)
        pair = (i % viewers, item)
        if pair in seen_pairs:
            continue
        seen_pairs.add(pair)
        counts[item] += 1
    return counts, repeats


def totals(db):
    return dict((int(i), int(n)) for i, n in
                db.sql("SELECT biz_id, read_cnt FROM interactive WHERE biz = 'article'"))


def bus_url(topic):
    return f"kafka://{KAFKA}/{topic}?group=g-{topic}&session_timeout_ms=2000"


@pytest.mark.skipif(not KAFKA, reason="needs a Kafka broker")
def test_kafka_viewers_and_header_keys_count_exactly(spawn, db):
    # 230 keys over 50 items: key k reaches several items, and counts once on each.
    count, items, viewers, keys, every = 30000, 50, 97, 230, 3
    topic = f"tally.test.dedupe.{os.getpid()}.{int(time.time() * 1000)}"
    now = int(time.time() * 1000)
    produce(topic, count, items, {"TALLY_PRODUCE_VIEWERS": str(viewers),
                                  "TALLY_PRODUCE_KEYS": f"{keys}:{every}",
                                  "TALLY_PRODUCE_TS": f"{now}:600000"})
    want, repeats = expected(count, items, viewers, keys, every)
    t = spawn("--bus", bus_url(topic), "--read-window", "8h").start()
    wait_decided(count, t, timeout=120)
    got = totals(db)
    assert [got.get(i, 0) for i in range(1, items + 1)] == want[1:]
    assert t.metric(DECIDED[0]) == sum(want)
    assert t.metric(DECIDED[2]) == repeats and t.metric(DECIDED[1]) > 0
    assert t.stop() == 0


@pytest.mark.release
@pytest.mark.skipif(not KAFKA, reason="needs a Kafka broker")
def test_kill_9_with_deduplicated_and_keyed_reads_counts_exactly(spawn, db):
    """The crash test with viewers and idempotency keys: kill -9 at random moments; a
    replayed batch decides as its first attempt did, so every total is as computed here."""
    count, items, viewers, keys, every = CRASH_EVENTS // 4, 1000, 97, 20000, 3
    topic = f"tally.test.dedupe9.{os.getpid()}.{int(time.time() * 1000)}"
    now = int(time.time() * 1000)
    produce(topic, count, items, {"TALLY_PRODUCE_VIEWERS": str(viewers),
                                  "TALLY_PRODUCE_KEYS": f"{keys}:{every}",
                                  "TALLY_PRODUCE_TS": f"{now}:3600000"})
    want, _ = expected(count, items, viewers, keys, every)
    total_want = sum(want)
    rng, kills, start = random.Random(3), 0, time.time()
    args = ("--bus", bus_url(topic), "--read-window", "8h")

    def offsets():
        rows = db.sql(f"SELECT COALESCE(sum(next_offset), 0) FROM read_offsets"
                      f" WHERE topic = '{topic}'")
        return int(rows[0][0])

    t = spawn(*args).start()
    while kills < 5 and time.time() - start < 600:  # late kills: a restart re-counts nothing
        before = offsets()
        deadline = time.time() + 60
        while before < count and offsets() == before and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.05, 0.4))  # not a wait: a random moment in a batch to kill at
        t.stop(signal.SIGKILL)
        kills += 1
        t = spawn(*args).start()
    deadline = time.time() + 300
    while offsets() < count and time.time() < deadline:
        time.sleep(0.1)
    got = totals(db)
    report("kafka_kill9_dedupe", store="mysql" if MYSQL else "sqlite", events=count,
           counted=total_want, kills=kills, drain_s=round(time.time() - start, 1))
    assert kills >= 5
    assert offsets() == count
    assert [got.get(i, 0) for i in range(1, items + 1)] == want[1:]
    assert t.stop() == 0
