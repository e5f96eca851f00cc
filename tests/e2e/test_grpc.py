"""The gRPC drop-in: the course's intr.v1.InteractiveService served on --grpc-listen.

Every call goes through the client that protoc-gen-go-grpc generates from
api/intr/v1/intr.proto (tests/grpc: grpccall, built once per run), as a service built on
the course's design calls its interactive service; every answer is checked against the HTTP
API's for the same item and user, and refusals against their status codes, with the store
read directly to see that a refused call changed nothing. Runs on SQLite with the local bus
and on MariaDB + Redis (TALLY_TEST_MYSQL/REDIS), and with the Kafka bus where
TALLY_TEST_KAFKA is set.
"""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest
from cryptography.hazmat.primitives import serialization

from tallyd import REDIS, Tallyd, free_port, redis_cli
from test_auth import (claims, make_ca, make_server_cert, new_key, public_pem, sign, wait_until,
                       write_keys)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
KAFKA = os.environ.get("TALLY_TEST_KAFKA")
INTR = "/intr.v1.InteractiveService/"


@pytest.fixture(scope="session")
def grpccall(tmp_path_factory):
    """The Go client program: generated from the .proto, then built (Go module proxy)."""
    if not shutil.which("go") or not shutil.which("protoc"):
        pytest.fail("the gRPC tests need go and protoc (scripts/deps.sh build installs protoc)")
    out = tmp_path_factory.mktemp("grpc") / "grpccall"
    env = dict(os.environ, GOPATH=f"{ROOT}/.cache/go", GOMODCACHE=f"{ROOT}/.cache/go/mod",
               GOCACHE=f"{ROOT}/.cache/go/build", GOTOOLCHAIN="local", GOFLAGS="-buildvcs=false")
    for argv in (["./generate.sh"], ["go", "build", "-o", str(out), "."]):
        r = subprocess.run(argv, cwd=f"{ROOT}/tests/grpc", env=env, capture_output=True,
                           text=True, timeout=600)
        assert r.returncode == 0, f"{argv}: {r.stdout}{r.stderr}"
    return str(out)


