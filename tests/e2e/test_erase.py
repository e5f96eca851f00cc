"""Erasing a user: DELETE /v1/users/{uid} and tallyctl erase-user, against real stores.

Every test runs on the `db` fixture's store: SQLite, or MariaDB when TALLY_TEST_MYSQL is set
(plus Redis when TALLY_TEST_REDIS is). After each erasure the store is read directly (the
user's rows, every item's counts against its active rows) and `tallyctl check` must find
nothing (counts = active rows, each window = the hours it holds); with Redis, the counts
tallyd serves from its cache must equal the store, and the user's cached flags are gone.
Waits have deadlines; nothing sleeps a fixed time.
"""
import hashlib
import os
import random
import secrets
import subprocess
import threading
import time

import pytest

from tallyd import MYSQL, REDIS, redis_cli

TALLYCTL = os.environ.get("TALLYCTL", os.path.join(os.path.dirname(__file__),
                                                   "../../build/tallyctl"))
CHUNK = 256           # rows per store transaction (STORE_ERASE_MAX)
REQUEST_ROWS = 1024   # rows one DELETE /v1/users/{uid} erases at most (4 chunks)
DRIFT_SQL = ("SELECT i.biz, i.biz_id, i.like_cnt, i.collect_cnt,"
             " (SELECT COUNT(*) FROM user_like l WHERE l.biz = i.biz AND l.biz_id = i.biz_id"
             "  AND l.status = 1),"
             " (SELECT COUNT(*) FROM user_collection c WHERE c.biz = i.biz"
             "  AND c.biz_id = i.biz_id AND c.status = 1) FROM interactive i")


def ctl(*argv, timeout=300):
    r = subprocess.run([TALLYCTL, *argv], capture_output=True, text=True, timeout=timeout)
    assert "AddressSanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr
    return r


def drifting(db):
    return [r for r in db.sql(DRIFT_SQL) if r[2] != r[4] or r[3] != r[5]]


def check_clean(db):
    r = ctl("check", "--store", db.url)
    assert r.returncode == 0 and r.stdout.splitlines()[-1].endswith(" 0 problems"), r.stdout
    assert drifting(db) == []


def rows_of(db, uid):
    return (db.sql("SELECT COUNT(*) FROM user_like WHERE uid = ?", (uid,))[0][0],
            db.sql("SELECT COUNT(*) FROM user_collection WHERE uid = ?", (uid,))[0][0])


def others(db, uid):
    """Every like and collection row of the other users, without row ids."""
    return (sorted(db.sql("SELECT uid, biz, biz_id, status, ctime, utime FROM user_like"
                          " WHERE uid <> ?", (uid,))),
            sorted(db.sql("SELECT uid, cid, biz, biz_id, status, ctime, utime"
                          " FROM user_collection WHERE uid <> ?", (uid,))))


def served_equals_store(t, ids, biz="article"):
    """The counts tallyd serves (from Redis when it has them) equal the store's rows."""
    for k in range(0, len(ids), 100):
        part = ids[k:k + 100]
        got = t.get(f"/v1/items/{biz}?ids={','.join(map(str, part))}").json["items"]
        for e in got:
            likes = t_rows(t.db, "user_like", biz, e["id"])
            collects = t_rows(t.db, "user_collection", biz, e["id"])
            assert (e["like_cnt"], e["collect_cnt"]) == (likes, collects), e


def t_rows(db, table, biz, i):
    return db.sql(f"SELECT COUNT(*) FROM {table} WHERE biz = '{biz}' AND biz_id = ?"
                  " AND status = 1", (i,))[0][0]


def user_flag_fields(uid):
    """The item fields of a user's cached flags hash (its fence fields left out)."""
    out = redis_cli("HKEYS", f"user_flags:{uid}")
    return sorted(f for f in out.split() if f not in ("gen", "inflight", "until"))


def put(t, path, conn=None):
    r = t.request("PUT", path, conn=conn)
    assert r.status == 200, r


def erase(t, uid, token=None):
    r = t.request("DELETE", f"/v1/users/{uid}", token=token)
    assert r.status == 200, r
    return r.json


@pytest.fixture
def served(tallyd, db):
    tallyd.db = db
    return tallyd


