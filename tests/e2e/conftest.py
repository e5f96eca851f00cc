import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from tallyd import Tallyd  # noqa: E402


@pytest.fixture
def tallyd(tmp_path):
    """A running tallyd on the embedded default; stopped (and checked) after the test."""
    t = Tallyd(tmp_path).start()
    yield t
    rc = t.stop()
    assert rc == 0, f"tallyd exited with {rc}:\n{t.output()}"
    assert "ERROR: AddressSanitizer" not in t.output()
    assert "runtime error" not in t.output()


@pytest.fixture
def spawn(tmp_path):
    """Starts extra tallyd processes with custom flags; stops whatever is left."""
    started = []

    def make(*args, **kw):
        t = Tallyd(tmp_path, *args, **kw)
        started.append(t)
        return t

    yield make
    for t in started:
        t.stop(timeout=30)
