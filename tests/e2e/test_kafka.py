"""Read events through a real Kafka broker, counted exactly once.

Runs when `make test` provides the broker (TALLY_TEST_KAFKA), against whichever store the
run uses (SQLite, or MariaDB when TALLY_TEST_MYSQL is set). Events come from tally-produce,
a plain librdkafka producer, so tallyd is only the consumer.
"""
import os
import random
import signal
import subprocess
import threading
import time

import pytest

from tallyd import MYSQL, report, store_write_lock

KAFKA = os.environ.get("TALLY_TEST_KAFKA")
PRODUCE = os.environ.get("TALLY_PRODUCE",
                         os.path.join(os.path.dirname(__file__), "../../build/tally-produce"))
CRASH_EVENTS = int(os.environ.get("TALLY_CRASH_EVENTS", "1000000"))
ROOT = os.path.join(os.path.dirname(__file__), "../..")

pytestmark = pytest.mark.skipif(not KAFKA, reason="needs a Kafka broker")

_seq = [0]


@pytest.fixture
def topic():
    _seq[0] += 1
    return f"tally.test.{os.getpid()}.{_seq[0]}.{int(time.time() * 1000)}"


def bus_url(topic, group="g"):
    return f"kafka://{KAFKA}/{topic}?group={group}-{topic}&session_timeout_ms=2000"


