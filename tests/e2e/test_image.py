"""The container image (`make image`, deploy/image/) runs tally as the docs say it does.

The image is built once per session from the binaries under test (scripts/image.sh with the
build directory of TALLYD; a second build of the same binaries is skipped by the script),
and run with podman as production would run it: a read-only root, uid 10001, the store on a
volume, the settings in TALLY_* variables and the URLs with passwords in mounted files
(@PATH). Host networking (the machine's podman has no other network here), on a free port.

- the image: labels, the user, no shell, every library the binaries load, its size, and the
  default that refuses an open API off loopback;
- the README's tour against the container (its parser and matching, from
  test_readme_tour.py), then a burst of reads and `podman stop` (SIGTERM to tallyd as PID 1):
  exit status 0 and every accepted read in the store on the volume, checked by the image's
  own tallyctl and by the host's SQLite;
- against MariaDB + Redis + Kafka (`make services-up`): a like and a read counted.

The image carries the release build: these tests are marked `release` and skip on a
sanitized build, and each runs in one of make test's two release passes (the tour on the
embedded default, the servers' test in the MariaDB + Redis pass). They skip, saying why,
where podman cannot run.
"""
import json
import os
import re
import subprocess
import time
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import pytest

from tallyd import BINARY, MYSQL, REDIS, Tallyd, free_port
from test_readme_tour import README, TOUR_ADDRESS, output_matches, reads_settled, tour_steps

pytestmark = pytest.mark.release

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
CONF = os.path.join(ROOT, "deploy/image/containers.conf")
KAFKA = os.environ.get("TALLY_TEST_KAFKA_SASL")
UID = 10001
with open(os.path.join(ROOT, "VERSION")) as f:
    VERSION = f.read().strip()
TAG = f"tally:{VERSION}"


def podman(*args, check=True, timeout=120):
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout,
                          check=check, env=dict(os.environ, CONTAINERS_CONF=CONF))


