"""The v1 API over real HTTP, row by row of the contract."""
import socket
import time

import pytest

# The API's own behaviour, also on the release build (see conftest.py).
pytestmark = pytest.mark.release

ZERO = {"read_cnt": 0, "like_cnt": 0, "collect_cnt": 0, "liked": False, "collected": False}


def state(biz, id, **kw):
    return {"biz": biz, "id": id, **ZERO, **kw}


def assert_error(r, status, code):
    assert r.status == status, r
    assert r.headers["content-type"] == "application/json"
    body = r.json
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def wait_for(fn, timeout=10):
    deadline = time.time() + timeout
    while True:
        value = fn()
        if value or time.time() > deadline:
            return value
        time.sleep(0.02)


# ---------------------------------------------------------------- items


def test_unseen_item_is_all_zero(tallyd):
    r = tallyd.get("/v1/items/article/7")
    assert r.status == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json == state("article", 7)
    r = tallyd.get("/v1/items/article/9223372036854775807?uid=42")
    assert r.json == state("article", 9223372036854775807)


def test_batch_get_keeps_order(tallyd):
    tallyd.request("PUT", "/v1/users/42/likes/article/2")
    r = tallyd.get("/v1/items/article?ids=3,2,1,2&uid=42")
    assert r.status == 200
    items = r.json["items"]
    assert [i["id"] for i in items] == [3, 2, 1, 2]
    assert items[1] == state("article", 2, like_cnt=1, liked=True)
    assert items[0] == state("article", 3)
    r = tallyd.get("/v1/items/article?ids=2")  # no uid: liked is false
    assert r.json["items"] == [state("article", 2, like_cnt=1)]


def test_batch_get_limits(tallyd):
    ids = ",".join(str(i) for i in range(1, 101))
    assert len(tallyd.get(f"/v1/items/article?ids={ids}").json["items"]) == 100
    assert_error(tallyd.get(f"/v1/items/article?ids={ids},101"), 400, "invalid_argument")
    for bad in ["", "ids=", "ids=a", "ids=1,,2", "ids=0", "ids=-1", "ids=1;2", "ids=1%2C"]:
        assert_error(tallyd.get(f"/v1/items/article?{bad}"), 400, "invalid_argument")


# ---------------------------------------------------------------- reads


def test_reads_are_counted(tallyd):
    for _ in range(5):
        r = tallyd.request("POST", "/v1/items/article/7/reads")
        assert r.status == 202 and r.json == {"accepted": True}
    r = tallyd.request("POST", "/v1/items/article/7/reads", body={"uid": 42})
    assert r.status == 202
    got = wait_for(lambda: tallyd.get("/v1/items/article/7").json["read_cnt"] == 6)
    assert got, tallyd.get("/v1/items/article/7")
    assert tallyd.metric("tally_read_events_queued_total") == 6
    assert wait_for(lambda: tallyd.metric("tally_read_events_applied_total") == 6)


def test_read_body_validation(tallyd):
    bad = ["{", "[]", "null", '{"uid":0}', '{"uid":-1}', '{"uid":"42"}', '{"uid":1.5}',
           '{"uid":42,"x":1}', '{"uid":1,"uid":2}', '{"uid":9223372036854775808}']
    for body in bad:
        assert_error(tallyd.request("POST", "/v1/items/article/7/reads", body=body), 400,
                     "invalid_argument")
    assert_error(tallyd.request("POST", "/v1/items/ARTICLE/7/reads"), 400, "invalid_argument")
    time.sleep(0.3)
    assert tallyd.get("/v1/items/article/7").json["read_cnt"] == 0  # nothing changed


def test_body_over_64k_is_413(tallyd):
    body = '{"uid":1' + " " * (64 * 1024) + "}"
    assert_error(tallyd.request("POST", "/v1/items/article/7/reads", body=body), 413,
                 "payload_too_large")
    # A much larger body is refused without being read in full (status only).
    with socket.create_connection(("127.0.0.1", tallyd.port), timeout=5) as s:
        s.sendall(b"POST /v1/items/article/7/reads HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: 2097152\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 413")
    assert tallyd.get("/healthz").status == 200


