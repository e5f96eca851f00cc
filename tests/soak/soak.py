#!/usr/bin/env python3
"""make soak: tally run the way production runs it, under churn, then checked exactly.

Two tallyd share one Kafka topic and consumer group on MariaDB + Redis, and take steady mixed
traffic for SOAK_MINUTES (default 10) while a schedule injects churn every 30-60 s. At the end
the store, the cache and every process are checked against the client's own ledger; a failed
check prints what it expected and what it got, and the run exits 1. docs/soak.md describes
the run and holds the figures of the last `make soak`.

DESIGN
  Own servers. The churn restarts Redis and Kafka and holds row locks, so the soak never
  touches the shared servers (13306/16379/19092): it starts its own set through
  scripts/services.sh with TALLY_SERVICES_DIR=.services/soak on 23306/26379/29092 and stops
  it at the end, also on failure or Ctrl-C.

  An exact ledger. Each worker thread records what tallyd *accepted* and applies the
  documented rules itself:
    - a read answered 202 is accepted; 503 is not (the documented contract);
    - tallyd runs with --read-window 8h, longer than any soak, so a (uid or viewer, item)
      pair counts exactly once however many times it is read and in whatever order two
      instances' partitions are consumed (decide() compares |t - last| with the window, so
      the order does not matter while every read of a pair lies within it);
    - an Idempotency-Key counts at most once (24 h); a key is only ever resent with the same
      item and body, as a retrying client does, so which copy is processed first does not
      matter either;
    - reads with neither uid, viewer nor key always count. They are the canary: a batch
      counted twice is absorbed by the memo tables for every read that has a reader or a
      key, so only anonymous reads show a double count in the totals.
  Likes and collections are synchronous: their 200 answer carries the state of their own
  transaction. A 503 or a broken connection is not an answer (a CALL blocked behind a row
  lock may still commit after tallyd gave up on it), so the worker that owns the user sends
  the same idempotent request again until it gets a 200, and does nothing else with that
  (user, item) meanwhile: the ledger is exact. Each user's likes and collections are written
  by one worker only, so their order is known.

  Ambiguity. A read that failed at the transport level may or may not have been accepted. A
  keyed read is simply sent again with the same key (what keys are for), so it stays exact;
  an unkeyed one is tracked apart, and its item's total may then lie in [certain,
  certain + ambiguous]: the summary says how many there were (normally none). A read
  answered 202 sits in the producer's queue for a few ms before the broker has it; a kill -9
  then would lose it with no report. So before the kill -9 the soak stops sending reads to
  the victim and waits until its producer has delivered everything it accepted (likes and
  page views keep flowing to it, and its consumer is busy, when it is killed).

  Test clock. tallyd reads TALLY_TEST_CLOCK_OFFSET_MS once at start (given --test-clock,
  without which it refuses the variable); every start of every instance (restarts after
  kill -9 included) gets the same offset, chosen so that the shifted clock crosses an hour
  at the schedule's "hour" slot. The offset is negative (less than an hour): a Kafka read
  whose ts is more than 5 minutes after its message's timestamp would be put in the hour it
  arrived instead.

  Fault windows. Each churn event records [start, end]; a 5xx answered, or a connection
  broken, within 10 s of a window counts against that event; any other fails the run.

Environment: SOAK_MINUTES (10), SOAK_RATE (requests/s, 120), SOAK_SEED (1), SOAK_DOC (1:
rewrite the figures in docs/soak.md; 0: only build/soak/latest.*), TALLYD, TALLY_PRODUCE,
SOAK_MYSQL_PORT/SOAK_REDIS_PORT/SOAK_KAFKA_PORT (23306/26379/29092), SOAK_RSS_MIB (128).
"""
import collections
import http.client
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import threading
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "../.."))
sys.path.insert(0, os.path.join(ROOT, "tests/e2e"))
from tallyd import BINARY, Tallyd, mysql_cli, redis_cli, report, with_path  # noqa: E402

MINUTES = float(os.environ.get("SOAK_MINUTES", "10"))
RATE = float(os.environ.get("SOAK_RATE", "120"))
SEED = int(os.environ.get("SOAK_SEED", "1"))
WRITE_DOC = os.environ.get("SOAK_DOC", "1") != "0"
RSS_BOUND_MIB = float(os.environ.get("SOAK_RSS_MIB", "128"))
PRODUCE = os.environ.get("TALLY_PRODUCE", os.path.join(ROOT, "build/tally-produce"))
PORTS = {"mysql": int(os.environ.get("SOAK_MYSQL_PORT", "23306")),
         "redis": int(os.environ.get("SOAK_REDIS_PORT", "26379")),
         "kafka": int(os.environ.get("SOAK_KAFKA_PORT", "29092"))}
SERVICES_DIR = os.path.join(ROOT, ".services/soak")
OUT = os.path.join(ROOT, "build/soak")
DOC = os.path.join(ROOT, "docs/soak.md")

HOUR = 3600 * 1000
WINDOWS = (1, 24, 168, 720)       # hours, as interactive_window.win
READ_WINDOW = "8h"                # --read-window: longer than any soak (see DESIGN)
WORKERS = 8
STARTUP_S = 12                    # from fixing the clock offset to the first request
HOLD_S = 10                       # the held row lock
GRACE_S = 10                      # 5xx this close to a fault window belong to it
SWEEP_BOUND_S = 15                # the 1h window must let the old hour go within this
SETTLE_S = 180                    # reads of the topic applied after traffic stops
STABLE_S = 5                      # ... and the totals unchanged for this long
PARTITIONS = 4
ITEMS = [("article", i) for i in range(1, 61)] + [("video", i) for i in range(1, 21)]
# The items whose rows the held commit locks: one per partition (tallyd keys a message
# "{biz}:{id}" and librdkafka's default partitioner takes its CRC-32 modulo the partitions),
# so that every member's applier is held whichever partitions a rebalance hands it.
HOT = [next(it for it in ITEMS if zlib.crc32(f"{it[0]}:{it[1]}".encode()) % PARTITIONS == p)
       for p in range(PARTITIONS)]
READ_UIDS = 300                   # uids that read (page views)
VIEWERS = 200                     # viewer strings that read
LIKE_UIDS = 240                   # uids that like and collect, split among the workers
CIDS = (1, 2, 3)


def now():
    return time.time()


def wait_for(cond, timeout, what, step=0.2):
    """cond()'s first truthy value within timeout seconds; None if it never came."""
    deadline = now() + timeout
    while True:
        got = cond()
        if got:
            return got
        if now() >= deadline:
            log(f"timed out after {timeout:.0f} s waiting for {what}")
            return None
        time.sleep(step)


_t0 = [None]


def log(msg):
    at = f"{now() - _t0[0]:7.1f}s" if _t0[0] else "  setup"
    print(f"soak {at} {msg}", flush=True)


# ------------------------------------------------------------------ servers

class Services:
    """The soak's own MariaDB, Redis and Kafka (scripts/services.sh under .services/soak)."""

    def __init__(self):
        self.env = dict(os.environ, TALLY_SERVICES_DIR=SERVICES_DIR,
                        TALLY_MYSQL_PORT=str(PORTS["mysql"]), TALLY_REDIS_PORT=str(PORTS["redis"]),
                        TALLY_KAFKA_PORT=str(PORTS["kafka"]))
        self.urls = {}

    def run(self, *args, timeout=240):
        out = subprocess.run([os.path.join(ROOT, "scripts/services.sh"), *args], env=self.env,
                             capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"services.sh {' '.join(args)} failed:\n{out.stdout}{out.stderr}")
        return out.stdout

    def up(self, what=None):
        self.run("up", *([what] if what else []))
        for line in self.run("urls").splitlines():
            k, v = line.split("=", 1)
            self.urls[k] = v.strip("'")

    def down(self, what=None):
        self.run("down", *([what] if what else []), timeout=120)

    def kill(self, what):
        self.run("kill", what)


