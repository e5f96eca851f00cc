"""GET /v1/status: which tallyd answers (version, commit, host:pid, uptime) and how its
store, cache, bus and read consumer are, for the operator's page.

Runs on whichever configuration the suite runs on (SQLite + no cache + local bus, or MariaDB +
Redis), on the Kafka bus when TALLY_TEST_KAFKA is set, and breaks one part at a time without
touching the shared servers: a Redis URL on a port where nothing listens (then a Redis of the
test's own started there), and MariaDB reached through a TCP relay the test stops and starts.
"""
import hashlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
from urllib.parse import unquote, urlsplit, urlunsplit

import pytest

from tallyd import BINARY, CLUSTER, MYSQL, REDIS, free_port

KAFKA = os.environ.get("TALLY_TEST_KAFKA")


def status(t, **kw):
    r = t.get("/v1/status", **kw)
    assert r.status == 200, r
    assert r.headers["content-type"] == "application/json"
    return r.json


def wait_status(t, what, check, timeout=15):
    """Polls /v1/status until check(body) holds; fails with the last body after timeout s."""
    deadline = time.time() + timeout
    while True:
        body = status(t)
        if check(body):
            return body
        assert time.time() < deadline, f"/v1/status never showed {what}: {body}"
        time.sleep(0.1)


def secrets_of(url):
    """The password of a server URL, raw and percent-decoded (neither may be shown)."""
    pw = urlsplit(url).password if url else None
    return [p for p in {pw, unquote(pw or "")} if p]


def cache_kind():
    if not REDIS:
        return "none"
    return "redis-cluster" if CLUSTER else "redis"


def test_status_says_which_tallyd_and_that_all_is_well(tallyd):
    out = subprocess.run([BINARY, "--version"], capture_output=True, text=True).stdout
    version, commit = re.match(r"tallyd (\S+) \(([^;)]+)", out).groups()
    before = time.time() * 1000
    body = status(tallyd)
    assert body["version"] == version
    assert body["commit"] == commit
    assert body["instance"] == f"{socket.gethostname()}:{tallyd.proc.pid}"
    assert 0 < before - body["started"] < 600_000, body["started"]
    assert body["uptime_s"] >= 0 and body["ready"] is True and body["draining"] is False
    assert body["store"] == {"kind": "mysql" if MYSQL else "sqlite", "status": "ok"}
    assert body["cache"] == {"kind": cache_kind(), "status": "ok" if REDIS else "off"}
    assert body["bus"] == {"kind": "local", "status": "ok"}
    assert body["reads"] == {"status": "ok", "lost": 0}
    for pw in secrets_of(MYSQL) + secrets_of(REDIS):
        assert pw not in tallyd.get("/v1/status").body
    # The uptime is the process's: it grows.
    wait_status(tallyd, "an uptime of a second", lambda b: b["uptime_s"] >= 1)
    # HEAD: the GET's headers, no body; the route has GET only.
    r = tallyd.request("HEAD", "/v1/status")
    assert r.status == 200 and r.body == "" and int(r.headers["content-length"]) > 100
    r = tallyd.request("POST", "/v1/status")
    assert r.status == 405 and r.headers["allow"] == "GET, HEAD"


def new_key(name, scopes):
    token = secrets.token_urlsafe(32)
    return token, f"{name} {scopes} {hashlib.sha256(token.encode()).hexdigest()}"


def test_status_needs_the_metrics_scope(spawn, tmp_path):
    reader, reader_line = new_key("reader", "read,write")
    ops, ops_line = new_key("ops", "metrics")
    admin, admin_line = new_key("admin", "admin")
    (tmp_path / "keys").write_text(f"{reader_line}\n{ops_line}\n{admin_line}\n")
    t = spawn("--keys", str(tmp_path / "keys")).start()
    r = t.get("/v1/status", token="")
    assert r.status == 401 and r.json["error"]["code"] == "unauthenticated"
    assert r.headers["www-authenticate"] == "Bearer"
    assert t.get("/v1/status", token="not-a-key").status == 401
    r = t.get("/v1/status", token=reader)
    assert r.status == 403 and r.json["error"]["code"] == "permission_denied"
    assert status(t, token=ops)["store"]["status"] == "ok"
    assert status(t, token=admin)["store"]["status"] == "ok"
    assert t.stop() == 0