def wait_for(cond, what, timeout=20):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture(scope="session")
def image():
    """tally:VERSION built from the binaries under test (TALLYD's build directory)."""
    build = os.path.dirname(os.path.abspath(BINARY))
    ldd = subprocess.run(["ldd", BINARY], capture_output=True, text=True).stdout
    if re.search(r"lib[at]san", ldd):
        pytest.skip("the image carries the release build: tested in make test's release pass")
    if os.geteuid() != 0:
        pytest.skip("podman runs the image as root here (no uidmap for rootless podman)")
    subprocess.run([f"{ROOT}/scripts/deps.sh", "image"], check=True, capture_output=True)
    info = podman("info", check=False)
    if info.returncode != 0:
        pytest.skip(f"podman cannot run here: {info.stderr.strip()[-300:]}")
    t0 = time.monotonic()
    p = subprocess.run([f"{ROOT}/scripts/image.sh", build], capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, f"scripts/image.sh failed:\n{p.stdout}\n{p.stderr}"
    print(p.stdout.strip(), f"({time.monotonic() - t0:.1f} s)")
    return json.loads(podman("image", "inspect", TAG).stdout)[0]


class Container:
    """One detached tallyd container on the host's network; removed at the end."""

    def __init__(self, tmp_path, data, env=None, mounts=()):
        self.port = free_port()
        self.name = f"tally-test-{os.getpid()}-{self.port}"
        args = ["run", "-d", "--name", self.name, "--read-only", "--read-only-tmpfs=false",
                "--user", f"{UID}:{UID}", "--network", "host", "-v", f"{data}:/var/lib/tally",
                "-e", f"TALLY_LISTEN=127.0.0.1:{self.port}",
                # The image's own probe, as an orchestrator's health check runs it (podman
                # healthcheck run; no timer here: systemd is not running).
                "--health-cmd", json.dumps(["/usr/local/bin/tallyctl", "probe",
                                            f"http://127.0.0.1:{self.port}/readyz"]),
                "--health-interval", "disable"]
        for k, v in (env or {}).items():
            args += ["-e", f"{k}={v}"]
        for host, inside in mounts:
            args += ["-v", f"{host}:{inside}:ro"]
        podman(*args, TAG)
        self.api = Tallyd(tmp_path, port=self.port)   # its HTTP helpers; never started

    def ready(self):
        try:
            return self.api.get("/readyz").status == 200
        except OSError:
            assert self.state()["Running"], f"the container stopped:\n{self.logs()}"
            return False

    def state(self):
        return json.loads(podman("inspect", self.name).stdout)[0]["State"]

    def logs(self):
        p = podman("logs", self.name, check=False)
        return p.stdout + p.stderr

    def stop(self):
        """SIGTERM (podman stop), up to 30 s before SIGKILL; the exit status."""
        self.api.stop()
        podman("stop", "-t", "30", self.name, timeout=60)
        return self.state()["ExitCode"]

    def remove(self):
        podman("rm", "-f", self.name, check=False)


@pytest.fixture
def container(tmp_path):
    """Starts containers on a data directory owned by the image's user; removes them."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    os.chown(data, UID, UID)
    started = []

    def start(**kw):
        c = Container(tmp_path, data, **kw)
        started.append(c)
        return c

    start.data = data
    yield start
    for c in started:
        c.remove()


def tallyctl_in_image(data, *args):
    """The image's tallyctl on the data volume, as the image's user, root read-only."""
    return podman("run", "--rm", "--read-only", "--user", f"{UID}:{UID}", "--network", "none",
                  "-v", f"{data}:/var/lib/tally", "--entrypoint", "/usr/local/bin/tallyctl",
                  TAG, *args, check=False)


def test_image_is_small_unprivileged_and_refuses_an_open_api(image):
    labels = image["Labels"]
    said = subprocess.run([BINARY, "--version"], capture_output=True, text=True).stdout
    short = re.search(r"\(([0-9a-f]+|unknown);", said).group(1)
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.revision"].startswith(short), labels
    assert labels["org.opencontainers.image.source"]
    cfg = image["Config"]
    assert cfg["User"] == f"{UID}:{UID}"
    assert cfg["Entrypoint"] == ["/usr/local/bin/tallyd"]
    assert "TALLY_STORE=sqlite:/var/lib/tally/tally.db" in cfg["Env"]
    assert image["Size"] < 40 * 1024 * 1024, f"the image is {image['Size']} bytes"
    # The loader maps every library a binary needs before main(): both start in the image.
    for entry in ("/usr/local/bin/tallyd", "/usr/local/bin/tallyctl"):
        p = podman("run", "--rm", "--network", "none", "--entrypoint", entry, TAG,
                   "--version", check=False)
        assert p.returncode == 0 and p.stdout.startswith(f"{os.path.basename(entry)} {VERSION}"), \
            p.stdout + p.stderr
    for shell in ("/bin/sh", "/usr/bin/sh", "/bin/bash"):
        p = podman("run", "--rm", "--network", "none", "--entrypoint", shell, TAG, "-c", "true",
                   check=False)
        assert p.returncode != 0, f"{shell} runs in the image"
    # The defaults (0.0.0.0:8080, no keys) are refused: an open API needs TALLY_INSECURE=1.
    p = podman("run", "--rm", "--network", "none", TAG, check=False)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "refusing an open API on 0.0.0.0:8080" in p.stderr


@pytest.mark.skipif(bool(MYSQL), reason="the tour runs on the image in the embedded pass")
def test_image_readme_tour_then_sigterm_delivers_every_read(image, container):
    # Partial batches wait 2 s, so reads are still in memory when the stop comes.
    c = container(env={"TALLY_FLUSH_MS": "2000"})
    wait_for(c.ready, "the container's /readyz")
    p = podman("healthcheck", "run", c.name, check=False)  # tallyctl probe, inside the image
    assert p.returncode == 0, p.stdout + p.stderr
    with open(README) as f:
        steps = tour_steps(f.read())
    assert len(steps) >= 10
    wait_for(lambda: time.time() % 3600 < 3600 - 10, "the turn of the hour", timeout=15)
    wrong = []
    for cmd, expected in steps:
        wait_for(lambda: reads_settled(c.api), "the reads accepted to be counted")
        p = subprocess.run(["bash", "-o", "pipefail", "-c",
                            cmd.replace(TOUR_ADDRESS, f"localhost:{c.port}")],
                           capture_output=True, text=True, timeout=10)
        actual = p.stdout.rstrip("\n")
        if p.returncode != 0 or p.stderr or not output_matches(expected, actual):
            wrong.append(f"$ {cmd}\n--- README shows:\n{expected}\n--- it printed "
                         f"(exit {p.returncode}):\n{actual}\n{p.stderr}")
    assert not wrong, f"{len(wrong)} of {len(steps)} tour outputs are wrong:\n\n" + \
        "\n\n".join(wrong)

    accepted = 0
    for i in range(1500):
        r = c.api.request("POST", "/v1/items/article/9/reads", {"uid": 1000 + i})
        accepted += r.status in (200, 202) and r.json.get("accepted") is True
    pending = c.api.metric("tally_read_events_queued_total") - \
        c.api.metric("tally_read_events_applied_total")
    assert accepted == 1500 and pending > 0, (accepted, pending)
    rc = c.stop()
    assert rc == 0, f"tallyd exited with {rc}:\n{c.logs()}"
    assert "lost" not in c.logs()

    import sqlite3
    con = sqlite3.connect(f"{container.data}/tally.db")
    try:
        rows = dict(con.execute("SELECT biz_id, read_cnt FROM interactive WHERE biz = 'article'"))
    finally:
        con.close()
    assert rows.get(9) == accepted and rows.get(7) == 2, rows
    assert os.stat(f"{container.data}/tally.db").st_uid == UID
    p = tallyctl_in_image(container.data, "check", "--store", "sqlite:/var/lib/tally/tally.db")
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.skipif(not (MYSQL and REDIS and KAFKA),
                    reason="needs MariaDB, Redis and Kafka (make services-up)")
def test_image_on_mariadb_redis_kafka_with_secret_files(image, container, db, tmp_path):
    # The URLs with passwords are files mounted read-only (TALLY_*=@PATH), as are MariaDB's
    # CA: the store URL names it where the container sees it.
    mysql = urlsplit(db.url)
    opts = dict(parse_qsl(mysql.query))
    ca, opts["ssl_ca"] = opts["ssl_ca"], "/run/secrets/db-ca.pem"
    topic = f"tally-image-{os.getpid()}-{int(time.time())}"
    kafka = urlsplit(KAFKA)
    files = {"store.url": urlunsplit(mysql._replace(query=urlencode(opts, safe="/"))),
             "cache.url": REDIS,
             "bus.url": f"kafka://{kafka.netloc}/{topic}?group={topic}&partitions=1&{kafka.query}"}
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    mounts = [(ca, "/run/secrets/db-ca.pem")]
    for name, text in files.items():
        path = secrets / name
        path.write_text(text + "\n")
        os.chown(path, UID, UID)
        path.chmod(0o400)
        mounts.append((str(path), f"/run/secrets/{name}"))
    c = container(env={"TALLY_STORE": "@/run/secrets/store.url",
                       "TALLY_CACHE": "@/run/secrets/cache.url",
                       "TALLY_BUS": "@/run/secrets/bus.url"}, mounts=mounts)
    wait_for(c.ready, "the container's /readyz (store, cache, Kafka partitions)", timeout=60)

    r = c.api.request("PUT", "/v1/users/42/likes/article/7")
    assert r.status == 200 and r.json["like_cnt"] == 1, r
    r = c.api.request("POST", "/v1/items/article/7/reads", {"uid": 42})
    assert r.status in (200, 202) and r.json == {"accepted": True}, r
    wait_for(lambda: c.api.get("/v1/items/article/7").json["read_cnt"] == 1,
             "the read counted through Kafka")
    rc = c.stop()
    logs = c.logs()
    assert rc == 0, f"tallyd exited with {rc}:\n{logs}"
    assert db.sql("SELECT read_cnt, like_cnt FROM interactive WHERE biz = 'article' "
                  "AND biz_id = 7") == [(1, 1)]
    passwords = [unquote(mysql.password), unquote(urlsplit(REDIS).password or ""),
                 dict(parse_qsl(kafka.query)).get("sasl.password")]
    for pw in filter(None, passwords):
        assert pw not in logs, "a password in the container's log"
