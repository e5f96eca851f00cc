"""Rate limits (--rate-limit) over HTTP: the bound, 429s that change nothing, per caller and
per uid, buckets shared by two tallyd through Redis, and failing open when Redis stops.

The invariant: in any interval of T seconds a bucket admits at most burst + rate * T
requests. Over HTTP the server's admission times are not visible, but they all lie between
the first request's send and the last response's arrival, so that span is the T checked
(a looser T than the server's, never a tighter one).
"""
import http.client
import os
import subprocess
import threading
import time

import pytest

from tallyd import REDIS, redis_cli as authenticated_redis_cli, report

ROOT = os.path.join(os.path.dirname(__file__), "../..")


def services(*args):
    subprocess.run([os.path.join(ROOT, "scripts/services.sh"), *args], check=True,
                   capture_output=True)


def redis_cli(*args):
    return authenticated_redis_cli(*args, check=False)


def stop_clean(t):
    out_rc = t.stop()
    assert out_rc == 0, f"tallyd exited with {out_rc}:\n{t.output()}"
    assert "ERROR: AddressSanitizer" not in t.output()
    assert "runtime error" not in t.output()


def assert_429(r, max_retry=None):
    assert r.status == 429, r
    assert r.json == {"error": {"code": "rate_limited", "message": r.json["error"]["message"]}}
    retry = int(r.headers["retry-after"])
    assert retry >= 1
    if max_retry:
        assert retry <= max_retry


def hammer(targets, seconds, threads=4, path=lambda i: f"/v1/users/{i % 1000 + 1}/likes/a/1",
           method="PUT"):
    """Sends requests from `threads` connections spread over `targets` for `seconds`.
    Returns (admitted, refused, other statuses, span in seconds from the first send to the
    last answer)."""
    counts = {"ok": 0, "limited": 0, "other": []}
    first, last = [], []
    lock = threading.Lock()

    def run(k):
        t = targets[k % len(targets)]
        conn = t.connect()
        i, ok, limited = k, 0, 0
        begun = time.monotonic()
        end = begun + seconds
        while time.monotonic() < end:
            r = t.request(method, path(i), conn=conn)
            i += threads
            if r.status in (200, 202):
                ok += 1
            elif r.status == 429:
                assert_429(r)
                limited += 1
            else:
                with lock:
                    counts["other"].append(r.status)
        done = time.monotonic()
        conn.close()
        with lock:
            counts["ok"] += ok
            counts["limited"] += limited
            first.append(begun)
            last.append(done)

    ths = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    return counts["ok"], counts["limited"], counts["other"], max(last) - min(first)


def check_bound(name, admitted, refused, span, rate, burst):
    bound = burst + rate * span
    report(name, admitted=admitted, refused=refused, seconds=round(span, 3),
           bound=round(bound, 1), ratio=round(admitted / bound, 3))
    assert refused > 0, "the hammer never hit the limit"
    assert admitted <= bound
    # Not far fewer: all but the last instants of the span are the server's.
    assert admitted >= 0.9 * bound, f"admitted {admitted}, bound {bound:.1f}"


def test_admissions_stay_under_burst_plus_rate_times_t(spawn):
    t = spawn("--rate-limit", "key=40/s:30").start()
    admitted, refused, other, span = hammer([t], seconds=3)
    assert other == []
    check_bound("rate limit, one tallyd, per caller", admitted, refused, span, 40, 30)
    assert t.metric("tally_rate_limited_total") == refused
    assert t.metric('tally_http_requests_total{route="like",status="429"}') == refused
    stop_clean(t)


