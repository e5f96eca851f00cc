"""The Grafana dashboard (deploy/grafana/tally.json) against a real Prometheus.

Starts Prometheus (the Debian package `prometheus`; scripts/deps.sh dashboard installs it)
on a free loopback port, scraping a tallyd this module starts, every second. After some
traffic (reads, likes, GETs, a few 4xx and 429s), every panel's query is evaluated through
Prometheus's HTTP API and must return data, so a renamed metric or a broken expression
fails here rather than on an operator's screen.

The consumer-lag panel can only have data with the Kafka bus: with TALLY_TEST_KAFKA set,
tallyd reads through Kafka and that panel is checked too; without it, it is skipped, and
the panels with a Kafka metric must be the only empty ones.
"""
import json
import math
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tallyd import Database, Tallyd, flush_redis, free_port

ROOT = os.path.join(os.path.dirname(__file__), "../..")
DASHBOARD = os.path.join(ROOT, "deploy/grafana/tally.json")
PROMETHEUS = os.environ.get("TALLY_PROMETHEUS") or shutil.which("prometheus") or \
    "/usr/bin/prometheus"
KAFKA = os.environ.get("TALLY_TEST_KAFKA")
DEADLINE = 240  # seconds: scrapes are every second, but a loaded 2-core machine is slow

# What Grafana would put in place of its own variables; the dashboard's template variables
# (job, instance, route, partition) become "All" (allValue ".*").
GRAFANA_VARS = {"__rate_interval": "30s", "__interval": "5s", "__range": "5m"}


def load_targets():
    """(panel title, refId, expr) of every panel target of the dashboard."""
    with open(DASHBOARD) as f:
        dash = json.load(f)
    out = []
    for p in dash["panels"]:
        for sub in [p] + p.get("panels", []):  # rows may hold panels
            for t in sub.get("targets", []):
                out.append((sub["title"], t["refId"], t["expr"]))
    return out


def needs_kafka(expr):
    return "tally_kafka_" in expr


def to_promql(expr):
    def sub(m):
        name = m.group(1) or m.group(2)
        return GRAFANA_VARS.get(name, ".*")
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", sub, expr)


TARGETS = load_targets()


def target_params():
    for title, ref, expr in TARGETS:
        marks = []
        if needs_kafka(expr):
            marks.append(pytest.mark.skipif(
                not KAFKA, reason="only has data with the Kafka bus (set TALLY_TEST_KAFKA)"))
        yield pytest.param(title, ref, expr, marks=marks, id=f"{title}/{ref}")


