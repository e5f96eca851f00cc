#!/usr/bin/env python3
"""tally's benchmarks: every figure side by side in one run, as ratios.

    bench/run.py [--quick]

Run by `make bench` (and `make bench QUICK=1`), which builds everything and starts MariaDB,
Redis and Kafka first. Measures, on this machine:

1. the HTTP path with wrk (same threads, connections and duration for every target; the
   server under test pinned to CPU 0, wrk to CPU 1): a bare libevent "hello" server
   (bench/hello.c, the ceiling the ratios are taken against), tallyd's own HTTP layer
   serving the same body (bench/hello_tally.c), then tallyd's endpoints;
2. read-event ingest from Kafka into MariaDB: 1,000,000 events (uniform and Zipf s=1.1 over
   100,000 items) with the batch consumer and with --batch 1, and the drain rate against
   the batch size;
3. write amplification (store statements and Redis calls per API call) and memory;
4. trending windows: 1,000,000 reads with ts spread over the last 24 hours across 100,000
   items, ingested from Kafka with --windows on and off (MariaDB + Redis, and SQLite), then
   the p99 of GET /v1/top/article?by=read_cnt&window=24h (and 7d) over that data;
5. the peer: bench/course, a Go service built on the webook course's design (gin, gorm,
   go-redis, sarama; see bench/course/main.go), measured with exactly the same method as
   tallyd on every MariaDB + Redis workload of part 1 and on the ingest of part 2 (same
   events, fresh database, flushed Redis), each figure with its tally / course ratio;
   after each run both are checked: every produced read counted (the sum of read_cnt),
   like_cnt equal to the active like rows of every item, and every cached Redis hash equal
   to its row. A failing check of tallyd's makes this script exit 1; the peer's are
   reported as figures.

6. bad tokens: a flood of distinct, well-formed RS256 tokens with forged signatures from
   one address (wrk, 256 connections, no credential needed) while two probes measure
   /livez and a GET with an API key, each also measured before the flood;
7. gRPC: on part 1's MariaDB + Redis tallyd (--grpc-listen), intr.v1 Get (warm, with uid)
   and Like/CancelLike beside their HTTP rows, with bench/grpcload (the client
   protoc-gen-go-grpc makes; the same connections, calls in flight, duration and CPU as
   wrk), each as a gRPC ÷ HTTP ratio; then gRPC's C core serving a fixed answer
   (bench/grpc_core_hello.c, where libgrpc-dev is installed) beside tallyd's Get on SQLite:
   calls/s, the threads each process runs, RSS.

    bench/run.py --only windows [--window-events N]   runs part 4 alone
    bench/run.py --only auth                          runs part 6 alone
    bench/run.py --only course|course-http|course-ingest
                                                      runs part 5 alone (tallyd and the peer)
    bench/run.py --only grpc                          runs part 7 alone (and its HTTP rows)

Binaries come from $BENCH_BUILD (make bench sets it to its BUILD), ./build by default.

Writes bench/results/latest.json, latest.md (the Markdown tables) and three PNG charts
(batch.png, latency.png, course.png).
Traffic goes to 127.0.0.1 only; every loop is bounded in time.
"""
import http.client
import json
import os
import platform
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.environ.get("BENCH_BUILD") or os.path.join(ROOT, "build")
RESULTS = os.path.join(ROOT, "bench", "results")
QUICK = "--quick" in sys.argv
ONLY = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
WINDOW_EVENTS = (int(sys.argv[sys.argv.index("--window-events") + 1])
                 if "--window-events" in sys.argv else 200_000 if QUICK else 1_000_000)

WRK = dict(threads=1, conns=32, seconds=2 if QUICK else 10)
INGEST_EVENTS = 100_000 if QUICK else 1_000_000
INGEST_ITEMS = 100_000
SWEEP = [1, 10, 100, 1000, 10000]
BATCH = 10000  # tallyd's default --batch
SWEEP_SECONDS = 2 if QUICK else 8
SERVER_CPU, LOAD_CPU = "0", "1"
COURSE_BIN = os.path.join(BUILD, "bench", "course")
COURSE_DRAIN_S = 1800  # the peer drains 10 events per transaction: give it time
IDS20 = ",".join(str(i) for i in range(1, 21))
# Part 1's workloads on MariaDB + Redis, run on tallyd and on the peer alike.
MARIADB_HTTP = [
    ("GET item, MariaDB+Redis warm", "/v1/items/article/7", ""),
    ("GET item ?uid, MariaDB+Redis warm", "/v1/items/article/7?uid=42", ""),
    ("GET 20 items, MariaDB+Redis warm", f"/v1/items/article?ids={IDS20}", ""),
    ("GET 20 items ?uid, MariaDB+Redis warm", f"/v1/items/article?ids={IDS20}&uid=42", ""),
]
LIKES_NAME = "PUT/DELETE like, MariaDB+Redis"
# Part 7's rows on the same tallyd, each beside the HTTP row it is the gRPC form of.
GRPC_ROWS = [("gRPC Get ?uid, MariaDB+Redis warm", "Get", "GET item ?uid, MariaDB+Redis warm", 0),
             ("gRPC Get ?uid, 1 connection, MariaDB+Redis warm", "Get",
              "GET item ?uid, MariaDB+Redis warm", 1),
             ("gRPC Like/CancelLike, MariaDB+Redis", "Like", LIKES_NAME, 0)]
GRPCLOAD_BIN = os.path.join(BUILD, "bench", "grpcload")
GRPC_HELLO_BIN = os.path.join(BUILD, "bench", "grpc_core_hello")
KAFKA_NAME = "POST reads, Kafka bus, MariaDB+Redis"

# NAME='VALUE' lines; the URLs carry the services' test passwords and TLS options.
URLS = dict(shlex.split(line)[0].split("=", 1) for line in subprocess.run(
    [os.path.join(ROOT, "scripts/services.sh"), "urls"], capture_output=True, text=True,
    check=True).stdout.splitlines())
MYSQL, REDIS, KAFKA = URLS["TALLY_TEST_MYSQL"], URLS["TALLY_TEST_REDIS"], URLS["TALLY_TEST_KAFKA"]