class Grpc:
    """Calls one tallyd's gRPC port with grpccall; each call's outcome is a dict."""

    def __init__(self, exe, port, token=None, ca=None):
        self.exe, self.addr, self.token, self.ca = exe, f"127.0.0.1:{port}", token, ca

    def __call__(self, method, request=None, token=None, idem=None, n=1, md=()):
        argv = [self.exe, "-n", str(n)] + [a for kv in md for a in ("-md", kv)]
        token = self.token if token is None else token
        if token:
            argv += ["-token", token]
        if idem:
            argv += ["-idempotency-key", idem]
        if self.ca:
            argv += ["-tls-ca", self.ca]
        body = request if isinstance(request, str) else json.dumps(request or {})
        r = subprocess.run(argv + [self.addr, method, "-"], input=body, capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def ok(self, method, request=None, **kw):
        out = self(method, request, **kw)
        assert out["code"] == "OK", out
        return out["response"]


def start(spawn, *args, **kw):
    """A tallyd with gRPC on a free port; returns (tallyd, its gRPC port)."""
    port = free_port()
    t = spawn("--grpc-listen", f"127.0.0.1:{port}", *args, **kw)
    return t, port


def as_http(intr):
    """A gRPC Interactive in the HTTP API's JSON shape (protobuf's JSON writes int64 as text)."""
    return {"biz": intr["biz"], "id": int(intr["biz_id"]), "read_cnt": int(intr["read_cnt"]),
            "like_cnt": int(intr["like_cnt"]), "collect_cnt": int(intr["collect_cnt"]),
            "liked": intr["liked"], "collected": intr["collected"]}


def wait_reads(t, biz, id, n, timeout=30):
    assert wait_until(lambda: t.get(f"/v1/items/{biz}/{id}").json["read_cnt"] == n, timeout), \
        t.get(f"/v1/items/{biz}/{id}").json


def drive_all_six(t, call):
    """Every method once or more, each answer equal to the HTTP API's."""
    assert call.ok("Like", {"biz": "article", "biz_id": 7, "uid": 42}) == {}
    assert call.ok("Like", {"biz": "article", "biz_id": 7, "uid": 43}) == {}
    assert call.ok("CancelLike", {"biz": "article", "biz_id": 7, "uid": 43}) == {}
    assert call.ok("Collect", {"biz": "article", "biz_id": 7, "cid": 3, "uid": 42}) == {}
    assert call.ok("Like", {"biz": "article", "biz_id": 9, "uid": 44}) == {}
    for _ in range(3):
        assert call.ok("IncrReadCnt", {"biz": "article", "biz_id": 7}) == {}
    wait_reads(t, "article", 7, 3)

    for uid in (42, 43, 0):
        got = call.ok("Get", {"biz": "article", "biz_id": 7, "uid": uid})["intr"]
        want = t.get(f"/v1/items/article/7{f'?uid={uid}' if uid else ''}").json
        assert as_http(got) == want, (uid, got, want)
    got = call.ok("Get", {"biz": "article", "biz_id": 7, "uid": 42})["intr"]
    assert (got["read_cnt"], got["like_cnt"], got["collect_cnt"], got["liked"],
            got["collected"]) == ("3", "1", "1", True, True)

    # A map keyed by id, unknown ids with zero counts; liked/collected are nobody's here.
    ids = [7, 9, 1000]
    got = call.ok("GetByIds", {"biz": "article", "biz_ids": ids})["intrs"]
    want = t.get("/v1/items/article?ids=7,9,1000").json["items"]
    assert sorted(got) == ["1000", "7", "9"]
    assert [as_http(got[str(i)]) for i in ids] == want
    assert got["1000"]["read_cnt"] == "0" and got["9"]["like_cnt"] == "1"
    assert call.ok("GetByIds", {"biz": "article", "biz_ids": []}) == {"intrs": {}}


def test_the_generated_client_drives_all_six_methods(spawn, grpccall):
    t, port = start(spawn)
    t.start()
    drive_all_six(t, Grpc(grpccall, port))
    assert t.metric('tally_grpc_requests_total{method="intr.v1.InteractiveService/Get",'
                    'code="OK"}') == 4
    assert t.stop() == 0


@pytest.mark.skipif(not KAFKA, reason="needs a Kafka broker (TALLY_TEST_KAFKA)")
def test_the_generated_client_on_the_kafka_bus(spawn, grpccall):
    topic = f"grpc-{os.getpid()}-{time.time_ns()}"
    t, port = start(spawn, "--bus", f"kafka://{KAFKA}/{topic}?group=g-{topic}")
    t.start()
    drive_all_six(t, Grpc(grpccall, port))
    assert t.stop() == 0


def test_bad_input_is_invalid_argument_and_changes_nothing(spawn, db, grpccall):
    t, port = start(spawn)
    t.start()
    call = Grpc(grpccall, port)
    cases = [
        ("Get", {"biz": "Article", "biz_id": 1}, "biz must match"),
        ("Get", {"biz": "a/../b", "biz_id": 1}, "biz must match"),
        ("Get", {"biz": "", "biz_id": 1}, "biz must match"),
        ("Get", {"biz": "article", "biz_id": 0}, "id must be"),
        ("Get", {"biz": "article", "biz_id": -5}, "id must be"),
        ("Like", {"biz": "article", "biz_id": 1, "uid": 0}, "uid must be"),
        ("Like", {"biz": "article", "biz_id": 1, "uid": -1}, "uid must be"),
        ("CancelLike", {"biz": "x y", "biz_id": 1, "uid": 1}, "biz must match"),
        ("Collect", {"biz": "article", "biz_id": 1, "uid": 1, "cid": 0}, "cid must be"),
        ("IncrReadCnt", {"biz": "article?x=1", "biz_id": 1}, "biz must match"),
        ("IncrReadCnt", {"biz": "article", "biz_id": 0}, "id must be"),
        ("GetByIds", {"biz": "article", "biz_ids": list(range(1, 102))}, "ids must be"),
        ("GetByIds", {"biz": "article", "biz_ids": [1, 0]}, "ids must be"),
    ]
    for method, req, why in cases:
        out = call(method, req)
        assert out["code"] == "InvalidArgument" and why in out["message"], (method, req, out)
    # Not a protobuf message; an unknown method; a message over 64 KiB.
    out = call(INTR + "Get", "ff" * 10)
    assert out["code"] == "InvalidArgument", out
    out = call(INTR + "Nope", "")
    assert out["code"] == "Unimplemented", out
    out = call(INTR + "Get", "0a" + "ff" * 3 + "07" + "00" * 70000)
    assert out["code"] == "ResourceExhausted", out
    assert db.sql("SELECT COUNT(*) FROM user_like")[0][0] == 0
    assert t.get("/v1/items/article/1").json["read_cnt"] == 0
    assert t.get("/healthz").status == 200  # and the server lives on
    assert call.ok("Get", {"biz": "article", "biz_id": 1})["intr"]["like_cnt"] == "0"


def test_credentials_come_from_authorization_metadata(spawn, db, tmp_path, grpccall):
    from cryptography.hazmat.primitives.asymmetric import rsa

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "jwt.pem").write_bytes(public_pem(rsa_key))
    writer, writer_line = new_key("backend", "read,write")
    reader, reader_line = new_key("dash", "read")
    write_keys(tmp_path / "keys", [writer_line, reader_line])
    t, port = start(spawn, "--keys", str(tmp_path / "keys"), "--jwt-key",
                    str(tmp_path / "jwt.pem"), token=writer)
    t.start()
    call = Grpc(grpccall, port)
    like = {"biz": "article", "biz_id": 1, "uid": 42}

    assert call("Like", like, token="")["code"] == "Unauthenticated"
    assert call("Like", like, token="not-a-key")["code"] == "Unauthenticated"
    forged = sign("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048),
                  claims("42"))
    assert call("Like", like, token=forged)["code"] == "Unauthenticated"
    expired = sign("RS256", rsa_key, claims("42", ttl=-3600))
    assert call("Like", like, token=expired)["code"] == "Unauthenticated"
    assert call("Like", like, token=reader)["code"] == "PermissionDenied"
    user42 = sign("RS256", rsa_key, claims("42"))
    assert call("Like", dict(like, uid=43), token=user42)["code"] == "PermissionDenied"
    assert db.sql("SELECT COUNT(*) FROM user_like")[0][0] == 0

    # Two credentials in one call: neither is taken.
    out = call("Like", like, token=writer, md=[f"authorization=Bearer {reader}"])
    assert out["code"] == "InvalidArgument" and "authorization is given twice" in out["message"]
    assert db.sql("SELECT COUNT(*) FROM user_like")[0][0] == 0

    assert call.ok("Like", like, token=user42) == {}
    assert call.ok("Get", {"biz": "article", "biz_id": 1, "uid": 42}, token=reader)["intr"][
        "liked"] is True
    assert call.ok("Like", dict(like, uid=44), token=writer) == {}
    # Health is open, as /readyz is.
    assert call.ok("Health", {}, token="")["status"] == "SERVING"
    assert db.sql("SELECT COUNT(*) FROM user_like")[0][0] == 2


