"""deploy/compose.yaml loads as Docker Compose loads it, holds together, and its tally runs.

The upstream images it names (MariaDB, Redis, Kafka, Prometheus, Grafana) cannot be pulled
here, so the file is checked rather than brought up:

- tests/compose (compose-go, the Compose Specification's reference loader, which Docker
  Compose uses) loads it: schema, interpolation, normalization; then every image is pinned,
  every service but tally has a health check and is waited for healthy, every file it mounts
  is in the repository, no password is in it, each TALLY_* variable is one of tallyd's and the
  stop grace period covers drain plus stop timeout; Prometheus's configuration passes
  `promtool check config`;
- its tally service is run as written (image, user, read-only root, environment, secrets at
  /run/secrets/NAME) with podman on the host's network against the test's MariaDB, Redis and
  Kafka: only the addresses differ (and the test MariaDB's CA is mounted beside, since it
  wants TLS). Prometheus's token scrapes /metrics, the site's token likes, SIGTERM exits 0.
"""
import json
import os
import re
import shutil
import subprocess
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from tallyd import BINARY, MYSQL, REDIS
from test_image import TAG, UID, VERSION, Container, podman, wait_for
from test_image import container, image  # noqa: F401  (fixtures)

pytestmark = pytest.mark.release

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
COMPOSE = os.path.join(ROOT, "deploy/compose.yaml")
KAFKA = os.environ.get("TALLY_TEST_KAFKA")
CTL = os.environ.get("TALLYCTL", os.path.join(os.path.dirname(BINARY), "tallyctl"))


