"""Read events through a real Kafka broker, counted exactly once.

Runs when `make test` provides the broker (TALLY_TEST_KAFKA), against whichever store the
run uses (SQLite, or MariaDB when TALLY_TEST_MYSQL is set). Events come from tally-produce,
a plain librdkafka producer, so tallyd is only the consumer.
"""
import json
import os
import random
import signal
import subprocess
import threading
import time

import pytest

from tallyd import MYSQL

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


def report(name, **figures):
    """Records measured figures (make test prints them at the end)."""
    path = os.environ.get("TALLY_REPORT")
    line = json.dumps({"test": name, **figures})
    print(line)
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


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
        # Kill once this instance has made progress, at a random moment of a batch.
        deadline = time.time() + 60
        while totals(db)[1] == before and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.05, 0.4))
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
