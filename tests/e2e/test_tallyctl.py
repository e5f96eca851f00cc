"""tallyctl export, import, recount, check and backup against real stores.

Every test runs on the `db` fixture's store: SQLite, or MariaDB when TALLY_TEST_MYSQL is set
(plus Redis when TALLY_TEST_REDIS is). Tables are compared row by row on their natural keys
(the internal `id` differs between stores); the round trips compare every table the schema
has (read from the schema, so a table added later is compared too). Waits have deadlines;
nothing sleeps a fixed time.
"""
import json
import os
import random
import shutil
import sqlite3
import subprocess
import threading
import time

import pytest

from tallyd import BINARY, MYSQL, REDIS, Database, Tallyd, redis_cli

TALLYCTL = os.environ.get("TALLYCTL", os.path.join(os.path.dirname(__file__),
                                                   "../../build/tallyctl"))
TABLES = {
    "interactive": "biz, biz_id, read_cnt, like_cnt, collect_cnt, ctime, utime",
    "user_like": "uid, biz, biz_id, status, ctime, utime",
    "user_collection": "uid, cid, biz, biz_id, status, ctime, utime",
}
HOUR = 3600 * 1000
INT64_MAX = 2**63 - 1
WINDOWS = {"1h": 1, "24h": 24, "7d": 168, "30d": 720}
DECIDED = ("tally_read_events_applied_total", "tally_read_events_dead_total",
           "tally_read_events_deduplicated_total", "tally_read_events_idempotent_repeats_total")
ALL_TYPES = {"item", "like", "collection", "mark", "hour", "window", "memo", "dead_letter",
             "offset"}
DRIFT_SQL = ("SELECT i.biz, i.biz_id, i.like_cnt, i.collect_cnt,"
             " (SELECT COUNT(*) FROM user_like l WHERE l.biz = i.biz AND l.biz_id = i.biz_id"
             "  AND l.status = 1),"
             " (SELECT COUNT(*) FROM user_collection c WHERE c.biz = i.biz"
             "  AND c.biz_id = i.biz_id AND c.status = 1) FROM interactive i")


def ctl(*argv, stdin=None, timeout=120):
    r = subprocess.run([TALLYCTL, *argv], input=stdin, capture_output=True, text=True,
                       timeout=timeout)
    assert "AddressSanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr
    return r


def dump(db):
    """Every row of the three tables, without the store's own ids, sorted."""
    return {t: sorted(tuple(r) for r in db.sql(f"SELECT {cols} FROM {t}"))
            for t, cols in TABLES.items()}


def schema(db):
    """Every table of the store with its columns, read from the schema itself (so a table
    added later is compared too), without the stores' own row ids (`id`)."""
    if MYSQL:
        rows = db.sql("SELECT table_name, column_name FROM information_schema.columns"
                      " WHERE table_schema = DATABASE() ORDER BY table_name, ordinal_position")
    else:
        names = [r[0] for r in db.sql("SELECT name FROM sqlite_master WHERE type = 'table'"
                                      " AND name NOT LIKE 'sqlite_%'")]
        rows = [(n, c[1]) for n in names for c in db.sql(f"PRAGMA table_info({n})")]
    tables = {}
    for table, column in rows:
        columns = tables.setdefault(table, [])
        if column != "id":
            columns.append(column)
    return tables


def dump_all(db):
    """Every row of every table, without the stores' own ids, sorted."""
    return {t: sorted((tuple(r) for r in db.sql(f"SELECT {', '.join(c)} FROM {t}")), key=repr)
            for t, c in schema(db).items()}


def window_sums(db):
    """(stored, wanted): each window's nonzero rows, and the sums of the hourly rows it holds
    (hour >= its mark), which they must equal."""
    stored = {tuple(r[:3]): tuple(int(v) for v in r[3:]) for r in db.sql(
        "SELECT biz, win, biz_id, read_cnt, like_cnt, collect_cnt FROM interactive_window")}
    wanted = {tuple(r[:3]): tuple(int(v) for v in r[3:]) for r in db.sql(
        "SELECT h.biz, m.win, h.biz_id, SUM(h.read_cnt), SUM(h.like_cnt), SUM(h.collect_cnt)"
        " FROM interactive_hour h JOIN window_mark m ON h.hour >= m.hour"
        " GROUP BY h.biz, m.win, h.biz_id")}
    return ({k: v for k, v in stored.items() if v != (0, 0, 0)},
            {k: v for k, v in wanted.items() if v != (0, 0, 0)})


def execute(db, query):
    """A write (Database.sql does not commit on SQLite)."""
    if MYSQL:
        db.sql(query)
        return
    con = sqlite3.connect(db.path, timeout=10)
    try:
        con.execute(query)
        con.commit()
    finally:
        con.close()


def drifting(db):
    return [r for r in db.sql(DRIFT_SQL) if r[2] != r[4] or r[3] != r[5]]


def other_store(tmp_path, name):
    """A second empty store of the same kind as the db fixture's."""
    path = tmp_path / name
    path.mkdir()
    return Database(path)


def jsonl(records):
    return "".join(json.dumps(r) + "\n" for r in records)


def sample_records(n_items=30, n_users=40, seed=7):
    rnd = random.Random(seed)
    out = []
    for i in range(1, n_items + 1):
        out.append({"type": "item", "biz": "article" if i % 3 else "video", "id": i,
                    "read_cnt": rnd.randrange(1000), "like_cnt": 0, "collect_cnt": 0,
                    "ctime": 1_700_000_000_000 + i, "utime": 1_700_000_100_000 + i})
    for u in range(1, n_users + 1):
        for i in rnd.sample(range(1, n_items + 1), min(6, n_items)):
            biz = "article" if i % 3 else "video"
            out.append({"type": "like", "uid": u, "biz": biz, "id": i,
                        "status": rnd.choice([0, 1, 1]), "ctime": 1_700_000_000_500 + u,
                        "utime": 1_700_000_000_900 + u + i})
        for i in rnd.sample(range(1, n_items + 1), min(2, n_items)):
            biz = "article" if i % 3 else "video"
            out.append({"type": "collection", "uid": u, "cid": 1 + u % 3, "biz": biz, "id": i,
                        "status": rnd.choice([0, 1]), "ctime": 1_700_000_000_600 + u,
                        "utime": 1_700_000_001_000 + u + i})
    return out