REPORT_LUA = """
done = function(summary, latency, requests)
  local s = string.format('{"requests":%d,"seconds":%.3f,"errors":%d,"non2xx":%d,'
    .. '"p50_ms":%.3f,"p99_ms":%.3f,"p999_ms":%.3f}',
    summary.requests, summary.duration / 1e6,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000)
  io.write("WRK_JSON " .. s .. "\\n")
end
"""
POST_LUA = 'wrk.method = "POST"\n'
# Every request a new token: a user's header and claims, 256 random bytes for a signature.
FLOOD_LUA = """
local head, body = "%s", "%s"
local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
math.randomseed(os.time())
request = function()
  local sig = {}
  for i = 1, 342 do local k = math.random(1, 64); sig[i] = chars:sub(k, k) end
  wrk.headers["Authorization"] = "Bearer " .. head .. "." .. body .. "." .. table.concat(sig)
  return wrk.format(nil, "/v1/items/article/7")
end
"""
LIKES_LUA = """
math.randomseed(7)
local n = 0
request = function()
  n = n + 1
  local path = string.format("/v1/users/%d/likes/article/%d", math.random(1, 100000),
                             math.random(1, 10000))
  return wrk.format(n % 2 == 0 and "DELETE" or "PUT", path)
end
"""


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mysql(sql, db="mysql"):
    u = urlsplit(MYSQL)
    opts = dict(parse_qsl(u.query))
    tls = ["--ssl", f"--ssl-ca={opts['ssl_ca']}"] if "ssl_ca" in opts else []
    out = subprocess.run(["mariadb", "--no-defaults", "-h", u.hostname, "-P", str(u.port),
                          f"-u{unquote(u.username)}", *tls, "--batch", "--skip-column-names",
                          db, "-e", sql], capture_output=True, text=True, check=True,
                         env=dict(os.environ, MYSQL_PWD=unquote(u.password or "")))
    return out.stdout.strip()


def fresh_db(name):
    mysql(f"DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}")
    return urlunsplit(urlsplit(MYSQL)._replace(path="/" + name))


def questions():
    return int(mysql("SHOW GLOBAL STATUS LIKE 'Questions'").split()[1])


def connections():
    """MariaDB's count of connection attempts: a client that does not keep its connections
    open pays a TCP and TLS handshake for each."""
    return int(mysql("SHOW GLOBAL STATUS LIKE 'Connections'").split()[1])


def redis_cli(*args):
    u = urlsplit(REDIS)
    return subprocess.run(["redis-cli", "-h", u.hostname, "-p", str(u.port), *args],
                          capture_output=True, text=True,
                          env=dict(os.environ, REDISCLI_AUTH=unquote(u.password or ""))).stdout


def redis_calls():
    info = redis_cli("INFO", "stats")
    return int(re.search(r"total_commands_processed:(\d+)", info).group(1))


def redis_flush():
    redis_cli("FLUSHALL")


class Proc:
    """A server under test, pinned to SERVER_CPU, with its CPU time and memory."""

    def __init__(self, argv, port, ready_path="/healthz"):
        """ready_path None: ready once port accepts a connection (a gRPC-only server)."""
        self.port = port
        self.log = tempfile.TemporaryFile()
        self.p = subprocess.Popen(["taskset", "-c", SERVER_CPU, *argv], stdout=self.log,
                                  stderr=self.log)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if ready_path is None:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                else:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}{ready_path}",
                                           timeout=1).read()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{argv[0]} did not start")

    def cpu_s(self):
        fields = open(f"/proc/{self.p.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def mem_kib(self, field):
        for line in open(f"/proc/{self.p.pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
        return 0

    def threads(self):
        return len(os.listdir(f"/proc/{self.p.pid}/task"))

    def get(self, path):
        return urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10).read()

    def metric(self, name):
        text = self.get("/metrics").decode()
        return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
                   if l.startswith(name + " ") or l.startswith(name + "{"))

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(60)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def tallyd(*args, store=None, cache="none", bus="local", grpc=False):
    """grpc: also serve gRPC, on the port in the Proc's grpc_port."""
    port, gport = free_port(), free_port() if grpc else None
    store = store or f"sqlite:{tempfile.mkdtemp()}/bench.db"
    p = Proc([os.path.join(BUILD, "tallyd"), "--listen", f"127.0.0.1:{port}", "--store",
              store, "--cache", cache, "--bus", bus,
              *(["--grpc-listen", f"127.0.0.1:{gport}"] if gport else []), *args], port)
    p.grpc_port = gport
    return p


def course(db, topic):
    """The peer on database db, reading and writing topic (a group of its own)."""
    u = urlsplit(MYSQL)
    opts = dict(parse_qsl(u.query))
    dsn = f"{unquote(u.username)}:{unquote(u.password or '')}@tcp({u.hostname}:{u.port})/{db}"
    r = urlsplit(REDIS)
    port = free_port()
    return Proc([COURSE_BIN, "--listen", f"127.0.0.1:{port}", "--mysql-dsn", dsn,
                 *(["--mysql-ca", opts["ssl_ca"]] if "ssl_ca" in opts else []),
                 "--redis-addr", f"{r.hostname}:{r.port}",
                 "--redis-password", unquote(r.password or ""), "--kafka-brokers", KAFKA,
                 "--kafka-topic", topic, "--kafka-group", f"course-{db}"], port)


class Resp:
    """A minimal Redis client (RESP over a socket) for the cache checks: no module needed."""

    def __init__(self):
        u = urlsplit(REDIS)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=30)
        self.f = self.sock.makefile("rb")
        if u.password:
            self.pipeline([("AUTH", unquote(u.password))])

    def pipeline(self, cmds):
        out = bytearray()
        for c in cmds:
            out += b"*%d\r\n" % len(c)
            for a in c:
                a = str(a).encode()
                out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        return [self.read() for _ in cmds]

    def read(self):
        line = self.f.readline()[:-2]
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:-2].decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RuntimeError(f"redis: unexpected reply {line!r}")

    def close(self):
        self.f.close()
        self.sock.close()


# Each server's tables: (items, likes).
TABLES = {"tally": ("interactive", "user_like"), "course": ("interactives", "user_like_bizs")}


def check_likes(kind, db):
    """like_cnt against the active like rows of every item, and every cached hash against
    its row; run on a stopped server."""
    items, likes = TABLES[kind]
    rows = {}
    for line in mysql(f"SELECT biz, biz_id, read_cnt, like_cnt, collect_cnt FROM {items}",
                      db).splitlines():
        biz, bid, *cnt = line.split("\t")
        rows[f"{biz}:{bid}"] = [int(c) for c in cnt]
    active = {}
    for line in mysql(f"SELECT biz, biz_id, COUNT(*) FROM {likes} WHERE status = 1 "
                      "GROUP BY biz, biz_id", db).splitlines():
        biz, bid, n = line.split("\t")
        active[f"{biz}:{bid}"] = int(n)
    like_bad = sum(1 for k in rows.keys() | active.keys()
                   if (rows.get(k, [0, 0, 0])[1]) != active.get(k, 0))
    r = Resp()
    keys, cursor = [], "0"
    while True:
        cursor, batch = r.pipeline([("SCAN", cursor, "MATCH", "interactive:*", "COUNT", 1000)])[0]
        keys += batch
        if cursor == "0":
            break
    cached = cache_bad = 0
    for i in range(0, len(keys), 1000):
        chunk = keys[i:i + 1000]
        got = r.pipeline([("HMGET", k, "read_cnt", "like_cnt", "collect_cnt") for k in chunk])
        for k, v in zip(chunk, got):
            if v[0] is None and v[1] is None and v[2] is None:
                continue  # no counters: not cached (tallyd's fence fields only)
            cached += 1
            if [int(x or 0) for x in v] != rows.get(k.split(":", 1)[1], [0, 0, 0]):
                cache_bad += 1
    r.close()
    return {"items": len(rows), "like_cnt_sum": sum(v[1] for v in rows.values()),
            "active_likes": sum(active.values()), "like_cnt_mismatched_items": like_bad,
            "cached_items": cached, "cache_mismatched_items": cache_bad,
            "pass": like_bad == 0 and cache_bad == 0}