@pytest.fixture(scope="session")
def project():
    """deploy/compose.yaml as compose-go loads it (JSON of its project)."""
    if not shutil.which("go"):
        pytest.skip("needs Go to build tests/compose (compose-go)")
    out = os.path.join(ROOT, ".cache/go/bin/composecheck")
    env = dict(os.environ, GOFLAGS="-mod=readonly -buildvcs=false", GOTOOLCHAIN="local",
               GOPATH=f"{ROOT}/.cache/go", GOMODCACHE=f"{ROOT}/.cache/go/mod",
               GOCACHE=f"{ROOT}/.cache/go/build")
    subprocess.run(["go", "build", "-trimpath", "-o", out, "."], cwd=f"{ROOT}/tests/compose",
                   env=env, check=True, capture_output=True, timeout=600)
    p = subprocess.run([out, COMPOSE], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_compose_loads_and_holds_together(project):
    services = project["services"]
    assert set(services) == {"tally", "mariadb", "redis", "kafka", "prometheus", "grafana"}
    assert services["tally"]["image"] == f"localhost/{TAG}", "the tally image is not VERSION's"
    for name, s in services.items():
        repo, _, tag = s["image"].rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: image not pinned by tag"
        assert s.get("healthcheck", {}).get("test"), f"{name} has no health check"
        for dep, how in (s.get("depends_on") or {}).items():
            want = "service_healthy" if services[dep].get("healthcheck") else "service_started"
            assert how["condition"] == want, f"{name} waits for {dep} {how['condition']}"
        for v in s.get("volumes") or []:
            if v["type"] == "bind":
                assert v["source"].startswith(ROOT + "/deploy/") and os.path.exists(v["source"]), v
                assert v.get("read_only"), f"{name} mounts {v['source']} writable"
        for k, v in (s.get("environment") or {}).items():
            assert not re.search(r"://[^/@]*:[^/@]*@", v or ""), f"{name}: a password in {k}"
            assert "PASSWORD" not in k or k.endswith("_FILE"), f"{name}: {k} is not a file"
        for sec in s.get("secrets") or []:
            assert sec["source"] in project["secrets"]
            assert sec["target"] == f"/run/secrets/{sec['source']}"
    grafana = {v["target"]: v["source"] for v in services["grafana"]["volumes"]}
    assert grafana["/var/lib/grafana/dashboards/tally.json"] == f"{ROOT}/deploy/grafana/tally.json"

    tally = services["tally"]
    assert tally["user"] == f"{UID}:{UID}" and tally["read_only"]
    env = tally["environment"]
    # Its health check is the image's own probe of /readyz on the port it listens on.
    port = env["TALLY_LISTEN"].rpartition(":")[2]
    assert tally["healthcheck"]["test"] == ["CMD", "/usr/local/bin/tallyctl", "probe",
                                            f"http://127.0.0.1:{port}/readyz"]
    help_text = subprocess.run([BINARY, "--help"], capture_output=True, text=True).stdout
    with open(os.path.join(ROOT, "src/config.c")) as f:
        known = set(re.findall(r'"(TALLY_[A-Z_]+)"', f.read()))
    assert "TALLY_LISTEN" in help_text and set(env) <= known, set(env) - known
    budget_s = (int(env["TALLY_DRAIN_MS"]) + int(env["TALLY_STOP_TIMEOUT_MS"])) / 1000
    grace = int(re.fullmatch(r"(\d+)s", tally["stop_grace_period"]).group(1))
    assert grace > budget_s, "the grace period ends before tallyd may have stopped"

    # Prometheus scrapes tally's address with the token compose gives it.
    prom = services["prometheus"]
    conf = next(v["source"] for v in prom["volumes"] if v["target"].endswith("prometheus.yml"))
    with open(conf) as f:
        text = f.read()
    assert "tally:8080" in text and "/run/secrets/prometheus_token" in text
    assert {s["source"] for s in prom["secrets"]} == {"prometheus_token"}
    if shutil.which("promtool"):
        p = subprocess.run(["promtool", "check", "config", "--syntax-only", conf],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.skipif(not (MYSQL and REDIS and KAFKA),
                    reason="needs MariaDB, Redis and Kafka (make services-up)")
def test_compose_tally_service_runs_as_written(project, image, container, db, tmp_path):  # noqa: F811
    svc = project["services"]["tally"]
    env = dict(svc["environment"])
    # Only the addresses change: the test servers instead of the compose network's.
    mysql = urlsplit(db.url)
    opts = dict(parse_qsl(mysql.query))
    ca, opts["ssl_ca"] = opts["ssl_ca"], "/run/test-ca.pem"
    bus = urlsplit(env["TALLY_BUS"])
    topic = f"tally-compose-{os.getpid()}-{int(time.time())}"
    bus_opts = dict(parse_qsl(bus.query), group=topic)
    env["TALLY_BUS"] = urlunsplit(bus._replace(netloc=KAFKA, path="/" + topic,
                                               query=urlencode(bus_opts)))
    site, prom = (subprocess.run([CTL, "key", name, scopes], capture_output=True, text=True,
                                 check=True).stdout.splitlines()
                  for name, scopes in (("site-backend", "read,write"), ("prometheus", "metrics")))
    values = {"tally_store_url": urlunsplit(mysql._replace(query=urlencode(opts, safe="/"))),
              "tally_cache_url": REDIS, "tally_keys": f"{site[1]}\n{prom[1]}"}
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    mounts = [(ca, "/run/test-ca.pem")]
    for sec in svc["secrets"]:
        path = secrets / sec["source"]
        path.write_text(values[sec["source"]] + "\n")
        path.chmod(0o444)    # as deploy/compose/secrets.sh leaves them
        mounts.append((str(path), sec["target"]))
    c = container(env={k: v for k, v in env.items() if k != "TALLY_LISTEN"}, mounts=mounts)
    wait_for(c.ready, "the compose tally's /readyz", timeout=60)
    probe = svc["healthcheck"]["test"][1:]  # its health check, on the test's port
    probe[-1] = probe[-1].replace(env["TALLY_LISTEN"].rpartition(":")[2], str(c.port), 1)
    p = podman("exec", c.name, *probe, check=False)
    assert p.returncode == 0, p.stdout + p.stderr

    assert c.api.get("/metrics", token="").status == 401
    assert c.api.get("/metrics", token=prom[0]).status == 200
    r = c.api.request("PUT", "/v1/users/42/likes/article/7", token=site[0])
    assert r.status == 200 and r.json["like_cnt"] == 1, r
    grace = int(svc["stop_grace_period"].rstrip("s"))
    c.api.stop()
    podman("stop", "-t", str(grace), c.name, timeout=grace + 30)
    assert c.state()["ExitCode"] == 0, c.logs()
    assert db.sql("SELECT like_cnt FROM interactive WHERE biz = 'article' AND biz_id = 7") == [(1,)]