class Prometheus:
    def __init__(self, tmp, target):
        self.port = free_port()
        self.dir = tmp
        config = os.path.join(tmp, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: tally\n    static_configs:\n"
                    f"      - targets: ['{target}']\n")
        self.log_path = os.path.join(tmp, "prometheus.log")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}",
             f"--storage.tsdb.path={os.path.join(tmp, 'data')}",
             f"--web.listen-address=127.0.0.1:{self.port}",
             "--storage.tsdb.retention.time=1h", "--log.level=warn"],
            stdout=self.log, stderr=self.log)

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def api(self, path, **params):
        url = f"http://127.0.0.1:{self.port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=30) as r:
            return json.loads(r.read())

    def wait_ready(self, deadline):
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}:\n"
                                   f"{self.output()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready",
                                            timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus was not ready in time:\n{self.output()}")

    def query(self, expr):
        """The result vector of an instant query (raises on a PromQL error)."""
        try:
            r = self.api("/api/v1/query", query=expr)
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{expr}: {e.code} {e.read().decode(errors='replace')}")
        assert r["status"] == "success", r
        return r["data"]["result"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.log.close()


def finite(result):
    """Whether some series of an instant-query result has a number (not NaN) as its value."""
    return any(not math.isnan(float(s["value"][1])) for s in result)


def load(t):
    """Traffic that makes every series the dashboard shows: reads, likes, GETs, 4xx, 429s."""
    conn = t.connect()
    for i in range(300):
        r = t.request("POST", f"/v1/items/article/{i % 10 + 1}/reads",
                      body={"uid": i + 1}, conn=conn)
        assert r.status == 202, r
    for uid in range(1, 21):
        r = t.request("PUT", f"/v1/users/{uid}/likes/article/{uid % 5 + 1}", conn=conn)
        assert r.status in (200, 429), r
    for i in range(20):
        assert t.request("GET", f"/v1/items/article/{i % 10 + 1}", conn=conn).status == 200
    assert t.request("GET", "/v1/items/article?ids=1,2,3", conn=conn).status == 200
    assert t.request("GET", "/v1/top/article?by=like_cnt&limit=5", conn=conn).status == 200
    assert t.request("GET", "/v1/items/article/not-a-number", conn=conn).status == 400
    assert t.request("GET", "/no/such/route", conn=conn).status == 404
    # The uid bucket holds 2: a burst of likes by one uid is refused with 429.
    statuses = [t.request("PUT", f"/v1/users/99/likes/article/{i + 1}", conn=conn).status
                for i in range(10)]
    assert 429 in statuses, statuses
    conn.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """(prometheus, {(title, ref): result}) once every panel that can have data has it."""
    if not os.access(PROMETHEUS, os.X_OK):
        pytest.skip(f"no Prometheus at {PROMETHEUS}: install the Debian package `prometheus` "
                    "(scripts/deps.sh dashboard)")
    tmp = str(tmp_path_factory.mktemp("dashboard"))
    db = Database(tmp)
    flush_redis()
    args = ["--rate-limit", "uid=1/m:2"]
    if KAFKA:
        topic = f"tally.dashboard.{os.getpid()}.{int(time.time() * 1000)}"
        args += ["--bus", f"kafka://{KAFKA}/{topic}?group=g-{topic}&session_timeout_ms=2000"]
    t = Tallyd(tmp, *args, store=db.url)
    prom = None
    try:
        t.start()
        prom = Prometheus(tmp, f"127.0.0.1:{t.port}")
        deadline = time.time() + DEADLINE
        prom.wait_ready(deadline)
        load(t)
        # Poll until every query that can have data has it; keep a trickle of requests
        # going so the rates over the last 30 s have something to show.
        want = [(title, ref, expr) for title, ref, expr in TARGETS
                if KAFKA or not needs_kafka(expr)]
        results = {}
        while True:
            results = {(title, ref): prom.query(to_promql(expr)) for title, ref, expr in TARGETS}
            missing = [f"{title}/{ref}" for title, ref, _ in want if not results[(title, ref)]]
            if not missing:
                break
            if time.time() > deadline:
                pytest.fail(f"no data within {DEADLINE} s for {missing}\n"
                            f"tallyd:\n{t.output()[-2000:]}\nprometheus:\n{prom.output()}")
            for i in range(5):
                t.get(f"/v1/items/article/{i + 1}")
                t.request("POST", f"/v1/items/article/{i + 1}/reads", body={"uid": 1000 + i})
            time.sleep(0.5)
        yield prom, results, t
    finally:
        try:
            if prom:
                prom.stop()
        finally:
            rc = t.stop()
            db.drop()
        assert rc in (0, None), f"tallyd exited with {rc}:\n{t.output()}"


def test_dashboard_is_well_formed():
    with open(DASHBOARD) as f:
        dash = json.load(f)
    assert 36 <= dash["schemaVersion"] <= 41
    names = {v["name"] for v in dash["templating"]["list"]}
    assert "datasource" in names
    assert TARGETS and all(expr.strip() for _, _, expr in TARGETS)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        assert p["datasource"]["uid"] == "${datasource}", p["title"]


@pytest.mark.parametrize("title,ref,expr", list(target_params()))
def test_panel_query_returns_data(stack, title, ref, expr):
    prom, results, _ = stack
    result = results[(title, ref)]
    assert result, f"{title}/{ref}: no data for {to_promql(expr)}"
    assert all("value" in s for s in result)


def test_latency_quantiles_are_numbers(stack):
    """Beyond "some series": with recent traffic the latency quantiles have values, not
    only NaN (which is what a histogram that matched nothing that moved gives)."""
    prom, _, t = stack
    exprs = [(title, ref, to_promql(expr)) for title, ref, expr in TARGETS
             if "histogram_quantile" in expr and "route" in expr]
    assert exprs
    deadline = time.time() + DEADLINE
    for title, ref, expr in exprs:
        while not finite(prom.query(expr)):
            assert time.time() < deadline, f"{title}/{ref}: only NaN from {expr}"
            t.get("/v1/items/article/1")
            time.sleep(0.5)


def test_metric_names_exist(stack):
    """Every metric name a query uses is one Prometheus scraped from tallyd."""
    prom, _, _ = stack
    scraped = set(prom.api("/api/v1/label/__name__/values")["data"])
    for title, ref, expr in TARGETS:
        if needs_kafka(expr) and not KAFKA:
            continue
        for name in re.findall(r"\b((?:tally|process)_[a-z_]+)", expr):
            assert name in scraped, f"{title}/{ref}: {name} was never scraped"


@pytest.mark.skipif(bool(KAFKA), reason="with the Kafka bus every panel has data")
def test_only_kafka_panels_are_empty_without_kafka(stack):
    _, results, _ = stack
    empty = {k for k, v in results.items() if not v}
    kafka = {(title, ref) for title, ref, expr in TARGETS if needs_kafka(expr)}
    assert kafka, "the dashboard has no consumer-lag panel"
    assert empty == kafka