def sql(url, query, db=None):
    """Rows of a query as lists of strings, through the mariadb client."""
    args, env = mysql_cli(url, db)
    out = subprocess.run(args + ["-e", query], capture_output=True, text=True, env=env, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"mariadb: {query[:80]}...: {out.stderr.strip()}")
    return [line.split("\t") for line in out.stdout.splitlines()]


def redis_hashes(url, pattern):
    """{key: {field: value}} of every hash whose key matches pattern, in one round trip."""
    script = ("local out = {} for _, k in ipairs(redis.call('KEYS', ARGV[1])) do "
              "out[#out + 1] = k .. ' ' .. table.concat(redis.call('HGETALL', k), ' ') end "
              "return out")
    got = {}
    for line in redis_cli("EVAL", script, "0", pattern, url=url).splitlines():
        parts = line.split(" ")
        if parts and parts[0]:
            got[parts[0]] = dict(zip(parts[1::2], parts[2::2]))
    return got


class LockHolder:
    """Another client holding items' rows (SELECT ... FOR UPDATE) for `seconds`."""

    def __init__(self, url, items, seconds):
        assert len({b for b, _ in items}) == 1  # one biz: a range of its unique key, no scan
        args, env = mysql_cli(url)
        self.proc = subprocess.Popen(args + ["--unbuffered"], env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.locked = threading.Event()
        self.lines = []
        self.proc.stdin.write(
            "SET SESSION innodb_lock_wait_timeout = 30; BEGIN;\n"
            f"SELECT biz_id FROM interactive WHERE biz = '{items[0][0]}' AND biz_id IN ("
            + ", ".join(str(i) for _, i in items) + ") ORDER BY biz_id"
            " FOR UPDATE;\nSELECT 'locked';\n"
            f"SELECT SLEEP({seconds});\nROLLBACK;\n")
        self.proc.stdin.close()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.strip())
            if line.strip() == "locked":
                self.locked.set()

    def wait(self, timeout):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode


# ------------------------------------------------------------------ tallyd instances

class Member:
    """One incarnation of one named tallyd (a, b, or the joining c). Routing fields are
    guarded by Cluster.lock; rss_* are written by the sampler thread only."""

    def __init__(self, name, incarnation, tallyd):
        self.name, self.incarnation, self.t = name, incarnation, tallyd
        self.label = f"{name}{incarnation}"
        self.routable = False
        self.reads_paused = False
        self.inflight = 0
        self.inflight_reads = 0
        self.started = now()
        self.rss_peak_kib = self.rss_last_kib = 0
        self.rc = None
        self.how = None           # how it ended: "SIGTERM", "kill -9"
        self.log_tail = ""
        self.final_metrics = {}

    def metric(self, name):
        try:
            return self.t.metric(name)
        except (OSError, http.client.HTTPException):
            return None


class Cluster:
    """Every tallyd the soak started; the workers pick their targets here."""

    def __init__(self, args, env, store, cache, logdir):
        self.args, self.env, self.store, self.cache, self.logdir = args, env, store, cache, logdir
        self.lock = threading.Lock()
        self.current = {}          # name -> Member
        self.every = []            # every Member ever started, in order
        self.incarnations = collections.Counter()

    def spawn(self, name):
        with self.lock:
            self.incarnations[name] += 1
            inc = self.incarnations[name]
        t = Tallyd(self.logdir, *self.args, store=self.store, cache=self.cache, env=self.env,
                   port=self.port_of(name))
        t.start()
        m = Member(name, inc, t)
        with self.lock:
            self.every.append(m)
            self.current[name] = m
        log(f"tallyd {m.label} up on port {t.port} (pid {t.proc.pid})")
        return m

    def port_of(self, name):
        """The port a member listens on; None: any free one."""
        return None

    def route(self, m, on):
        with self.lock:
            m.routable = on

    def pick(self, rr, read):
        with self.lock:
            cands = [m for m in self.current.values()
                     if m.routable and not (read and m.reads_paused)]
            if not cands:
                return None
            m = cands[rr % len(cands)]
            m.inflight += 1
            m.inflight_reads += read
            return m

    def done(self, m, read):
        with self.lock:
            m.inflight -= 1
            m.inflight_reads -= read

    def live(self):
        with self.lock:
            return [m for m in self.current.values() if m.t.proc is not None]

    def end(self, m, sig, how):
        """Stops m (SIGTERM: waits for its drain) and records how and with what status."""
        self.route(m, False)
        rc = m.t.stop(sig, timeout=60)
        m.rc, m.how = rc, how
        try:
            m.log_tail = m.t.output()[-4000:]
        except OSError:
            pass
        with self.lock:
            if self.current.get(m.name) is m:
                del self.current[m.name]
        log(f"tallyd {m.label} ended by {how}: exit status {rc}")
        return rc


# ------------------------------------------------------------------ the client and its ledger

class Ledger:
    """What one worker saw accepted; merged by Soak.merge_ledgers. Owned by its worker."""

    def __init__(self):
        self.anon_ok = collections.Counter()        # item -> unkeyed anonymous reads accepted
        self.anon_amb = collections.Counter()       # item -> ... ambiguous (transport failure)
        self.keys_ok, self.keys_amb = {}, {}        # key -> (item, counts on its own?)
        self.pairs_ok, self.pairs_amb = set(), set()  # ((kind, reader), item)
        self.likes = {}                             # (uid, item) -> bool, from 200 answers
        self.colls = {}                             # (uid, item) -> cid or None
        self.stats = collections.Counter()          # (op, outcome) -> requests
        self.fivexx = []                            # (time, member, op, status)
        self.unexpected = []                        # answers that broke the contract
        self.transport = []                         # (time, member, op)
        self.latency = []                           # (start time, seconds, answered < 500)


