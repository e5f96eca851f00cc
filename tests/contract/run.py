#!/usr/bin/env python3
"""Contract tests: Schemathesis against docs/openapi.yaml on a live tallyd.

Starts ./build/tallyd (or --tallyd) on a fresh SQLite file and a free port, runs the pinned
Schemathesis CLI with tests/contract/schemathesis.toml (fixed seed, bounded examples, every
check, tally's own in hooks.py included, positive and negative data), then stops tallyd
with SIGTERM. The step fails when a check fails, when tallyd dies during the run, or when it
does not exit 0 on SIGTERM (under ASan + UBSan that includes a sanitizer report).

DESIGN: Schemathesis runs through its CLI, not its pytest plugin: only the CLI has every
phase (examples, coverage, fuzzing, stateful). Its own output would confuse the counts
that scripts/test.sh adds up, so it goes to OUT/schemathesis.log and this script prints one
line per API operation (plus one for the stateful phase and one for tallyd's exit) and a
closing "N passed, N failed" line in pytest's words; on failure it also prints the
failures Schemathesis reported and the end of tallyd's log.

Usage: run.py [--tallyd PATH] [--out DIR] [--st PATH]
"""
import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "../.."))


def rel(path):
    """path relative to the repository when it is inside it, for shorter messages."""
    return os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stop(Exception):
    """Raised by SIGTERM / SIGINT so that tallyd is stopped on the way out."""


def on_signal(signum, frame):
    raise Stop(f"signal {signum}")


def wait_ready(proc, url, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            return f"tallyd exited with status {proc.returncode} before it was ready"
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                if r.status == 200:
                    return None
        except OSError:
            pass
        time.sleep(0.05)
    return f"tallyd did not answer /healthz within {timeout} s"


def stop(proc, timeout=30):
    """SIGTERM, then SIGKILL after timeout; returns the exit status (negative: signal)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return "did not stop within %d s of SIGTERM (killed)" % timeout
    return proc.returncode


def tail(path, n=40):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def junit_results(path):
    """[(name, passed)] per test case of Schemathesis's JUnit report."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return []
    out = []
    for tc in root.iter("testcase"):
        bad = tc.find("failure") is not None or tc.find("error") is not None
        out.append((tc.get("name"), not bad))
    return out


def failures_section(log_path):
    """The FAILURES part of Schemathesis's output (its summary has counts of its own)."""
    text = tail(log_path, n=100000)
    start = text.find("= FAILURES =")
    end = text.find("= SUMMARY =")
    if start < 0:
        start = text.find("= ERRORS =")
    if start < 0:
        return text[-4000:]
    return text[text.rfind("\n", 0, start) + 1:text.rfind("\n", 0, end) if end > 0 else None]


def generated(log_path):
    """How many test cases Schemathesis generated, from its summary ("N generated")."""
    m = re.search(r"^\s*(\d+) generated", tail(log_path, n=100000), re.M)
    return m.group(1) if m else "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tallyd", default=os.path.join(ROOT, "build/tallyd"))
    ap.add_argument("--out", default=os.path.join(ROOT, "build/contract"))
    ap.add_argument("--st", default=os.path.join(ROOT, ".cache/contract-venv/bin/st"))
    args = ap.parse_args()

    if not os.access(args.st, os.X_OK):
        print(f"contract: {args.st} is missing: run scripts/deps.sh contract", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    st_log = os.path.join(args.out, "schemathesis.log")
    junit = os.path.join(args.out, "junit.xml")
    for p in (st_log, junit):
        if os.path.exists(p):
            os.unlink(p)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    tmp = tempfile.TemporaryDirectory(prefix="tally-contract-")
    tallyd_log = os.path.join(args.out, "tallyd.log")
    results, problems = [], []
    proc = st = None
    started = time.time()
    try:
        # The free port may be taken by someone else before tallyd binds it: try another.
        for _ in range(3):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            with open(tallyd_log, "wb") as log:
                proc = subprocess.Popen([args.tallyd, "--listen", f"127.0.0.1:{port}",
                                         "--store", f"sqlite:{tmp.name}/tally.db",
                                         "--cache", "none", "--bus", "local"],
                                        stdout=log, stderr=log, stdin=subprocess.DEVNULL)
            err = wait_ready(proc, url)
            if not (err and "Address already in use" in tail(tallyd_log)):
                break
            stop(proc)
        if err:
            problems.append(err)
        else:
            env = dict(os.environ, NO_COLOR="1",
                       SCHEMATHESIS_HOOKS=os.path.join(HERE, "hooks.py"),
                       HYPOTHESIS_STORAGE_DIRECTORY=os.path.join(args.out, "hypothesis"))
            cmd = [args.st, "--config-file", os.path.join(HERE, "schemathesis.toml"), "run",
                   os.path.join(ROOT, "docs/openapi.yaml"), "--url", url,
                   "--report", "junit", "--report-junit-path", junit]
            print("contract: " + " ".join(rel(c) for c in cmd), flush=True)
            with open(st_log, "wb") as log:
                st = subprocess.Popen(cmd, cwd=args.out, env=env, stdout=log,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                rc = st.wait()
                st = None
            results = junit_results(junit)
            if rc != 0 and all(ok for _, ok in results):
                problems.append(f"schemathesis exited with status {rc}")
            if proc.poll() is not None:
                problems.append(f"tallyd died during the run (status {proc.returncode})")
    except Stop as e:
        problems.append(f"interrupted by {e}")
    finally:
        if st is not None and st.poll() is None:
            st.kill()
            st.wait()
        if proc is not None:
            rc = stop(proc)
            results.append(("tallyd exits 0 on SIGTERM", rc == 0))
            if rc != 0:
                problems.append(f"tallyd exit status: {rc}")
        tmp.cleanup()

    for name, ok in results:
        print(f"{'PASSED' if ok else 'FAILED'} {name}")
    failed = sum(1 for _, ok in results if not ok)
    if failed or problems:
        print(failures_section(st_log) if os.path.exists(st_log) else "")
        for p in problems:
            print(f"contract: {p}")
        print(f"--- end of {rel(tallyd_log)}:\n{tail(tallyd_log)}")
        print(f"contract: full Schemathesis output in {rel(st_log)}")
        failed = max(failed, 1)
    passed = len(results) - sum(1 for _, ok in results if not ok)
    print(f"contract: {passed} passed, {failed} failed ({generated(st_log)} Schemathesis cases) "
          f"in {time.time() - started:.1f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