def wait_until(fn, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if fn():
            return True
        time.sleep(0.02)
    return False


def mid_hour_offset(hours_ahead):
    """A clock offset that puts tallyd at :30 of the hour `hours_ahead` from now's."""
    n = int(time.time() * 1000)
    return (n // HOUR + hours_ahead) * HOUR + HOUR // 2 - n


def fill_every_table(spawn, db):
    """Fills every table through real tallyd processes, in three hours (h0, h0+3, h0+30, put
    there by the test clock): likes, unlikes, collections and a move, reads by uid, by viewer
    and with an Idempotency-Key, repeated (read_seen, read_idem); the sweeps let hours leave
    the windows (rows at zero stay) and memos expire. Reads of an item at 2^63-1 are dead
    letters. What only a Kafka consumer writes (offsets, a dead letter with its partition and
    offset) and two identical dead letters are added in SQL. Returns h0."""
    off0 = mid_hour_offset(10)
    h0 = (int(time.time() * 1000) + off0) // HOUR

    def in_hour(dh, act):
        t = spawn("--read-window", "1h", "--test-clock",
                  env={"TALLY_TEST_CLOCK_OFFSET_MS": str(off0 + dh * HOUR)}).start()
        sent = act(t)
        assert wait_until(lambda: sum(t.metric(m) for m in DECIDED) == sent, 30), \
            [t.metric(m) for m in DECIDED]
        db.transitions_applied()
        cur = h0 + dh  # every window's mark has reached the first hour it holds now
        assert wait_until(lambda: dict(db.sql("SELECT win, hour FROM window_mark")) ==
                          {w: cur - w + 1 for w in WINDOWS.values()}, 30)
        assert t.stop() == 0

    def read(t, item, body=None, key=None, biz="article"):
        r = t.request("POST", f"/v1/items/{biz}/{item}/reads", body=body,
                      headers={"Idempotency-Key": key} if key else None)
        assert r.status == 202, r
        return 1

    def first(t):
        for uid in range(1, 7):
            for item in (1, 2, 3):
                if (uid + item) % 3:
                    assert t.request("PUT", f"/v1/users/{uid}/likes/article/{item}").status == 200
        assert t.request("DELETE", "/v1/users/2/likes/article/2").status == 200
        assert t.request("PUT", "/v1/users/1/collections/1/items/article/1").status == 200
        assert t.request("PUT", "/v1/users/3/collections/2/items/video/7").status == 200
        assert t.request("PUT", "/v1/users/3/collections/5/items/video/7").status == 200
        execute(db, "INSERT INTO interactive (biz, biz_id, read_cnt, like_cnt, collect_cnt,"
                f" ctime, utime) VALUES ('article', 100, {INT64_MAX}, 0, 0, 1, 1)")
        return (read(t, 1, {"uid": 1}) + read(t, 1, {"uid": 1}) +  # the second: a duplicate
                read(t, 2, {"viewer": "v-1"}) + read(t, 2, {"viewer": "v-1"}) +
                read(t, 3, key="k-1") + read(t, 3, key="k-1") +  # the second: a repeat
                sum(read(t, 4) for _ in range(3)) + read(t, 9, biz="video") +
                read(t, 100) + read(t, 100))  # past 2^63-1: dead letters

    def second(t):
        assert t.request("DELETE", "/v1/users/1/likes/article/2").status == 200
        assert t.request("PUT", "/v1/users/7/likes/article/5").status == 200
        assert t.request("DELETE", "/v1/users/1/collections/1/items/article/1").status == 200
        return read(t, 5, {"uid": 9}) + read(t, 5, {"viewer": "v-2"}) + read(t, 5, key="k-2")

    def third(t):
        assert t.request("PUT", "/v1/users/8/likes/article/6").status == 200
        return read(t, 1, {"uid": 3}) + read(t, 1, key="k-3") + read(t, 6, {"viewer": "v-3"})

    in_hour(0, first)
    in_hour(3, second)
    in_hour(30, third)
    ms = (h0 + 30) * HOUR
    execute(db, "INSERT INTO read_offsets (topic, part, next_offset, utime, event_ms) VALUES"
            f" ('tally-reads', 0, 1200, {ms}, {ms - 500}), ('tally-reads', 1, 980, {ms}, {ms})")
    execute(db, "INSERT INTO read_dead_letter (biz, biz_id, uid, ts, topic, part, msg_offset,"
            f" error, ctime) VALUES ('article', 9, 4, {ms - 5}, 'tally-reads', 1, 977,"
            f" 'rejected by the store', {ms}), ('video', 3, 0, {ms - 9}, NULL, NULL, NULL,"
            f" 'refused \"by hand\"', {ms}), ('video', 3, 0, {ms - 9}, NULL, NULL, NULL,"
            f" 'refused \"by hand\"', {ms})")
    return h0


# ---------------------------------------------------------------- usage

@pytest.mark.parametrize("argv", [
    ["export"],
    ["export", "--store"],
    ["export", "--store", "sqlite:/x", "--bogus"],
    ["export", "--store", "sqlite:/x", "--format", "csv"],
    ["export", "--store", "sqlite:/x", "a", "b"],
    ["export", "--store", "sqlite:/x", "--no-offsets"],
    ["import", "--store", "sqlite:/x", "--no-offsets", "--from", "mysql://a:b@h/d"],
    ["import", "--store", "sqlite:/x"],
    ["import", "--store", "sqlite:/x", "--format", "jsonl"],
    ["import", "--store", "sqlite:/x", "--format", "jsonl", "f", "--from", "mysql://a:b@h/d"],
    ["import", "--store", "sqlite:/x", "--batch", "0", "--format", "jsonl", "-"],
    ["import", "--store", "sqlite:/x", "--from", "postgres://u:hunter2@h/d"],
    ["import", "--store", "sqlite:/x", "--from", "mysql://u:hunter2@h/d?sslca=/x"],
    ["import", "--store", "sqlite:/x", "--from", "mysql://u:hunter2@h/d?ssl_ca=/dev/null"],
    ["import", "--store", "@/nonexistent/url", "--format", "jsonl", "-"],
    ["import", "--store", "mysql://u:hunter2@h:1/", "--format", "jsonl", "-"],
    ["recount", "--store", "sqlite:/x", "--cache", "redis://h:1"],
    ["recount", "--store", "sqlite:/x", "--fix", "--cache", "memcached://x"],
    ["recount", "--store", "postgres://u:hunter2@h/d"],
    ["check"],
    ["check", "--store", "sqlite:/x", "extra"],
    ["backup", "--store", "sqlite:/x"],
    ["backup", "--store", "mysql://u:hunter2@h:1/d", "/tmp/x"],
    ["nope"],
])
def test_usage_errors_are_one_line_and_exit_2(argv):
    r = ctl(*argv)
    assert r.returncode == 2, (argv, r.stdout, r.stderr)
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith("tallyctl"), r.stderr
    assert "hunter2" not in r.stderr + r.stdout


@pytest.mark.parametrize("cmd", ["export", "import", "recount", "check", "backup"])
def test_help_per_subcommand(cmd):
    r = ctl(cmd, "--help")
    assert r.returncode == 0 and r.stdout.startswith(f"usage: tallyctl {cmd}"), r
    assert cmd in ctl("--help").stdout


def test_version_is_tallyds():
    """tallyctl --version names the same version and commit as tallyd --version."""
    r = ctl("--version")
    d = subprocess.run([BINARY, "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and d.returncode == 0, (r, d)
    assert r.stdout.split()[0] == "tallyctl"
    assert r.stdout.split()[1:] == d.stdout.split()[1:], (r.stdout, d.stdout)


def test_failures_do_not_echo_the_password(tmp_path):
    bad = "mysql://tally:hunter2@127.0.0.1:1/nodb"
    for argv in (["check", "--store", bad], ["export", "--store", bad]):
        r = ctl(*argv)
        assert r.returncode == 1, r
        assert "hunter2" not in r.stderr + r.stdout
    r = ctl("import", "--store", f"sqlite:{tmp_path}/t.db", "--from", bad)
    assert r.returncode == 1 and "hunter2" not in r.stderr + r.stdout, r


def test_urls_from_files(db, tmp_path):
    """--store, --cache and --from take @PATH as tallyd's flags do."""
    store, cache = tmp_path / "store.url", tmp_path / "cache.url"
    store.write_text(db.url + "\n")
    cache.write_text((REDIS or "none") + "\r\n")
    r = ctl("import", "--store", f"@{store}", "--format", "jsonl", "-",
            stdin=jsonl(sample_records(3, 2)))
    assert r.returncode == 0, r.stderr
    r = ctl("recount", "--store", f"@{store}", "--fix", "--cache", f"@{cache}")
    assert r.returncode == 0 and "0 drifting" in r.stdout, r
    if MYSQL:  # the course import reads its URL from a file too (here: an empty database)
        r = ctl("import", "--store", f"@{store}", "--from", f"@{store}")
        assert r.returncode == 1 and "user_collection_bizs" in r.stderr, r
        assert "mysql-pw" not in r.stdout + r.stderr


def test_export_of_a_missing_sqlite_file_fails_without_creating_it(tmp_path):
    r = ctl("export", "--store", f"sqlite:{tmp_path}/none.db")
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r
    assert not os.path.exists(f"{tmp_path}/none.db")


DROP = object()  # a member left out of a record


def good_records():
    """One valid record of every type (after a few items, likes and collections)."""
    return sample_records(3, 2) + [
        {"type": "mark", "window": "24h", "hour": 470_000},
        {"type": "hour", "biz": "article", "id": 1, "hour": 470_010, "read_cnt": 3,
         "like_cnt": -1, "collect_cnt": 0},
        {"type": "window", "biz": "article", "id": 1, "window": "1h", "read_cnt": 3,
         "like_cnt": -1, "collect_cnt": 0},
        {"type": "memo", "memo": "seen", "key": -(2**63), "ms": 1},
        {"type": "dead_letter", "biz": "video", "id": 2, "uid": 0, "ts": 0, "topic": None,
         "partition": None, "offset": None, "error": "", "ctime": 5, "n": 2},
        {"type": "offset", "topic": "reads", "partition": 3, "next": 10, "utime": 1},
    ]


def bad(type_, **changes):
    """The good record of type_ with changes (DROP: the member left out)."""
    r = dict(next(x for x in good_records() if x["type"] == type_))
    for k, v in changes.items():
        if v is DROP:
            r.pop(k)
        else:
            r[k] = v
    return r


BAD_RECORDS = [
    ({"type": "nope"}, '"type"'),
    (bad("like", uid=0), '"uid"'),
    (bad("item", read_cnt=-1), '"read_cnt"'),
    (bad("mark", window="2h"), '"window"'),
    (bad("mark", window=DROP), '"window"'),
    (bad("mark", hour=-1), '"hour"'),
    (bad("mark", hour=2**62), '"hour"'),
    (bad("mark", hour="470000"), '"hour"'),
    (bad("hour", biz="Article"), '"biz"'),
    (bad("hour", id=0), '"id"'),
    (bad("hour", hour=DROP), '"hour"'),
    (bad("hour", read_cnt=-1), '"read_cnt"'),
    (bad("hour", like_cnt=1.5), '"like_cnt"'),
    (bad("hour", collect_cnt=DROP), '"collect_cnt"'),
    (bad("window", window=DROP), '"window"'),
    (bad("window", window=24), '"window"'),
    (bad("window", read_cnt="3"), '"read_cnt"'),
    (bad("memo", memo="other"), '"memo"'),
    (bad("memo", key=DROP), '"key"'),
    (bad("memo", key=None), '"key"'),
    (bad("memo", ms=-1), '"ms"'),
    (bad("dead_letter", uid=-1), '"uid"'),
    (bad("dead_letter", ctime=DROP), '"ctime"'),
    (bad("dead_letter", topic=""), '"topic"'),
    (bad("dead_letter", topic="a\tb"), '"topic"'),
    (bad("dead_letter", topic="t" * 256), '"topic"'),
    (bad("dead_letter", partition=-1), '"partition"'),
    (bad("dead_letter", partition=2**31), '"partition"'),
    (bad("dead_letter", offset="9"), '"offset"'),
    (bad("dead_letter", error=DROP), '"error"'),
    (bad("dead_letter", error=None), '"error"'),
    (bad("dead_letter", error="caf\u00e9"), '"error"'),
    (bad("dead_letter", error="x" * 256), '"error"'),
    (bad("dead_letter", n=0), '"n"'),
    (bad("dead_letter", n=1_000_001), '"n"'),
    (bad("offset", topic=None), '"topic"'),
    (bad("offset", partition=DROP), '"partition"'),
    (bad("offset", next=-1), '"next"'),
    (bad("offset", utime=DROP), '"utime"'),
    (bad("offset", event_ms=-1), '"event_ms"'),
]


def test_bad_records_are_named_exit_1_and_change_nothing(db, tmp_path):
    """Every member of every type is checked, and a bad line anywhere stops the import
    before anything is written: the valid lines before it are not imported either."""
    good = jsonl(good_records())
    assert ctl("import", "--store", db.url, "--format", "jsonl", "-", stdin="").returncode == 0
    before = dump_all(db)
    for record, member in BAD_RECORDS:
        r = ctl("import", "--store", db.url, "--format", "jsonl", "-",
                stdin=good + json.dumps(record) + "\n" + good)
        assert r.returncode == 1, (record, r.stdout, r.stderr)
        where = f"tallyctl import: -:{len(good_records()) + 1}: "
        assert r.stderr.startswith(where) and member in r.stderr, (record, r.stderr)
        assert len(r.stderr.splitlines()) == 1, r.stderr
    path = tmp_path / "bad.jsonl"  # a file is read twice too
    path.write_text(good + '{"type":"like","uid":0,"biz":"article","id":1,"ctime":1,"utime":1}\n')
    r = ctl("import", "--store", db.url, "--format", "jsonl", str(path))
    assert r.returncode == 1 and f"{path}:{len(good_records()) + 1}: \"uid\"" in r.stderr, r
    assert dump_all(db) == before
    r = ctl("import", "--store", db.url, "--format", "jsonl", "-", stdin=good)
    assert r.returncode == 0, r.stderr  # the lines around the bad ones were good
    assert dump_all(db) != before


# ---------------------------------------------------------------- export and import

def round_trip(src, dst, tmp_path, batch=1000):
    """Exports src, imports it into dst, and compares every table of the two."""
    out = tmp_path / "export.jsonl"
    r = ctl("export", "--store", src.url, str(out))
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith("exported "), r.stderr
    r = ctl("import", "--store", dst.url, "--batch", str(batch), "--format", "jsonl", str(out))
    assert r.returncode == 0, r.stderr
    want, got = dump_all(src), dump_all(dst)
    assert want.keys() == got.keys()
    for table in want:
        assert got[table] == want[table], table
    r2 = ctl("export", "--store", dst.url)
    assert r2.stdout == out.read_text()
    return out


def test_jsonl_round_trip_gives_an_identical_store(spawn, db, tmp_path):
    """The issue's finding: an export then import into an empty store left interactive_hour
    (and the windows, memos, dead letters and offsets) empty. Every table of the schema is
    filled through tallyd, and every one must come back row for row; a second import changes
    nothing."""
    fill_every_table(spawn, db)
    before = dump_all(db)
    # MariaDB's transition_queue is empty once tallyd moved the likes into their hours
    # (export moves what is left first): it is never exported, and nothing to compare.
    empty = [t for t, rows in before.items() if not rows and t != "transition_queue"]
    assert not empty, f"the fill left {empty} empty: comparing them would prove nothing"
    blank = [f"{t}.{c}" for t, columns in schema(db).items() for i, c in enumerate(columns)
             if before[t] and all(row[i] in (0, None, "", "NULL") for row in before[t])]
    assert not blank, f"the fill leaves {blank} at 0 or NULL: a column the export dropped" \
                      " would go unnoticed"
    dst = other_store(tmp_path, "b")
    try:
        out = round_trip(db, dst, tmp_path, batch=7)  # hours and windows across batches
        lines = [json.loads(x) for x in out.read_text().splitlines()]
        assert {x["type"] for x in lines} == ALL_TYPES
        assert any(x.get("status") == 0 for x in lines if x["type"] == "like")
        assert any(x.get("status") == 0 for x in lines if x["type"] == "collection")
        assert any(x["type"] == "window" and x["read_cnt"] == x["like_cnt"] == 0
                   for x in lines)  # a window that let its hours go keeps its row
        assert [x["n"] for x in lines if x["type"] == "dead_letter" and x["topic"] is None
                and x["id"] == 3] == [2]  # two identical rows, one record
        stored, wanted = window_sums(dst)
        assert stored == wanted
        r = ctl("import", "--store", dst.url, "--batch", "5", "--format", "jsonl", str(out))
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip().endswith(": 0 rows changed"), r.stdout
        assert dump_all(dst) == before
    finally:
        dst.drop()


@pytest.mark.skipif(bool(MYSQL), reason="tallyctl backup is SQLite's (MariaDB: mariadb-dump)")
def test_backup_carries_every_table(spawn, db, tmp_path):
    fill_every_table(spawn, db)
    dest = tmp_path / "copy.db"
    r = ctl("backup", "--store", db.url, str(dest))
    assert r.returncode == 0, r
    restored_dir = tmp_path / "restored"
    restored_dir.mkdir()
    shutil.copy(dest, restored_dir / "tally.db")
    want, got = dump_all(db), dump_all(Database(restored_dir))
    assert all(want.values()) and got == want


@pytest.mark.skipif(not MYSQL, reason="SQLite to MariaDB needs TALLY_TEST_MYSQL")
def test_jsonl_round_trip_sqlite_to_mariadb(tmp_path):
    src = f"sqlite:{tmp_path}/src.db"
    r = ctl("import", "--store", src, "--format", "jsonl", "-", stdin=jsonl(sample_records()))
    assert r.returncode == 0, r.stderr
    dump_path = tmp_path / "x.jsonl"
    assert ctl("export", "--store", src, str(dump_path)).returncode == 0
    dst = Database(tmp_path)  # a MariaDB database
    try:
        assert ctl("import", "--store", dst.url, "--format", "jsonl",
                   str(dump_path)).returncode == 0
        con = sqlite3.connect(f"{tmp_path}/src.db")
        want = {t: sorted(con.execute(f"SELECT {c} FROM {t}").fetchall())
                for t, c in TABLES.items()}
        con.close()
        assert dump(dst) == want
        assert ctl("export", "--store", dst.url).stdout == dump_path.read_text()
    finally:
        dst.drop()


def test_import_twice_changes_nothing_and_counts_equal_rows(db):
    data = jsonl(sample_records())
    r = ctl("import", "--store", db.url, "--batch", "37", "--format", "jsonl", "-", stdin=data)
    assert r.returncode == 0, r.stderr
    assert "0 rows changed" not in r.stdout
    first = dump(db)
    assert drifting(db) == []
    r = ctl("import", "--store", db.url, "--batch", "37", "--format", "jsonl", "-", stdin=data)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith(": 0 rows changed"), r.stdout
    assert len(r.stdout.splitlines()) == 1
    assert dump(db) == first


def test_import_merges_by_the_documented_rules(db):
    item = {"type": "item", "biz": "article", "id": 1, "read_cnt": 50, "like_cnt": 99,
            "collect_cnt": 99, "ctime": 100, "utime": 200}
    like = {"type": "like", "uid": 5, "biz": "article", "id": 1, "status": 1, "ctime": 100,
            "utime": 300}
    assert ctl("import", "--store", db.url, "--format", "jsonl", "-",
               stdin=jsonl([item, like])).returncode == 0
    older = dict(like, status=0, utime=250)
    newer_item = dict(item, read_cnt=40, ctime=90, utime=150)
    assert ctl("import", "--store", db.url, "--format", "jsonl", "-",
               stdin=jsonl([older, newer_item])).returncode == 0
    assert db.sql("SELECT read_cnt, like_cnt, collect_cnt, ctime, utime FROM interactive") == \
        [(50, 1, 0, 90, 200)]
    assert db.sql("SELECT status, utime FROM user_like") == [(1, 300)]
    assert ctl("import", "--store", db.url, "--format", "jsonl", "-",
               stdin=jsonl([dict(like, status=0, utime=400)])).returncode == 0
    assert db.sql("SELECT like_cnt FROM interactive") == [(0,)]


def import_records(db, *records, args=()):
    r = ctl("import", "--store", db.url, *args, "--format", "jsonl", "-", stdin=jsonl(records))
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_import_keeps_each_window_the_sum_of_its_hours(db):
    """Hourly rows are merged by the larger count and every window holding the hour moves
    with them; a later mark takes its passed hours out of the window, an earlier one changes
    nothing; a window record's own sums are never taken."""
    import_records(db)  # a new store: each window starts at this hour
    cur = dict(db.sql("SELECT win, hour FROM window_mark"))[1]

    def hour(h, read, like, item=1):
        return {"type": "hour", "biz": "article", "id": item, "hour": h, "read_cnt": read,
                "like_cnt": like, "collect_cnt": 0}

    def windows():
        return {(r[1], r[2]): tuple(int(v) for v in r[3:]) for r in db.sql(
            "SELECT biz, win, biz_id, read_cnt, like_cnt, collect_cnt FROM interactive_window")}

    # cur: in every window; cur-2: not in 1h; cur-100: in 7d and 30d; cur-800: in none
    first = [hour(cur, 10, 2), hour(cur - 2, 20, -1), hour(cur - 100, 40, 1),
             hour(cur - 800, 80, 5)]
    import_records(db, *first)
    assert windows() == {(1, 1): (10, 2, 0), (24, 1): (30, 1, 0), (168, 1): (70, 2, 0),
                         (720, 1): (70, 2, 0)}
    assert len(db.sql("SELECT hour FROM interactive_hour")) == 4
    assert import_records(db, *first).endswith(": 0 rows changed")
    assert import_records(db, hour(cur, 9, 1), hour(cur - 2, 19, -2)).endswith(
        ": 0 rows changed")  # smaller counts: the stored ones stay
    assert import_records(db, hour(cur, 15, 1)).endswith(": 1 rows changed")
    assert db.sql("SELECT read_cnt, like_cnt FROM interactive_hour WHERE hour = ?",
                  (cur,)) == [(15, 2)]  # the larger of each count
    assert windows()[(24, 1)] == (35, 1, 0)
    import_records(db, {"type": "mark", "window": "24h", "hour": cur - 1})
    assert windows()[(24, 1)] == (15, 2, 0)  # hour cur-2 left the window
    assert dict(db.sql("SELECT win, hour FROM window_mark"))[24] == cur - 1
    assert import_records(db, {"type": "mark", "window": "24h", "hour": cur - 30}).endswith(
        ": 0 rows changed")  # a window never takes back an hour it let go
    import_records(db, {"type": "window", "biz": "article", "id": 2, "window": "7d",
                        "read_cnt": 99, "like_cnt": 9, "collect_cnt": 9})
    assert windows()[(168, 2)] == (0, 0, 0)  # the row, not its sums: item 2 has no hours
    stored, wanted = window_sums(db)
    assert stored == wanted


def test_memos_dead_letters_and_offsets_merge_by_the_documented_rules(db, tmp_path):
    memo = {"type": "memo", "memo": "idem", "key": -(2**63), "ms": 1000}
    dead = {"type": "dead_letter", "biz": "article", "id": 7, "uid": 0, "ts": 5, "topic": None,
            "partition": None, "offset": None, "error": "refused", "ctime": 9, "n": 2}
    import_records(db, memo, dead)
    assert import_records(db, dict(memo, ms=900), dict(dead, n=1)).endswith(": 0 rows changed")
    import_records(db, dict(memo, ms=2000), dict(dead, n=3),
                   dict(dead, topic="reads", partition=0, offset=4, n=1))
    assert db.sql("SELECT k, ms FROM read_idem") == [(-(2**63), 2000)]  # the later ms
    assert db.sql("SELECT COUNT(*) FROM read_dead_letter WHERE topic IS NULL") == [(3,)]
    assert db.sql("SELECT COUNT(*) FROM read_dead_letter WHERE msg_offset = 4") == [(1,)]
    out = ctl("export", "--store", db.url).stdout
    assert '{"type":"memo","memo":"idem","key":-9223372036854775808,"ms":2000}' in out
    assert '"error":"refused","ctime":9,"n":3}' in out

    # An offset is taken only where the store has none for its topic and partition.
    execute(db, "INSERT INTO read_offsets (topic, part, next_offset, utime)"
                " VALUES ('reads', 0, 500, 1)")
    offsets = [{"type": "offset", "topic": "reads", "partition": p, "next": n, "utime": 7}
               for p, n in ((0, 100), (1, 200))]
    import_records(db, *offsets)
    assert sorted(db.sql("SELECT part, next_offset FROM read_offsets")) == [(0, 500), (1, 200)]
    assert import_records(db, *offsets).endswith(": 0 rows changed")
    other = other_store(tmp_path, "other")
    try:
        out = import_records(other, *offsets, args=("--no-offsets",))
        assert out.endswith("; 2 offsets left out (--no-offsets)"), out
        assert other.sql("SELECT COUNT(*) FROM read_offsets") == [(0,)]
    finally:
        other.drop()


def test_import_while_tallyd_serves_likes(db, tallyd):
    items = 8
    records = [{"type": "like", "uid": 1000 + u, "biz": "article", "id": 1 + u % items,
                "status": 1, "ctime": 1, "utime": 2} for u in range(3000)]
    stop = threading.Event()
    errors = []

    def clicker(seed):
        rnd = random.Random(seed)
        conn = tallyd.connect()
        while not stop.is_set():
            uid, item = rnd.randrange(1, 30), rnd.randrange(1, items + 1)
            method = rnd.choice(["PUT", "DELETE"])
            r = tallyd.request(method, f"/v1/users/{uid}/likes/article/{item}", conn=conn)
            if r.status != 200:
                errors.append(r)

    threads = [threading.Thread(target=clicker, args=(s,)) for s in range(4)]
    for th in threads:
        th.start()
    try:
        r = ctl("import", "--store", db.url, "--batch", "100", "--format", "jsonl", "-",
                stdin=jsonl(records))
    finally:
        stop.set()
        for th in threads:
            th.join()
    assert r.returncode == 0, r.stderr
    assert not errors, errors[:3]
    assert drifting(db) == []
    for i in range(1, items + 1):
        rows = db.sql("SELECT COUNT(*) FROM user_like WHERE biz = 'article' AND biz_id = ?"
                      " AND status = 1", (i,))[0][0]
        assert tallyd.get(f"/v1/items/article/{i}").json["like_cnt"] == rows


# ---------------------------------------------------------------- recount

def test_recount_finds_and_fixes_drift(db, tallyd):
    for uid in range(1, 8):
        for item in (1, 2, 3):
            assert tallyd.request("PUT", f"/v1/users/{uid}/likes/article/{item}").status == 200
        assert tallyd.request("PUT", f"/v1/users/{uid}/collections/1/items/article/2"
                              ).status == 200
    assert tallyd.get("/v1/items/article/1").json["like_cnt"] == 7  # cached now, with Redis
    r = ctl("recount", "--store", db.url)
    assert r.returncode == 0 and r.stdout.startswith("recount: 3 items, 0 drifting"), r
    execute(db, "UPDATE interactive SET like_cnt = 10 WHERE biz_id = 1")
    execute(db, "UPDATE interactive SET like_cnt = 2, collect_cnt = 9 WHERE biz_id = 2")
    r = ctl("recount", "--store", db.url)
    assert r.returncode == 1, r
    lines = r.stdout.splitlines()
    assert lines[:2] == [
        "article 1: like_cnt 10, 7 active likes; collect_cnt 0, 0 active collections",
        "article 2: like_cnt 2, 7 active likes; collect_cnt 9, 7 active collections"]
    assert lines[2] == ("recount: 3 items, 2 drifting (like_cnt off by 8, collect_cnt off by 2"
                        " in total)")
    args = ["recount", "--store", db.url, "--fix"]
    if REDIS:
        assert redis_cli("EXISTS", "interactive:article:1") == "1"
        args += ["--cache", REDIS]
    r = ctl(*args)
    assert r.returncode == 0, r
    assert "2 fixed" in r.stdout.splitlines()[-1]
    if REDIS:
        assert "2 cache entries dropped" in r.stdout
        assert redis_cli("EXISTS", "interactive:article:1") == "0"
    assert drifting(db) == []
    assert tallyd.get("/v1/items/article/1").json["like_cnt"] == 7
    assert tallyd.get("/v1/items/article/2").json["collect_cnt"] == 7
    assert ctl("recount", "--store", db.url).returncode == 0


# ---------------------------------------------------------------- check

def check(db):
    """(exit status, problem lines, {table: (rows, problems)}, summary) of tallyctl check."""
    r = ctl("check", "--store", db.url)
    lines = r.stdout.splitlines()
    assert lines[0].startswith("ok    schema: ") and lines[1].startswith("ok    integrity: "), \
        r.stdout
    tables, problems = {}, []
    for x in lines[2:-1]:
        head, _, rest = x.partition(": ")
        status, name = head.split(None, 1)
        if " " in name:  # "FAIL  TABLE KEY: what"
            assert status == "FAIL", x
            problems.append(x)
            continue
        rows = int(rest.split(" ")[0])
        found = int(rest.split(", ")[1].split(" ")[0]) if ", " in rest else 0
        assert status == ("FAIL" if found or "not read" in rest else "ok"), x
        tables[name] = (rows, found)
    return r.returncode, problems, tables, lines[-1]


def counted_rows(db):
    """Every table's row count, as check should report it (tally_schema: its versions)."""
    return {t: db.sql(f"SELECT COUNT({'DISTINCT version' if t == 'tally_schema' else '*'})"
                      f" FROM {t}")[0][0] for t in schema(db)}


def test_check_covers_every_table_of_a_store_filled_by_tallyd(spawn, db):
    """Every table filled through tallyd (likes, unlikes, collections, reads with hours,
    windows swept, memos, dead letters, offsets): no problem, and a line for every table the
    schema has (read from the schema: a table added later without a check fails this), with
    its rows."""
    fill_every_table(spawn, db)
    rc, problems, tables, summary = check(db)
    want = counted_rows(db)
    assert rc == 0 and problems == [], problems
    assert {t: rows for t, (rows, _) in tables.items()} == want
    assert summary == f"check: 2 checks, {len(want)} tables, {sum(want.values())} rows," \
                      " 0 problems"


def test_check_names_each_problem_in_each_table(spawn, db):
    """A store filled through tallyd passes; then one or two rows of every table are made
    wrong by hand, and check names each (table, row, what), counts them per table and exits
    1. recount --fix clears the count problems and only those."""
    h0 = fill_every_table(spawn, db)
    assert check(db)[:2] == (0, [])

    def one(query):
        rows = db.sql(query)
        assert len(rows) == 1, (query, rows)
        return rows[0] if len(rows[0]) > 1 else rows[0][0]

    def item_id(biz, i):
        return one(f"SELECT id FROM interactive WHERE biz = '{biz}' AND biz_id = {i}")

    def active(table, i):
        return one(f"SELECT COUNT(*) FROM {table} WHERE biz = 'article' AND biz_id = {i}"
                   " AND status = 1")

    expected = {}
    execute(db, "UPDATE interactive SET like_cnt = -1 WHERE biz = 'article' AND biz_id = 1")
    expected[f"interactive article/1 (id {item_id('article', 1)})"] = [
        f"like_cnt -1 is negative ({active('user_like', 1)} active likes)"]
    execute(db, "UPDATE interactive SET read_cnt = -3 WHERE biz = 'article' AND biz_id = 2")
    expected[f"interactive article/2 (id {item_id('article', 2)})"] = ["read_cnt -3 is negative"]
    execute(db, "UPDATE interactive SET collect_cnt = 9 WHERE biz = 'article' AND biz_id = 3")
    expected[f"interactive article/3 (id {item_id('article', 3)})"] = [
        f"collect_cnt 9, {active('user_collection', 3)} active collections"]
    execute(db, "INSERT INTO interactive (biz, biz_id, read_cnt, like_cnt, collect_cnt, ctime,"
                " utime) VALUES ('Not a biz', 5, 1, 0, 0, 1, 1), ('article', 0, 1, 0, 0, 1, 1)")
    expected[f'interactive "Not a biz"/5 (id {item_id("Not a biz", 5)})'] = [
        'biz "Not a biz" is not a valid biz (^[a-z][a-z0-9_]{0,31}$)']
    expected[f"interactive article/0 (id {item_id('article', 0)})"] = [
        "biz_id 0 is not a valid id (1..2^63-1)"]
    if not MYSQL:  # SQLite keeps any kind of value in any column
        execute(db, "UPDATE interactive SET utime = 'later' WHERE biz = 'article' AND biz_id = 5")
        expected[f"interactive article/5 (id {item_id('article', 5)})"] = [
            "utime holds a value that is not an integer"]

    # A withdrawn like given status 2 (no count moves), and a like whose item has no row.
    unliked = one("SELECT id FROM user_like WHERE uid = 2 AND biz_id = 2")
    execute(db, f"UPDATE user_like SET status = 2 WHERE id = {unliked}")
    expected[f"user_like id {unliked} (uid 2, article/2)"] = ["status 2 is neither 0 nor 1"]
    execute(db, "INSERT INTO user_like (uid, biz, biz_id, status, ctime, utime)"
                " VALUES (9, 'article', 555, 1, 1, 1)")
    orphan = one("SELECT id FROM user_like WHERE biz_id = 555")
    expected[f"user_like id {orphan} (uid 9, article/555)"] = [
        "its item has no row in interactive"]
    moved = one("SELECT id FROM user_collection WHERE uid = 3 AND biz_id = 7")
    execute(db, f"UPDATE user_collection SET cid = 0 WHERE id = {moved}")
    expected[f"user_collection id {moved} (uid 3, cid 0, video/7)"] = [
        "cid 0 is not a valid id (1..2^63-1)"]

    # An hour before every window's mark (no window holds it), with a negative read count.
    execute(db, "INSERT INTO interactive_hour (biz, biz_id, hour, read_cnt, like_cnt,"
                " collect_cnt) VALUES ('article', 4, 5, -4, 0, 0)")
    expected["interactive_hour article/4 hour 5"] = ["read_cnt -4 is negative"]

    # Item 4's three reads (hour h0) are held by 7d and 30d only.
    assert one("SELECT read_cnt FROM interactive_window WHERE biz = 'article' AND biz_id = 4"
               " AND win = 168") == 3
    execute(db, "UPDATE interactive_window SET read_cnt = 10 WHERE biz = 'article'"
                " AND biz_id = 4 AND win = 168")
    expected["interactive_window article/4 7d"] = [
        "read_cnt 10, like_cnt 0, collect_cnt 0; the hourly rows it holds sum to 3, 0, 0"]
    execute(db, "DELETE FROM interactive_window WHERE biz = 'article' AND biz_id = 4"
                " AND win = 720")
    expected["interactive_window article/4 30d"] = [
        "no row, but the hourly rows the window holds sum to read_cnt 3, like_cnt 0,"
        " collect_cnt 0"]
    execute(db, "INSERT INTO interactive_window (biz, win, biz_id, read_cnt, like_cnt,"
                " collect_cnt) VALUES ('article', 2, 1, 0, 0, 0)")
    expected["interactive_window article/1 win 2"] = [
        "win 2 is not a window's length (1, 24, 168 or 720 hours)"]
    execute(db, f"INSERT INTO window_mark (win, hour) VALUES (48, {h0})")
    expected["window_mark win 48"] = ["not a window's length (1, 24, 168 or 720 hours)"]

    for table, ms in (("read_idem", -1), ("read_seen", -2)):
        k = db.sql(f"SELECT k FROM {table} ORDER BY k")[0][0]
        execute(db, f"UPDATE {table} SET ms = {ms} WHERE k = {k}")
        expected[f"{table} k {k}"] = [f"ms {ms} is negative"]
    dead = one("SELECT id FROM read_dead_letter WHERE part = 1")
    execute(db, f"UPDATE read_dead_letter SET part = -1, error = 'two\nlines' WHERE id = {dead}")
    expected[f"read_dead_letter id {dead} (article/9)"] = [
        "part -1 is negative", "error holds a character that is not printable ASCII"]
    execute(db, "UPDATE read_offsets SET next_offset = -5 WHERE part = 1")
    expected["read_offsets topic tally-reads partition 1"] = ["next_offset -5 is negative"]
    if MYSQL:
        execute(db, "INSERT INTO tally_schema (version) VALUES (0)")
        top = one("SELECT MAX(version) FROM tally_schema")
        expected["tally_schema version 0"] = [f"version 0 is out of range (1..{top})"]

    rc, problems, tables, summary = check(db)
    assert rc == 1
    want = sorted(f"FAIL  {key}: {what}" for key, whats in expected.items() for what in whats)
    assert sorted(problems) == want
    per_table = {}
    for key, whats in expected.items():
        per_table[key.split(" ")[0]] = per_table.get(key.split(" ")[0], 0) + len(whats)
    assert {t: n for t, (_, n) in tables.items() if n} == per_table
    assert set(tables) == set(schema(db))
    assert summary.endswith(f" rows, {len(want)} problems: " + ", ".join(
        f"{t} {n}" for t, n in per_table.items())), summary

    # recount --fix is the repair of counts that differ from their rows: those go, the
    # rest stay.
    assert ctl("recount", "--store", db.url, "--fix").returncode == 0
    rc, problems, _, _ = check(db)
    fixed = [x for x in want if x.startswith("FAIL  interactive article/1 ")
             or x.startswith("FAIL  interactive article/3 ")]
    assert rc == 1 and len(fixed) == 2 and sorted(problems) == sorted(set(want) - set(fixed))


def test_check_reads_every_row_in_pages(db):
    """Over 1,000 rows in every table read by key (more than one page each, the windows' and
    the held hours' too): every row is read once, and a wrong row on the last page of each is
    found."""
    n = 1100
    r = ctl("import", "--store", db.url, "--format", "jsonl", "-", stdin="")
    assert r.returncode == 0, r.stderr  # an empty store, with each window's mark
    marks = dict(db.sql("SELECT win, hour FROM window_mark"))
    hour = marks[1]  # held by every window; marks[24] - 7 by 7d and 30d only
    records = []
    for i in range(1, n + 1):
        records.append({"type": "like", "uid": i, "biz": "article", "id": i, "status": 1,
                        "ctime": 1, "utime": 2})
        for h in (marks[24] - 7, hour):
            records.append({"type": "hour", "biz": "article", "id": i, "hour": h,
                            "read_cnt": i, "like_cnt": 0, "collect_cnt": 0})
        records.append({"type": "memo", "memo": "seen", "key": i * 7919 - 2**62, "ms": i})
        records.append({"type": "offset", "topic": "reads", "partition": i, "next": i,
                        "utime": 1})
        records.append({"type": "dead_letter", "biz": "video", "id": i, "uid": 0, "ts": 1,
                        "topic": None, "partition": None, "offset": None, "error": "x",
                        "ctime": 1, "n": 1})
    r = ctl("import", "--store", db.url, "--batch", "2000", "--format", "jsonl", "-",
            stdin=jsonl(records))
    assert r.returncode == 0, r.stderr
    rc, problems, tables, _ = check(db)
    assert rc == 0 and problems == []
    assert {t: rows for t, (rows, _) in tables.items()} == counted_rows(db)
    assert tables["interactive_window"][0] == 4 * n and tables["interactive_hour"][0] == 2 * n

    execute(db, f"UPDATE interactive SET like_cnt = 0 WHERE biz_id = {n}")
    execute(db, f"UPDATE interactive_hour SET read_cnt = -1 WHERE biz_id = {n} AND hour = {hour}")
    execute(db, f"UPDATE read_seen SET ms = -1 WHERE k = {n * 7919 - 2**62}")
    execute(db, f"UPDATE read_offsets SET utime = -1 WHERE part = {n}")
    execute(db, f"UPDATE read_dead_letter SET uid = -1 WHERE biz_id = {n}")
    rc, problems, tables, _ = check(db)
    item, dead = (db.sql(f"SELECT id FROM {t} WHERE biz_id = {n}")[0][0]
                  for t in ("interactive", "read_dead_letter"))
    held = f"read_cnt {2 * n}, like_cnt 0, collect_cnt 0; the hourly rows it holds sum to"
    assert rc == 1 and sorted(problems) == sorted([
        f"FAIL  interactive article/{n} (id {item}): like_cnt 0, 1 active likes",
        f"FAIL  interactive_hour article/{n} hour {hour}: read_cnt -1 is negative",
        f"FAIL  interactive_window article/{n} 1h: read_cnt {n}, like_cnt 0, collect_cnt 0;"
        " the hourly rows it holds sum to -1, 0, 0",
        f"FAIL  interactive_window article/{n} 24h: read_cnt {n}, like_cnt 0, collect_cnt 0;"
        " the hourly rows it holds sum to -1, 0, 0",
        f"FAIL  interactive_window article/{n} 7d: {held} {n - 1}, 0, 0",
        f"FAIL  interactive_window article/{n} 30d: {held} {n - 1}, 0, 0",
        f"FAIL  read_seen k {n * 7919 - 2**62}: ms -1 is negative",
        f"FAIL  read_offsets topic reads partition {n}: utime -1 is negative",
        f"FAIL  read_dead_letter id {dead} (video/{n}): uid -1 is negative"])


def test_check_while_tallyd_serves_finds_nothing(db, tallyd):
    """Each page is one statement, so a count and the rows it must equal are read together:
    likes, unlikes, collections and reads committing all along are never a problem."""
    stop = threading.Event()
    done, errors = [0], []

    def clicker(seed):
        rnd = random.Random(seed)
        conn = tallyd.connect()
        while not stop.is_set():
            uid, item = rnd.randrange(1, 40), rnd.randrange(1, 30)
            kind = rnd.randrange(3)
            if kind == 2:
                method, path, want = "POST", f"/v1/items/article/{item}/reads", 202
            else:
                method, want = rnd.choice(["PUT", "DELETE"]), 200
                path = (f"/v1/users/{uid}/likes/article/{item}" if kind == 0 else
                        f"/v1/users/{uid}/collections/{1 + uid % 2}/items/article/{item}")
            r = tallyd.request(method, path, conn=conn)
            if r.status != want:
                errors.append(r)
            done[0] += 1

    threads = [threading.Thread(target=clicker, args=(s,)) for s in range(3)]
    for th in threads:
        th.start()
    results = []
    try:
        assert wait_until(lambda: done[0] > 100)
        for _ in range(3):
            before = done[0]
            results.append(check(db))
            assert done[0] > before  # the writes went on while it read
    finally:
        stop.set()
        for th in threads:
            th.join()
    assert not errors, errors[:3]
    for rc, problems, tables, summary in results:
        assert rc == 0 and problems == [], problems
        assert summary.endswith(" 0 problems"), summary


@pytest.mark.skipif(bool(MYSQL), reason="corrupting a file is SQLite's case")
def test_check_finds_a_corrupted_sqlite_file(db, tmp_path):
    assert ctl("import", "--store", db.url, "--format", "jsonl", "-",
               stdin=jsonl(sample_records(300, 200))).returncode == 0
    copy = tmp_path / "copy.db"
    assert ctl("backup", "--store", db.url, str(copy)).returncode == 0
    con = sqlite3.connect(copy)
    page_size, pages = con.execute("PRAGMA page_size").fetchone()[0], \
        con.execute("PRAGMA page_count").fetchone()[0]
    con.close()
    assert pages > 20
    with open(copy, "r+b") as f:  # a page in the middle, overwritten
        f.seek(page_size * (pages // 2))
        f.write(bytes(random.Random(1).randrange(256) for _ in range(page_size)))
    r = ctl("check", "--store", f"sqlite:{copy}")
    assert r.returncode == 1, r
    assert any(x.startswith("FAIL  integrity: ") for x in r.stdout.splitlines()), r.stdout
    assert r.stdout.splitlines()[-1].startswith("check: ")
    r = ctl("check", "--store", f"sqlite:{tmp_path}/missing.db")
    assert r.returncode == 1


# ---------------------------------------------------------------- backup

@pytest.mark.skipif(bool(MYSQL), reason="MariaDB is backed up with mariadb-dump")
def test_backup_under_load_restores_to_the_same_counts(db, tallyd, tmp_path):
    assert ctl("import", "--store", db.url, "--format", "jsonl", "-",
               stdin=jsonl(sample_records(200, 300))).returncode == 0
    stop = threading.Event()
    done = [0]

    def clicker(seed):
        rnd = random.Random(seed)
        conn = tallyd.connect()
        while not stop.is_set():
            uid, item = rnd.randrange(1, 500), rnd.randrange(1, 200)
            biz = "article" if item % 3 else "video"
            tallyd.request(rnd.choice(["PUT", "DELETE"]), f"/v1/users/{uid}/likes/{biz}/{item}",
                           conn=conn)
            done[0] += 1

    threads = [threading.Thread(target=clicker, args=(s,)) for s in range(3)]
    for th in threads:
        th.start()
    try:
        assert wait_until(lambda: done[0] > 50)
        dest = tmp_path / "backup.db"
        r = ctl("backup", "--store", db.url, str(dest))
        assert r.returncode == 0, r
        assert r.stdout.startswith("backup: ") and str(dest) in r.stdout
        r = ctl("backup", "--store", db.url, str(dest))
        assert r.returncode == 1 and "exists" in r.stderr
    finally:
        stop.set()
        for th in threads:
            th.join()
    assert done[0] > 50
    restored_dir = tmp_path / "restored"
    restored_dir.mkdir()
    shutil.copy(dest, restored_dir / "tally.db")
    restored = Database(restored_dir)
    assert ctl("check", "--store", restored.url).returncode == 0
    assert drifting(restored) == []
    counts = restored.sql("SELECT biz, biz_id, like_cnt, read_cnt FROM interactive")
    t = Tallyd(restored_dir, store=restored.url).start()
    try:
        for biz, item, likes, reads in counts[:40]:
            got = t.get(f"/v1/items/{biz}/{item}").json
            assert (got["like_cnt"], got["read_cnt"]) == (likes, reads)
    finally:
        assert t.stop() == 0


# ---------------------------------------------------------------- the course schema

COURSE_SCHEMA = """
CREATE TABLE interactives (
  id BIGINT AUTO_INCREMENT PRIMARY KEY, biz_id BIGINT, biz VARCHAR(128),
  read_cnt BIGINT, like_cnt BIGINT, collect_cnt BIGINT, ctime BIGINT, utime BIGINT,
  UNIQUE KEY biz_type_id (biz_id, biz));
CREATE TABLE user_like_bizs (
  id BIGINT AUTO_INCREMENT PRIMARY KEY, uid BIGINT, biz_id BIGINT, biz VARCHAR(128),
  status TINYINT UNSIGNED, ctime BIGINT, utime BIGINT,
  UNIQUE KEY uid_biz_type_id (uid, biz_id, biz));
CREATE TABLE user_collection_bizs (
  id BIGINT AUTO_INCREMENT PRIMARY KEY, uid BIGINT, cid BIGINT, biz_id BIGINT,
  biz VARCHAR(128), {status} ctime BIGINT, utime BIGINT,
  UNIQUE KEY uid_biz_type_id (uid, biz_id, biz), KEY idx_cid (cid));
"""


@pytest.fixture
def course(tmp_path):
    if not MYSQL:
        pytest.skip("the course schema lives in MariaDB: set TALLY_TEST_MYSQL")
    d = Database(tmp_path)  # a fresh MariaDB database for the course's tables
    yield d
    d.drop()


@pytest.mark.parametrize("with_status", [False, True])
def test_import_from_the_course_schema(db, course, with_status):
    course.sql(COURSE_SCHEMA.replace("{status}", "status TINYINT UNSIGNED," if with_status
                                     else ""))
    rows = []
    # Items 1..5: like_cnt drifted on 2 and 4, collect_cnt on 3; item 6 has an invalid biz.
    likes = {1: 3, 2: 2, 3: 1, 4: 0, 5: 4}
    stated = {1: (3, 1), 2: (5, 0), 3: (1, 4), 4: (2, 0), 5: (4, 0)}
    for i in range(1, 6):
        rows.append(f"INSERT INTO interactives (biz_id, biz, read_cnt, like_cnt, collect_cnt,"
                    f" ctime, utime) VALUES ({i}, 'article', {i * 100}, {stated[i][0]},"
                    f" {stated[i][1]}, {1000 + i}, {2000 + i})")
        for u in range(1, likes[i] + 1):
            rows.append(f"INSERT INTO user_like_bizs (uid, biz_id, biz, status, ctime, utime)"
                        f" VALUES ({u}, {i}, 'article', 1, 1100, 1200)")
    rows.append("INSERT INTO user_like_bizs (uid, biz_id, biz, status, ctime, utime)"
                " VALUES (9, 1, 'article', 0, 1100, 1300)")  # withdrawn
    rows.append("INSERT INTO interactives (biz_id, biz, read_cnt, like_cnt, collect_cnt, ctime,"
                " utime) VALUES (6, 'Not A Biz', 1, 0, 0, 1, 1)")
    status_col, status_val = ("status, ", "1, ") if with_status else ("", "")
    rows.append(f"INSERT INTO user_collection_bizs (uid, cid, biz_id, biz, {status_col}ctime,"
                f" utime) VALUES (1, 7, 1, 'article', {status_val}1100, 1200)")
    course.sql(";".join(rows))
    r = ctl("import", "--store", db.url, "--batch", "2", "--from", course.url)
    assert r.returncode == 0, r.stderr
    assert "tally:tally" not in r.stdout + r.stderr
    drift = [x for x in r.stdout.splitlines() if x.startswith("drift ")]
    assert drift == [
        "drift article 2: like_cnt 5 in the course, 2 rows; collect_cnt 0 in the course, 0 rows",
        "drift article 3: like_cnt 1 in the course, 1 rows; collect_cnt 4 in the course, 0 rows",
        "drift article 4: like_cnt 2 in the course, 0 rows; collect_cnt 0 in the course, 0 rows",
    ]
    summary = r.stdout.splitlines()[-1]
    assert summary.startswith("imported 5 items, 11 likes, 1 collections"), summary
    assert summary.endswith("3 items drifted in the course: like_cnt off by 5, collect_cnt off"
                            " by 4 in total"), summary
    assert "skipped 1 course rows" in r.stderr
    got = {r[1]: r[2:] for r in db.sql("SELECT biz, biz_id, read_cnt, like_cnt, collect_cnt,"
                                       " ctime, utime FROM interactive")}
    assert got[1] == (100, 3, 1, 1001, 2001)
    assert got[2][:3] == (200, 2, 0) and got[3][:3] == (300, 1, 0) and got[4][:3] == (400, 0, 0)
    assert drifting(db) == []
    assert db.sql("SELECT cid, status FROM user_collection") == [(7, 1)]
    before = dump(db)
    r = ctl("import", "--store", db.url, "--from", course.url)
    assert r.returncode == 0 and ": 0 rows changed;" in r.stdout, r.stdout
    assert dump(db) == before
