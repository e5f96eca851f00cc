"""The Go client (clients/go) against the tallyd this suite tests: `go test ./...` in
clients/go with TALLYD set to the same binary, so every build make test runs the suite on
(ASan + UBSan, ThreadSanitizer) also runs the client's tests. They start their own tallyd on
SQLite, so they run in the embedded configuration only.

The Go toolchain is all they need: the client uses the standard library only, GOPROXY=off
proves it, and the build cache sits under .cache/go like bench/course's (see the Makefile).
"""
import os
import shutil
import subprocess

import pytest

from tallyd import BINARY, MYSQL

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))


@pytest.mark.skipif(shutil.which("go") is None, reason="go is not on PATH")
@pytest.mark.skipif(bool(MYSQL), reason="the Go client's tests start their own tallyd on "
                    "SQLite: they run in the embedded configuration")
def test_go_client():
    cache = os.path.join(ROOT, ".cache/go")
    env = {k: v for k, v in os.environ.items() if k not in ("TALLY_URL", "TALLY_TOKEN")}
    env.update(TALLYD=os.path.abspath(BINARY), GOTOOLCHAIN="local", GOPROXY="off",
               GOFLAGS="-mod=readonly -buildvcs=false", GOPATH=cache,
               GOMODCACHE=os.path.join(cache, "mod"), GOCACHE=os.path.join(cache, "build"))
    p = subprocess.run(["go", "test", "-count=1", "-v", "-timeout", "150s", "./..."],
                       cwd=os.path.join(ROOT, "clients/go"), env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, f"go test exited with {p.returncode}:\n{p.stdout}\n{p.stderr}"
    assert "--- PASS: TestRetriedReadCountsOnce" in p.stdout, p.stdout
    assert "--- SKIP" not in p.stdout, p.stdout