class Worker(threading.Thread):
    """One client thread: paced requests to the members, recorded in its own Ledger. Owns
    the likes and collections of the uids u with u % WORKERS == wid."""

    OPS = [("read_anon", 26), ("read_uid", 14), ("read_viewer", 10), ("read_key", 9),
           ("read_key_viewer", 5), ("page_view", 14), ("like", 12), ("collect", 7), ("top", 3)]

    def __init__(self, soak, wid):
        super().__init__(name=f"worker-{wid}", daemon=True)
        self.soak, self.wid = soak, wid
        self.rng = random.Random(SEED * 1000 + wid)
        self.ledger = Ledger()
        self.conns = {}
        self.rr = wid
        self.uids = [u for u in range(1, LIKE_UIDS + 1) if u % WORKERS == wid]
        self.pending = {}            # (what, uid, item) -> (method, path, want, next_try)
        self.recent_keys = collections.deque(maxlen=50)
        self.keyseq = 0
        self.ops, weights = zip(*self.OPS)
        self.cum = [sum(weights[:i + 1]) for i in range(len(weights))]

    # -- plumbing
    def item(self):
        if self.rng.random() < 0.1:
            return self.rng.choice(HOT)
        return self.rng.choice(ITEMS)

    def send(self, method, path, body=None, headers=None, read=False, exclude=None):
        """(member, Response or None on a transport failure), or (None, None) if no member
        takes requests right now."""
        for attempt in range(3):  # another member than `exclude` if there is one
            self.rr += 1
            m = self.soak.cluster.pick(self.rr, read)
            if m is None or m is not exclude or attempt == 2:
                break
            self.soak.cluster.done(m, read)
        if m is None:
            return None, None
        key = (m.name, m.incarnation)
        conn = self.conns.get(key)
        if conn is None:
            conn = self.conns[key] = m.t.connect()
            conn.timeout = 15
        t0 = now()
        try:
            r = m.t.request(method, path, body=body, headers=headers, conn=conn)
        except (OSError, http.client.HTTPException):
            conn.close()
            self.conns.pop(key, None)
            r = None
        finally:
            self.soak.cluster.done(m, read)
        self.ledger.latency.append((t0, now() - t0, r is not None and r.status < 500))
        return m, r

    def note(self, op, m, r):
        lg = self.ledger
        if r is None:
            lg.stats[(op, "transport")] += 1
            lg.transport.append((now(), m.label, op))
            return
        lg.stats[(op, str(r.status))] += 1
        if r.status >= 500:
            lg.fivexx.append((now(), m.label, op, r.status))

    def unexpected(self, op, m, r, why):
        self.ledger.unexpected.append(f"{op} on {m.label}: {why}: {r!r}")

    # -- reads
    def read(self, op):
        it = self.item()
        path = f"/v1/items/{it[0]}/{it[1]}/reads"
        body, headers, pair, key = None, None, None, None
        if op == "read_uid":
            uid = self.rng.randint(1, READ_UIDS)
            body, pair = {"uid": uid}, (("u", uid), it)
        elif op in ("read_viewer", "read_key_viewer"):
            v = f"viewer-{self.rng.randint(1, VIEWERS)}"
            body, pair = {"viewer": v}, (("v", v), it)
        if op in ("read_key", "read_key_viewer"):
            if self.recent_keys and self.rng.random() < 0.3:
                key, it, body, path, pair = self.rng.choice(self.recent_keys)  # a retry
            else:
                self.keyseq += 1
                key = f"soak-{SEED}-{self.wid}-{self.keyseq}"
                self.recent_keys.append((key, it, body, path, pair))
            headers = {"Idempotency-Key": key}
        outcome = None    # "ok", "no" (503), "amb"
        exclude = None
        for _ in range(3 if key else 1):
            m, r = self.send("POST", path, body=body, headers=headers, read=True, exclude=exclude)
            if m is None:
                break
            self.note(op, m, r)
            if r is not None and r.status == 202:
                outcome = "ok"
                break
            if r is None:
                outcome = "amb"
            elif r.status == 503:
                outcome = outcome or "no"
            else:
                self.unexpected(op, m, r, "a read answered neither 202 nor 503")
                return
            exclude = m
            time.sleep(0.2)
        lg = self.ledger
        if outcome == "ok":
            if key:
                lg.keys_ok[key] = (it, pair is None)
            if pair:
                lg.pairs_ok.add(pair)
            elif not key:
                lg.anon_ok[it] += 1
        elif outcome == "amb":
            if key:
                lg.keys_amb[key] = (it, pair is None)
            if pair:
                lg.pairs_amb.add(pair)
            elif not key:
                lg.anon_amb[it] += 1

    # -- likes and collections (this worker's uids only)
    def write(self, what, uid, it, method, path):
        """Sends one like/collect request; True once its answer settled the ledger."""
        m, r = self.send(method, path)
        if m is None:
            return False
        self.note(what, m, r)
        if r is None or r.status >= 500:
            return False
        if r.status != 200:
            self.unexpected(what, m, r, "a write answered neither 200 nor 5xx")
            return True
        st = r.json
        lg = self.ledger
        if what == "like":
            want = method == "PUT"
            lg.likes[(uid, it)] = want
            if st.get("liked") is not want:
                self.unexpected(what, m, r, f"liked should be {want}")
        else:
            cid = int(path.split("/")[5])
            cur = lg.colls.get((uid, it))
            if method == "PUT":
                cur = cid
            elif cur == cid:
                cur = None
            lg.colls[(uid, it)] = cur
            if st.get("collected") is not (cur is not None):
                self.unexpected(what, m, r, f"collected should be {cur is not None}")
        return True

    def like_or_collect(self, what):
        uid, it = self.rng.choice(self.uids), self.item()
        if any(p[1] == uid and p[2] == it for p in self.pending):
            return
        if what == "like":
            method = "PUT" if self.rng.random() < 0.6 else "DELETE"
            path = f"/v1/users/{uid}/likes/{it[0]}/{it[1]}"
        else:
            method = "PUT" if self.rng.random() < 0.65 else "DELETE"
            cid = self.rng.choice(CIDS)
            path = f"/v1/users/{uid}/collections/{cid}/items/{it[0]}/{it[1]}"
        if not self.write(what, uid, it, method, path):
            self.pending[(what, uid, it)] = (method, path, now() + 1)

    def retry_pending(self, force=False):
        for k, (method, path, at) in list(self.pending.items()):
            if force or at <= now():
                if self.write(k[0], k[1], k[2], method, path):
                    del self.pending[k]
                else:
                    self.pending[k] = (method, path, now() + 1)
                return True
        return False

    # -- page views and lists
    def page_view(self):
        uid, biz = self.rng.choice(self.uids), self.rng.choice(("article", "video"))
        ids = sorted({self.rng.randint(1, 60 if biz == "article" else 20) for _ in range(5)})
        m, r = self.send("GET", f"/v1/items/{biz}?ids={','.join(map(str, ids))}&uid={uid}")
        if m is None:
            return
        self.note("page_view", m, r)
        if r is None or r.status != 200:
            if r is not None and r.status < 500:
                self.unexpected("page_view", m, r, "not 200")
            return
        for e in r.json["items"]:
            it = (e["biz"], e["id"])
            if any(p[1] == uid and p[2] == it for p in self.pending):
                continue
            liked = self.ledger.likes.get((uid, it), False)
            coll = self.ledger.colls.get((uid, it)) is not None
            if e["liked"] is not liked or e["collected"] is not coll:
                self.soak.flag_mismatch(f"uid {uid} {it[0]}:{it[1]} served liked={e['liked']}"
                                        f" collected={e['collected']}, ledger liked={liked}"
                                        f" collected={coll} (from {m.label})")

    def top(self):
        by = self.rng.choice(("like_cnt", "read_cnt", "collect_cnt"))
        win = self.rng.choice(("", "&window=1h", "&window=24h"))
        m, r = self.send("GET", f"/v1/top/{self.rng.choice(('article', 'video'))}?by={by}{win}")
        if m is not None:
            self.note("top", m, r)
            if r is not None and r.status != 200 and r.status < 500:
                self.unexpected("top", m, r, "not 200")

    def run(self):
        interval = WORKERS / RATE
        next_t = now() + self.rng.uniform(0, interval)
        stop = self.soak.stop_traffic
        while not stop.is_set():
            t = now()
            if t < next_t:
                stop.wait(min(next_t - t, 0.2))
                continue
            next_t = max(next_t + interval, t - 1)  # steady: never a burst to catch up
            if self.pending and self.retry_pending():
                continue
            x = self.rng.uniform(0, self.cum[-1])
            op = self.ops[next(i for i, c in enumerate(self.cum) if x <= c)]
            if op.startswith("read"):
                self.read(op)
            elif op in ("like", "collect"):
                self.like_or_collect(op)
            elif op == "page_view":
                self.page_view()
            else:
                self.top()
        # Settle every write whose answer was lost, once the faults are over.
        deadline = now() + 90
        while self.pending and now() < deadline:
            if not self.retry_pending(force=True):
                time.sleep(0.5)
            time.sleep(0.1)
        for c in self.conns.values():
            c.close()


# ------------------------------------------------------------------ the soak

class Check:
    def __init__(self, name, ok, detail):
        self.name, self.ok, self.detail = name, bool(ok), detail