def test_rate_limits_are_resource_exhausted(spawn, db, grpccall):
    t, port = start(spawn, "--rate-limit", "uid=1/m:2")
    t.start()
    call = Grpc(grpccall, port)
    codes = [call("Like", {"biz": "article", "biz_id": i, "uid": 42})["code"] for i in (1, 2, 3)]
    assert codes == ["OK", "OK", "ResourceExhausted"], codes
    assert db.sql("SELECT COUNT(*) FROM user_like")[0][0] == 2
    assert call.ok("Like", {"biz": "article", "biz_id": 3, "uid": 7}) == {}  # another uid


def test_a_read_with_an_idempotency_key_counts_once(spawn, grpccall):
    t, port = start(spawn)
    t.start()
    call = Grpc(grpccall, port)
    for _ in range(3):
        assert call.ok("IncrReadCnt", {"biz": "article", "biz_id": 5}, idem="page-view-1") == {}
    assert call.ok("IncrReadCnt", {"biz": "article", "biz_id": 5}, idem="page-view-2") == {}
    # All four are consumed: two counted, the two repeats of page-view-1 dropped as repeats.
    assert wait_until(lambda: t.metric("tally_read_events_idempotent_repeats_total") == 2, 30)
    wait_reads(t, "article", 5, 2)
    assert t.metric("tally_read_events_applied_total") == 2


