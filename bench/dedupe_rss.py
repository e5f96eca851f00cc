#!/usr/bin/env python3
"""Memory of tallyd while read de-duplication tracks many distinct viewers.

Produces N reads to Kafka, each a distinct (viewer, item) pair (viewer v<i>, item i % 1000 + 1),
drains them into a fresh store with `--read-window 8h`, samples tallyd's RSS every half second
and checks that every read was counted (no pair repeats, so none is a duplicate). The
de-duplication state lives in the store (`read_seen`), so RSS should stay at the figure of an
ordinary drain whatever N is. Prints one JSON line.

usage: bench/dedupe_rss.py [N] [sqlite|mysql]   (MariaDB, Redis and Kafka up: make services-up)
"""
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")
URLS = dict(shlex.split(line)[0].split("=", 1) for line in subprocess.run(
    [os.path.join(ROOT, "scripts/services.sh"), "urls"], capture_output=True, text=True,
    check=True).stdout.splitlines())


def rss_kib(pid, field="VmRSS"):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def applied(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("tally_read_events_applied_total"))


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
    store_kind = sys.argv[2] if len(sys.argv) > 2 else "sqlite"
    tmp = tempfile.mkdtemp()
    topic = f"bench.dedupe.{int(time.time())}"
    kafka = URLS["TALLY_TEST_KAFKA"]
    env = dict(os.environ, TALLY_PRODUCE_VIEWERS=str(n),
               TALLY_PRODUCE_TS=f"{int(time.time() * 1000)}:3600000")
    t0 = time.time()
    subprocess.run([os.path.join(BUILD, "tally-produce"), kafka, topic, str(n), "1000"],
                   env=env, check=True, capture_output=True, timeout=3600)
    produced_s = time.time() - t0
    store = f"sqlite:{tmp}/dedupe.db" if store_kind == "sqlite" else URLS["TALLY_TEST_MYSQL"]
    port = 18777
    p = subprocess.Popen([os.path.join(BUILD, "tallyd"), "--listen", f"127.0.0.1:{port}",
                          "--store", store, "--bus", f"kafka://{kafka}/{topic}?group={topic}",
                          "--read-window", "8h"], stdout=subprocess.DEVNULL,
                         stderr=open(f"{tmp}/tallyd.log", "w"))
    samples, t0, done = [], time.time(), 0
    try:
        while time.time() - t0 < 3600:
            time.sleep(0.5)  # not a wait: the sampling interval of the RSS curve
            samples.append(rss_kib(p.pid))
            try:
                done = applied(port)
            except OSError:
                continue
            if done >= n:
                break
        peak = rss_kib(p.pid, "VmHWM")
    finally:
        p.terminate()
        p.wait(60)
    res = {"reads": n, "distinct_viewer_item_pairs": n, "store": store_kind,
           "applied": int(done), "produce_s": round(produced_s, 1),
           "drain_s": round(time.time() - t0, 1),
           "rss_mib_after_10pct": round(samples[len(samples) // 10] / 1024, 1),
           "rss_mib_at_end": round(samples[-1] / 1024, 1), "peak_rss_mib": round(peak / 1024, 1)}
    print(json.dumps(res))
    return 0 if done == n else 1


if __name__ == "__main__":
    sys.exit(main())