def test_erase_removes_the_users_rows_and_lowers_counts_exactly(served, db):
    t = served
    # Users 1..4 like items 1..6 and collect some; uid 2 also unliked and uncollected some
    # (inactive rows, which go too but move no count), and moved one between collections.
    for uid in range(1, 5):
        for i in range(1, 7):
            put(t, f"/v1/users/{uid}/likes/article/{i}")
        put(t, f"/v1/users/{uid}/collections/1/items/article/{uid}")
        put(t, f"/v1/users/{uid}/likes/video/{uid}")
    for i in (1, 2):
        assert t.request("DELETE", f"/v1/users/2/likes/article/{i}").status == 200
    put(t, "/v1/users/2/collections/1/items/article/5")
    assert t.request("DELETE", "/v1/users/2/collections/1/items/article/5").status == 200
    put(t, "/v1/users/2/collections/3/items/article/6")
    put(t, "/v1/users/2/collections/4/items/article/6")  # a move: still one row, active
    # The cache holds counts and uid 2's flags now (with Redis).
    before = t.get("/v1/items/article?ids=1,2,3,4,5,6&uid=2").json["items"]
    assert [e["liked"] for e in before] == [False, False, True, True, True, True]
    assert t.get("/v1/items/video/2?uid=2").json["liked"] is True
    if REDIS:
        assert user_flag_fields(2) != []
    kept = others(db, 2)
    assert rows_of(db, 2) == (7, 3)
    hour_likes = sum(r[0] for r in db.sql("SELECT like_cnt FROM interactive_hour"))

    assert erase(t, 2) == {"uid": 2, "likes_removed": 7, "collections_removed": 3,
                           "done": True}
    assert rows_of(db, 2) == (0, 0)
    assert others(db, 2) == kept
    # 4 active likes and 2 active collections left uid 2's items, as unlikes would: totals,
    # and the current hour (and so every window, which tallyctl check compares).
    assert sum(r[0] for r in db.sql("SELECT like_cnt FROM interactive_hour")) == hour_likes - 5
    check_clean(db)
    after = t.get("/v1/items/article?ids=1,2,3,4,5,6&uid=2").json["items"]
    assert [(e["like_cnt"], e["collect_cnt"]) for e in after] == \
        [(3, 1), (3, 0), (3, 1), (3, 1), (3, 0), (3, 0)]
    assert not any(e["liked"] or e["collected"] for e in after)
    assert t.get("/v1/items/video/2?uid=2").json == {
        "biz": "video", "id": 2, "read_cnt": 0, "like_cnt": 0, "collect_cnt": 0,
        "liked": False, "collected": False}
    served_equals_store(t, list(range(1, 7)))
    # Erasing again changes nothing and says so.
    snapshot = (others(db, 2), db.sql("SELECT biz, biz_id, like_cnt, collect_cnt"
                                      " FROM interactive ORDER BY biz, biz_id"))
    assert erase(t, 2) == {"uid": 2, "likes_removed": 0, "collections_removed": 0,
                           "done": True}
    assert (others(db, 2), db.sql("SELECT biz, biz_id, like_cnt, collect_cnt FROM interactive"
                                  " ORDER BY biz, biz_id")) == snapshot
    check_clean(db)


def test_erase_bad_requests_change_nothing(served, db):
    t = served
    put(t, "/v1/users/5/likes/article/1")
    for path in ["/v1/users/0", "/v1/users/-1", "/v1/users/abc", "/v1/users/9223372036854775808"]:
        r = t.request("DELETE", path)
        assert r.status == 400 and r.json["error"]["code"] == "invalid_argument", (path, r)
    r = t.request("GET", "/v1/users/5")
    assert r.status == 405 and r.headers["allow"] == "DELETE", r
    assert rows_of(db, 5) == (1, 0)


def new_key(name, scopes):
    token = secrets.token_urlsafe(32)
    return token, f"{name} {scopes} {hashlib.sha256(token.encode()).hexdigest()}"


