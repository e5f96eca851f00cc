import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from tallyd import Database, Tallyd, flush_redis  # noqa: E402


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
