"""Start the real tallyd binary and speak HTTP to it.

Used by the end-to-end tests: every test talks to a separate tallyd process
over a real socket, exactly as a content site's backend would.
"""
import contextlib
import http.client
import itertools
import json
import os
import select
import signal
import socket
import subprocess
import time
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

BINARY = os.environ.get("TALLYD", os.path.join(os.path.dirname(__file__), "../../build/tallyd"))
# Set by `make test` for the MariaDB + Redis run; unset means the embedded default.
# scripts/services.sh secures both: mysql://tally:PASS@host:port/db?ssl=1&ssl_ca=PATH (the
# password percent-encoded) and redis://:PASS@host:port.
MYSQL = os.environ.get("TALLY_TEST_MYSQL")
REDIS = os.environ.get("TALLY_TEST_REDIS")
# make test-cluster runs the API and cache suites on scripts/cluster.sh's clusters: Galera
# behind HAProxy as the store, a Redis Cluster over TLS (rediss-cluster://) as the cache.
CLUSTER = bool(REDIS and urlsplit(REDIS).scheme.endswith("-cluster"))


def mysql_cli(url, db=None):
    """(argv, env) for the mariadb client from a mysql:// URL: its TLS options, and the
    password in MYSQL_PWD rather than in argv."""
    u = urlsplit(url)
    opts = dict(parse_qsl(u.query))
    args = ["mariadb", "--no-defaults", "-h", u.hostname, "-P", str(u.port or 3306),
            f"-u{unquote(u.username)}", "--batch", "--skip-column-names"]
    if opts.get("ssl") == "1":
        args.append("--ssl")
        if "ssl_ca" in opts:
            args += [f"--ssl-ca={opts['ssl_ca']}", "--ssl-verify-server-cert"]
    env = dict(os.environ, MYSQL_PWD=unquote(u.password or ""))
    return args + [db or u.path.lstrip("/")], env


def with_path(url, path):
    """url with its path replaced (its options kept)."""
    return urlunsplit(urlsplit(url)._replace(path="/" + path))


def redis_cli(*args, url=None, check=True, plain=False):
    """Runs redis-cli against the test Redis (authenticated as the URL says); its stdout.
    A rediss:// or tls=1 URL speaks TLS (with its tls_ca); a redis(s)-cluster:// one asks its
    first node and follows redirects (-c)."""
    u = urlsplit(url or REDIS)
    opts = dict(parse_qsl(u.query))
    host, _, port = _first_node(url or REDIS).rpartition(":")  # a cluster's first seed
    argv = ["redis-cli", "-h", host.strip("[]"), "-p", port or "6379"]
    if u.scheme.startswith("rediss") or opts.get("tls") == "1":
        argv += ["--tls"] + (["--cacert", opts["tls_ca"]] if "tls_ca" in opts else [])
    if u.scheme.endswith("-cluster") and not plain:  # plain: --cluster call routes itself
        argv.append("-c")
    if u.username:
        argv += ["--user", unquote(u.username)]
    env = dict(os.environ, REDISCLI_AUTH=unquote(u.password or ""))
    return subprocess.run(argv + list(args), capture_output=True, text=True, env=env,
                          check=check).stdout.strip()


class Database:
    """A fresh, empty store for one test: a SQLite file or a new MariaDB database."""

    def __init__(self, tmp_path):
        if MYSQL:
            self.name = f"tally_t{os.getpid()}_{next(_seq)}"
            self.url = with_path(MYSQL, self.name)
            self.sql(f"DROP DATABASE IF EXISTS {self.name}; CREATE DATABASE {self.name}",
                     db="mysql")
        else:
            self.path = f"{tmp_path}/tally.db"
            self.url = f"sqlite:{self.path}"

    def sql(self, query, params=(), db=None):
        """Rows of a query, as tuples of strings/ints (params: ? placeholders, ints only)."""
        for p in params:
            query = query.replace("?", str(int(p)), 1)
        if MYSQL:
            args, env = mysql_cli(self.url, db)
            out = subprocess.run(args + ["-e", query], check=True, capture_output=True,
                                 text=True, env=env).stdout
            return [tuple(int(v) if v.lstrip("-").isdigit() else v for v in line.split("\t"))
                    for line in out.splitlines()]
        import sqlite3
        con = sqlite3.connect(self.path)
        try:
            return con.execute(query).fetchall()
        finally:
            con.close()

    def transitions_applied(self, timeout=30):
        """Waits until tallyd moved every like's and collection's transition into the hours
        and windows: MariaDB queues them (transition_queue, emptied by tallyd every 100 ms);
        SQLite's writes add them themselves. Polls every 50 ms up to the deadline."""
        if not MYSQL:
            return
        deadline = time.monotonic() + timeout
        while self.sql("SELECT count(*) FROM transition_queue")[0][0]:
            assert time.monotonic() < deadline, f"transitions still queued after {timeout} s"
            time.sleep(0.05)

    def drop(self):
        if MYSQL:
            self.sql(f"DROP DATABASE IF EXISTS {self.name}", db="mysql")


