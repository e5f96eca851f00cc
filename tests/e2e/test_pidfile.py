"""--pid-file and tallyctl reload: a reload reaches the one tallyd it names, never another on
the host, and a pid file left by a killed tallyd is never trusted."""
import os
import signal
import subprocess

import pytest

from tallyd import BINARY
from test_auth import new_key, wait_until, write_keys

# No store, cache or bus of its own to test: see conftest.py.
pytestmark = pytest.mark.any_config

TALLYCTL = os.environ.get("TALLYCTL", os.path.join(os.path.dirname(__file__),
                                                   "../../build/tallyctl"))


def reload(pid_file):
    return subprocess.run([TALLYCTL, "reload", "--pid-file", str(pid_file)], capture_output=True,
                          text=True, timeout=20)


def test_reload_reaches_only_the_tallyd_of_its_pid_file(spawn, tmp_path):
    tokens, started = [], []
    for i in range(2):
        token, line = new_key(f"svc{i}", "admin")
        write_keys(tmp_path / f"keys{i}", [line])
        t = spawn("--keys", str(tmp_path / f"keys{i}"), "--pid-file", str(tmp_path / f"t{i}.pid"),
                  token=token).start()
        assert (tmp_path / f"t{i}.pid").read_text() == f"{t.proc.pid}\n"
        tokens.append(token)
        started.append(t)
    # A new key in both files; only the first tallyd is told.
    new_token, new_line = new_key("fresh", "admin")
    for i in range(2):
        write_keys(tmp_path / f"keys{i}", [new_line])
    r = reload(tmp_path / "t0.pid")
    assert r.returncode == 0 and f"SIGHUP sent to tallyd {started[0].proc.pid}" in r.stdout, r
    assert wait_until(lambda: "API keys reloaded" in started[0].output(), 10)
    assert started[0].get("/v1/items/article/1", token=new_token).status == 200
    assert started[1].get("/v1/items/article/1", token=new_token).status == 401
    assert "API keys reloaded" not in started[1].output()
    for i, t in enumerate(started):
        assert t.stop() == 0
        assert not (tmp_path / f"t{i}.pid").exists()  # removed at a clean stop


def test_a_second_tallyd_and_a_stale_pid_file(spawn, tmp_path, db):
    pid_file = tmp_path / "tally.pid"
    t = spawn("--pid-file", str(pid_file)).start()
    r = subprocess.run([BINARY, "--listen", "127.0.0.1:0", "--store", db.url, "--pid-file",
                        str(pid_file)], capture_output=True, text=True, timeout=20)
    assert r.returncode == 1, r
    assert f"held by process {t.proc.pid}" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert pid_file.read_text() == f"{t.proc.pid}\n"

    t.proc.send_signal(signal.SIGKILL)
    t.proc.wait(10)
    assert pid_file.exists()  # left behind by kill -9 ...
    r = reload(pid_file)  # ... and not trusted: the pid may be anyone's by now
    assert r.returncode == 1 and "stale" in r.stderr, r
    t2 = spawn("--pid-file", str(pid_file)).start()  # a new tallyd takes the file over
    assert pid_file.read_text() == f"{t2.proc.pid}\n"
    assert reload(pid_file).returncode == 0
    assert wait_until(lambda: "SIGHUP" in t2.output(), 10)
    assert t2.stop() == 0


def test_reload_usage_and_bad_files(tmp_path):
    assert reload(tmp_path / "missing.pid").returncode == 1
    (tmp_path / "junk.pid").write_text("hello\n")
    r = reload(tmp_path / "junk.pid")
    assert r.returncode == 1 and "not a pid file" in r.stderr, r
    r = subprocess.run([TALLYCTL, "reload"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and r.stderr.startswith("tallyctl: usage: tallyctl reload"), r