class Soak:
    out, doc, name = OUT, DOC, "soak"  # where the figures go; a subclass sets its own

    def __init__(self):
        self.rng = random.Random(SEED)
        self.duration = MINUTES * 60
        self.run_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        self.logdir = os.path.join(self.out, self.run_id)
        os.makedirs(self.logdir, exist_ok=True)
        self.services = Services()
        self.stop_traffic = threading.Event()
        self.stop_sampler = threading.Event()
        self.faults = []          # [kind, start, end]
        self.events = []          # figures of each churn event
        self.mismatches = []      # served flags that disagreed with the ledger
        self.mlock = threading.Lock()
        self.checks = []
        self.figures = {}
        self.schedule = self.plan()

    # -- planning
    def plan(self):
        first = ["held_commit", "redis_restart", "hour", "kill9", "kafka_restart", "member"]
        later = ["held_commit", "redis_restart", "kill9", "kafka_restart", "member"]
        out, seq, t = [], list(first), 15.0
        while t <= self.duration - 40:
            if not seq:
                seq = list(later)
            out.append((t, seq.pop(0)))
            t += 30 if self.duration <= 240 else self.rng.uniform(30, 60)
        if "hour" not in (k for _, k in out):  # a short run: the hour turns mid-way
            out = sorted(out + [(self.duration / 2, "hour")])
        return out

    def flag_mismatch(self, what):
        with self.mlock:
            self.mismatches.append(what)

    def fault(self, kind):
        f = [kind, now(), None]
        self.faults.append(f)
        return f

    # -- setup
    def setup(self):
        log(f"starting the soak's own servers under {os.path.relpath(SERVICES_DIR, ROOT)}"
            f" (MariaDB {PORTS['mysql']}, Redis {PORTS['redis']}, Kafka {PORTS['kafka']})")
        self.services.up()
        u = self.services.urls
        self.db = with_path(u["TALLY_TEST_MYSQL"], "tally_soak")
        self.redis = u["TALLY_TEST_REDIS"]
        self.broker = u["TALLY_TEST_KAFKA"]
        sql(self.db, "DROP DATABASE IF EXISTS tally_soak; CREATE DATABASE tally_soak", db="mysql")
        redis_cli("FLUSHALL", url=self.redis)
        self.topic = f"tally.soak.{self.run_id}"
        out = subprocess.run([PRODUCE, self.broker, "--create", self.topic, str(PARTITIONS)],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"tally-produce --create: {out.stderr}")
        # The clock: the shifted clock crosses an hour at the "hour" slot (see DESIGN).
        slot = next((t for t, k in self.schedule if k == "hour"), self.duration / 2)
        self.t_origin = now() + STARTUP_S
        self.cross_real_ms = int((self.t_origin + slot) * 1000)
        self.boundary_ms = self.cross_real_ms // HOUR * HOUR
        self.offset_ms = self.boundary_ms - self.cross_real_ms
        self.hour0 = self.boundary_ms // HOUR - 1
        bus = f"kafka://{self.broker}/{self.topic}?group=soak-{self.run_id}"
        self.cluster = Cluster(["--bus", bus, "--read-window", READ_WINDOW, "--test-clock"],
                               {"TALLY_TEST_CLOCK_OFFSET_MS": str(self.offset_ms)},
                               self.db, self.redis, self.logdir)
        log(f"test clock offset {self.offset_ms} ms: hour {self.hour0} becomes {self.hour0 + 1}"
            f" {slot:.0f} s into the traffic")
        for name in ("a", "b"):
            self.cluster.route(self.cluster.spawn(name), True)

    def shifted_ms(self):
        return int(now() * 1000) + self.offset_ms

    # -- churn
    def join(self, name="c"):
        """Starts a third member; returns once the group gave it partitions (its lag gauges
        exist from its first assignment)."""
        t0 = now()
        m = self.cluster.spawn(name)

        def assigned():
            try:
                return "tally_kafka_consumer_lag{" in m.t.get("/metrics").body
            except (OSError, http.client.HTTPException):
                return False
        got = wait_for(assigned, 30, f"{m.label} to be assigned partitions")
        self.cluster.route(m, True)
        return m, round(now() - t0, 1), bool(got)

    def leave(self, m):
        self.cluster.route(m, False)
        wait_for(lambda: m.inflight == 0, 15, f"requests in flight to {m.label}", step=0.05)
        t0 = now()
        rc = self.cluster.end(m, signal.SIGTERM, "SIGTERM")
        return rc, round(now() - t0, 1)

    def ev_held_commit(self):
        f = self.fault("held_commit")
        holder = LockHolder(self.db, HOT, HOLD_S)
        if not holder.locked.wait(15):
            holder.wait(5)
            f[2] = now()
            return {"error": f"the lock was not taken: {holder.lines}"}
        t_lock = now()
        failures = self.batch_failures()
        m, join_s, joined = self.join()
        joined_at = now() - t_lock
        time.sleep(1)  # a member for a moment, taking traffic
        rc, leave_s = self.leave(m)  # waits for c's own held batch if it was handed one
        left_at = now() - t_lock
        holder.wait(HOLD_S + 30)
        f[2] = now()
        return {"locked": " ".join(f"{b}:{i}" for b, i in HOT), "member": m.label,
                "assigned": joined, "joined_at_s": round(joined_at, 1),
                "left_at_s": round(left_at, 1), "leave_exit": rc, "leave_s": leave_s,
                "hold_s": round(f[2] - t_lock, 1),
                "batch_failures_in_hold": self.batch_failures() - failures}

    def batch_failures(self):
        return int(sum(m.metric("tally_read_batch_failures_total") or 0
                       for m in self.cluster.live()))

    def ev_member(self):
        f = self.fault("member")
        m, join_s, joined = self.join()
        time.sleep(10)  # serving traffic as a full member
        rc, leave_s = self.leave(m)
        f[2] = now()
        return {"member": m.label, "join_s": join_s, "assigned": joined, "leave_exit": rc,
                "leave_s": leave_s}

    def ev_redis_restart(self):
        f = self.fault("redis_restart")
        self.services.kill("redis")
        time.sleep(2)  # the outage
        self.services.up("redis")
        f[2] = now()
        return {"down_s": round(f[2] - f[1], 1)}

    def ev_kafka_restart(self):
        f = self.fault("kafka_restart")
        self.services.down("kafka")
        t_down = now()
        time.sleep(2)  # the outage: the broker stays down this long, as the schedule says
        self.services.up("kafka")
        t_up = now()
        caught = wait_for(lambda: all(self.drained(m) for m in self.cluster.live()), 90,
                          "the producers to deliver what they queued while Kafka was down")
        f[2] = now()
        return {"stop_s": round(t_down - f[1], 1), "down_s": round(t_up - t_down, 1),
                "producers_caught_up_s": round(f[2] - t_up, 1) if caught else None}

    def drained(self, m):
        q, d = m.metric("tally_read_events_queued_total"), m.metric(
            "tally_kafka_messages_delivered_total")
        return q is not None and d is not None and q == d

    def ev_kill9(self):
        kills = sum(1 for e in self.events if e["kind"] == "kill9")
        victim = self.cluster.current["ab"[kills % 2]]
        f = self.fault("kill9")
        with self.cluster.lock:
            victim.reads_paused = True
        drained = wait_for(lambda: victim.inflight_reads == 0 and self.drained(victim), 30,
                           f"{victim.label}'s producer to deliver every read it accepted",
                           step=0.05)
        drain_s = round(now() - f[1], 2)
        rc = self.cluster.end(victim, signal.SIGKILL, "kill -9")
        t_kill = now()
        m = self.cluster.spawn(victim.name)
        self.cluster.route(m, True)
        f[2] = now()
        if not drained:
            self.drain_failures.append(victim.label)
        return {"victim": victim.label, "exit": rc, "reads_drained_first": bool(drained),
                "drain_s": drain_s, "restart_s": round(f[2] - t_kill, 1), "new": m.label}

    def ev_hour(self):
        wait_for(lambda: now() * 1000 >= self.cross_real_ms + 500, 120, "the hour to turn")
        new = self.boundary_ms // HOUR
        # Late (the event before overran): a mark already moved says only "by then".
        self.sweep_late = now() - self.cross_real_ms / 1000 > SWEEP_BOUND_S / 2
        mark = [None]

        def moved():
            rows = sql(self.db, "SELECT hour FROM window_mark WHERE win = 1")
            mark[0] = int(rows[0][0]) if rows else None
            return mark[0] is not None and mark[0] >= new
        got = wait_for(moved, 45, "the 1h window to let the old hour go", step=0.5)
        lag = round(now() - self.cross_real_ms / 1000, 1) if got else None
        self.sweep_lag, self.sweep_mark = lag, mark[0]
        return {"hour": new, "sweep_lag_s": lag, "mark_1h": mark[0]}

    # -- running
    def sampler(self):
        while not self.stop_sampler.wait(1.0):
            for m in self.cluster.live():
                try:
                    with open(f"/proc/{m.t.proc.pid}/status") as f:
                        kib = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
                except (OSError, AttributeError, TypeError):
                    continue
                m.rss_last_kib = kib
                m.rss_peak_kib = max(m.rss_peak_kib, kib)

    def traffic(self):
        self.drain_failures = []
        self.sweep_lag = self.sweep_mark = None
        self.sweep_late = False
        wait_for(lambda: now() >= self.t_origin, STARTUP_S + 5, "the planned start", step=0.05)
        _t0[0] = self.t_start = now()
        self.workers = [Worker(self, i) for i in range(WORKERS)]
        for w in self.workers:
            w.start()
        threading.Thread(target=self.sampler, daemon=True).start()
        log(f"traffic: {RATE:.0f} requests/s from {WORKERS} workers for {self.duration:.0f} s;"
            f" churn at {', '.join(f'{t:.0f}s {k}' for t, k in self.schedule)}")
        for at, kind in self.schedule:
            wait_for(lambda: now() - self.t_start >= at, at + 600, f"slot {at:.0f}s", step=0.1)
            log(f"churn: {kind}")
            t0 = now()
            try:
                fig = getattr(self, f"ev_{kind}")()
            except Exception as e:  # noqa: BLE001 - the soak reports it and goes on
                fig = {"error": repr(e)}
                for f in self.faults:
                    if f[2] is None:
                        f[2] = now()
            fig = {"kind": kind, "at_s": round(t0 - self.t_start, 1),
                   "took_s": round(now() - t0, 1), **fig}
            self.events.append(fig)
            log(f"churn: {kind} done: {json.dumps(fig)}")
        wait_for(lambda: now() - self.t_start >= self.duration, self.duration + 60, "the end",
                 step=0.2)
        log("traffic stops; settling the writes whose answers were lost")
        self.stop_traffic.set()
        for w in self.workers:
            w.join(120)
        self.t_traffic_end = now()

    # -- after the traffic
    def merge(self):
        anon_ok, anon_amb = collections.Counter(), collections.Counter()
        keys_ok, keys_amb, pairs_ok, pairs_amb = {}, {}, set(), set()
        likes, colls = {}, {}
        stats = collections.Counter()
        fivexx, unexpected, transport = [], [], []
        pending = 0
        for w in self.workers:
            lg = w.ledger
            anon_ok.update(lg.anon_ok)
            anon_amb.update(lg.anon_amb)
            keys_ok.update(lg.keys_ok)
            keys_amb.update(lg.keys_amb)
            pairs_ok |= lg.pairs_ok
            pairs_amb |= lg.pairs_amb
            likes.update(lg.likes)
            colls.update(lg.colls)
            stats.update(lg.stats)
            fivexx += lg.fivexx
            unexpected += lg.unexpected
            transport += lg.transport
            pending += len(w.pending)
        keys_amb = {k: v for k, v in keys_amb.items() if k not in keys_ok}
        pairs_amb -= pairs_ok
        exp, amb = collections.Counter(anon_ok), collections.Counter(anon_amb)
        for it, alone in keys_ok.values():
            exp[it] += alone
        for it, alone in keys_amb.values():
            amb[it] += alone
        for _, it in pairs_ok:
            exp[it] += 1
        for _, it in pairs_amb:
            amb[it] += 1
        self.L = dict(exp=exp, amb=amb, keys_ok=keys_ok, keys_amb=keys_amb, pairs_ok=pairs_ok,
                      pairs_amb=pairs_amb, likes=likes, colls=colls, stats=stats, fivexx=fivexx,
                      unexpected=unexpected, transport=transport, pending=pending,
                      anon_ok=sum(anon_ok.values()))

    def db_totals(self):
        rows = sql(self.db, "SELECT biz, biz_id, read_cnt, like_cnt, collect_cnt FROM interactive")
        return {(b, int(i)): tuple(int(v) for v in vals) for b, i, *vals in rows}

    def settle(self):
        """Waits until every read on the topic is applied: the producers drained, no lag,
        and the totals unchanged for STABLE_S seconds; and every like's and collection's
        transition moved from transition_queue into the hours and windows."""
        t0 = now()
        state = {"last": None, "since": now()}

        def quiet():
            live = self.cluster.live()
            lag = sum(m.metric("tally_kafka_consumer_lag") or 0 for m in live)
            total = int(sql(self.db, "SELECT COALESCE(sum(read_cnt), 0) FROM interactive")[0][0])
            queued = int(sql(self.db, "SELECT count(*) FROM transition_queue")[0][0])
            if total != state["last"] or lag or queued or not all(self.drained(m) for m in live):
                state["last"], state["since"] = total, now()
            return now() - state["since"] >= STABLE_S
        ok = wait_for(quiet, SETTLE_S, "every read to be applied", step=0.5)
        self.figures["settle_s"] = round(now() - t0, 1)
        return bool(ok)

    def hashes(self, pattern):
        """The cache's hashes whose keys match pattern (redis_hashes)."""
        return redis_hashes(self.redis, pattern)

    def check(self, name, ok, detail):
        self.checks.append(Check(name, ok, detail))
        log(f"check {'PASS' if ok else 'FAIL'}: {name}: {detail}")

    def verify(self, settled):
        """Every check on the store, the cache and the API, once the reads settled."""
        self.load_rows()
        self.check_reads(settled)
        self.check_writes()
        self.check_cache()
        self.check_windows()
        self.check_tables()
        self.check_api()
        self.check_faults()
        self.check_churn()

    def load_rows(self):
        """The rows the checks compare, read once, with the traffic stopped."""
        self.totals = self.db_totals()
        self.cur = self.shifted_ms() // HOUR
        self.likes = {(int(u), b, int(i)): int(s) for u, b, i, s in
                      sql(self.db, "SELECT uid, biz, biz_id, status FROM user_like")}
        self.colls = {(int(u), b, int(i)): (int(c), int(s)) for u, c, b, i, s in
                      sql(self.db, "SELECT uid, cid, biz, biz_id, status FROM user_collection")}
        self.hourly = {(b, int(i), int(h)): (int(r), int(lk), int(c)) for b, i, h, r, lk, c in
                       sql(self.db, "SELECT biz, biz_id, hour, read_cnt, like_cnt, collect_cnt"
                           " FROM interactive_hour")}
        self.wins = {(b, int(w), int(i)): (int(r), int(lk), int(c)) for b, w, i, r, lk, c in
                     sql(self.db, "SELECT biz, win, biz_id, read_cnt, like_cnt, collect_cnt"
                         " FROM interactive_window")}

    def check_reads(self, settled):
        """Every item's read_cnt is what the ledger says (within its ambiguous reads)."""
        L, totals = self.L, self.totals
        bad, amb_items = [], 0
        for it in sorted(set(L["exp"]) | set(L["amb"]) | set(totals)):
            got = totals.get(it, (0, 0, 0))[0]
            lo, hi = L["exp"][it], L["exp"][it] + L["amb"][it]
            amb_items += L["amb"][it] > 0
            if not lo <= got <= hi:
                bad.append(f"{it[0]}:{it[1]} expected {lo}" + (f"..{hi}" if hi > lo else "")
                           + f" got {got} ({got - lo:+d})")
        want_total = sum(L["exp"].values())
        got_total = sum(v[0] for v in totals.values())
        self.figures.update(reads_expected=want_total, reads_ambiguous=sum(L["amb"].values()),
                            reads_counted=got_total)
        self.check("read totals equal the client's ledger",
                   settled and not bad,
                   (f"{len(bad)} of {len(totals)} items wrong: " + "; ".join(bad[:12])
                    if bad else f"{len(totals)} items, {got_total} reads counted = ledger")
                   + ("" if settled else "; the totals never settled") +
                   (f" (total expected {want_total}, got {got_total},"
                    f" {sum(L['amb'].values())} ambiguous on {amb_items} items)"))

    def check_writes(self):
        """Likes and collections: counts = rows, rows = ledger, answers = ledger."""
        L, totals, likes, colls = self.L, self.totals, self.likes, self.colls
        active_l, active_c = collections.Counter(), collections.Counter()
        for (u, b, i), s in likes.items():
            active_l[(b, i)] += s
        for (u, b, i), (c, s) in colls.items():
            active_c[(b, i)] += s
        bad_cnt = [f"{b}:{i} like_cnt {v[1]} rows {active_l[(b, i)]}"
                   for (b, i), v in totals.items() if v[1] != active_l[(b, i)]]
        bad_cnt += [f"{b}:{i} collect_cnt {v[2]} rows {active_c[(b, i)]}"
                    for (b, i), v in totals.items() if v[2] != active_c[(b, i)]]
        bad_cnt += [f"{b}:{i} has active rows but no counts" for (b, i) in
                    {k for k, v in active_l.items() if v} | {k for k, v in active_c.items() if v}
                    if (b, i) not in totals]
        self.check("like_cnt and collect_cnt equal the active rows", not bad_cnt,
                   "; ".join(bad_cnt[:12]) or
                   f"{sum(active_l.values())} active likes, {sum(active_c.values())} collections")
        bad_rows = []
        for u, b, i in set(likes) | {(u, it[0], it[1]) for u, it in L["likes"]}:
            got, want = likes.get((u, b, i), 0) == 1, L["likes"].get((u, (b, i)), False)
            if got != want:
                bad_rows.append(f"uid {u} {b}:{i} liked: row {got}, ledger {want}")
        for u, b, i in set(colls) | {(u, it[0], it[1]) for u, it in L["colls"]}:
            c, s = colls.get((u, b, i), (None, 0))
            got, want = c if s == 1 else None, L["colls"].get((u, (b, i)))
            if got != want:
                bad_rows.append(f"uid {u} {b}:{i} collection: row {got}, ledger {want}")
        self.check("like and collection rows equal the client's ledger",
                   not bad_rows and L["pending"] == 0,
                   "; ".join(bad_rows[:12]) + (f"; {L['pending']} writes never answered 200"
                                               if L["pending"] else "")
                   or f"{len(L['likes'])} (user, item) likes, {len(L['colls'])} collections")
        served = list(self.mismatches) + L["unexpected"]
        self.check("answers agree with the ledger (writes' own state, users' flags on page views)",
                   not served,
                   "; ".join(served[:8]) + (f" ({len(served)} in all)" if served else "")
                   or "every write's answer and every page view's flags as the ledger says")

    def serve_orphaned_fences(self):
        """A tallyd killed between a write's cache begin and end leaves that hash's fence up
        (inflight > 0) over counters that miss the write. Past the fence's `until` tallyd
        serves it as a miss and deletes it on the next get (src/cache/redis.c): ask for
        every such item and user once, as a page view would, before comparing. Returns the
        fences still inside their deadline (a kill less than 30 s before the end)."""
        young, asks = [], []
        for key, h in {**self.hashes("interactive:*"), **self.hashes("user_flags:*")}.items():
            if int(h.get("inflight", "0")) <= 0:
                continue
            if int(h.get("until", "0")) >= int(time.time() * 1000):
                young.append(key)
            elif key.startswith("interactive:"):
                _, b, i = key.split(":")
                asks.append(f"/v1/items/{b}/{i}")
            else:
                items = [f for f in h if ":" in f]
                if items:
                    b, i = items[0].split(":")
                    asks.append(f"/v1/items/{b}?ids={i}&uid={key.split(':')[1]}")
        live = self.cluster.live()
        for path in asks:
            for _ in range(2):  # the first get deletes the hash, the second fills it again
                live[0].t.get(path)
        self.figures.update(orphaned_fences_served=len(asks), young_fences=len(young))
        return set(young)

    def check_cache(self):
        """Every cached counter and user flag equals the rows (but for a fence a kill left
        less than its 30 s deadline ago, which is the documented bound)."""
        young = self.serve_orphaned_fences()
        totals, likes, colls = self.totals, self.likes, self.colls
        bad_cache, n_items, n_flags = [], 0, 0
        for key, h in self.hashes("interactive:*").items():
            if "read_cnt" not in h or key in young:
                continue
            n_items += 1
            _, b, i = key.split(":")
            want = totals.get((b, int(i)), (0, 0, 0))
            got = tuple(int(h[f]) for f in ("read_cnt", "like_cnt", "collect_cnt"))
            if got != want:
                bad_cache.append(f"{key} cached {got} rows {want} (gen {h.get('gen')},"
                                 f" inflight {h.get('inflight')})")
        for key, h in self.hashes("user_flags:*").items():
            u = int(key.split(":")[1])
            for field, v in h.items():
                if field in ("gen", "inflight", "until") or key in young:
                    continue
                n_flags += 1
                b, i = field.split(":")
                want = (likes.get((u, b, int(i)), 0) == 1) | (
                    (colls.get((u, b, int(i)), (0, 0))[1] == 1) << 1)
                if int(v) != want:
                    bad_cache.append(f"{key} {field} cached {v} rows {want}")
        self.figures.update(cached_items=n_items, cached_flags=n_flags)
        self.check("cached hashes equal the rows", not bad_cache,
                   "; ".join(bad_cache[:12]) or f"{n_items} item hashes, {n_flags} user flags")

    def check_windows(self):
        """Windows = their hours, hours = totals, and the 1h window moved on under load."""
        totals, cur, per_hour_item, wins = self.totals, self.cur, self.hourly, self.wins
        hours = collections.defaultdict(lambda: [0, 0, 0])
        bad_win = []
        for w in WINDOWS:
            sums = collections.defaultdict(lambda: [0, 0, 0])
            for (b, i, h), v in per_hour_item.items():
                if h >= cur - w + 1:
                    for k in range(3):
                        sums[(b, i)][k] += v[k]
            for it in set(sums) | {(b, i) for (b, ww, i) in wins if ww == w}:
                got = wins.get((it[0], w, it[1]), (0, 0, 0))
                if tuple(sums[it]) != got:
                    bad_win.append(f"{w}h {it[0]}:{it[1]} window {got} hours {tuple(sums[it])}")
        self.check("every window equals the sum of its hourly rows", not bad_win,
                   "; ".join(bad_win[:12]) + (f" ({len(bad_win)} in all)" if bad_win else "")
                   or f"{len(wins)} window rows over {len(per_hour_item)} hourly rows, hour {cur}")
        for (b, i, h), v in per_hour_item.items():
            for k in range(3):
                hours[(b, i)][k] += v[k]
        bad_hours = [f"{b}:{i} hours {tuple(hours[(b, i)])} totals {v}"
                     for (b, i), v in totals.items() if tuple(hours[(b, i)]) != v]
        self.check("hourly rows add up to the totals", not bad_hours,
                   "; ".join(bad_hours[:12]) or f"{len(totals)} items")
        lag = self.sweep_lag
        late = lag is not None and self.sweep_late and lag > SWEEP_BOUND_S
        self.check(f"window upkeep under load: the 1h window lets the old hour go within"
                   f" {SWEEP_BOUND_S} s of the hour turning",
                   lag is not None and (lag <= SWEEP_BOUND_S or late),
                   f"took {lag} s" + (" (first looked that late: the event before overran)"
                                      if late else "") if lag is not None else
                   f"45 s after hour {self.hour0 + 1} began, the 1h window's mark was still"
                   f" {self.sweep_mark}: its sums still held hour {self.hour0}'s counts")

    def check_tables(self):
        """Memo and hour tables hold what the ledger says, within the run's hours."""
        L, totals, per_hour_item, wins = self.L, self.totals, self.hourly, self.wins
        [(seen_n, seen_lo, seen_hi)] = sql(self.db, "SELECT count(*), COALESCE(min(ms), 0),"
                                           " COALESCE(max(ms), 0) FROM read_seen")
        [(idem_n, idem_lo, idem_hi)] = sql(self.db, "SELECT count(*), COALESCE(min(ms), 0),"
                                           " COALESCE(max(ms), 0) FROM read_idem")
        [(dead,)] = sql(self.db, "SELECT count(*) FROM read_dead_letter")
        hrs = {h for (_, _, h) in per_hour_item}
        first = int(self.t_start * 1000) + self.offset_ms - 60000
        last = int(self.t_traffic_end * 1000) + self.offset_ms + 60000
        seen_n, idem_n = int(seen_n), int(idem_n)
        pairs = (len(L["pairs_ok"]), len(L["pairs_ok"]) + len(L["pairs_amb"]))
        keys = (len(L["keys_ok"]), len(L["keys_ok"]) + len(L["keys_amb"]))
        items_touched = len(totals)
        problems = []
        if not pairs[0] <= seen_n <= pairs[1]:
            problems.append(f"read_seen {seen_n} rows, ledger pairs {pairs[0]}..{pairs[1]}")
        if not keys[0] <= idem_n <= keys[1]:
            problems.append(f"read_idem {idem_n} rows, ledger keys {keys[0]}..{keys[1]}")
        for name, n, lo, hi in (("read_seen", seen_n, seen_lo, seen_hi),
                                ("read_idem", idem_n, idem_lo, idem_hi)):
            if n and not (first <= int(lo) and int(hi) <= last):
                problems.append(f"{name} ms {lo}..{hi} outside the soak's {first}..{last}")
        if not hrs <= {self.hour0, self.hour0 + 1}:
            problems.append(f"hourly rows in hours {sorted(hrs)},"
                            f" the soak's {self.hour0}..{self.hour0 + 1}")
        if len(per_hour_item) > 2 * items_touched:
            problems.append(f"{len(per_hour_item)} hourly rows > 2 hours x {items_touched} items")
        if len(wins) > len(WINDOWS) * items_touched:
            problems.append(f"{len(wins)} window rows > 4 x {items_touched} items")
        if int(dead):
            problems.append(f"{dead} rows in read_dead_letter")
        self.figures.update(read_seen=seen_n, read_idem=idem_n, hour_rows=len(per_hour_item),
                            window_rows=len(wins), dead_letters=int(dead))
        self.check("memo and hour tables within their bounds", not problems,
                   "; ".join(problems) or
                   f"read_seen {seen_n} = pairs, read_idem {idem_n} = keys, {len(per_hour_item)}"
                   f" hourly rows in hours {sorted(hrs)}, {len(wins)} window rows, no dead letters")

    def check_api(self):
        """GET /v1/items (through the cache) answers what the rows say."""
        totals = self.totals
        m = next(iter(self.cluster.live()), None)
        bad_api = []
        if m:
            for biz, n in (("article", 60), ("video", 20)):
                for lo in range(1, n + 1, 20):
                    ids = ",".join(str(i) for i in range(lo, min(lo + 20, n + 1)))
                    for e in m.t.get(f"/v1/items/{biz}?ids={ids}").json["items"]:
                        want = totals.get((biz, e["id"]), (0, 0, 0))
                        got = (e["read_cnt"], e["like_cnt"], e["collect_cnt"])
                        if got != want:
                            bad_api.append(f"{biz}:{e['id']} served {got} rows {want}")
        self.check("GET /v1/items answers the rows", m and not bad_api,
                   "; ".join(bad_api[:12]) or f"{len(ITEMS)} items from {m.label if m else '-'}")

    def check_faults(self):
        """No 5xx and no broken connection outside the fault windows."""
        L = self.L
        outside, inside, broken = [], collections.Counter(), collections.Counter()

        def fault_at(t):
            return next((f for f in self.faults if f[1] - 1 <= t <= (f[2] or now()) + GRACE_S),
                        None)
        for t, label, op, status in L["fivexx"]:
            f = fault_at(t)
            if f:
                inside[f[0]] += 1
            else:
                outside.append(f"{status} {op} on {label} at {t - self.t_start:.1f}s")
        for t, label, op in L["transport"]:
            f = fault_at(t)
            if f:
                broken[f[0]] += 1
            else:
                outside.append(f"broken connection: {op} on {label} at {t - self.t_start:.1f}s")
        self.figures["5xx_in_faults"] = dict(inside)
        self.figures["broken_in_faults"] = dict(broken)
        self.figures["transport_errors"] = len(L["transport"])
        self.check("no 5xx and no broken connection outside the fault windows", not outside,
                   "; ".join(outside[:12]) + (f" ({len(outside)} in all)" if outside else "")
                   or f"inside them: 5xx {dict(inside) or 'none'}, broken connections"
                   f" {dict(broken) or 'none'}")

    def check_churn(self):
        """The churn ran as planned, and each kill -9 left the ledger exact."""
        self.check("every kill -9 came after the victim's producer delivered its reads",
                   not self.drain_failures, ", ".join(self.drain_failures) or
                   f"{sum(1 for e in self.events if 'reads_drained_first' in e)} kills")

        errs = [f"{e['kind']} at {e['at_s']}s: {e['error']}" for e in self.events if "error" in e]
        errs += [f"{e['kind']} at {e['at_s']}s: {e['member']} left with exit status"
                 f" {e['leave_exit']}" for e in self.events if e.get("leave_exit") not in (None, 0)]
        self.check("every churn event ran (and every member that left exited 0)", not errs,
                   "; ".join(errs) or ", ".join(e["kind"] for e in self.events))

    def stop_members(self):
        for m in self.cluster.live():
            m.final_metrics = {k: m.metric(k) for k in (
                "tally_kafka_rebalances_total", "tally_read_events_stale_total",
                "tally_read_batch_failures_total", "tally_read_events_deduplicated_total",
                "tally_read_events_idempotent_repeats_total", "tally_read_events_applied_total",
                "tally_cache_errors_total")}
            self.cluster.end(m, signal.SIGTERM, "SIGTERM")

    def verify_processes(self):
        peak = max((m.rss_peak_kib for m in self.cluster.every), default=0) / 1024
        self.figures["rss"] = {m.label: {"peak_mib": round(m.rss_peak_kib / 1024, 1),
                                         "last_mib": round(m.rss_last_kib / 1024, 1),
                                         "ended": m.how, "exit": m.rc}
                               for m in self.cluster.every}
        self.check(f"RSS of every tallyd at most {RSS_BOUND_MIB:.0f} MiB", peak <= RSS_BOUND_MIB,
                   f"peak {peak:.1f} MiB (" + ", ".join(
                       f"{m.label} {m.rss_peak_kib / 1024:.0f}" for m in self.cluster.every) + ")")
        bad = []
        for m in self.cluster.every:
            if m.how == "SIGTERM" and m.rc != 0:
                bad.append(f"{m.label} exit {m.rc}: {m.log_tail[-600:]}")
            for needle in ("AddressSanitizer", "runtime error", r"lost \d+ accepted read events"):
                if m.how == "SIGTERM" and re.search(needle, m.log_tail):
                    bad.append(f"{m.label} log says {needle!r}")
        self.check("every tallyd stopped by SIGTERM exits 0 and lost nothing", not bad,
                   "; ".join(bad) or ", ".join(f"{m.label} {m.how} {m.rc}"
                                               for m in self.cluster.every))

    # -- report
    def write_report(self):
        passed = sum(c.ok for c in self.checks)
        failed = len(self.checks) - passed
        stats = self.L["stats"] if hasattr(self, "L") else collections.Counter()
        by_op = collections.defaultdict(dict)
        for (op, outcome), n in sorted(stats.items()):
            by_op[op][outcome] = n
        version = subprocess.run([BINARY, "--version"], capture_output=True,
                                 text=True).stdout.strip()
        if os.path.abspath(BINARY).startswith(ROOT + os.sep) and subprocess.run(
                ["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no", "src"],
                capture_output=True, text=True).stdout.strip():
            version += ", built from a working tree whose src/ differs from that commit"
        res = {
            "run": self.run_id, "commit": version,
            "minutes": MINUTES, "rate": RATE, "seed": SEED, "workers": WORKERS,
            "machine": f"{os.cpu_count()} cores, {platform.system()} {platform.release()}",
            "wall_s": round(now() - self.t_begin, 1),
            "requests": sum(stats.values()), "by_op": by_op, "events": self.events,
            "figures": self.figures,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
            "passed": passed, "failed": failed, "logs": os.path.relpath(self.logdir, ROOT)}
        with open(os.path.join(self.out, "latest.json"), "w") as f:
            json.dump(res, f, indent=1)
        md = self.markdown(res)
        with open(os.path.join(self.out, "latest.md"), "w") as f:
            f.write(md)
        if WRITE_DOC and os.path.exists(self.doc):
            text = open(self.doc).read()
            begin, end = f"<!-- {self.name} figures: begin -->", f"<!-- {self.name} figures: end -->"
            if begin in text and end in text:
                head, rest = text.split(begin, 1)
                text = head + begin + "\n" + md + end + rest.split(end, 1)[1]
                with open(self.doc, "w") as f:
                    f.write(text)
        report(self.name, minutes=MINUTES, requests=res["requests"], passed=passed, failed=failed,
               reads_expected=self.figures.get("reads_expected"),
               reads_counted=self.figures.get("reads_counted"),
               rss_peak_mib=max((v["peak_mib"] for v in self.figures.get("rss", {}).values()),
                                default=None))
        return res

    def markdown(self, r):
        fig = r["figures"]
        lines = [f"Run `{r['run']}` (UTC), `{r['commit']}`, SOAK_MINUTES={r['minutes']:g},"
                 f" {r['rate']:g} requests/s, seed {r['seed']}; {r['machine']}; wall time"
                 f" {r['wall_s']:.0f} s (servers, traffic, settling, checks)." +
                 (f" A shorter run than `make soak`'s default of 10 minutes."
                  if r["minutes"] < 10 else ""), "",
                 f"**{r['passed']} passed, {r['failed']} failed.**", "",
                 "| check | result | detail |", "| --- | --- | --- |"]
        for c in r["checks"]:
            detail = c["detail"].replace("|", "\\|")
            lines.append(f"| {c['name']} | {'pass' if c['ok'] else '**FAIL**'} | {detail} |")
        lines += ["", "Churn, in order (seconds from the first request):", "",
                  "| at | event | took | figures |", "| ---: | --- | ---: | --- |"]
        for e in r["events"]:
            rest = ", ".join(f"{k} {v}" for k, v in e.items()
                             if k not in ("kind", "at_s", "took_s"))
            lines.append(f"| {e['at_s']:.0f} s | {e['kind']} | {e['took_s']:.0f} s | {rest} |")
        lines += ["", f"Requests: {r['requests']} in all.", "",
                  "| operation | answers |", "| --- | --- |"]
        for op, outcomes in r["by_op"].items():
            lines.append(f"| {op} | " + ", ".join(f"{k}: {v}" for k, v in outcomes.items()) + " |")
        rss = ", ".join(f"{k} {v['peak_mib']} MiB ({v['ended'] or 'running'})"
                        for k, v in fig.get("rss", {}).items())
        lines += ["", f"Reads: ledger {fig.get('reads_expected')} (+{fig.get('reads_ambiguous')}"
                  f" ambiguous), counted {fig.get('reads_counted')}; settled"
                  f" {fig.get('settle_s')} s after the traffic stopped. Tables: read_seen"
                  f" {fig.get('read_seen')}, read_idem {fig.get('read_idem')}, interactive_hour"
                  f" {fig.get('hour_rows')}, interactive_window {fig.get('window_rows')}. Cache:"
                  f" {fig.get('cached_items')} item hashes, {fig.get('cached_flags')} user flags."
                  f" 5xx inside fault windows: {fig.get('5xx_in_faults') or 'none'}; transport"
                  f" errors: {fig.get('transport_errors')}.", "",
                  f"Peak RSS per tallyd (incarnation): {rss}.", ""]
        return "\n".join(lines)

    def main(self):
        self.t_begin = now()
        code = 1
        try:
            self.setup()
            self.traffic()
            self.merge()
            settled = self.settle()
            cur = self.shifted_ms() // HOUR
            wait_for(lambda: int((sql(self.db, "SELECT COALESCE(max(hour), 0) FROM window_mark"
                                      " WHERE win = 1") or [[0]])[0][0]) >= cur, 20,
                     "the 1h window to be current once idle", step=0.5)
            self.verify(settled)
            self.stop_members()
            self.verify_processes()
            code = 0 if all(c.ok for c in self.checks) else 1
        except BaseException as e:  # noqa: BLE001 - reported, then everything is stopped
            self.check("the soak ran to the end", False, f"{type(e).__name__}: {e}")
            if not isinstance(e, (Exception, KeyboardInterrupt)):
                raise
        finally:
            self.stop_traffic.set()
            self.stop_sampler.set()
            if hasattr(self, "cluster"):
                for m in self.cluster.live():
                    self.cluster.end(m, signal.SIGTERM, "SIGTERM")
            log("stopping the soak's servers")
            try:
                self.services.down()
            except Exception as e:  # noqa: BLE001
                log(f"services.sh down failed: {e}")
        res = self.write_report()
        print()
        print(f"soak: {len(self.checks)} checks; logs in {res['logs']}; figures in"
              f" {os.path.relpath(self.out, ROOT)}/latest.md"
              + (f" and {os.path.relpath(self.doc, ROOT)}" if WRITE_DOC else ""))
        for c in self.checks:
            print(f"  {'PASS' if c.ok else 'FAIL'}  {c.name}"
                  + ("" if c.ok else f"\n        {c.detail}"))
        print(f"soak: {res['passed']} passed, {res['failed']} failed")
        return code


def on_signal(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_signal)
    sys.exit(Soak().main())