def report(name, **figures):
    """Records measured figures (make test prints them at the end)."""
    path = os.environ.get("TALLY_REPORT")
    line = json.dumps({"test": name, **figures})
    print(line)
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def redis_all(*args):
    """Runs a command on every master: the one node, or each master of a cluster."""
    if CLUSTER:
        return redis_cli("--cluster", "call", _first_node(REDIS), *args,
                         "--cluster-only-masters", plain=True)
    return redis_cli(*args)


def _first_node(url):
    return urlsplit(url).netloc.rsplit("@", 1)[-1].split(",")[0]


def flush_redis():
    if REDIS:
        redis_all("FLUSHALL")


_seq = itertools.count()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.status} {self.body[:200]!r}>"


class Tallyd:
    """One tallyd process. args are extra flags; store defaults to a file in tmp_path.

    token: sent as `Authorization: Bearer TOKEN` on every request unless the request gives
    its own (token="" sends none). tls: an ssl.SSLContext to speak HTTPS with.
    """

    def __init__(self, tmp_path, *args, env=None, store=None, cache=None, token=None, tls=None,
                 port=None):
        self.port = port or free_port()
        self.store = store or f"sqlite:{tmp_path}/tally.db"
        self.cache = cache or REDIS or "none"
        self.args = [BINARY, "--listen", f"127.0.0.1:{self.port}", "--store", self.store,
                     "--cache", self.cache, *args]
        self.env = dict(os.environ, **(env or {}))
        self.log_path = os.path.join(str(tmp_path), f"tallyd-{self.port}.log")
        self.proc = None
        self._conn = None
        self.token = token
        self.tls = tls

    def start(self, wait=True):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=self.log, stderr=self.log)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tallyd exited with {self.proc.returncode}: {self.output()}")
            try:
                if self.request("GET", "/healthz").status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("tallyd did not become ready")

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Stops tallyd and returns its exit status."""
        if self._conn:
            self._conn.close()
            self._conn = None
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        finally:
            self.log.close()
        self.proc = None
        return rc

    def connect(self):
        if self.tls:
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=30,
                                               context=self.tls)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def request(self, method, path, body=None, headers=None, conn=None, token=None):
        """One request on a kept-alive connection (or the one given), with self.token or
        the token given ("" for none) unless headers carry an Authorization."""
        own = conn is None
        if own:
            if self._conn is None:
                self._conn = self.connect()
            conn = self._conn
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        headers = dict(headers or {})
        token = self.token if token is None else token
        if token and not any(k.lower() == "authorization" for k in headers):
            headers["Authorization"] = f"Bearer {token}"
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
        except (http.client.HTTPException, OSError):
            if own:
                self._conn.close()
                self._conn = None
            raise
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data.decode())

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def metric(self, name):
        """Sum of every series of a counter or gauge in /metrics."""
        total = 0
        for line in self.get("/metrics").body.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total


@contextlib.contextmanager
def store_write_lock(db):
    """Holds the store's write lock from another client until the block ends: SQLite's
    RESERVED lock with an insert pending, or, in MariaDB, a transaction holding InnoDB's
    next-key locks on every row and gap of what a like writes (readers still see the last
    committed rows, as InnoDB's consistent reads do)."""
    if MYSQL:
        args, env = mysql_cli(db.url)  # mariadb --no-defaults ... (that one must come first)
        p = subprocess.Popen([*args[:2], "--unbuffered", *args[2:]], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            p.stdin.write("BEGIN;\nSELECT COUNT(*) FROM interactive FOR UPDATE;\n"
                          "SELECT COUNT(*) FROM user_like FOR UPDATE;\nSELECT 'locked';\n")
            p.stdin.flush()
            # Raw reads of the pipe: a buffered readline could take several lines at once
            # and leave select() waiting on an empty pipe for a marker already read.
            deadline, out = time.monotonic() + 10, b""
            while b"\nlocked\n" not in b"\n" + out:  # the counts come first, then the marker
                ready, _, _ = select.select([p.stdout], [], [], max(0, deadline - time.monotonic()))
                chunk = os.read(p.stdout.fileno(), 4096) if ready else b""
                if not chunk:
                    break
                out += chunk
            if b"\nlocked\n" not in b"\n" + out:
                p.kill()
                raise AssertionError(f"could not lock the tables: {out!r} {p.stderr.read()}")
            yield
        finally:
            if p.poll() is None:
                p.stdin.write("ROLLBACK;\n")
                p.stdin.close()
                p.wait(10)
    else:
        import sqlite3
        con = sqlite3.connect(db.path, timeout=10, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            con.execute("INSERT INTO interactive (biz, biz_id, ctime, utime)"
                        " VALUES ('lock', 1, 0, 0)")
            yield
        finally:
            con.execute("ROLLBACK")
            con.close()