def test_health_is_serving_then_not_serving_while_draining(spawn, grpccall):
    t, port = start(spawn, "--drain-ms", "5000")
    t.start()
    call = Grpc(grpccall, port)
    assert call.ok("Health", {})["status"] == "SERVING"
    assert call.ok("Health", {"service": "intr.v1.InteractiveService"})["status"] == "SERVING"
    assert call("Health", {"service": "nope"})["code"] == "NotFound"
    t.proc.send_signal(signal.SIGTERM)
    assert wait_until(lambda: call.ok("Health", {})["status"] == "NOT_SERVING", 4)
    assert t.proc.wait(30) == 0


def test_tls_with_alpn_h2(spawn, tmp_path, grpccall):
    ca = make_ca()
    (tmp_path / "ca.pem").write_bytes(ca[1].public_bytes(serialization.Encoding.PEM))
    make_server_cert(ca, "tally", tmp_path / "cert.pem", tmp_path / "key.pem")
    t, port = start(spawn, "--tls-cert", str(tmp_path / "cert.pem"), "--tls-key",
                    str(tmp_path / "key.pem"))
    t.start(wait=False)
    assert wait_until(lambda: "gRPC on" in t.output() or t.proc.poll() is not None, 20)
    assert "(TLS)" in t.output()
    call = Grpc(grpccall, port, ca=str(tmp_path / "ca.pem"))
    assert call.ok("Like", {"biz": "article", "biz_id": 1, "uid": 1}) == {}
    assert call.ok("Get", {"biz": "article", "biz_id": 1})["intr"]["like_cnt"] == "1"
    # h2c against the TLS port gets no answer.
    assert Grpc(grpccall, port)("Get", {"biz": "article", "biz_id": 1})["code"] == "Unavailable"


def test_access_log_and_metrics_cover_grpc(spawn, grpccall):
    t, port = start(spawn, "--access-log", "--log-format", "json")
    t.start()
    call = Grpc(grpccall, port)
    call.ok("Get", {"biz": "article", "biz_id": 1})
    call("Get", {"biz": "Bad", "biz_id": 1})
    lines = [json.loads(l) for l in t.output().splitlines() if '"msg":"grpc"' in l]
    assert [(l["method"], l["code"]) for l in lines] == [
        ("intr.v1.InteractiveService/Get", "OK"),
        ("intr.v1.InteractiveService/Get", "INVALID_ARGUMENT")], lines
    assert t.metric('tally_grpc_requests_total{method="intr.v1.InteractiveService/Get",'
                    'code="INVALID_ARGUMENT"}') == 1
    assert t.metric("tally_grpc_request_duration_seconds_count") >= 2


def test_grpc_listen_is_checked(tmp_path, db):
    from tallyd import BINARY
    for bad in ("nope", "127.0.0.1:70000", ":1"):
        r = subprocess.run([BINARY, "--store", db.url, "--grpc-listen", bad],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode == 2 and "--grpc-listen" in r.stderr, r
    # An open API on a gRPC address other than loopback is refused, as for HTTP.
    r = subprocess.run([BINARY, "--store", db.url, "--grpc-listen", "0.0.0.0:0"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and "refusing an open API on 0.0.0.0:0" in r.stderr, r