# ---------------------------------------------------------------- likes


def test_like_and_unlike_are_idempotent(tallyd):
    r = tallyd.request("PUT", "/v1/users/42/likes/article/7")
    assert r.status == 200 and r.json == state("article", 7, like_cnt=1, liked=True)
    r = tallyd.request("PUT", "/v1/users/42/likes/article/7")
    assert r.json == state("article", 7, like_cnt=1, liked=True)
    r = tallyd.request("PUT", "/v1/users/43/likes/article/7")
    assert r.json == state("article", 7, like_cnt=2, liked=True)
    assert tallyd.get("/v1/items/article/7?uid=44").json == state("article", 7, like_cnt=2)
    r = tallyd.request("DELETE", "/v1/users/42/likes/article/7")
    assert r.status == 200 and r.json == state("article", 7, like_cnt=1)
    r = tallyd.request("DELETE", "/v1/users/42/likes/article/7")
    assert r.json == state("article", 7, like_cnt=1)
    r = tallyd.request("DELETE", "/v1/users/99/likes/article/7")  # never liked
    assert r.json == state("article", 7, like_cnt=1)
    assert tallyd.get("/v1/items/article/7?uid=43").json["liked"] is True


def test_like_list_paginates_to_the_end(tallyd):
    for i in range(1, 46):
        assert tallyd.request("PUT", f"/v1/users/5/likes/article/{i}").status == 200
    tallyd.request("PUT", "/v1/users/5/likes/video/1")
    tallyd.request("DELETE", "/v1/users/5/likes/article/10")
    r = tallyd.get("/v1/users/5/likes/article")
    assert r.status == 200 and len(r.json["items"]) == 20  # default limit
    seen, cursor, pages = [], None, 0
    while True:
        q = "?limit=7" + (f"&cursor={cursor}" if cursor else "")
        body = tallyd.get(f"/v1/users/5/likes/article{q}").json
        pages += 1
        for e in body["items"]:
            assert set(e) == {"biz", "id", "ctime"} and e["biz"] == "article"
        seen += [e["id"] for e in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [i for i in range(45, 0, -1) if i != 10]  # newest first, unliked gone
    assert pages == 7
    assert tallyd.get("/v1/users/6/likes/article").json == {"items": [], "next_cursor": None}
    for q in ["limit=0", "limit=101", "limit=x", "cursor=zz", "cursor=1", "cursor=1.-2"]:
        assert_error(tallyd.get(f"/v1/users/5/likes/article?{q}"), 400, "invalid_argument")


# ---------------------------------------------------------------- collections


def test_collections_move_and_remove(tallyd):
    base = "/v1/users/42/collections"
    r = tallyd.request("PUT", f"{base}/1/items/article/7")
    assert r.status == 200 and r.json == state("article", 7, collect_cnt=1, collected=True)
    r = tallyd.request("PUT", f"{base}/1/items/article/7")  # idempotent
    assert r.json == state("article", 7, collect_cnt=1, collected=True)
    r = tallyd.request("PUT", f"{base}/2/items/article/7")  # moves, count unchanged
    assert r.json == state("article", 7, collect_cnt=1, collected=True)
    assert tallyd.get(f"{base}/1/items").json == {"items": [], "next_cursor": None}
    items = tallyd.get(f"{base}/2/items").json["items"]
    assert [(e["biz"], e["id"]) for e in items] == [("article", 7)]
    r = tallyd.request("DELETE", f"{base}/1/items/article/7")  # not in 1: nothing
    assert r.json == state("article", 7, collect_cnt=1, collected=True)
    r = tallyd.request("PUT", "/v1/users/43/collections/1/items/article/7")
    assert r.json["collect_cnt"] == 2
    r = tallyd.request("DELETE", f"{base}/2/items/article/7")
    assert r.json == state("article", 7, collect_cnt=1)
    r = tallyd.request("DELETE", f"{base}/2/items/article/7")
    assert r.json == state("article", 7, collect_cnt=1)
    assert tallyd.get("/v1/items/article/7?uid=43").json["collected"] is True


def test_collection_list_paginates_across_biz(tallyd):
    expected = []
    for i in range(1, 26):
        biz = "video" if i % 2 else "article"
        tallyd.request("PUT", f"/v1/users/8/collections/3/items/{biz}/{i}")
        expected.append((biz, i))
    tallyd.request("PUT", "/v1/users/8/collections/4/items/video/99")
    seen, cursor = [], None
    while True:
        q = "?limit=4" + (f"&cursor={cursor}" if cursor else "")
        body = tallyd.get(f"/v1/users/8/collections/3/items{q}").json
        seen += [(e["biz"], e["id"]) for e in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == expected[::-1]
    assert_error(tallyd.get("/v1/users/8/collections/0/items"), 400, "invalid_argument")


# ---------------------------------------------------------------- top


def test_top_orders_by_field_then_id(tallyd):
    for uid, item in [(1, 3), (2, 3), (1, 5), (1, 4), (3, 3)]:
        tallyd.request("PUT", f"/v1/users/{uid}/likes/article/{item}")
    tallyd.request("PUT", "/v1/users/1/collections/1/items/article/5")
    for _ in range(3):
        tallyd.request("POST", "/v1/items/article/4/reads")
    wait_for(lambda: tallyd.get("/v1/items/article/4").json["read_cnt"] == 3)
    likes = tallyd.get("/v1/top/article?by=like_cnt").json["items"]
    assert [(i["id"], i["like_cnt"]) for i in likes] == [(3, 3), (4, 1), (5, 1)]
    assert likes[0] == state("article", 3, like_cnt=3)
    reads = tallyd.get("/v1/top/article?by=read_cnt&limit=1").json["items"]
    assert [(i["id"], i["read_cnt"]) for i in reads] == [(4, 3)]
    coll = tallyd.get("/v1/top/article?by=collect_cnt&limit=2").json["items"]
    assert [i["id"] for i in coll] == [5, 3]
    assert tallyd.get("/v1/top/video?by=like_cnt").json == {"items": []}
    for q in ["", "?by=likes", "?by=like_cnt&limit=0", "?by=like_cnt&limit=101"]:
        assert_error(tallyd.get(f"/v1/top/article{q}"), 400, "invalid_argument")


def test_top_default_limit_is_10(tallyd):
    for i in range(1, 16):
        tallyd.request("PUT", f"/v1/users/1/likes/song/{i}")
    assert len(tallyd.get("/v1/top/song?by=like_cnt").json["items"]) == 10


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("path", [
    "/v1/items/Article/1", "/v1/items/a-b/1", "/v1/items/" + "a" * 33 + "/1",
    "/v1/items/article/0", "/v1/items/article/01x", "/v1/items/article/+1",
    "/v1/items/article/9223372036854775808", "/v1/items/article/1?uid=-1",
    "/v1/users/abc/likes/article", "/v1/top/Bad?by=like_cnt",
])
def test_bad_identifiers_are_400(tallyd, path):
    assert_error(tallyd.get(path), 400, "invalid_argument")


def test_bad_identifiers_change_nothing(tallyd):
    for method, path in [("PUT", "/v1/users/0/likes/article/1"),
                         ("PUT", "/v1/users/1/likes/article/0"),
                         ("PUT", "/v1/users/1/collections/0/items/article/1"),
                         ("DELETE", "/v1/users/1/likes/Article/1")]:
        assert_error(tallyd.request(method, path), 400, "invalid_argument")
    assert tallyd.get("/v1/items/article/1?uid=1").json == state("article", 1)


@pytest.mark.parametrize("path", ["/", "/v1", "/v1/items", "/v1/nope/a/1", "/v1/items/a/1/x",
                                  "/v1/users/1/likes", "/v2/items/a/1", "/healthz/"])
def test_unknown_routes_are_404(tallyd, path):
    assert_error(tallyd.get(path), 404, "not_found")


@pytest.mark.parametrize("method,path,allow", [
    ("POST", "/v1/items/article/1", "GET, HEAD"),
    ("DELETE", "/v1/items/article", "GET, HEAD"),
    ("GET", "/v1/items/article/1/reads", "POST"),
    ("GET", "/v1/users/1/likes/article/1", "PUT, DELETE"),
    ("POST", "/v1/users/1/collections/2/items/article/1", "PUT, DELETE"),
    ("PATCH", "/v1/top/article", "GET, HEAD"),
    ("PUT", "/healthz", "GET, HEAD"),
])
def test_wrong_method_is_405_with_allow(tallyd, method, path, allow):
    r = tallyd.request(method, path)
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == allow


def test_garbage_never_breaks_the_server(tallyd):
    """Malformed HTTP, odd paths and bodies: answers are 4xx, never 5xx, and it stays up."""
    paths = ["/v1/items/%00/1", "/v1/items/article/1?uid=%", "/v1/items/article?ids=%GG",
             "/v1/items/article/1?" + "a=1&" * 100, "/" + "x/" * 500, "/v1/items/ar%74icle/1",
             "/v1/top/article?by=like_cnt&limit=99999999999999999999999"]
    for p in paths:
        r = tallyd.get(p)
        assert 400 <= r.status < 500, (p, r)
    for raw in [b"GARBAGE\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                b"POST /v1/items/a/1/reads HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                b"GET /v1/items/a/1 HTTP/1.1\r\nHost: x\r\n" + b"X: " + b"y" * 70000 + b"\r\n\r\n",
                b"\x00\xff\x01" * 100]:
        with socket.create_connection(("127.0.0.1", tallyd.port), timeout=5) as s:
            reply = b""
            try:  # the server may answer and close before it has read everything
                s.sendall(raw)
                s.shutdown(socket.SHUT_WR)
                while chunk := s.recv(65536):
                    reply += chunk
            except OSError:
                pass
            # A 4xx in the contract's JSON (505 for a version other than 1.x), never a 5xx.
            status = int(reply[9:12])
            assert 400 <= status < 500 or status == 505, (raw[:40], reply[:80])
            assert reply.endswith(b"}") and b'{"error":{"code":' in reply, (raw[:40], reply)
    assert tallyd.get("/healthz").json == {"status": "ok"}


# ---------------------------------------------------------------- health and metrics


def test_healthz(tallyd):
    r = tallyd.get("/healthz")
    assert r.status == 200 and r.json == {"status": "ok"}
    assert tallyd.request("HEAD", "/healthz").status == 200


def test_metrics_count_requests_and_batches(tallyd):
    for _ in range(3):
        tallyd.get("/v1/items/article/1")
    tallyd.get("/v1/items/Bad/1")
    tallyd.request("POST", "/v1/items/article/1/reads")
    wait_for(lambda: tallyd.metric("tally_read_events_applied_total") == 1)
    r = tallyd.get("/metrics")
    assert r.status == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.body
    assert 'tally_http_requests_total{route="get_item",status="200"} 3' in text
    assert 'tally_http_requests_total{route="get_item",status="400"} 1' in text
    assert "# TYPE tally_http_request_duration_seconds histogram" in text
    assert 'tally_http_request_duration_seconds_count{route="get_item"} 4' in text
    assert "tally_read_events_queued_total 1" in text
    assert "tally_read_events_applied_total 1" in text
    assert "tally_read_batch_size_count 1" in text
    assert "# TYPE tally_bus_queue_depth gauge" in text
