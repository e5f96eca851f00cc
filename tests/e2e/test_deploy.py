"""deploy/systemd: the unit passes `systemd-analyze verify`, the env file example names only
variables tallyd knows, and tallyd starts on that file's settings (secrets and paths under
/etc pointed at temporary ones), answers /readyz, drains on SIGTERM and exits 0."""
import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from tallyd import BINARY, free_port

# No store, cache or bus of its own to test: see conftest.py.
pytestmark = pytest.mark.any_config

ROOT = os.path.join(os.path.dirname(__file__), "../..")
UNIT = os.path.join(ROOT, "deploy/systemd/tallyd.service")
ENV_EXAMPLE = os.path.join(ROOT, "deploy/systemd/tallyd.env.example")
CONFIG_C = os.path.join(ROOT, "src/config.c")
TALLYCTL = os.environ.get("TALLYCTL", os.path.join(os.path.dirname(BINARY), "tallyctl"))


def known_variables():
    """The TALLY_* names in src/config.c's option table."""
    with open(CONFIG_C) as f:
        names = set(re.findall(r'\[O_[A-Z_]+\]\s*=\s*\{\s*"[a-z-]+",\s*"(TALLY_[A-Z_]+)"',
                               f.read()))
    assert len(names) > 20, "the option table of src/config.c was not found"
    return names


def env_example():
    """(every TALLY_* name the file mentions, commented out or not; its active settings)."""
    with open(ENV_EXAMPLE) as f:
        text = f.read()
    active = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", name), f"not NAME=VALUE: {line}"
            active[name] = value
    return set(re.findall(r"\bTALLY_[A-Z0-9_]+", text)), active


def unit_setting(name):
    with open(UNIT) as f:
        values = re.findall(rf"^{name}=(.*)$", f.read(), re.M)
    assert len(values) == 1, f"{name}= should be set once in the unit"
    return values[0]


def test_unit_passes_systemd_analyze_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    # The same unit with ExecStart at the built binary: verify checks that it exists.
    with open(UNIT) as f:
        text = f.read()
    assert "ExecStart=/usr/local/bin/tallyd\n" in text
    copy = tmp_path / "tallyd.service"
    copy.write_text(text.replace("ExecStart=/usr/local/bin/tallyd",
                                 f"ExecStart={os.path.abspath(BINARY)}"))
    r = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True,
                       text=True, timeout=60)
    # An unknown key or a bad value is only a warning (exit 0): any line about the unit fails.
    about_unit = [l for l in (r.stdout + r.stderr).splitlines() if "tallyd.service" in l]
    assert r.returncode == 0 and not about_unit, r.stdout + r.stderr


def test_unit_hardening_and_stop_budget():
    for name, value in [("DynamicUser", "yes"), ("StateDirectory", "tally"),
                        ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                        ("NoNewPrivileges", "yes"), ("PrivateTmp", "yes"),
                        ("PrivateDevices", "yes"), ("CapabilityBoundingSet", ""),
                        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
                        ("LockPersonality", "yes"), ("MemoryDenyWriteExecute", "yes"),
                        ("SystemCallFilter", "@system-service"), ("KillSignal", "SIGTERM"),
                        ("ExecReload", "/bin/kill -HUP $MAINPID"),
                        ("Restart", "on-failure"),
                        ("EnvironmentFile", "-/etc/tally/tallyd.env")]:
        assert unit_setting(name) == value, name
    # systemd must not kill tallyd while it drains and delivers the reads it accepted.
    _, active = env_example()
    budget_ms = int(active["TALLY_DRAIN_MS"]) + int(active["TALLY_STOP_TIMEOUT_MS"])
    assert int(unit_setting("TimeoutStopSec")) * 1000 > budget_ms


def test_env_example_names_only_known_variables():
    mentioned, active = env_example()
    known = known_variables()
    assert mentioned - known == set(), f"unknown to tallyd: {sorted(mentioned - known)}"
    for name in ("TALLY_STORE", "TALLY_KEYS", "TALLY_TLS_CERT", "TALLY_TLS_KEY",
                 "TALLY_DRAIN_MS", "TALLY_LOG_FORMAT"):
        assert name in active, name
    # Secrets come from files: every URL variable that is set is an @PATH.
    for name in ("TALLY_STORE", "TALLY_CACHE", "TALLY_BUS"):
        assert name not in active or active[name].startswith("@/etc/tally/"), name
    # The --help text names the variables the same way.
    out = subprocess.run([BINARY, "--help"], capture_output=True, text=True).stdout
    assert "TALLY_LISTEN" in out


def test_env_example_defaults_are_tallyds():
    with open(CONFIG_C) as f:
        defaults = dict(re.findall(r'\[O_[A-Z_]+\]\s*=\s*\{\s*"[a-z-]+",\s*"(TALLY_[A-Z_]+)",\s*'
                                   r'"([^"]*)"', f.read()))
    with open(ENV_EXAMPLE) as f:
        block = f.read().split("\n# Defaults,", 1)[1].split("\n\n", 1)[0]
    shown = re.findall(r"^#(TALLY_[A-Z_]+)=(.*)$", block, re.M)
    assert len(shown) >= 8, block
    for name, value in shown:
        assert defaults.get(name) == value, f"{name}={value}: tallyd's default is {defaults.get(name)}"


def readyz(port):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/readyz")
        r = conn.getresponse()
        r.read()
        return r.status
    finally:
        conn.close()


def test_tallyd_starts_on_the_env_example(tmp_path):
    _, active = env_example()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")}
    env.update(active)
    port = free_port()
    (tmp_path / "store.url").write_text(f"sqlite:{tmp_path}/tally.db\n")
    key = subprocess.run([TALLYCTL, "key", "deploy-test", "read"], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    (tmp_path / "keys").write_text(key[1] + "\n")
    env.update(TALLY_LISTEN=f"127.0.0.1:{port}", TALLY_STORE=f"@{tmp_path}/store.url",
               TALLY_KEYS=str(tmp_path / "keys"), TALLY_DRAIN_MS="300")
    # The TLS key is a secret the test does not have; the rest must be used as written.
    del env["TALLY_TLS_CERT"], env["TALLY_TLS_KEY"]
    left = {k: v for k, v in env.items() if k.startswith("TALLY_") and "/etc/" in v}
    assert not left, f"settings still pointing at /etc: {left}"

    log = open(tmp_path / "tallyd.log", "wb")
    proc = subprocess.Popen([BINARY], env=env, stdout=log, stderr=log)
    try:
        deadline = time.time() + 15
        status = None
        while time.time() < deadline and proc.poll() is None:
            try:
                status = readyz(port)
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        assert status == 200, (tmp_path / "tallyd.log").read_text()
        proc.send_signal(signal.SIGTERM)
        # Draining: still answering, not ready, at once and for the 300 ms drain.
        deadline = time.time() + 0.25
        while (status := readyz(port)) != 503 and time.time() < deadline:
            time.sleep(0.01)
        assert status == 503
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    output = (tmp_path / "tallyd.log").read_text()
    assert rc == 0, output
    # TALLY_LOG_FORMAT=json from the example: every line is a JSON object.
    lines = [l for l in output.splitlines() if l.strip()]
    assert lines and all(isinstance(json.loads(l), dict) for l in lines), output