def check_reads(kind, db, events):
    """Every produced read counted: the sum of read_cnt against the events produced."""
    total = int(mysql(f"SELECT COALESCE(SUM(read_cnt), 0) FROM {TABLES[kind][0]}", db) or 0)
    return {"events": events, "read_cnt_sum": total, "missing": events - total,
            "pass": total == events}


def wrk(proc, path, script="", conns=None):
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script + REPORT_LUA)
    try:
        return loaded(proc, ["wrk", f"-t{WRK['threads']}", f"-c{conns or WRK['conns']}",
                             f"-d{WRK['seconds']}s", "-s", f.name,
                             f"http://127.0.0.1:{proc.port}{path}"], "WRK_JSON ")
    finally:
        os.unlink(f.name)


def grpcload(proc, port, method, conns=None):
    """bench/grpcload against port: WRK's connections (or conns), WRK's calls in flight and
    duration; the figures of wrk()."""
    return loaded(proc, [GRPCLOAD_BIN, "-conns", str(conns or WRK["conns"]), "-inflight",
                         str(WRK["conns"]), "-d", f"{WRK['seconds']}s", f"127.0.0.1:{port}",
                         method], "GRPC_JSON ")


def loaded(proc, argv, tag):
    """Runs the load generator argv on LOAD_CPU; its report (the line starting with tag)
    with the server's CPU, store and Redis calls and RSS over the run, and the share of
    its CPU the load generator used (near 100: the row measures the generator too)."""
    import resource

    cpu0, q0, r0, c0 = proc.cpu_s(), questions(), redis_calls(), connections()
    ru0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.time()
    out = subprocess.run(["taskset", "-c", LOAD_CPU, *argv],
                         capture_output=True, text=True, timeout=WRK["seconds"] + 60)
    ru, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.time() - t0
    cpu, q, r = proc.cpu_s() - cpu0, questions() - q0, redis_calls() - r0
    conns = connections() - c0
    line = next((l for l in out.stdout.splitlines() if l.startswith(tag)), None)
    if line is None:
        raise RuntimeError(f"{argv[0]}: no report: {out.stdout}{out.stderr}")
    res = json.loads(line[len(tag):])
    res["load_cpu_pct"] = round((ru.ru_utime + ru.ru_stime - ru0.ru_utime - ru0.ru_stime) /
                                wall * 100)
    n = max(res["requests"], 1)
    res["rps"] = round(res["requests"] / res["seconds"], 1)
    res["cpu_s_per_1k"] = round(cpu / n * 1000, 4)
    res["store_stmts_per_call"] = round(q / n, 2)
    res["store_connects_per_1k_calls"] = round(conns / n * 1000, 2)
    res["redis_calls_per_call"] = round(r / n, 2)
    res["peak_rss_mib"] = round(proc.mem_kib("VmHWM") / 1024, 1)
    return res


def bearer_lua(token):
    return f'wrk.headers["Authorization"] = "Bearer {token}"\n'


def credentials():
    """An API key (made by tallyctl) and an RS256 key pair with a user's token, in a temp dir."""
    import base64
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    d = tempfile.mkdtemp()
    out = subprocess.run([os.path.join(BUILD, "tallyctl"), "key", "bench", "read"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    with open(f"{d}/keys", "w") as f:
        f.write(out[1] + "\n")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with open(f"{d}/jwt.pem", "wb") as f:
        f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))

    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": "42", "exp": int(time.time()) + 3600}).encode())
    sig = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return {"keys": f"{d}/keys", "key_token": out[0], "jwt_key": f"{d}/jwt.pem",
            "jwt_token": f"{head}.{body}.{b64(sig)}", "jwt_head": head, "jwt_body": body}


def percentile(values, q):
    v = sorted(values)
    return round(v[min(len(v) - 1, int(len(v) * q))], 2) if v else None


class Probe(threading.Thread):
    """GETs path every 10 ms on one kept-alive connection, timing each; until stop is set."""

    def __init__(self, port, path, token=None):
        super().__init__(daemon=True)
        self.port, self.path, self.token = port, path, token
        self.ms, self.statuses, self.stop = [], {}, threading.Event()

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        while not self.stop.is_set():
            t0 = time.perf_counter()
            conn.request("GET", self.path, headers=headers)
            r = conn.getresponse()
            r.read()
            self.ms.append((time.perf_counter() - t0) * 1000)
            self.statuses[r.status] = self.statuses.get(r.status, 0) + 1
            time.sleep(0.01)
        conn.close()

    def figures(self):
        return {"p50_ms": percentile(self.ms, 0.5), "p99_ms": percentile(self.ms, 0.99),
                "samples": len(self.ms), "statuses": self.statuses}


def probed(t, creds, seconds, load=None):
    """/livez and a keyed GET probed for `seconds` (or while load() runs)."""
    probes = {"livez": Probe(t.port, "/livez"),
              "keyed GET": Probe(t.port, "/v1/items/article/7", creds["key_token"])}
    for p in probes.values():
        p.start()
    out = load() if load else time.sleep(seconds)
    for p in probes.values():
        p.stop.set()
        p.join()
    return out, {name: p.figures() for name, p in probes.items()}


def bench_auth_flood():
    """Part 6: distinct forged RS256 tokens from one address against the probes."""
    creds = credentials()
    keys = creds["keys"]
    with open(keys, "a") as f:  # the probes' key reads; an admin key reads the metrics
        admin = subprocess.run([os.path.join(BUILD, "tallyctl"), "key", "ops", "admin"],
                               capture_output=True, text=True, check=True).stdout.splitlines()
        f.write(admin[1] + "\n")
    t = tallyd("--keys", keys, "--jwt-key", creds["jwt_key"])
    _, quiet = probed(t, creds, WRK["seconds"])
    script = FLOOD_LUA % (creds["jwt_head"], creds["jwt_body"])
    log("auth: a flood of forged RS256 tokens, 256 connections")
    flood, loaded = probed(t, creds, None, lambda: wrk(t, "/v1/items/article/7", script, 256))
    req = urllib.request.Request(f"http://127.0.0.1:{t.port}/metrics",
                                 headers={"Authorization": f"Bearer {admin[0]}"})
    text = urllib.request.urlopen(req, timeout=10).read().decode()
    refused = {m.group(1): int(float(m.group(2))) for m in re.finditer(
        r'^tally_auth_token_refusals_total\{why="(\w+)"\} (\S+)$', text, re.M)}
    t.stop()
    return {"flood": {"rps": flood["rps"], "p99_ms": flood["p99_ms"],
                      "cpu_s_per_1k": flood["cpu_s_per_1k"], "refused": refused},
            "quiet": quiet, "flood_probes": loaded}