def test_erase_needs_the_admin_scope(spawn, db, tmp_path):
    tokens, lines = {}, []
    for scopes in ["read,write", "write", "read,write,metrics", "admin"]:
        tokens[scopes], line = new_key(f"k{len(lines)}", scopes)
        lines.append(line)
    (tmp_path / "keys").write_text("\n".join(lines) + "\n")
    t = spawn("--keys", str(tmp_path / "keys")).start()
    for i in (1, 2):
        assert t.request("PUT", f"/v1/users/7/likes/article/{i}",
                         token=tokens["write"]).status == 200
    assert t.request("DELETE", "/v1/users/7", token="").status == 401
    for scopes in ["read,write", "write", "read,write,metrics"]:
        r = t.request("DELETE", "/v1/users/7", token=tokens[scopes])
        assert r.status == 403 and r.json["error"]["code"] == "permission_denied", (scopes, r)
    assert rows_of(db, 7) == (2, 0)
    assert erase(t, 7, token=tokens["admin"]) == {
        "uid": 7, "likes_removed": 2, "collections_removed": 0, "done": True}
    assert rows_of(db, 7) == (0, 0)
    check_clean(db)


def like_many(t, uid, ids, threads=4):
    """uid likes every item of ids, over a few connections."""
    def worker(part):
        conn = t.connect()
        for i in part:
            put(t, f"/v1/users/{uid}/likes/article/{i}", conn=conn)
        conn.close()
    ths = [threading.Thread(target=worker, args=(ids[k::threads],)) for k in range(threads)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()


def test_erase_over_http_is_bounded_per_request(served, db):
    """1,200 likes: more than one chunk and more than one request's bound. The first request
    erases 1,024 (four transactions) and says it is not done; the second the rest."""
    t = served
    like_many(t, 7, list(range(1, 1201)))
    put(t, "/v1/users/8/likes/article/1")
    put(t, "/v1/users/7/collections/1/items/article/3")
    assert rows_of(db, 7) == (1200, 1)
    assert erase(t, 7) == {"uid": 7, "likes_removed": REQUEST_ROWS, "collections_removed": 0,
                           "done": False}
    assert rows_of(db, 7) == (1200 - REQUEST_ROWS, 1)
    check_clean(db)  # each chunk committed whole
    assert erase(t, 7) == {"uid": 7, "likes_removed": 1200 - REQUEST_ROWS,
                           "collections_removed": 1, "done": True}
    assert erase(t, 7) == {"uid": 7, "likes_removed": 0, "collections_removed": 0,
                           "done": True}
    assert rows_of(db, 7) == (0, 0) and rows_of(db, 8) == (1, 0)
    check_clean(db)
    served_equals_store(t, [1, 2, 3, 600, 1200])


def test_tallyctl_erase_user_prints_its_summary(served, db):
    t = served
    like_many(t, 7, list(range(1, 1201)))
    for i in (1, 2, 3):
        put(t, f"/v1/users/7/collections/{i}/items/article/{i}")
    put(t, "/v1/users/8/likes/article/5")
    assert t.get("/v1/items/article/5?uid=7").json["liked"] is True  # cached, with Redis
    cache = ["--cache", REDIS] if REDIS else []
    r = ctl("erase-user", "--store", db.url, *cache, "7")
    assert r.returncode == 0, r
    # 1,200 likes in chunks of 256: five transactions, and one for the collections.
    assert r.stdout == "erase-user: uid 7: 1200 likes and 3 collections removed in 6" \
                       " transactions\n", r.stdout
    assert rows_of(db, 7) == (0, 0) and rows_of(db, 8) == (1, 0)
    if REDIS:  # the user's cached flags are gone (until a read fills them from the store)
        assert user_flag_fields(7) == []
    check_clean(db)
    got = t.get("/v1/items/article/5?uid=7").json
    assert (got["like_cnt"], got["liked"]) == (1, False), got
    served_equals_store(t, [1, 2, 3, 4, 5, 1200])
    r = ctl("erase-user", "--store", db.url, *cache, "7")
    assert (r.returncode, r.stdout) == (0, "erase-user: uid 7: 0 likes and 0 collections"
                                           " removed in 0 transactions\n"), r


@pytest.mark.parametrize("argv", [
    ["erase-user"],
    ["erase-user", "7"],
    ["erase-user", "--store", "sqlite:/x"],
    ["erase-user", "--store", "sqlite:/x", "0"],
    ["erase-user", "--store", "sqlite:/x", "x7"],
    ["erase-user", "--store", "sqlite:/x", "7", "8"],
    ["erase-user", "--store", "sqlite:/x", "--fix", "7"],
    ["erase-user", "--store", "nope:/x", "7"],
    ["erase-user", "--store", "sqlite:/x", "--cache", "redis://h:1?bad=1", "7"],
    ["erase-user", "--store"],
])
def test_tallyctl_erase_user_usage_errors_exit_2(argv):
    r = ctl(*argv)
    assert r.returncode == 2 and r.stdout == "", r
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("tallyctl erase-user: "), r


def test_tallyctl_erase_user_help_and_failure(tmp_path):
    r = ctl("erase-user", "--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: tallyctl erase-user --store URL")
    r = ctl("erase-user", "--store", f"sqlite:{tmp_path}/missing.db", "7")
    assert r.returncode == 1 and r.stderr.startswith("tallyctl erase-user: "), r
    assert not os.path.exists(tmp_path / "missing.db")


@pytest.mark.parametrize("how", ["http", "tallyctl"])
def test_erase_under_concurrent_likes_keeps_counts_exact(served, db, how):
    """Threads like, unlike, collect and uncollect random items as six users, the erased
    one among them, while the erasure runs; afterwards every count equals its active rows
    (tallyctl check and SQL), the cache serves the store's counts, and every row the erased
    user had before it began is gone."""
    t = served
    items = 40
    ERASED = 3
    like_many(t, ERASED, list(range(1, 1301)))  # five chunks of likes on 1,300 items
    for i in range(1, items + 1, 3):
        put(t, f"/v1/users/{ERASED}/collections/{1 + i % 2}/items/article/{i}")
    old_likes = set(r[0] for r in db.sql(f"SELECT biz_id FROM user_like WHERE uid = {ERASED}"))
    stop = threading.Event()
    done, errors = [0], []

    def clicker(seed):
        rnd = random.Random(seed)
        conn = t.connect()
        while not stop.is_set():
            uid, item = rnd.randrange(1, 7), rnd.randrange(1, items + 1)
            method = rnd.choice(["PUT", "DELETE"])
            path = (f"/v1/users/{uid}/likes/article/{item}" if rnd.randrange(3) else
                    f"/v1/users/{uid}/collections/{1 + uid % 2}/items/article/{item}")
            r = t.request(method, path, conn=conn)
            if r.status != 200:
                errors.append(r)
            done[0] += 1
            if rnd.randrange(10) == 0:  # readers fill the cache meanwhile
                t.request("GET", f"/v1/items/article?ids={item},{item + 1}&uid={uid}",
                          conn=conn)
        conn.close()

    threads = [threading.Thread(target=clicker, args=(s,)) for s in range(4)]
    for th in threads:
        th.start()
    try:
        deadline = time.time() + 20
        while done[0] < 50 and time.time() < deadline:
            time.sleep(0.01)
        before = done[0]
        if how == "http":
            rounds = 0
            while True:
                rounds += 1
                r = t.request("DELETE", f"/v1/users/{ERASED}")
                assert r.status == 200, r
                if r.json["done"]:
                    break
                assert rounds < 20, r
        else:
            cache = ["--cache", REDIS] if REDIS else []
            r = ctl("erase-user", "--store", db.url, *cache, str(ERASED))
            assert r.returncode == 0, r
        assert done[0] > before  # the writes went on beside it
    finally:
        stop.set()
        for th in threads:
            th.join()
    assert not errors, errors[:3]
    # Rows the erased user had on items no thread touched are all gone; any left are on the
    # threads' items, written after the erasure passed them.
    left = set(r[0] for r in db.sql(f"SELECT biz_id FROM user_like WHERE uid = {ERASED}"))
    assert left <= set(range(1, items + 1)), sorted(left - set(range(1, items + 1)))[:5]
    assert len(old_likes - left) >= 1300 - items
    check_clean(db)
    served_equals_store(t, list(range(1, items + 2)) + [500, 1300])
    # A second erasure, with nobody writing, leaves the user nothing.
    while not erase(t, ERASED)["done"]:
        pass
    assert rows_of(db, ERASED) == (0, 0)
    check_clean(db)
    served_equals_store(t, list(range(1, items + 2)))
    if REDIS:
        t.get(f"/v1/items/article?ids=1,2,3&uid={ERASED}")
        assert all(e["liked"] is False for e in
                   t.get(f"/v1/items/article?ids=1,2,3&uid={ERASED}").json["items"])
