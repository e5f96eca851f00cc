"""tallyctl probe: the health check of the container image (no shell, no curl in it). Its
exit status is the verdict: 0 for a 2xx answer, 1 for anything else, 2 for a usage error."""
import os
import socket
import ssl
import subprocess
import threading

import pytest
from cryptography.hazmat.primitives import serialization

from test_auth import (make_ca, make_server_cert, new_key, server, start_tls,  # noqa: F401
                       write_keys)

# No store, cache or bus of its own to test: see conftest.py.
pytestmark = pytest.mark.any_config

TALLYCTL = os.environ.get("TALLYCTL", os.path.join(os.path.dirname(__file__),
                                                   "../../build/tallyctl"))


def probe(*args):
    return subprocess.run([TALLYCTL, "probe", *args], capture_output=True, text=True, timeout=30)


def test_probe_answers_with_its_exit_status(tallyd):
    base = f"http://127.0.0.1:{tallyd.port}"
    for path in ("/readyz", "/livez", "/healthz"):
        r = probe(base + path)
        assert (r.returncode, r.stderr) == (0, ""), r
    r = probe(base + "/nope")
    assert r.returncode == 1 and "answered 404" in r.stderr, r
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    r = probe(f"http://127.0.0.1:{closed}/readyz")
    assert r.returncode == 1 and "connection failed" in r.stderr, r


def test_probe_gives_up_at_its_timeout():
    with socket.socket() as s:  # accepts, never answers
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        r = probe("--timeout-ms", "300", f"http://127.0.0.1:{s.getsockname()[1]}/readyz")
    assert r.returncode == 1 and "no answer" in r.stderr and "300 ms" in r.stderr, r


def test_probe_over_tls_checks_the_certificate(server, tmp_path):
    ca = make_ca()
    (tmp_path / "ca.pem").write_bytes(ca[1].public_bytes(serialization.Encoding.PEM))
    make_server_cert(ca, "tally", tmp_path / "cert.pem", tmp_path / "key.pem")
    token, line = new_key("svc", "admin")
    write_keys(tmp_path / "keys", [line])
    t = start_tls(server("--keys", str(tmp_path / "keys"), "--tls-cert",
                         str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem"),
                         tls=ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))))
    url = f"https://127.0.0.1:{t.port}/readyz"
    r = probe("--ca", str(tmp_path / "ca.pem"), url)
    assert (r.returncode, r.stderr) == (0, ""), r
    r = probe(url)  # the system's CAs do not know this one
    assert r.returncode == 1, r
    r = probe("--ca", str(tmp_path / "ca.pem"), f"http://127.0.0.1:{t.port}/readyz")
    assert r.returncode == 1, r  # plain HTTP to a TLS port gets no answer


def test_probe_usage_errors_exit_2():
    for args in ([], ["ftp://x/readyz"], ["not a url"], ["--timeout-ms", "0", "http://a/"],
                 ["--timeout-ms"], ["--nope", "http://a/"], ["http://a/", "http://b/"]):
        r = probe(*args)
        assert r.returncode == 2 and r.stderr.startswith("tallyctl probe: "), (args, r)
        assert r.stderr.count("\n") == 1, r