def produce(topic, count, items, dist="uniform", malformed=0):
    out = subprocess.run([PRODUCE, KAFKA, topic, str(count), str(items), dist, str(malformed)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:4] == ["produced", str(count), "malformed", str(malformed)]


def create_topic(topic, partitions):
    out = subprocess.run([PRODUCE, KAFKA, "--create", topic, str(partitions)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def totals(db):
    [(n, total, lo, hi)] = db.sql("SELECT count(*), COALESCE(sum(read_cnt), 0),"
                                  " COALESCE(min(read_cnt), 0), COALESCE(max(read_cnt), 0)"
                                  " FROM interactive WHERE biz = 'article'")
    return int(n), int(total), int(lo), int(hi)


def wait_total(db, want, timeout=300, during=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if totals(db)[1] >= want:
            return time.time()
        if during:
            during()
        time.sleep(0.1)
    return None


def test_http_reads_through_kafka_count_exactly(spawn, db, topic):
    t = spawn("--bus", bus_url(topic)).start()
    conn = t.connect()
    for i in range(600):
        body = {"uid": i + 1} if i % 2 else None
        r = t.request("POST", f"/v1/items/article/{i % 12 + 1}/reads", body=body, conn=conn)
        assert r.status == 202
    assert wait_total(db, 600, timeout=60)
    time.sleep(0.5)
    assert totals(db) == (12, 600, 50, 50)
    assert t.get("/v1/items/article/3").json["read_cnt"] == 50
    assert t.metric("tally_kafka_messages_delivered_total") == 600
    assert t.metric("tally_kafka_delivery_failures_total") == 0
    text = t.get("/metrics").body
    assert f'tally_kafka_consumer_lag{{topic="{topic}",partition="0"}}' in text
    assert t.stop() == 0
    stored = db.sql(f"SELECT sum(next_offset) FROM read_offsets WHERE topic = '{topic}'")
    assert int(stored[0][0]) == 600  # every message's offset is stored with the counts


def test_malformed_messages_are_skipped_and_counted(spawn, db, topic):
    produce(topic, 20000, 100, malformed=120)
    t = spawn("--bus", bus_url(topic)).start()
    assert wait_total(db, 20000, timeout=120)
    deadline = time.time() + 30
    while t.metric("tally_read_events_skipped_total") < 120 and time.time() < deadline:
        time.sleep(0.1)
    assert totals(db) == (100, 20000, 200, 200)
    assert t.metric("tally_read_events_skipped_total") == 120
    assert t.metric("tally_read_events_applied_total") == 20000
    out = t.output()
    assert "invalid_json" in out and "invalid_item" in out and "invalid_field" in out
    assert t.stop() == 0
    # Offsets cover the skipped messages too: a restart reads nothing again.
    t2 = spawn("--bus", bus_url(topic)).start()
    time.sleep(4)
    assert totals(db) == (100, 20000, 200, 200)
    assert t2.stop() == 0


@pytest.mark.release
def test_kill_9_during_consumption_counts_exactly_once(spawn, db, topic):
    events, items = CRASH_EVENTS, 1000
    t0 = time.time()
    produce(topic, events, items)
    produced_s = time.time() - t0
    kills = 0
    rng = random.Random(1)
    start = time.time()
    t = spawn("--bus", bus_url(topic)).start()
    while kills < 5 or totals(db)[1] < events:
        before = totals(db)[1]
        if before >= events:
            break
        # Kill once this instance has made progress, at a random moment of a batch (soon:
        # the consumer reads ahead while it commits, so a drain takes few seconds).
        deadline = time.time() + 60
        while totals(db)[1] == before and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.02, 0.2))  # a random moment, not a wait for a condition
        if kills < 5 or rng.random() < 0.5:
            t.stop(signal.SIGKILL)
            kills += 1
            t = spawn("--bus", bus_url(topic)).start()
        if time.time() - start > 600:
            break
    done = wait_total(db, events, timeout=300)
    drained_s = (done or time.time()) - start
    time.sleep(1)
    n, total, lo, hi = totals(db)
    report("kafka_kill9", events=events, items=items, kills=kills, produce_s=round(produced_s, 1),
           drain_s=round(drained_s, 1), store="mysql" if MYSQL else "sqlite")
    assert kills >= 5
    assert (n, total, lo, hi) == (items, events, events // items, events // items)
    assert t.stop() == 0


def test_group_members_stopping_and_starting_count_exactly(spawn, db, topic):
    events, items = CRASH_EVENTS // 4, 500
    failures = []

    def produce_in_background():
        try:
            produce(topic, events, items)
        except BaseException as e:  # reported by the main thread
            failures.append(e)

    producer = threading.Thread(target=produce_in_background)
    producer.start()
    members = [spawn("--bus", bus_url(topic)).start() for _ in range(3)]
    signals = [signal.SIGTERM, signal.SIGKILL, signal.SIGTERM, signal.SIGKILL, signal.SIGTERM]
    for sig in signals:
        time.sleep(1.5)
        rc = members[0].stop(sig)
        assert rc == (0 if sig == signal.SIGTERM else -9)
        time.sleep(0.5)
        members[0] = spawn("--bus", bus_url(topic)).start()
    producer.join()
    assert failures == []
    assert wait_total(db, events, timeout=300), (
        totals(db), db.sql(f"SELECT part, next_offset FROM read_offsets WHERE topic = '{topic}'"))
    time.sleep(2)
    assert totals(db) == (items, events, events // items, events // items)
    for m in members:
        assert m.stop() == 0


PARTITIONS = 4


def commit_held(db, t):
    """Whether t's read consumer has a batch the row lock holds back: its transaction waits
    for the lock (MariaDB's LOCK WAIT), or an attempt already gave up waiting (the client's
    2 s timeout) and the consumer retries, saying the store is failing."""
    return t.metric("tally_read_store_failing") == 1 or db.sql(
        "SELECT COUNT(*) FROM information_schema.innodb_trx WHERE trx_state = 'LOCK WAIT'")[0][0] > 0


def wait_for(cond, what, timeout=60):
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.skipif(not MYSQL, reason="row locks; a new member cannot open a locked SQLite file")
def test_rebalance_while_a_commit_is_held_counts_once(spawn, db, topic):
    """A batch commits slowly (another client holds the rows) while the group rebalances
    twice, a member joining and then dying, and hands tallyd its partition back. The
    new incarnation was assigned at the offset stored before that commit: once the commit
    lands, its read-ahead must be read again from the store, not counted a second time."""
    create_topic(topic, PARTITIONS)
    t = spawn("--bus", bus_url(topic)).start()
    produce(topic, 1000, 1)
    assert wait_total(db, 1000, timeout=120)
    with store_write_lock(db):
        produce(topic, 500, 1)
        wait_for(lambda: commit_held(db, t), "a held commit")
        rebalances = t.metric("tally_kafka_rebalances_total")
        other = spawn("--bus", bus_url(topic)).start()  # joins: revoke, assign
        wait_for(lambda: t.metric("tally_kafka_rebalances_total") >= rebalances + 2,
                 "the rebalance of a member joining")
        assert other.stop(signal.SIGKILL) == -9  # leaves when its session times out
        wait_for(lambda: t.metric("tally_kafka_rebalances_total") >= rebalances + 4,
                 "the rebalance of a member leaving")
        wait_for(lambda: t.output().count(f"assigned {PARTITIONS} partition(s)") >= 2 and
                 t.metric("tally_kafka_consumer_lag") == 0,
                 "tallyd holding every partition again, read to its end")
        assert totals(db)[1] == 1000  # nothing committed while the rows were held
    # One more read after the lock: once it is counted, everything before it in the
    # partition has been applied, and a read counted twice would show in the total.
    produce(topic, 1, 1)
    wait_for(lambda: db.sql("SELECT COALESCE(SUM(next_offset), 0) FROM read_offsets"
                            f" WHERE topic = '{topic}'")[0][0] == 1501,
             "the last read's offset stored", timeout=120)
    assert totals(db) == (1, 1501, 1501, 1501)
    assert t.stop() == 0


@pytest.mark.skipif(not MYSQL, reason="stops MariaDB")
def test_mariadb_stopped_for_10s_during_consumption(spawn, db, topic):
    events, items = CRASH_EVENTS // 4, 1000
    produce(topic, events, items)
    t = spawn("--bus", bus_url(topic)).start()
    deadline = time.time() + 60
    while totals(db)[1] == 0 and time.time() < deadline:
        time.sleep(0.05)
    services = os.path.join(ROOT, "scripts/services.sh")
    subprocess.run([services, "down", "mysql"], check=True, capture_output=True)
    try:
        time.sleep(10)
        assert t.get("/healthz").status == 503
    finally:
        subprocess.run([services, "up", "mysql"], check=True, capture_output=True)
    assert wait_total(db, events, timeout=300)
    time.sleep(1)
    assert totals(db) == (items, events, events // items, events // items)
    assert t.metric("tally_read_batch_failures_total") > 0
    assert t.stop() == 0


def test_poison_event_is_dead_lettered_and_its_offset_stored_past(spawn, db, topic):
    """Item 7 sits at 2^63-1, so each of its 100 reads is refused for good: each goes to
    read_dead_letter with its partition and offset, and every other read counts."""
    events, items, poison_id, max64 = 4000, 40, 7, 9223372036854775807
    assert spawn().start().stop() == 0  # creates the schema
    insert = ("INSERT INTO interactive (biz, biz_id, read_cnt, like_cnt, collect_cnt, ctime,"
              f" utime) VALUES ('article', {poison_id}, {max64}, 0, 0, 0, 0)")
    if MYSQL:
        db.sql(insert)
    else:
        import sqlite3
        con = sqlite3.connect(db.path)
        con.execute(insert)
        con.commit()
        con.close()
    produce(topic, events, items)
    t = spawn("--bus", bus_url(topic), "--flush-ms", "50").start()
    want_dead = events // items

    def counted():
        return int(db.sql("SELECT COALESCE(sum(read_cnt), 0) FROM interactive"
                          f" WHERE biz = 'article' AND biz_id <> {poison_id}")[0][0])
    deadline = time.time() + 120
    while time.time() < deadline and not (
            counted() == events - want_dead
            and t.metric("tally_read_events_dead_total") == want_dead):
        time.sleep(0.1)
    rows = db.sql(f"SELECT read_cnt FROM interactive WHERE biz_id = {poison_id}")
    dead = db.sql("SELECT part, msg_offset FROM read_dead_letter"
                  f" WHERE biz_id = {poison_id} AND topic = '{topic}'")
    offsets = dict((int(p), int(n)) for p, n in
                   db.sql(f"SELECT part, next_offset FROM read_offsets WHERE topic = '{topic}'"))
    report("kafka_poison", store="mysql" if MYSQL else "sqlite", events=events, dead=len(dead),
           counted_others=counted())
    assert counted() == events - want_dead
    assert int(rows[0][0]) == max64
    assert len(dead) == want_dead and len(set(dead)) == want_dead  # each poisoned event once
    assert all(int(o) < offsets[int(p)] for p, o in dead)  # stored past each of them
    assert sum(offsets.values()) == events  # every message's offset, poison included
    assert t.metric('tally_read_events_dead_total{reason="rejected"}') == want_dead
    assert t.stop() == 0
    assert "ERROR: AddressSanitizer" not in t.output() and "runtime error" not in t.output()


@pytest.mark.release
def test_128_partitions_count_exactly(spawn, db, topic):
    events, items, parts = CRASH_EVENTS // 10, 2000, 128
    create_topic(topic, parts)
    produce(topic, events, items)
    start = time.time()
    t = spawn("--bus", bus_url(topic)).start()
    assert wait_total(db, events, timeout=300), totals(db)
    drain_s = time.time() - start
    offsets = db.sql(f"SELECT count(*), sum(next_offset) FROM read_offsets WHERE topic = '{topic}'")
    report("kafka_128_partitions", store="mysql" if MYSQL else "sqlite", partitions=parts,
           events=events, items=items, drain_s=round(drain_s, 1))
    assert totals(db) == (items, events, events // items, events // items)
    assert [tuple(int(v) for v in offsets[0])] == [(parts, events)]
    assert f'tally_kafka_consumer_lag{{topic="{topic}",partition="127"}}' in t.get("/metrics").body
    assert t.stop() == 0
    assert "ERROR: AddressSanitizer" not in t.output() and "runtime error" not in t.output()



# ---------------------------------------------------------------- the course's format

def course_url(topic, extra=""):
    return bus_url(topic) + "&format=course&biz=article" + extra


def produce_course(topic, count, items, malformed=0):
    """{"aid":N,"uid":M} messages without a key, as the course design's producers write."""
    out = subprocess.run([PRODUCE, "--format", "course", KAFKA, topic, str(count), str(items),
                          "uniform", str(malformed)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:4] == ["produced", str(count), "malformed", str(malformed)]


def stored_offsets(db, topic):
    return int(db.sql("SELECT COALESCE(sum(next_offset), 0) FROM read_offsets"
                      f" WHERE topic = '{topic}'")[0][0])


def test_bad_format_options_exit_2_with_one_line(tmp_path):
    for query, why in [("format=course", "needs biz=NAME"),
                       ("format=json&biz=a", "tally or course"),
                       ("biz=article", "goes with format=course"),
                       ("format=course&biz=Article", "takes a biz"),
                       ("partitions=0", "1..10000"), ("replication=0", "1..32")]:
        r = subprocess.run([os.environ.get("TALLYD", os.path.join(ROOT, "build/tallyd")),
                            "--store", f"sqlite:{tmp_path}/t.db", "--listen", "127.0.0.1:1",
                            "--bus", f"kafka://{KAFKA}/t?{query}"],
                           capture_output=True, text=True, timeout=30)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and why in lines[0], (query, r)


def test_course_format_counts_exactly_and_skips_malformed(spawn, db, topic):
    """The course's messages count like tally's own; reads sent through this tallyd (its
    own format, on the same topic) count too; malformed ones are skipped and counted."""
    events, items, malformed = 20000, 100, 120
    produce_course(topic, events, items, malformed)
    t = spawn("--bus", course_url(topic)).start()
    for i in range(30):
        assert t.request("POST", "/v1/items/video/5/reads", body={"uid": i + 1}).status == 202
    assert wait_total(db, events, timeout=120)
    wait_for(lambda: stored_offsets(db, topic) == events + malformed + 30, "every offset stored")
    assert totals(db) == (items, events, events // items, events // items)
    assert db.sql("SELECT biz_id, read_cnt FROM interactive WHERE biz = 'video'") == [(5, 30)]
    assert t.metric("tally_read_events_skipped_total") == malformed
    assert t.metric('tally_read_events_skipped_total{reason="invalid_json"}') == 40
    assert t.metric('tally_read_events_skipped_total{reason="invalid_item"}') == 40
    assert t.metric('tally_read_events_skipped_total{reason="invalid_field"}') == 40
    out = t.output()
    assert "invalid_item: aid" in out and "invalid_field: uid" in out
    assert t.stop() == 0


def test_course_format_reads_by_the_same_uid_are_deduplicated(spawn, db, topic):
    """--read-window applies to the course's uid as to tally's: the same 1,000 (uid, aid)
    pairs sent twice count once."""
    produce_course(topic, 1000, 10)
    produce_course(topic, 1000, 10)
    t = spawn("--bus", course_url(topic), "--read-window", "1h").start()
    wait_for(lambda: stored_offsets(db, topic) == 2000, "every offset stored")
    assert totals(db) == (10, 1000, 100, 100)
    assert t.stop() == 0


@pytest.mark.release
def test_course_format_kill_9_during_consumption_counts_exactly_once(spawn, db, topic):
    """The crash test on the course's messages, malformed ones mixed in: kill -9 at random
    moments of consumption; the final count is exactly what was produced. A fifth of the
    main crash test's events, and at least 100,000: the course's format changes only the
    parsing, which reaches the same batches and offsets, and five kills fit in 100,000
    events even under the sanitizers."""
    events, items, malformed = max(CRASH_EVENTS // 5, 100_000), 1000, 1000
    produce_course(topic, events, items, malformed)
    rng, kills, start = random.Random(7), 0, time.time()
    t = spawn("--bus", course_url(topic)).start()
    while kills < 5 and time.time() - start < 600:
        before = stored_offsets(db, topic)
        if before >= events + malformed:
            break
        deadline = time.time() + 60
        while stored_offsets(db, topic) == before and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.02, 0.2))  # a random moment in a batch, not a wait
        t.stop(signal.SIGKILL)
        kills += 1
        t = spawn("--bus", course_url(topic)).start()
    wait_for(lambda: stored_offsets(db, topic) == events + malformed, "every offset stored",
             timeout=300)
    report("kafka_course_kill9", store="mysql" if MYSQL else "sqlite", events=events,
           kills=kills, drain_s=round(time.time() - start, 1))
    assert kills >= 5
    assert totals(db) == (items, events, events // items, events // items)
    assert t.stop() == 0


# ---------------------------------------------------------------- the topic tallyd creates

def partitions(topic):
    """The topic's partition count, or None when it does not exist (the lookup creates
    nothing)."""
    out = subprocess.run([PRODUCE, KAFKA, "--partitions", topic], capture_output=True,
                         text=True, timeout=60)
    return int(out.stdout.split()[1]) if out.returncode == 0 else None


def wait_ready(t, timeout=30):
    deadline = time.time() + timeout
    while True:
        assert time.time() < deadline, t.output()
        try:
            if t.get("/readyz").status == 200:
                return
        except OSError:
            pass
        time.sleep(0.02)


def test_fresh_topic_is_created_and_counts_the_first_read_at_once(spawn, db, topic):
    """A topic that does not exist: tallyd creates it (6 partitions, not the broker's 4),
    and once /readyz answers a read counts within 2 s (the group has joined already)."""
    assert partitions(topic) is None
    t0 = time.time()
    t = spawn("--bus", bus_url(topic)).start(wait=False)
    wait_ready(t)
    ready = time.time()
    assert "assigned 6 partition(s)" in t.output()  # ready means the group has joined
    assert t.request("POST", "/v1/items/article/1/reads").status == 202
    posted = time.time()
    while totals(db)[1] < 1 and time.time() < posted + 2:
        time.sleep(0.01)
    counted = time.time()
    report("kafka_fresh_topic", store="mysql" if MYSQL else "sqlite",
           ready_s=round(ready - t0, 2), counted_s=round(counted - posted, 2))
    assert totals(db)[1] == 1, t.output()
    assert partitions(topic) == 6
    assert "created the topic" in t.output()
    assert t.stop() == 0


def test_topic_partitions_option_and_an_existing_topic_left_alone(spawn, db, topic):
    t = spawn("--bus", bus_url(topic) + "&partitions=3&replication=1").start()
    wait_ready(t)
    assert partitions(topic) == 3
    assert t.stop() == 0
    # An existing topic is never altered, whatever the URL says.
    other = topic + ".existing"
    create_topic(other, 2)
    t = spawn("--bus", bus_url(other) + "&partitions=8").start()
    wait_ready(t)
    assert t.request("POST", "/v1/items/article/1/reads").status == 202
    assert wait_total(db, 1, timeout=10)
    assert partitions(other) == 2
    assert "created the topic" not in t.output()
    assert t.stop() == 0


def test_refused_topic_creation_is_retried_until_the_topic_exists(spawn, db, topic):
    """The broker refuses (replication 3 on one broker, as an ACL would): tallyd logs why,
    stays not ready and retries; once someone else creates the topic it goes on, and a read
    accepted meanwhile is counted."""
    t = spawn("--bus", bus_url(topic) + "&replication=3").start()
    wait_for(lambda: "cannot create the topic" in t.output(), "the refusal logged")
    assert t.get("/readyz").status == 503
    assert t.request("POST", "/v1/items/article/1/reads").status == 202
    assert partitions(topic) is None  # the waiting read did not create it either
    create_topic(topic, 2)
    wait_ready(t, timeout=10)
    assert wait_total(db, 1, timeout=10), t.output()
    assert partitions(topic) == 2
    assert t.output().count("cannot create the topic") == 1  # logged once, not per retry
    assert t.stop() == 0
