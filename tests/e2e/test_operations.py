"""What operators see: probes through a drained stop, JSON logs, request ids, process metrics,
and one version everywhere."""
import json
import os
import re
import signal
import subprocess
import time

from tallyd import BINARY, Tallyd, report

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def wait_for(cond, timeout=10, step=0.02):
    deadline = time.time() + timeout
    while True:
        value = cond()
        if value or time.time() > deadline:
            return value
        time.sleep(step)


def test_probes_are_open_and_livez_needs_no_store(tmp_path, db):
    keys = tmp_path / "keys"
    keys.write_text("probe read " + "0" * 64 + "\n")  # credentials on: all but probes need one
    t = Tallyd(tmp_path, "--keys", str(keys), store=db.url).start()
    try:
        for path in ["/livez", "/readyz", "/healthz"]:
            r = t.get(path)
            assert r.status == 200 and r.json == {"status": "ok"}, (path, r)
        assert t.get("/metrics").status == 401
        assert t.get("/v1/items/article/1").status == 401
    finally:
        assert t.stop() == 0


def test_drain_turns_readyz_503_at_once_and_keeps_serving(spawn):
    t = spawn("--drain-ms", "3000").start()  # the fixture stops it if an assert fails
    assert t.get("/readyz").status == 200
    t.proc.send_signal(signal.SIGTERM)
    sigterm_at = time.time()
    # /readyz says 503 at once; the instance still answers everything else meanwhile.
    assert wait_for(lambda: t.get("/readyz").status == 503, timeout=2)
    readyz_503_after = time.time() - sigterm_at
    served = 0
    while time.time() - sigterm_at < 2.0:
        c = t.connect()  # new connections too: it has not stopped accepting
        c.request("GET", "/v1/items/article/7")
        r = c.getresponse()
        r.read()
        c.close()
        assert r.status == 200
        assert t.get("/livez").status == 200
        served += 1
    body = t.get("/readyz").json
    assert body["error"]["code"] == "unavailable" and "draining" in body["error"]["message"]
    rc = t.proc.wait(timeout=30)
    stopped_after = time.time() - sigterm_at
    t.stop()
    assert rc == 0, t.output()
    assert stopped_after >= 3.0
    report("drain", readyz_503_after_s=round(readyz_503_after, 3), served_while_draining=served,
           stopped_after_s=round(stopped_after, 2))


def test_json_logs_parse_and_carry_request_ids(tmp_path, db):
    t = Tallyd(tmp_path, "--log-format", "json", "--access-log", store=db.url).start()
    try:
        r = t.request("GET", "/v1/items/article/1", headers={"X-Request-Id": "req-42.a:b"})
        assert r.status == 200 and r.headers["x-request-id"] == "req-42.a:b"
        made = t.request("PUT", "/v1/users/7/likes/article/1").headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{24}", made)
        # A bad one (too long, or with characters outside the safe set) is replaced.
        for bad in ["x" * 129, "has space", "quote\"d"]:
            got = t.request("GET", "/livez", headers={"X-Request-Id": bad}).headers["x-request-id"]
            assert got != bad and re.fullmatch(r"[0-9a-f]{24}", got)
        t.request("GET", "/v1/items/Bad/1", headers={"X-Request-Id": "bad-biz"})
    finally:
        assert t.stop() == 0
    records = [json.loads(line) for line in t.output().splitlines() if line.strip()]
    for rec in records:  # every line is one JSON object with the three fixed keys
        assert {"ts", "level", "msg"} <= rec.keys(), rec
        assert rec["level"] in ("debug", "info", "warn", "error")
    access = [r for r in records if r["msg"] == "request"]
    by_id = {r["request_id"]: r for r in access}
    assert by_id["req-42.a:b"]["route"] == "get_item" and by_id["req-42.a:b"]["status"] == 200
    assert by_id[made]["method"] == "PUT" and by_id[made]["route"] == "like"
    assert by_id["bad-biz"]["status"] == 400
    for r in access:
        assert isinstance(r["duration_us"], int) and isinstance(r["bytes"], int)


def test_process_metrics_and_build_info(tallyd):
    text = tallyd.get("/metrics").body
    values = {}
    for line in text.splitlines():
        if not line.startswith("#") and " " in line:
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    assert values["process_resident_memory_bytes"] > 1 << 20
    assert values["process_cpu_seconds_total"] > 0
    assert values["process_open_fds"] >= 3
    assert abs(values["process_start_time_seconds"] - time.time()) < 600
    assert "tally_http_connections" in values
    info = [n for n in values if n.startswith("tally_build_info{")]
    assert len(info) == 1 and values[info[0]] == 1
    version = subprocess.run([BINARY, "--version"], capture_output=True, text=True).stdout.split()[1]
    assert f'version="{version}"' in info[0]
    # The CPU counter moves with work.
    before = values["process_cpu_seconds_total"]
    for _ in range(2000):
        tallyd.get("/v1/items/article/1")
    after = [float(line.split()[1]) for line in tallyd.get("/metrics").body.splitlines()
             if line.startswith("process_cpu_seconds_total ")][0]
    assert after > before


def test_one_version_in_binary_spec_and_file():
    version = subprocess.run([BINARY, "--version"], capture_output=True, text=True).stdout.split()[1]
    with open(os.path.join(ROOT, "VERSION")) as f:
        assert f.read().strip() == version
    with open(os.path.join(ROOT, "docs", "openapi.yaml")) as f:
        spec = f.read()
    assert re.search(r'^  version: "?' + re.escape(version) + r'"?$', spec, re.M), version


def test_the_version_changes_when_the_schema_does():
    """A migration ships under a version of its own: docs/operations.md's table names the
    schema each version migrates to, and this build's must be its VERSION's row. A new
    migration without a new version (and a row) fails here."""
    out = subprocess.run([BINARY, "--version"], capture_output=True, text=True).stdout
    m = re.fullmatch(r"tallyd (\S+) \(\w+; store schema: sqlite (\d+), mysql (\d+)\)\n", out)
    assert m, out
    with open(os.path.join(ROOT, "docs", "operations.md")) as f:
        rows = re.findall(r"^  \| (\d+\.\d+\.\d+) \| (\d+) \| (\d+) \|", f.read(), re.M)
    table = {v: (int(s), int(my)) for v, s, my in rows}
    assert len(table) == len(rows) >= 2, rows
    assert table.get(m[1]) == (int(m[2]), int(m[3])), (m.groups(), table)
    # Versions rise with the schema: no two versions share a schema change backwards.
    key = lambda v: tuple(map(int, v.split(".")))
    ordered = sorted(table, key=key)
    assert all(table[a] <= table[b] for a, b in zip(ordered, ordered[1:])), table


def test_every_operation_has_its_own_operation_id():
    """Client generators name their methods after operationId: every operation has one,
    and no two share one (the spec read as text: no YAML library is needed)."""
    with open(os.path.join(ROOT, "docs", "openapi.yaml")) as f:
        spec = f.read()
    paths = spec.split("\npaths:\n", 1)[1].split("\ncomponents:\n", 1)[0]
    ops = re.findall(r"^    (get|put|post|delete|patch):\n((?:      .*\n|\n)*)", paths, re.M)
    ids = [re.search(r"^      operationId: (\w+)$", body, re.M) for _, body in ops]
    assert len(ops) >= 16 and all(ids), [m for (m, _), i in zip(ops, ids) if not i]
    names = [i.group(1) for i in ids]
    assert len(set(names)) == len(names), names