def test_a_429_changes_nothing(spawn, db):
    t = spawn("--rate-limit", "uid=1/m:2").start()
    assert t.request("PUT", "/v1/users/7/likes/article/1").status == 200
    assert t.request("PUT", "/v1/users/7/collections/3/items/article/1").status == 200
    # uid 7's bucket is empty now: every write of uid 7 is refused, of whatever kind
    for method, path, body in [
        ("PUT", "/v1/users/7/likes/article/2", None),
        ("DELETE", "/v1/users/7/likes/article/1", None),
        ("PUT", "/v1/users/7/collections/3/items/article/2", None),
        ("DELETE", "/v1/users/7/collections/3/items/article/1", None),
        ("POST", "/v1/items/article/1/reads", {"uid": 7}),
    ]:
        assert_429(t.request(method, path, body=body), max_retry=60)
    assert t.metric("tally_read_events_queued_total") == 0  # the read was never published
    assert t.metric("tally_read_events_rejected_total") == 0
    # In the store: exactly the two admitted writes.
    assert db.sql("SELECT biz_id, status FROM user_like WHERE uid = 7") == [(1, 1)]
    assert db.sql("SELECT cid, biz_id, status FROM user_collection WHERE uid = 7") == [(3, 1, 1)]
    state = t.get("/v1/items/article/1").json
    assert (state["like_cnt"], state["collect_cnt"]) == (1, 1)
    assert t.get("/v1/items/article/2").json["like_cnt"] == 0
    # Other uids, reads without a uid and reads are not held up by uid 7's bucket.
    assert t.request("PUT", "/v1/users/8/likes/article/2").status == 200
    assert t.request("POST", "/v1/items/article/1/reads").status == 202
    assert t.metric("tally_read_events_queued_total") == 1
    assert t.metric('tally_rate_limited_total{by="uid"}') == 5
    assert t.metric('tally_rate_limited_total{by="key"}') == 0
    stop_clean(t)


def test_per_caller_limit_covers_every_v1_route_and_each_address_apart(spawn):
    t = spawn("--rate-limit", "key=1/m:4").start()
    assert t.get("/v1/items/article/1").status == 200
    assert t.get("/v1/top/article?by=like_cnt").status == 200
    assert t.request("PUT", "/v1/users/1/likes/article/1").status == 200
    assert t.request("POST", "/v1/items/article/1/reads").status == 202
    for method, path in [("GET", "/v1/items/article/1"), ("HEAD", "/v1/items/article/1"),
                         ("GET", "/v1/users/1/likes/article"), ("PUT", "/v1/users/2/likes/a/1"),
                         ("POST", "/v1/items/article/1/reads"),
                         ("GET", "/v1/items/Bad/1")]:  # malformed requests count too
        r = t.request(method, path)
        assert r.status == 429, (method, path, r)
        assert 1 <= int(r.headers["retry-after"]) <= 60
    # Not limited: health, metrics, unknown routes.
    assert t.get("/healthz").status == 200
    assert t.get("/metrics").status == 200
    assert t.get("/nope").status == 404
    # Another client address has a bucket of its own.
    other = http.client.HTTPConnection("127.0.0.1", t.port, timeout=30,
                                       source_address=("127.0.0.2", 0))
    assert t.get("/v1/items/article/1", conn=other).status == 200
    other.close()
    assert t.metric('tally_rate_limited_total{by="key"}') == 6
    stop_clean(t)


def test_each_api_key_has_a_bucket_of_its_own(spawn, tmp_path):
    import hashlib
    keys = tmp_path / "keys"
    keys.write_text("".join(f"{name} read,write {hashlib.sha256(tok.encode()).hexdigest()}\n"
                            for name, tok in [("alpha", "token-alpha-1"),
                                              ("beta", "token-beta-1")]) +
                    f"ops metrics {hashlib.sha256(b'token-ops-1').hexdigest()}\n")
    t = spawn("--keys", str(keys), "--rate-limit", "key=1/m:2").start()
    alpha = {"Authorization": "Bearer token-alpha-1"}
    beta = {"Authorization": "Bearer token-beta-1"}
    for _ in range(2):
        assert t.get("/v1/items/article/1", headers=alpha).status == 200
    assert_429(t.get("/v1/items/article/1", headers=alpha), max_retry=60)
    # same address, another key: its own bucket; no credential: 401, no token taken
    assert t.get("/v1/items/article/1", headers=beta).status == 200
    for _ in range(3):
        assert t.get("/v1/items/article/1").status == 401
    assert t.get("/v1/items/article/1", headers=beta).status == 200
    assert_429(t.get("/v1/items/article/1", headers=beta))
    metrics = t.get("/metrics", headers={"Authorization": "Bearer token-ops-1"}).body
    assert 'tally_rate_limited_total{by="key"} 2' in metrics.splitlines()
    stop_clean(t)


