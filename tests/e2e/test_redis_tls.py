"""The cache over TLS (rediss://), against a real redis-server that speaks only TLS.

Each test starts its own Redis on a free port, TLS only (port 0), with a password and a
certificate made here for 127.0.0.1 by a CA of the test's own. 127.0.0.2 reaches the same
server but is not a name the certificate holds: a client that checked only the chain would
accept it. Needs redis-server and openssl (Debian); the store is the embedded SQLite.
"""
import os
import shutil
import subprocess
import time

import pytest

from tallyd import MYSQL, Tallyd, free_port

pytestmark = [
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
    # Its own Redis and the embedded store: the same test in every configuration, so once.
    pytest.mark.skipif(bool(MYSQL), reason="runs in the embedded configuration"),
]

PASSWORD = "tls-redis-pw-R8k1"


def make_ca(d, name):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={name}", "-keyout", f"{d}/{name}.key", "-out",
                    f"{d}/{name}.pem"], check=True, capture_output=True)
    return f"{d}/{name}.pem"


def make_cert(d, ca):
    """A server certificate for 127.0.0.1 and localhost, signed by ca."""
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=redis",
                    "-keyout", f"{d}/server.key", "-out", f"{d}/server.csr"],
                   check=True, capture_output=True)
    with open(f"{d}/server.ext", "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    subprocess.run(["openssl", "x509", "-req", "-days", "2", "-in", f"{d}/server.csr",
                    "-CA", ca, "-CAkey", ca[:-4] + ".key", "-CAcreateserial", "-extfile",
                    f"{d}/server.ext", "-out", f"{d}/server.pem"], check=True,
                   capture_output=True)
    return f"{d}/server.pem", f"{d}/server.key"


class TlsRedis:
    def __init__(self, d):
        self.dir = d
        self.ca = make_ca(d, "ca")
        self.other_ca = make_ca(d, "other")
        cert, key = make_cert(d, self.ca)
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--tls-port", str(self.port),
             "--bind", "127.0.0.1", "127.0.0.2", "--tls-cert-file", cert,
             "--tls-key-file", key, "--tls-ca-cert-file", self.ca, "--tls-auth-clients", "no",
             "--requirepass", PASSWORD, "--save", "", "--appendonly", "no", "--dir", d],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while self.cli("PING", check=False) != "PONG":
            assert time.time() < deadline, "the TLS Redis did not start"
            time.sleep(0.05)

    def cli(self, *args, check=True):
        r = subprocess.run(["redis-cli", "--tls", "--cacert", self.ca, "-h", "127.0.0.1",
                            "-p", str(self.port), *args], capture_output=True, text=True,
                           env=dict(os.environ, REDISCLI_AUTH=PASSWORD), check=check)
        return r.stdout.strip()

    def url(self, host="127.0.0.1", ca=None, scheme="rediss"):
        return f"{scheme}://:{PASSWORD}@{host}:{self.port}?tls_ca={ca or self.ca}"

    def stop(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def tls_redis(tmp_path):
    d = tmp_path / "redis-tls"
    d.mkdir()
    r = TlsRedis(str(d))
    yield r
    r.stop()


def counted_and_cached(t, redis, item_id):
    """Reads item_id twice through t; whether Redis then holds its counters."""
    for _ in range(2):
        assert t.request("POST", f"/v1/items/article/{item_id}/reads").status == 202
    deadline = time.time() + 10
    while t.get(f"/v1/items/article/{item_id}").json["read_cnt"] != 2:
        assert time.time() < deadline
        time.sleep(0.02)
    return redis.cli("HGET", f"interactive:article:{item_id}", "read_cnt") == "2"


@pytest.mark.parametrize("form", ["rediss", "tls=1"])
def test_counts_are_cached_over_tls(tmp_path, tls_redis, form):
    url = tls_redis.url() if form == "rediss" else \
        tls_redis.url(scheme="redis") + "&tls=1"
    t = Tallyd(tmp_path, cache=url).start()
    try:
        assert counted_and_cached(t, tls_redis, 7), t.output()
        assert PASSWORD not in t.output()
    finally:
        assert t.stop() == 0


def test_a_certificate_from_another_ca_is_refused(tmp_path, tls_redis):
    t = Tallyd(tmp_path, cache=tls_redis.url(ca=tls_redis.other_ca)).start()
    try:
        # The cache is optional: tallyd serves from the store, and never from that server.
        assert not counted_and_cached(t, tls_redis, 8)
        assert "certificate verify failed" in t.output()
        assert PASSWORD not in t.output()
    finally:
        assert t.stop() == 0


def test_a_certificate_for_another_name_is_refused(tmp_path, tls_redis):
    t = Tallyd(tmp_path, cache=tls_redis.url(host="127.0.0.2")).start()
    try:
        assert not counted_and_cached(t, tls_redis, 9)
        assert "certificate verify failed" in t.output()
    finally:
        assert t.stop() == 0


@pytest.mark.parametrize("cache,why", [
    ("redis://:pw@127.0.0.1:1?tls_ca=/x.pem", "tls_ca= needs TLS"),
    ("rediss://:pw@127.0.0.1:1?tls=2", "tls= takes 0 or 1"),
    ("rediss://:pw@127.0.0.1:1,127.0.0.1:2", "redis-cluster://"),
    ("redis-cluster://:pw@127.0.0.1:1/0", "no path"),
    ("rediss-cluster://:pw@127.0.0.1:1?tls_ca=", "PEM file"),
])
def test_bad_tls_options_are_usage_errors(tmp_path, cache, why):
    r = subprocess.run([Tallyd(tmp_path).args[0], "--store", f"sqlite:{tmp_path}/t.db",
                        "--cache", cache], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r.stderr
    assert why in r.stderr
    assert "pw@" not in r.stderr


def test_an_unreadable_ca_file_stops_tallyd(tmp_path, tls_redis):
    r = subprocess.run([Tallyd(tmp_path).args[0], "--store", f"sqlite:{tmp_path}/t.db",
                        "--cache", tls_redis.url(ca=f"{tmp_path}/missing.pem")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r.stderr
    assert "cannot read tls_ca=" in r.stderr and PASSWORD not in r.stderr