def auth_flood_markdown(a):
    f = a["flood"]
    rows = [f"Forged RS256 tokens from one address: {f['rps']:,.0f} requests/s for "
            f"{WRK['seconds']} s (256 connections, each token new), tallyd's CPU "
            f"{f['cpu_s_per_1k']:.3f} s per 1k; refused {f['refused']} (invalid: checked; "
            "remembered/throttled: refused unchecked).", "",
            "| probe | quiet p50 ms | quiet p99 ms | flood p50 ms | flood p99 ms | "
            "flood answers |", "| --- | ---: | ---: | ---: | ---: | --- |"]
    for name, q in a["quiet"].items():
        d = a["flood_probes"][name]
        rows.append(f"| {name} | {q['p50_ms']} | {q['p99_ms']} | {d['p50_ms']} | "
                    f"{d['p99_ms']} | {d['statuses']} |")
    return "\n".join(rows) + "\n"


def bench_http():
    results = {}

    def run(name, proc, path, script="", amplification=False):
        log(f"http: {name}")
        r = wrk(proc, path, script)
        if not amplification:
            r.pop("store_stmts_per_call")
            r.pop("redis_calls_per_call")
            r.pop("store_connects_per_1k_calls")
        results[name] = r

    port = free_port()
    hello = Proc([os.path.join(BUILD, "bench", "hello"), str(port), "2"], port, "/")
    run("hello (bare libevent)", hello, "/")
    hello.stop()
    hello = Proc([os.path.join(BUILD, "bench", "hello_tally"), str(port), "2"], port, "/")
    run("hello (tallyd's HTTP layer)", hello, "/")
    hello.stop()

    t = tallyd()
    t.get("/v1/items/article/7")
    results["_idle_rss_mib"] = round(t.mem_kib("VmRSS") / 1024, 1)
    run("GET item, SQLite", t, "/v1/items/article/7")
    run("POST reads, local bus", t, "/v1/items/article/7/reads", POST_LUA)
    t.stop()

    # What authentication adds to the same GET: an API key, then a user's RS256 token.
    creds = credentials()
    t = tallyd("--keys", creds["keys"], "--jwt-key", creds["jwt_key"])
    run("GET item, SQLite, API key", t, "/v1/items/article/7", bearer_lua(creds["key_token"]))
    run("GET item, SQLite, RS256 user token", t, "/v1/items/article/7",
        bearer_lua(creds["jwt_token"]))
    t.stop()

    results.update(mariadb_http("tally"))
    return results


def mariadb_http(kind, grpc_only=False):
    """Part 1's MariaDB + Redis workloads on tallyd or the peer, each on a fresh database and
    a flushed Redis, with the likes check; {name: figures, "_checks": ...,
    "_idle_rss_mib_mariadb": ...}. tallyd also answers part 7's gRPC rows (GRPC_ROWS);
    grpc_only: those and their HTTP rows alone."""
    results = {}
    http_rows = MARIADB_HTTP
    if grpc_only:
        http_rows = [w for w in MARIADB_HTTP if any(w[0] == g[2] for g in GRPC_ROWS)]
    stamp = int(time.time() * 1000) % 10**8

    def start(db, topic):
        redis_flush()
        fresh_db(db)
        if kind == "course":
            return course(db, topic)
        store = urlunsplit(urlsplit(MYSQL)._replace(path="/" + db))
        bus = f"kafka://{KAFKA}/{topic}?group=bench-{db}" if topic else "local"
        return tallyd(store=store, cache=REDIS, bus=bus, grpc=not topic)

    def run(name, proc, path, script=""):
        log(f"http ({kind}): {name}")
        results[name] = wrk(proc, path, script)

    def run_grpc(proc, method):
        for name, m, _, conns in GRPC_ROWS:
            if m == method:
                log(f"grpc ({kind}): {name}")
                results[name] = grpcload(proc, proc.grpc_port, method, conns)

    db = f"bench_http_{kind}_{stamp}"
    t = start(db, f"bench.http.{kind}.idle.{stamp}" if kind == "course" else None)
    results["_idle_rss_mib_mariadb"] = round(t.mem_kib("VmRSS") / 1024, 1)
    for _, path, _ in MARIADB_HTTP:
        t.get(path)
    for name, path, script in http_rows:
        run(name, t, path, script)
    if kind == "tally":
        run_grpc(t, "Get")
    run(LIKES_NAME, t, "/", LIKES_LUA)
    if kind == "tally":
        run_grpc(t, "Like")
    t.stop()
    checks = {"likes": check_likes(kind, db)}
    mysql(f"DROP DATABASE IF EXISTS {db}")
    if grpc_only:
        results["_checks"] = checks
        return results

    db = f"bench_kafka_{kind}_{stamp}"
    t = start(db, f"bench.http.{kind}.{stamp}")
    run(KAFKA_NAME, t, "/v1/items/article/7/reads", POST_LUA)
    t.stop()
    mysql(f"DROP DATABASE IF EXISTS {db}")
    results["_checks"] = checks
    return results


def bench_grpc_core():
    """Part 7's library comparison: gRPC's C core serving a fixed answer with 2 threads
    (bench/grpc_core_hello.c; skipped where it was not built, without libgrpc-dev) and
    tallyd's gRPC Get ?uid on a warm SQLite item, both under grpcload. Threads are counted
    when started and after the load; peak RSS is after the load."""
    out = {}

    def run(name, proc, port):
        log(f"grpc: {name}")
        started = proc.threads()
        r = grpcload(proc, port, "Get")
        for k in ("store_stmts_per_call", "redis_calls_per_call", "store_connects_per_1k_calls"):
            r.pop(k)
        r.update(threads_started=started, threads=proc.threads())
        out[name] = r
        proc.stop()

    if os.path.exists(GRPC_HELLO_BIN):
        port = free_port()
        run("gRPC C core 1.51, fixed answer", Proc([GRPC_HELLO_BIN, str(port), "2"], port, None),
            port)
    t = tallyd(grpc=True)
    t.get("/v1/items/article/7?uid=42")
    run("tallyd gRPC Get ?uid, SQLite warm", t, t.grpc_port)
    return out