def test_an_unreachable_redis_is_shown_and_its_return(spawn, tmp_path):
    """The cache is optional: without it tallyd stays ready and says the cache is out."""
    port = free_port()  # nothing listens there yet
    t = spawn(cache=f"redis://127.0.0.1:{port}").start()
    body = status(t)
    assert body["cache"] == {"kind": "redis", "status": "unavailable"}, body
    assert body["store"]["status"] == "ok" and body["ready"] is True
    assert t.get("/healthz").status == 200
    assert f"127.0.0.1:{port}" not in t.get("/v1/status").body  # kinds, never endpoints

    server = shutil.which("redis-server")
    if not server:
        pytest.skip("no redis-server to bring the cache back with")
    redis = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", str(tmp_path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Links retry once a second: ok within a few.
        wait_status(t, "the cache back", lambda b: b["cache"]["status"] == "ok")
        redis.terminate()
        redis.wait(10)
        wait_status(t, "the cache gone again", lambda b: b["cache"]["status"] == "unavailable")
    finally:
        if redis.poll() is None:
            redis.kill()
            redis.wait()
    assert t.stop() == 0
    assert "answers again" in t.output()


class Relay:
    """A TCP relay on 127.0.0.1:port to upstream, for cutting a server off from one tallyd
    without stopping it for everyone: stop() closes the listener and every relayed
    connection, start() listens again on the same port."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.port = free_port()
        self.lock = threading.Lock()
        self.socks = []
        self.listener = None

    def start(self):
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(64)
        self.listener = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()
        return self

    def _accept(self, ls):
        while True:
            try:
                down, _ = ls.accept()
            except OSError:
                return  # stopped
            try:
                up = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                down.close()
                continue
            up.settimeout(None)
            with self.lock:
                self.socks += [down, up]
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        try:  # wakes the accept() that close() alone would leave listening (Linux)
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        with self.lock:
            socks, self.socks = self.socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


@pytest.mark.skipif(not MYSQL, reason="needs MariaDB (the store cut off through a relay)")
def test_a_store_that_does_not_answer_is_shown_and_its_return(spawn, db):
    u = urlsplit(db.url)
    relay = Relay((u.hostname, u.port)).start()
    netloc = u.netloc.rsplit("@", 1)[0] + f"@127.0.0.1:{relay.port}"
    t = spawn(store=urlunsplit(u._replace(netloc=netloc))).start()
    try:
        assert status(t)["store"] == {"kind": "mysql", "status": "ok"}
        relay.stop()
        started = time.time()
        body = wait_status(t, "the store unavailable",
                           lambda b: b["store"]["status"] == "unavailable")
        assert time.time() - started < 30  # an answer, never a hang
        assert body["ready"] is False and body["bus"]["status"] == "ok"
        assert t.get("/healthz").status == 503
        assert str(relay.port) not in t.get("/v1/status").body
        relay.start()
        body = wait_status(t, "the store back", lambda b: b["store"]["status"] == "ok"
                           and b["ready"], timeout=30)
        assert t.get("/healthz").status == 200
    finally:
        relay.stop()
    assert t.stop() == 0


@pytest.mark.skipif(not KAFKA, reason="needs a Kafka broker (TALLY_TEST_KAFKA)")
def test_status_on_the_kafka_bus(spawn):
    topic = f"tally.test.status.{os.getpid()}.{int(time.time() * 1000)}"
    t = spawn("--bus", f"kafka://{KAFKA}/{topic}?group=g-{topic}&session_timeout_ms=2000")
    t.start()
    # Ready once the group has assigned this tallyd its partitions.
    body = wait_status(t, "the Kafka bus ready", lambda b: b["bus"]["status"] == "ok",
                       timeout=60)
    assert body["bus"]["kind"] == "kafka" and body["ready"] is True
    assert body["reads"] == {"status": "ok", "lost": 0}
    assert KAFKA not in t.get("/v1/status").body
    assert t.stop() == 0
