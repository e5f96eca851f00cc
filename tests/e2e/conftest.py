import glob
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from tallyd import Database, Tallyd, flush_redis  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "release: also run on the release build (make test runs every test under "
        "ASan + UBSan, and only these plain: their figures, memory bounds and scale are the "
        "release build's; see scripts/test.sh)")
    config.addinivalue_line(
        "markers", "any_config: depends on no store, cache or bus (make test runs it under "
        "the sanitizers on the embedded default only; see scripts/test.sh)")


@pytest.fixture(scope="session", autouse=True)
def tsan_dir(tmp_path_factory):
    """Where every process the tests start writes its ThreadSanitizer reports.

    Under `make SANITIZE=thread e2e` tallyd, tallyctl and tally-produce are TSan builds. A
    report goes to a file of its own (log_path) rather than into the process's output, so
    that it fails the test it appeared in whatever the test does with that process (kills
    it, never reads its output, starts it outside the fixtures). Binaries built without
    TSan ignore TSAN_OPTIONS.
    """
    d = tmp_path_factory.mktemp("tsan")
    # Later options win: the caller's TSAN_OPTIONS first, then the ones this check needs.
    opts = [os.environ.get("TSAN_OPTIONS", ""), f"log_path={d}/report", "exitcode=66",
            "second_deadlock_stack=1"]
    os.environ["TSAN_OPTIONS"] = ":".join(o for o in opts if o)
    yield d
    left = tsan_reports(d)
    if left:
        pytest.fail("ThreadSanitizer reported after the last test:\n" + left, pytrace=False)


def tsan_reports(d):
    """The text of every report file in d (report.PID), each removed once read."""
    text = []
    for path in sorted(glob.glob(f"{d}/report.*")):
        with open(path, errors="replace") as f:
            text.append(f"--- {os.path.basename(path)}\n{f.read()}")
        os.remove(path)
    return "".join(text)


@pytest.fixture(autouse=True)
def no_tsan_report(tsan_dir):
    """Fails the test (after its teardown, which stops its tallyd) on any TSan report."""
    yield
    text = tsan_reports(tsan_dir)
    if text:
        pytest.fail("ThreadSanitizer reported:\n" + text[:40000], pytrace=False)


@pytest.fixture
def db(tmp_path):
    """An empty store (SQLite, or MariaDB when TALLY_TEST_MYSQL is set) and an empty cache."""
    d = Database(tmp_path)
    flush_redis()
    yield d
    d.drop()


@pytest.fixture
def tallyd(tmp_path, db):
    """A running tallyd on the test's store; stopped (and checked) after the test."""
    t = Tallyd(tmp_path, store=db.url).start()
    yield t
    rc = t.stop()
    assert rc == 0, f"tallyd exited with {rc}:\n{t.output()}"
    assert "ERROR: AddressSanitizer" not in t.output()
    assert "runtime error" not in t.output()


@pytest.fixture
def spawn(tmp_path, db):
    """Starts extra tallyd processes on the test's store; stops whatever is left."""
    started = []

    def make(*args, **kw):
        kw.setdefault("store", db.url)
        t = Tallyd(tmp_path, *args, **kw)
        started.append(t)
        return t

    yield make
    for t in started:
        t.stop(timeout=30)
