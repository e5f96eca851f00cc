"""tally's own Schemathesis checks: what docs/openapi.yaml says in words, not in schemas.

Loaded by run.py through SCHEMATHESIS_HOOKS; `[checks] enabled = true` turns them on with
the built-in ones. Each reads the request that was actually sent (response.request), not the
generated case, so a negative case that the server accepted is judged by what it received.
"""
import json
import socket
from urllib.parse import parse_qsl, unquote, urlsplit

import schemathesis

FIELDS = ("read_cnt", "like_cnt", "collect_cnt")


def _sent(response):
    """(method, path segments, query dict) of the request on the wire."""
    req = response.request
    url = urlsplit(req.url)
    segs = [unquote(s) for s in url.path.split("/")[1:]]
    query = {}
    for k, v in parse_qsl(url.query, keep_blank_values=True):
        query.setdefault(k, v)  # tallyd reads the first of repeated parameters
    return req.method, segs, query


def _json(response):
    try:
        return json.loads(response.content)
    except ValueError:
        return None


@schemathesis.check
def error_is_contract_json(ctx, response, case):
    """Every 4xx/5xx, documented or not, is {"error":{"code","message"}} as application/json."""
    if response.status_code < 400:
        return None
    ctype = (response.headers.get("content-type") or [""])[0]
    body = _json(response)
    ok = (ctype.split(";")[0].strip() == "application/json" and isinstance(body, dict)
          and isinstance(body.get("error"), dict)
          and isinstance(body["error"].get("code"), str)
          and isinstance(body["error"].get("message"), str))
    if not ok:
        raise AssertionError(f"{response.status_code} is not the JSON error of the contract: "
                             f"Content-Type {ctype!r}, body {response.content[:200]!r}")
    return None


@schemathesis.check
def allow_lists_the_path_methods(ctx, response, case):
    """A 405's Allow names exactly the methods the spec has on that path (HEAD with GET)."""
    if response.status_code != 405:
        return None
    declared = {m.upper() for m in case.operation.schema[case.operation.path]
                if m in ("get", "put", "post", "delete", "patch", "options", "trace")}
    if "GET" in declared:
        declared.add("HEAD")
    got = {m.strip().upper() for v in response.headers.get("allow", []) for m in v.split(",")
           if m.strip()}
    if got != declared:
        raise AssertionError(f"Allow {sorted(got)} on {case.operation.path}, "
                             f"the spec has {sorted(declared)}")
    return None


def _check_state(st, biz, item_id):
    assert st["biz"] == biz and st["id"] == item_id, \
        f"asked for {biz}/{item_id}, got {st['biz']}/{st['id']}"


@schemathesis.check
def answers_what_was_asked(ctx, response, case):
    """A 2xx is about the item, user and biz of the request, as each operation describes."""
    if not 200 <= response.status_code < 300:
        return None
    method, seg, q = _sent(response)
    body = _json(response)
    if not isinstance(body, dict) or not seg or seg[0] != "v1":
        return None
    path = case.operation.path
    if method == "GET" and path == "/v1/items/{biz}/{id}":
        _check_state(body, seg[2], int(seg[3]))
        if "uid" not in q:
            assert not body["liked"] and not body["collected"], "no uid, yet liked/collected"
    elif method == "GET" and path == "/v1/items/{biz}":
        ids = [int(i) for i in q["ids"].split(",")]
        got = [(s["biz"], s["id"]) for s in body["items"]]
        assert got == [(seg[2], i) for i in ids], f"ids {ids} answered with {got}"
    elif method == "PUT" and path == "/v1/users/{uid}/likes/{biz}/{id}":
        _check_state(body, seg[4], int(seg[5]))
        assert body["liked"] and body["like_cnt"] >= 1, f"after a like: {body}"
    elif method == "DELETE" and path == "/v1/users/{uid}/likes/{biz}/{id}":
        _check_state(body, seg[4], int(seg[5]))
        assert not body["liked"], f"after an unlike: {body}"
    elif method == "PUT" and path == "/v1/users/{uid}/collections/{cid}/items/{biz}/{id}":
        _check_state(body, seg[6], int(seg[7]))
        assert body["collected"] and body["collect_cnt"] >= 1, f"after a collect: {body}"
    elif method == "GET" and path == "/v1/users/{uid}/likes/{biz}":
        items = body["items"]
        assert len(items) <= int(q.get("limit", 20)), f"{len(items)} items over the limit"
        assert all(i["biz"] == seg[4] for i in items), f"likes of another biz: {items}"
        assert [i["ctime"] for i in items] == sorted((i["ctime"] for i in items), reverse=True), \
            f"not most recent first: {items}"
    elif method == "GET" and path == "/v1/users/{uid}/collections/{cid}/items":
        items = body["items"]
        assert len(items) <= int(q.get("limit", 20)), f"{len(items)} items over the limit"
        assert [i["ctime"] for i in items] == sorted((i["ctime"] for i in items), reverse=True), \
            f"not most recently added first: {items}"
    elif method == "GET" and path == "/v1/top/{biz}":
        items, by = body["items"], q["by"]
        assert len(items) <= int(q.get("limit", 10)), f"{len(items)} items over the limit"
        assert all(i["biz"] == seg[2] and not i["liked"] and not i["collected"] for i in items), \
            f"top items of another biz, or with liked/collected set: {items}"
        keys = [(-i[by], i["id"]) for i in items]
        assert keys == sorted(keys), f"not by {by} descending, then id ascending: {items}"
    return None


def _raw_head(url):
    """(status, headers, bytes after the headers) of a HEAD sent by hand on a closing
    connection: an HTTP client library would not read a body that HEAD must not have."""
    u = urlsplit(url)
    target = (u.path or "/") + ("?" + u.query if u.query else "")
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        s.sendall(f"HEAD {target} HTTP/1.1\r\nHost: {u.netloc}\r\n"
                  "Connection: close\r\n\r\n".encode("latin-1"))
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, rest


@schemathesis.check
def head_is_get_without_body(ctx, response, case):
    """HEAD on the same URL: the GET's status and headers, and no body.

    Content-Length must match the GET's exactly for errors; a 2xx may differ by a read that
    was counted in between, so there it only has to be present.
    """
    if response.request.method != "GET":
        return None
    status, headers, body = _raw_head(response.request.url)

    def got(name):
        return (response.headers.get(name) or [None])[0]

    assert status == response.status_code, f"HEAD {status}, GET {response.status_code}"
    assert headers.get("content-type") == got("content-type"), \
        f"HEAD Content-Type {headers.get('content-type')!r}, GET {got('content-type')!r}"
    assert body == b"", f"HEAD has a body: {body[:100]!r}"
    assert headers.get("content-length", "").isdigit(), "HEAD without Content-Length"
    if status >= 400:
        assert headers["content-length"] == got("content-length"), \
            f"HEAD Content-Length {headers['content-length']}, GET {got('content-length')}"
    assert headers.get("allow") == got("allow"), \
        f"HEAD Allow {headers.get('allow')!r}, GET {got('allow')!r}"
    return None