def test_no_flag_no_limits(spawn):
    t = spawn().start()
    for i in range(200):
        assert t.request("PUT", f"/v1/users/1/likes/article/{i % 3 + 1}").status == 200
    assert t.metric("tally_rate_limited_total") == 0
    stop_clean(t)


def test_bad_spec_is_a_usage_error(tmp_path):
    binary = os.environ.get("TALLYD", os.path.join(ROOT, "build/tallyd"))
    for spec in ["key=10", "key=0/s", "key=1/s:0", "uid=1/d", "ip=1/s"]:
        p = subprocess.run([binary, "--rate-limit", spec, "--listen", "127.0.0.1:0"],
                           capture_output=True, text=True, timeout=10)
        assert p.returncode == 2, (spec, p.stderr)
        assert p.stderr.count("\n") == 1 and "invalid --rate-limit" in p.stderr
    p = subprocess.run([binary, "--listen", "127.0.0.1:0"], capture_output=True, text=True,
                       timeout=10, env=dict(os.environ, TALLY_RATE_LIMIT="key=1/x"))
    assert p.returncode == 2 and "invalid --rate-limit 'key=1/x'" in p.stderr


needs_redis = pytest.mark.skipif(not REDIS, reason="needs Redis (TALLY_TEST_REDIS)")


@needs_redis
def test_two_tallyd_share_buckets_through_redis(spawn):
    a = spawn("--rate-limit", "key=30/s:20,uid=1/m:3").start()
    b = spawn("--rate-limit", "key=30/s:20,uid=1/m:3").start()
    # per caller: both processes hammered at once admit one bucket's worth
    admitted, refused, other, span = hammer([a, b], seconds=3, path=lambda i: "/v1/items/a/1",
                                            method="GET")
    assert other == []
    check_bound("rate limit, two tallyd sharing Redis, per caller", admitted, refused, span,
                30, 20)
    # per uid: three writes in all, wherever they land (from another address: the hammer
    # emptied 127.0.0.1's bucket)
    conns = {t: http.client.HTTPConnection("127.0.0.1", t.port, timeout=30,
                                           source_address=("127.0.0.3", 0)) for t in (a, b)}
    statuses = [t.request("PUT", f"/v1/users/99/likes/article/{i}", conn=conns[t]).status
                for i, t in enumerate([a, b, a, b, a, b], start=1)]
    assert statuses == [200, 200, 200, 429, 429, 429]
    # idle buckets vanish once full again: empty, 3 tokens at 1/min take 3 min (+1 s slack)
    assert 170000 < int(redis_cli("PTTL", "ratelimit:uid:99")) <= 181000
    assert a.metric("tally_rate_limit_fallback_total") == 0
    stop_clean(a)
    stop_clean(b)


@needs_redis
def test_redis_stopped_fails_open_to_memory(spawn):
    t = spawn("--rate-limit", "uid=1/m:2").start()
    try:
        assert t.request("PUT", "/v1/users/5/likes/article/1").status == 200
        assert t.request("PUT", "/v1/users/5/likes/article/2").status == 200
        assert t.request("PUT", "/v1/users/5/likes/article/3").status == 429
        services("kill", "redis")
        # In memory now: uid 5 starts with a full bucket there; never a 5xx.
        statuses = [t.request("PUT", f"/v1/users/5/likes/article/{i}").status
                    for i in range(3, 8)]
        assert statuses == [200, 200, 429, 429, 429]
        assert t.request("POST", "/v1/items/article/1/reads", body={"uid": 6}).status == 202
        assert t.get("/v1/items/article/3").json["like_cnt"] == 1
        assert t.metric("tally_rate_limit_fallback_total") >= 6
    finally:
        services("up", "redis")
    # Back in Redis once it answers (connections are retried after a second): uid 6's
    # bucket appears there.
    deadline = time.time() + 15
    while redis_cli("EXISTS", "ratelimit:uid:6") != "1":
        assert time.time() < deadline, "the limiter did not go back to Redis"
        assert t.request("POST", "/v1/items/article/1/reads", body={"uid": 6}).status in (202,
                                                                                          429)
        time.sleep(0.1)
    assert "limiting in memory until it answers" in t.output()
    assert "buckets are shared again" in t.output()
    stop_clean(t)