def grpc_markdown(h, core):
    """Part 7's tables: each gRPC row against its HTTP row, then the C core beside tallyd."""
    rows = ["| gRPC ÷ HTTP, same tallyd | HTTP requests/s | gRPC calls/s | gRPC ÷ HTTP | "
            "p50 ms HTTP / gRPC | p99 ms HTTP / gRPC | tallyd CPU s / 1k HTTP / gRPC | "
            "load generator CPU % wrk / grpcload |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, _, http, conns in GRPC_ROWS:
        if name not in h:
            continue
        a, b = h[http], h[name]
        rows.append(f"| {name} | {a['rps']:,.0f} | {b['rps']:,.0f} | "
                    f"{b['rps'] / max(a['rps'], 1e-9):.2f} | {a['p50_ms']:.2f} / "
                    f"{b['p50_ms']:.2f} | {a['p99_ms']:.2f} / {b['p99_ms']:.2f} | "
                    f"{a['cpu_s_per_1k']:.3f} / {b['cpu_s_per_1k']:.3f} | "
                    f"{a['load_cpu_pct']} / {b['load_cpu_pct']} |")
    rows += ["", f"bench/grpcload: {WRK['conns']} calls in flight on {WRK['conns']} connections "
             f"(or 1), {WRK['seconds']} s, on CPU {LOAD_CPU}, as wrk; tallyd on CPU "
             f"{SERVER_CPU}.", ""]
    if core:
        first = next(iter(core.values()))["rps"]
        rows += ["| gRPC server, unary Get, grpcload | calls/s | ÷ first row | p50 ms | "
                 "p99 ms | threads started / after load | peak RSS MiB |",
                 "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for name, r in core.items():
            rows.append(f"| {name} | {r['rps']:,.0f} | {r['rps'] / max(first, 1e-9):.2f} | "
                        f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['threads_started']} / "
                        f"{r['threads']} | {r['peak_rss_mib']} |")
    return "\n".join(rows) + "\n"


def produce(topic, n, dist):
    out = subprocess.run([os.path.join(BUILD, "tally-produce"), KAFKA, topic, str(n),
                          str(INGEST_ITEMS), dist], capture_output=True, text=True, timeout=900)
    if out.returncode:
        raise RuntimeError(out.stderr)


def drain(topic, batch, events=None, seconds=None, cache=REDIS):
    """Consumes topic into a fresh database; the rate from the first commit on.

    With events, waits until all are counted; with seconds, measures a fixed window.
    """
    name = f"bench_ingest_{batch}_{int(time.time() * 1000) % 10**8}"
    redis_flush()
    t = tallyd("--batch", str(batch), store=fresh_db(name), cache=cache,
               bus=f"kafka://{KAFKA}/{topic}?group={name}")
    deadline = time.time() + 600
    while t.metric("tally_read_events_applied_total") == 0 and time.time() < deadline:
        time.sleep(0.02)
    t0, a0, q0 = time.time(), t.metric("tally_read_events_applied_total"), questions()
    while time.time() < deadline:
        applied = t.metric("tally_read_events_applied_total")
        if events and applied >= events:
            break
        if seconds and time.time() - t0 >= seconds:
            break
        time.sleep(0.05)
    elapsed, q = time.time() - t0, questions() - q0
    applied = t.metric("tally_read_events_applied_total")
    rss = t.mem_kib("VmHWM")
    t.stop()
    check = check_reads("tally", name, events) if events else None
    mysql(f"DROP DATABASE IF EXISTS {name}")
    done = applied - a0
    r = {"batch": batch, "events": int(done), "seconds": round(elapsed, 2),
         "events_per_s": round(done / elapsed, 1) if elapsed else 0,
         "store_stmts_per_1k_events": round(q / max(done, 1) * 1000, 2),
         "peak_rss_mib": round(rss / 1024, 1)}
    if check:
        r["check"] = check
    return r


def drain_course(topic, events):
    """The peer consumes topic into a fresh database, with the method of drain(): the rate
    from its first commit on, until every event is counted, lost or skipped (or it stalls
    for 30 s, or COURSE_DRAIN_S passes)."""
    name = f"bench_course_ingest_{int(time.time() * 1000) % 10**8}"
    redis_flush()
    fresh_db(name)
    t = course(name, topic)

    def seen():
        return sum(t.metric(f"course_read_events_{k}_total") for k in ("applied", "lost",
                                                                         "skipped"))
    deadline = time.time() + COURSE_DRAIN_S
    while t.metric("course_read_events_applied_total") == 0 and time.time() < deadline:
        time.sleep(0.02)
    t0, a0, q0 = time.time(), t.metric("course_read_events_applied_total"), questions()
    last, moved = seen(), time.time()
    while time.time() < deadline and last < events:
        time.sleep(0.1)
        now = seen()
        if now > last:
            last, moved = now, time.time()
        elif time.time() - moved > 30:
            break
    elapsed, q = time.time() - t0, questions() - q0
    applied = t.metric("course_read_events_applied_total")
    lost = t.metric("course_read_events_lost_total")
    rss = t.mem_kib("VmHWM")
    t.stop()
    check = check_reads("course", name, events)
    mysql(f"DROP DATABASE IF EXISTS {name}")
    done = applied - a0
    return {"batch": 10, "events": int(done), "seconds": round(elapsed, 2),
            "events_per_s": round(done / elapsed, 1) if elapsed else 0,
            "store_stmts_per_1k_events": round(q / max(done, 1) * 1000, 2),
            "peak_rss_mib": round(rss / 1024, 1), "lost_in_failed_batches": int(lost),
            "check": check}


def store_ceiling(dist):
    """The store's own ceiling for the ingest rows: the same events (tally-produce
    --ceiling-sql draws the same items), merged per 10,000 and upserted by multi-row
    statements of 1,000 rows into a plain (biz, biz_id, cnt) table, a transaction a batch, by
    the mariadb client. Only the client's run is timed."""
    name = f"bench_ceiling_{int(time.time() * 1000) % 10**8}"
    fresh_db(name)
    mysql("CREATE TABLE ceiling (biz VARCHAR(32) NOT NULL, biz_id BIGINT NOT NULL,"
          " cnt BIGINT NOT NULL, PRIMARY KEY (biz, biz_id)) ENGINE=InnoDB DEFAULT CHARSET=ascii",
          db=name)
    with tempfile.NamedTemporaryFile("w+", suffix=".sql") as f:
        subprocess.run([os.path.join(BUILD, "tally-produce"), "--ceiling-sql",
                        str(INGEST_EVENTS), str(INGEST_ITEMS), dist], stdout=f, check=True)
        f.seek(0)
        u = urlsplit(MYSQL)
        opts = dict(parse_qsl(u.query))
        tls = ["--ssl", f"--ssl-ca={opts['ssl_ca']}"] if "ssl_ca" in opts else []
        t0 = time.time()
        subprocess.run(["mariadb", "--no-defaults", "-h", u.hostname, "-P", str(u.port),
                        f"-u{unquote(u.username)}", *tls, name], stdin=f, check=True,
                       env=dict(os.environ, MYSQL_PWD=unquote(u.password or "")))
        elapsed = time.time() - t0
    total = int(mysql("SELECT COALESCE(SUM(cnt), 0) FROM ceiling", db=name))
    mysql(f"DROP DATABASE IF EXISTS {name}")
    if total != INGEST_EVENTS:
        raise RuntimeError(f"store ceiling {dist}: {total} of {INGEST_EVENTS} events counted")
    return {"events": total, "seconds": round(elapsed, 2),
            "events_per_s": round(total / elapsed, 1)}


def bench_ingest():
    """tallyd's ingest; the peer's on the same topics is in results["course"]."""
    results = {"events": INGEST_EVENTS, "items": INGEST_ITEMS, "runs": {}, "sweep": [],
               "course": {}}
    stamp = int(time.time())
    for dist in ["uniform", "zipf:1.1"]:
        topic = f"bench.ingest.{dist.replace(':', '')}.{stamp}"
        log(f"ingest: producing {INGEST_EVENTS} events, {dist}")
        produce(topic, INGEST_EVENTS, dist)
        log(f"ingest: {dist}, the course peer (full drain)")
        results["course"][dist] = drain_course(topic, INGEST_EVENTS)
        log(f"ingest: {dist}, batch {BATCH} (full drain)")
        batched = drain(topic, BATCH, events=INGEST_EVENTS)
        log(f"ingest: {dist}, the store's ceiling (plain multi-row upserts)")
        results.setdefault("ceiling", {})[dist] = store_ceiling(dist)
        if ONLY in ("course", "course-ingest"):
            results["runs"][dist] = {"batched": batched}
            continue
        log(f"ingest: {dist}, batch 1 ({SWEEP_SECONDS * 2} s window)")
        single = drain(topic, 1, seconds=SWEEP_SECONDS * 2)
        results["runs"][dist] = {"batched": batched, "batch_1": single,
                                 "speedup": round(batched["events_per_s"] /
                                                  max(single["events_per_s"], 1e-9), 1)}
        if dist == "uniform":
            for b in SWEEP:
                log(f"ingest: sweep, batch {b}")
                results["sweep"].append(drain(topic, b, seconds=SWEEP_SECONDS))
    return results


def produce_recent(topic, n, span_ms):
    """n uniform reads over INGEST_ITEMS items with ts spread over the last span_ms."""
    env = dict(os.environ, TALLY_PRODUCE_TS=f"{int(time.time() * 1000) - 60000}:{span_ms}")
    out = subprocess.run([os.path.join(BUILD, "tally-produce"), KAFKA, topic, str(n),
                          str(INGEST_ITEMS)], capture_output=True, text=True, timeout=900,
                         env=env)
    if out.returncode:
        raise RuntimeError(out.stderr)


def drain_windows(topic, store, cache, windows, events):
    """Drains topic into store with --windows on|off; returns (figures, running tallyd)."""
    name = f"bench_w_{windows}_{int(time.time() * 1000) % 10**8}"
    redis_flush()
    t = tallyd("--windows", windows, store=store, cache=cache,
               bus=f"kafka://{KAFKA}/{topic}?group={name}")
    deadline = time.time() + 1200
    while t.metric("tally_read_events_applied_total") == 0 and time.time() < deadline:
        time.sleep(0.02)
    t0, a0 = time.time(), t.metric("tally_read_events_applied_total")
    while t.metric("tally_read_events_applied_total") < events and time.time() < deadline:
        time.sleep(0.05)
    elapsed = time.time() - t0
    done = t.metric("tally_read_events_applied_total") - a0
    return {"windows": windows, "events": int(done), "seconds": round(elapsed, 2),
            "events_per_s": round(done / elapsed, 1) if elapsed else 0,
            "peak_rss_mib": round(t.mem_kib("VmHWM") / 1024, 1)}, t


def bench_windows():
    stamp = int(time.time())
    topic = f"bench.windows.{stamp}"
    log(f"windows: producing {WINDOW_EVENTS} reads over 24 h, {INGEST_ITEMS} items")
    produce_recent(topic, WINDOW_EVENTS, 24 * 3600 * 1000 - 120000)
    results = {"events": WINDOW_EVENTS, "items": INGEST_ITEMS, "stores": {}}
    for label in ["MariaDB + Redis", "SQLite"]:
        runs = {}
        for windows in ["off", "on"]:
            if label == "SQLite":
                store, cache = f"sqlite:{tempfile.mkdtemp()}/bench.db", "none"
            else:
                store, cache = fresh_db(f"bench_windows_{windows}_{stamp}"), REDIS
            log(f"windows: {label}, --windows {windows} (full drain)")
            r, t = drain_windows(topic, store, cache, windows, WINDOW_EVENTS)
            if windows == "on":
                # Latency at a moderate load (4 connections) and at saturation (the
                # -c32 of every other figure, where p99 is mostly queueing on one core).
                for w, conns in [("24h", 4), ("7d", 4), ("24h", WRK["conns"])]:
                    log(f"windows: {label}, GET top window={w}, {conns} connections")
                    q = wrk(t, f"/v1/top/article?by=read_cnt&window={w}&limit=10", conns=conns)
                    r[f"top_{w}_c{conns}"] = {k: q[k] for k in ("rps", "p50_ms", "p99_ms",
                                                                 "p999_ms")}
            t.stop()
            runs[windows] = r
        runs["cost"] = round(1 - runs["on"]["events_per_s"] /
                             max(runs["off"]["events_per_s"], 1e-9), 3)
        results["stores"][label] = runs
    return results


def windows_markdown(w):
    rows = [f"| trending windows, {w['events']:,} reads over 24 h, {w['items']:,} items | "
            "ingest events/s, windows off | on | cost | top window=24h p50 / p99 ms, -c4 | "
            f"window=7d, -c4 | window=24h, -c{WRK['conns']} (requests/s) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for label, r in w["stores"].items():
        on, c = r["on"], WRK["conns"]
        a, b, s = on["top_24h_c4"], on["top_7d_c4"], on[f"top_24h_c{c}"]
        rows.append(f"| {label} | {r['off']['events_per_s']:,.0f} | {on['events_per_s']:,.0f} | "
                    f"{r['cost'] * 100:.0f}% | {a['p50_ms']:.2f} / {a['p99_ms']:.2f} | "
                    f"{b['p50_ms']:.2f} / {b['p99_ms']:.2f} | {s['p50_ms']:.2f} / "
                    f"{s['p99_ms']:.2f} ({s['rps']:,.0f}) |")
    return "\n".join(rows) + "\n"


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), platform.processor())
    mem = int(next(l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")))
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem / 2**20, 1),
            "kernel": platform.release(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def compare(res):
    """Fills res["course"]["ratios"] (tally ÷ course, requests/s or events/s) and
    res["checks"]; returns the names of tallyd's failed checks."""
    h, c, ing = res["http"], res["course"]["http"], res["ingest"]
    ratios = {}
    for name, r in c.items():
        if not name.startswith("_") and name in h:
            ratios[name] = round(h[name]["rps"] / max(r["rps"], 1e-9), 2)
    for dist, r in ing["course"].items():
        tally = ing["runs"][dist]["batched"]["events_per_s"]
        ratios[f"ingest {dist}"] = round(tally / max(r["events_per_s"], 1e-9), 2)
    res["course"]["ratios"] = ratios
    checks = {"tally": dict(h["_checks"]), "course": dict(c["_checks"])}
    for dist, r in ing["runs"].items():
        checks["tally"][f"ingest {dist}"] = r["batched"]["check"]
    for dist, r in ing["course"].items():
        checks["course"][f"ingest {dist}"] = r["check"]
    res["checks"] = checks
    return [k for k, v in checks["tally"].items() if not v["pass"]]


def verdict(v, key="pass"):
    """pass/FAIL of a check: the whole check, or one part (the count of mismatches key)."""
    ok = v["pass"] if key == "pass" else v[key] == 0
    return "pass" if ok else "**FAIL**"


def course_markdown(res):
    """The peer beside tallyd: figures, ratios and both servers' checks (what was run)."""
    h, c, ing, ratios = res["http"], res["course"]["http"], res["ingest"], res["course"]["ratios"]
    rows = []
    names = [n for n in c if not n.startswith("_")]
    if names:
        rows += ["| tallyd vs the course peer | tally req/s | course req/s | tally ÷ course | "
                 "p99 ms tally / course | store stmts / call tally / course | "
                 "Redis calls / call tally / course | "
                 "MariaDB connects / 1k calls tally / course | peak RSS MiB tally / course | "
                 "course errors + non-2xx |",
                 "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for name in names:
            t, r = h[name], c[name]
            rows.append(f"| {name} | {t['rps']:,.0f} | {r['rps']:,.0f} | {ratios[name]} | "
                        f"{t['p99_ms']:.2f} / {r['p99_ms']:.2f} | "
                        f"{t['store_stmts_per_call']} / {r['store_stmts_per_call']} | "
                        f"{t['redis_calls_per_call']} / {r['redis_calls_per_call']} | "
                        f"{t['store_connects_per_1k_calls']} / "
                        f"{r['store_connects_per_1k_calls']} | "
                        f"{t['peak_rss_mib']} / {r['peak_rss_mib']} | "
                        f"{r['errors'] + r['non2xx']:,} |")
        rows += ["", f"Idle RSS on MariaDB + Redis: tallyd {h['_idle_rss_mib_mariadb']} MiB, "
                 f"course {c['_idle_rss_mib_mariadb']} MiB. The peer is bench/course (gin, gorm, "
                 "go-redis, sarama; see bench/course/main.go), pinned like tallyd.", ""]
    if ing["course"]:
        rows += [f"| ingest, {ing['events']:,} events, {ing['items']:,} items | tally events/s "
                 f"(--batch {BATCH}) | course events/s (10 a batch) | tally ÷ course | "
                 "store stmts / 1k events tally / course | peak RSS MiB tally / course | "
                 "course reads lost |",
                 "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for dist, r in ing["course"].items():
            t = ing["runs"][dist]["batched"]
            rows.append(f"| {dist} | {t['events_per_s']:,.0f} | {r['events_per_s']:,.0f} | "
                        f"{ratios['ingest ' + dist]} | {t['store_stmts_per_1k_events']} / "
                        f"{r['store_stmts_per_1k_events']} | {t['peak_rss_mib']} / "
                        f"{r['peak_rss_mib']} | {r['check']['missing']:,} |")
        rows.append("")
    rows += ["| check, after each run | tallyd | course |", "| --- | --- | --- |"]
    ct, cc = res["checks"]["tally"], res["checks"]["course"]
    if "likes" in ct:
        a, b = ct["likes"], cc["likes"]
        likes, cache = "like_cnt_mismatched_items", "cache_mismatched_items"
        rows.append(f"| likes: like_cnt = active like rows (items off / items) | "
                    f"{verdict(a, likes)}: {a[likes]} / {a['items']:,} | "
                    f"{verdict(b, likes)}: {b[likes]} / {b['items']:,} |")
        rows.append(f"| likes: sum of like_cnt / active like rows | {a['like_cnt_sum']:,} / "
                    f"{a['active_likes']:,} | {b['like_cnt_sum']:,} / {b['active_likes']:,} |")
        rows.append(f"| cache: Redis hash = row (hashes off / cached) | "
                    f"{verdict(a, cache)}: {a[cache]} / {a['cached_items']:,} | "
                    f"{verdict(b, cache)}: {b[cache]} / {b['cached_items']:,} |")
    for key in [k for k in ct if k.startswith("ingest ")]:
        a, b = ct[key], cc.get(key)
        rows.append(f"| {key}: sum of read_cnt / events | {verdict(a)}: {a['read_cnt_sum']:,} / "
                    f"{a['events']:,} | " + (f"{verdict(b)}: {b['read_cnt_sum']:,} / "
                                             f"{b['events']:,}" if b else "–") + " |")
    return "\n".join(rows) + "\n"


def markdown(res):
    h, i = res["http"], res["ingest"]
    c, ratios = res["course"]["http"], res["course"]["ratios"]
    hello = h["hello (bare libevent)"]["rps"]
    rows = ["| HTTP target | requests/s | × hello | p50 ms | p99 ms | p99.9 ms | CPU s / 1k req | "
            "store stmts / call | Redis calls / call | peak RSS MiB | course requests/s | "
            "tally ÷ course |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in h.items():
        if name.startswith("_"):
            continue
        peer = (f"{c[name]['rps']:,.0f} | {ratios[name]}" if name in c else "– | –")
        rows.append(f"| {name} | {r['rps']:,.0f} | {r['rps'] / hello:.2f} | {r['p50_ms']:.2f} | "
                    f"{r['p99_ms']:.2f} | {r['p999_ms']:.2f} | {r['cpu_s_per_1k']:.3f} | "
                    f"{r.get('store_stmts_per_call', '–')} | {r.get('redis_calls_per_call', '–')} | "
                    f"{r['peak_rss_mib']} | {peer} |")
    rows += ["", f"wrk -t{WRK['threads']} -c{WRK['conns']} -d{WRK['seconds']}s on CPU {LOAD_CPU}; "
             f"server on CPU {SERVER_CPU}; tallyd idle RSS {h['_idle_rss_mib']} MiB.", "",
             f"| ingest into MariaDB + Redis | --batch {BATCH} events/s | store ceiling events/s"
             " | × ceiling | store stmts / 1k events | peak RSS MiB | --batch 1 events/s | "
             "× --batch 1 | course events/s | tally ÷ course |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for dist, r in i["runs"].items():
        peer = i["course"].get(dist)
        ceiling = i.get("ceiling", {}).get(dist, {}).get("events_per_s")
        rows.append(f"| {i['events']:,} events, {dist}, {i['items']:,} items | "
                    f"{r['batched']['events_per_s']:,.0f} | " +
                    (f"{ceiling:,.0f} | {r['batched']['events_per_s'] / ceiling:.2f} | "
                     if ceiling else "– | – | ") +
                    f"{r['batched']['store_stmts_per_1k_events']} | "
                    f"{r['batched']['peak_rss_mib']} | "
                    f"{r['batch_1']['events_per_s']:,.0f} | {r['speedup']} | " +
                    (f"{peer['events_per_s']:,.0f} | {ratios['ingest ' + dist]} |" if peer
                     else "– | – |"))
    rows += ["", "| --batch | events/s | store stmts / 1k events |", "| ---: | ---: | ---: |"]
    for r in i["sweep"]:
        rows.append(f"| {r['batch']:,} | {r['events_per_s']:,.0f} | "
                    f"{r['store_stmts_per_1k_events']} |")
    return "\n".join(rows) + "\n\n" + course_markdown(res)


def gnuplot_label(name):
    return name.replace('"', "'")


def course_chart(res, d):
    """course.png: tallyd and the peer side by side on every workload they share."""
    pairs = [(name, res["http"][name]["rps"], r["rps"])
             for name, r in res["course"]["http"].items() if not name.startswith("_")]
    pairs += [(f"ingest {dist} (events/s)", res["ingest"]["runs"][dist]["batched"]["events_per_s"],
               r["events_per_s"]) for dist, r in res["ingest"]["course"].items()]
    with open(f"{d}/course.dat", "w") as f:
        for name, t, c in pairs:
            f.write(f"\"{gnuplot_label(name)}\" {t} {c}\n")
    low = max(min([v for _, t, c in pairs for v in (t, c) if v > 0] or [1]) / 2, 0.1)
    return f"""
set terminal pngcairo size 1000,560 font "sans,10"
set output "{RESULTS}/course.png"
set rmargin 16
set title "tallyd vs the course peer (Go: gin, gorm, go-redis, sarama), same method"
set logscale y
set yrange [{low}:*]
set ylabel "requests/s (ingest: events/s)"
set xlabel ""
set grid ytics
set style data histograms
set style histogram cluster gap 1
set style fill solid 0.8
set xtics rotate by -25
set key left top
plot "{d}/course.dat" using 2:xtic(1) title "tallyd", "" using 3 title "course"
"""


def charts(res):
    d = tempfile.mkdtemp()
    with open(f"{d}/sweep.dat", "w") as f:
        for r in res["ingest"]["sweep"]:
            f.write(f"{r['batch']} {r['events_per_s']}\n")
    with open(f"{d}/peer.dat", "w") as f:
        peer = res["ingest"]["course"].get("uniform")
        if peer:
            f.write(f"{peer['batch']} {peer['events_per_s']}\n")
    with open(f"{d}/lat.dat", "w") as f:
        for who, h in [("", res["http"]), ("course: ", res["course"]["http"])]:
            for name, r in h.items():
                if not name.startswith("_"):
                    f.write(f"\"{who}{gnuplot_label(name)}\" {r['p50_ms']} {r['p99_ms']} "
                            f"{r['p999_ms']}\n")
    script = f"""
set terminal pngcairo size 900,500 font "sans,10"
set output "{RESULTS}/batch.png"
set title "Read-event drain rate into MariaDB vs --batch (uniform ids)"
set logscale xy
set xlabel "--batch (events per store transaction)"
set ylabel "events/s"
set grid
plot "{d}/sweep.dat" using 1:2 with linespoints lw 2 pt 7 title "tallyd", \\
     "{d}/peer.dat" using 1:2 with points pt 5 ps 1.5 title "course peer (10 a batch, 1 s)"
set terminal pngcairo size 1200,680 font "sans,10"
set output "{RESULTS}/latency.png"
set rmargin 30
set bmargin 16
unset logscale
set logscale y
set title "Latency per endpoint (wrk), tallyd and the course peer"
set ylabel "ms"
set xlabel ""
set style data histograms
set style histogram cluster gap 1
set style fill solid 0.8
set xtics rotate by -45
set key left top
plot "{d}/lat.dat" using 2:xtic(1) title "p50", "" using 3 title "p99", "" using 4 title "p99.9"
""" + course_chart(res, d)
    subprocess.run(["gnuplot"], input=script, text=True, check=True)


def bench_course():
    """Part 5 alone (--only course, course-http, course-ingest): tallyd and the peer on the
    workloads they share; main writes course.json, course.md and course.png."""
    res = {"http": {}, "course": {"http": {}},
           "ingest": {"events": INGEST_EVENTS, "items": INGEST_ITEMS, "runs": {}, "course": {}}}
    if ONLY in ("course", "course-http"):
        res["http"] = mariadb_http("tally")
        res["course"]["http"] = mariadb_http("course")
    else:
        res["http"]["_checks"], res["course"]["http"]["_checks"] = {}, {}
    if ONLY in ("course", "course-ingest"):
        res["ingest"] = bench_ingest()
    failed = compare(res)
    return res, course_markdown(res), failed


def main():
    os.makedirs(RESULTS, exist_ok=True)
    res = {"machine": machine(), "quick": QUICK, "settings": {"wrk": WRK,
           "server_cpu": SERVER_CPU, "load_cpu": LOAD_CPU}}
    # --only windows|auth: that part alone, into RESULTS/windows.json or auth.json
    alone = {"windows": ("windows", bench_windows, windows_markdown),
             "auth": ("auth_flood", bench_auth_flood, auth_flood_markdown)}
    if ONLY in alone:
        key, run_part, to_markdown = alone[ONLY]
        res[key] = run_part()
        with open(os.path.join(RESULTS, f"{ONLY}.json"), "w") as f:
            json.dump(res, f, indent=2)
        print(to_markdown(res[key]))
        return
    if ONLY in ("course", "course-http", "course-ingest"):
        part, md, failed = bench_course()
        res.update(part)
        with open(os.path.join(RESULTS, "course.json"), "w") as f:
            json.dump(res, f, indent=2)
        with open(os.path.join(RESULTS, "course.md"), "w") as f:
            f.write(md)
        subprocess.run(["gnuplot"], input=course_chart(res, tempfile.mkdtemp()), text=True,
                       check=True)
        print(md)
        if failed:
            log(f"tallyd failed its checks: {', '.join(failed)}")
            sys.exit(1)
        return
    if ONLY == "grpc":
        res["http"] = mariadb_http("tally", grpc_only=True)
        res["grpc_core"] = bench_grpc_core()
        with open(os.path.join(RESULTS, "grpc.json"), "w") as f:
            json.dump(res, f, indent=2)
        md = grpc_markdown(res["http"], res["grpc_core"])
        with open(os.path.join(RESULTS, "grpc.md"), "w") as f:
            f.write(md)
        print(md)
        if not res["http"]["_checks"]["likes"]["pass"]:
            log("tallyd failed its likes check")
            sys.exit(1)
        return
    if ONLY:
        sys.exit(f"run.py: --only takes windows, auth, course, course-http, course-ingest "
                 "or grpc")
    res["http"] = bench_http()
    res["grpc_core"] = bench_grpc_core()
    res["course"] = {"http": mariadb_http("course")}
    res["ingest"] = bench_ingest()
    res["windows"] = bench_windows()
    res["auth_flood"] = bench_auth_flood()
    failed = compare(res)
    with open(os.path.join(RESULTS, "latest.json"), "w") as f:
        json.dump(res, f, indent=2)
    md = (markdown(res) + "\n" + grpc_markdown(res["http"], res["grpc_core"]) + "\n" +
          windows_markdown(res["windows"]) + "\n" + auth_flood_markdown(res["auth_flood"]))
    with open(os.path.join(RESULTS, "latest.md"), "w") as f:
        f.write(md)
    charts(res)
    print(md)
    if failed:
        log(f"tallyd failed its checks: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
