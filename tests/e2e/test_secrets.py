"""Secrets: URLs from files, authenticated and encrypted connections, and no password in
any log line, error, /metrics or --help output.

Every run checks @PATH and the redaction against unreachable servers; with the servers of
`make test` (scripts/services.sh secures them: Redis with a password, MariaDB's tally user
REQUIRE SSL, a SASL/PLAIN Kafka listener) it also checks Redis AUTH, MariaDB over TLS and
Kafka over SASL, and greps everything tallyd printed for the services' passwords.
"""
import os
import signal
import subprocess
import time
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import pytest

from tallyd import BINARY, MYSQL, REDIS, free_port, redis_cli, with_path

KAFKA_SASL = os.environ.get("TALLY_TEST_KAFKA_SASL")

# Passwords of this file's own URLs: distinctive, so a grep finds any leak of them.
WRONG_REDIS = "wrong-redis-pw-J3k8"
WRONG_MYSQL = "wrong/mysql-pw-H6d2"  # percent-encoded in URLs
WRONG_KAFKA = "wrong-kafka-pw-T9b4"
ACL_PASSWORD = "acl-pw-M5n1"
FAKE = "fake-pw-W2q6"  # for servers that are not there
AS_USER = "pw-as-user-R7x3"  # a password written where the user goes: SCHEME://AS_USER@HOST


def url_password(url):
    """The decoded password of a URL: userinfo, or a secret option."""
    u = urlsplit(url)
    if u.password:
        return unquote(u.password)
    return dict(parse_qsl(u.query)).get("sasl.password")


def secrets():
    """Every password a test here puts in a URL, decoded and as written in URLs."""
    words = {WRONG_REDIS, WRONG_MYSQL, WRONG_KAFKA, ACL_PASSWORD, FAKE, AS_USER}
    words |= {url_password(u) for u in (MYSQL, REDIS, KAFKA_SASL) if u and url_password(u)}
    return words | {quote(w, safe="") for w in words}


def assert_no_secret(text, where):
    """No password in text; nor a sanitizer report (the error paths here are rarely run)."""
    for w in secrets():
        assert w not in text, f"{w!r} appears in {where}:\n{text}"
    assert "Sanitizer" not in text and "runtime error" not in text, text


def run_once(*args, env=None, timeout=60):
    """tallyd expected to exit by itself: (status, stdout + stderr)."""
    out = subprocess.run([BINARY, "--listen", f"127.0.0.1:{free_port()}", *args],
                         capture_output=True, text=True, timeout=timeout,
                         env=dict(os.environ, **(env or {})))
    return out.returncode, out.stdout + out.stderr


def wait_for(cond, timeout=30, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def mysql_url(password=None, db="tally", **options):
    """The test MariaDB URL with another password, database or options."""
    u = urlsplit(with_path(MYSQL, db))
    if password is not None:
        u = u._replace(netloc=f"{u.username}:{quote(password, safe='')}@{u.hostname}:{u.port}")
    opts = dict(parse_qsl(u.query), **options)
    query = "&".join(f"{k}={v}" for k, v in opts.items() if v is not None)
    return u._replace(query=query).geturl()


def redis_url(user="", password=None):
    u = urlsplit(REDIS)
    return f"redis://{user}:{quote(password, safe='')}@{u.hostname}:{u.port}"


def kafka_url(topic, password=None):
    url = KAFKA_SASL.replace("/?", f"/{topic}?", 1) + f"&group=g-{topic}&session_timeout_ms=2000"
    return url.replace(url_password(KAFKA_SASL), password) if password else url


needs_redis = pytest.mark.skipif(not REDIS, reason="needs the test Redis")
needs_mysql = pytest.mark.skipif(not MYSQL, reason="needs the test MariaDB")
needs_kafka = pytest.mark.skipif(not KAFKA_SASL, reason="needs the SASL Kafka listener")


# ---------------------------------------------------------------- @PATH


def test_urls_from_files(tmp_path, db, spawn):
    store, cache = tmp_path / "store.url", tmp_path / "cache.url"
    store.write_text(db.url + "\n")
    cache.write_text((REDIS or "none") + "\r\n")
    t = spawn("--bus", "local", store=f"@{store}", cache=f"@{cache}").start()
    assert t.request("PUT", "/v1/users/1/likes/article/5").status == 200
    assert t.get("/v1/items/article/5").json["like_cnt"] == 1
    assert t.stop() == 0
    assert_no_secret(t.output(), "the log")
    # the variables take @PATH too
    t = spawn(store=f"@{store}", env={"TALLY_CACHE": f"@{cache}"})
    t.args.remove("--cache")
    t.args.remove(t.cache)
    t.start()
    assert t.get("/v1/items/article/5").json["like_cnt"] == 1
    assert t.stop() == 0


@pytest.mark.parametrize("content", [None, "", "\n", "sqlite:a\0b"])
@pytest.mark.parametrize("flag", ["--store", "--cache", "--bus"])
def test_bad_url_file_exits_2_naming_it(tmp_path, flag, content):
    path = tmp_path / "url"
    if content is not None:
        path.write_bytes(content.encode())
    rc, out = run_once(flag, f"@{path}")
    assert rc == 2
    assert out.count("\n") == 1 and str(path) in out and flag in out, out


# ---------------------------------------------------------------- Redis AUTH


@needs_redis
def test_redis_auth_on_connect_and_reconnect(tallyd):
    assert url_password(REDIS), "scripts/services.sh starts Redis with a password"
    assert tallyd.get("/v1/items/article/9").status == 200
    wait_for(lambda: redis_cli("EXISTS", "interactive:article:9") == "1", what="a cached item")
    # Redis drops every client: each connection of tallyd must AUTH again when it reconnects.
    redis_cli("CLIENT", "KILL", "TYPE", "normal")
    redis_cli("DEL", "interactive:article:9")

    def cached_again():
        assert tallyd.get("/v1/items/article/9").status == 200
        return redis_cli("EXISTS", "interactive:article:9") == "1"

    wait_for(cached_again, what="the cache after a reconnect")
    assert tallyd.metric("tally_redis_auth_failures_total") == 0
    assert_no_secret(tallyd.output(), "the log")


@needs_redis
def test_redis_acl_user(db, spawn):
    redis_cli("ACL", "SETUSER", "tally-acl", "on", f">{ACL_PASSWORD}", "~*", "+@all")
    try:
        t = spawn(store=db.url, cache=redis_url("tally-acl", ACL_PASSWORD)).start()
        assert t.get("/v1/items/article/3").status == 200
        wait_for(lambda: redis_cli("EXISTS", "interactive:article:3") == "1", what="a fill")
        assert t.stop() == 0
        assert_no_secret(t.output(), "the log")
    finally:
        redis_cli("ACL", "DELUSER", "tally-acl")


@needs_redis
@pytest.mark.parametrize("user,password", [("", WRONG_REDIS), ("nobody", WRONG_REDIS), (None, None)])
def test_redis_refused_credentials_stop_the_start(db, user, password):
    u = urlsplit(REDIS)
    cache = redis_url(user, password) if password else f"redis://{u.hostname}:{u.port}"
    rc, out = run_once("--store", db.url, "--cache", cache)
    assert rc == 1
    assert "refused the credentials of --cache" in out.strip().splitlines()[-1], out
    assert_no_secret(out, "the output")


@needs_redis
def test_redis_password_changed_while_running_is_an_outage(tallyd):
    old = url_password(REDIS)
    redis_cli("CONFIG", "SET", "requirepass", WRONG_REDIS)
    try:
        redis_cli("CLIENT", "KILL", "TYPE", "normal", url=redis_url("", WRONG_REDIS))

        def refused():
            assert tallyd.get("/v1/items/article/4").status == 200  # served from the store
            return tallyd.metric("tally_redis_auth_failures_total") > 0

        wait_for(refused, what="a refused AUTH")
    finally:
        redis_cli("CONFIG", "SET", "requirepass", old, url=redis_url("", WRONG_REDIS))
    assert "refused the credentials: WRONGPASS" in tallyd.output()
    wait_for(lambda: "answers again" in tallyd.output()
             or tallyd.get("/v1/items/article/4").status != 200, what="Redis back")
    assert_no_secret(tallyd.output(), "the log")
    assert_no_secret(tallyd.get("/metrics").body, "/metrics")


# ---------------------------------------------------------------- MariaDB over TLS


@needs_mysql
def test_mariadb_requires_tls_of_tally_and_tallyd_uses_it(tallyd, db):
    """The tally user may only connect over TLS, so every store call that works ran over it."""
    opts = dict(parse_qsl(urlsplit(MYSQL).query))
    assert opts.get("ssl") == "1" and "ssl_ca" in opts
    assert "REQUIRE SSL" in db.sql("SHOW CREATE USER 'tally'@'%'", db="mysql")[0][0]
    assert tallyd.request("PUT", "/v1/users/1/likes/article/1").status == 200
    assert db.sql("SELECT like_cnt FROM interactive WHERE biz_id = 1") == [(1,)]


@needs_mysql
def test_mariadb_without_tls_is_refused(db):
    rc, out = run_once("--store", mysql_url(db=db.name, ssl=None, ssl_ca=None))
    assert rc == 1, out
    assert "cannot open mysql store" in out
    assert_no_secret(out, "the output")


@needs_mysql
def test_mariadb_tls_without_ca_connects_unverified(db, spawn):
    t = spawn(store=mysql_url(db=db.name, ssl_ca=None)).start()
    assert t.request("PUT", "/v1/users/1/likes/article/2").status == 200
    assert t.stop() == 0


@needs_mysql
def test_mariadb_wrong_ca_is_refused(tmp_path, db):
    other = tmp_path / "other-ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=not tally's CA", "-keyout", str(tmp_path / "other.key"),
                    "-out", str(other)], check=True, capture_output=True)
    rc, out = run_once("--store", mysql_url(db=db.name, ssl_ca=str(other)))
    assert rc == 1, out
    assert "cannot open mysql store" in out and "(TLS)" in out
    assert "certificate" in out
    assert_no_secret(out, "the output")


@needs_mysql
def test_mariadb_wrong_password_is_refused_without_echo(db):
    rc, out = run_once("--store", mysql_url(password=WRONG_MYSQL, db=db.name))
    assert rc == 1
    assert "Access denied" in out
    assert_no_secret(out, "the output")


# ---------------------------------------------------------------- Kafka over SASL


@needs_kafka
def test_kafka_sasl_plain_delivers_reads(db, spawn):
    topic = f"tally.sasl.{os.getpid()}.{int(time.time() * 1000)}"
    t = spawn("--bus", kafka_url(topic), store=db.url).start()
    for i in range(50):
        assert t.request("POST", "/v1/items/article/77/reads").status == 202

    def counted():
        return db.sql("SELECT read_cnt FROM interactive WHERE biz_id = 77") == [(50,)]

    wait_for(counted, timeout=60, what="50 reads through the SASL listener")
    assert t.metric("tally_kafka_messages_delivered_total") == 50
    assert t.stop() == 0
    assert_no_secret(t.output(), "the log")


@needs_kafka
def test_kafka_wrong_sasl_password_is_logged_without_it(db, spawn):
    topic = f"tally.sasl.bad.{os.getpid()}"
    t = spawn("--bus", kafka_url(topic, WRONG_KAFKA), store=db.url).start()
    wait_for(lambda: "Authentication failed" in t.output(), what="the broker's refusal")
    assert_no_secret(t.output(), "the log")
    assert_no_secret(t.get("/metrics").body, "/metrics")
    t.stop()
    assert_no_secret(t.output(), "the log")


# ---------------------------------------------------------------- nothing leaks


def test_no_password_in_errors_help_or_unreachable_servers(db, spawn):
    """Config errors, --help, --version, and servers that are not there: never a password."""
    port = free_port()  # nothing listens there
    outputs = []
    for args in (
        ["--help"], ["--version"],
        ["--store", f"mysql://tally:{FAKE}@127.0.0.1:{port}/tally?nope=1"],
        ["--store", f"mysql://tally:{FAKE}@127.0.0.1:99999/tally"],
        ["--store", f"mysql://tally:{FAKE}?@127.0.0.1:{port}/tally"],
        ["--store", f"mysql:/tally:{FAKE}@127.0.0.1/tally"],
        ["--cache", f"redis://:{FAKE}@127.0.0.1:{port}/0"],
        ["--cache", f"redis://:{FAKE}@127.0.0.1:{port} "],
        ["--bus", f"kafka://127.0.0.1:{port}/t?sasl.password={FAKE}"],
        ["--bus", f"kafka://127.0.0.1:{port}/t?security.protocol=SASL_PLAINTEXT"
                  f"&sasl.username=u&sasl.password={FAKE}&sasl.jaas=1"],
        ["--bus", f"kafka://u:{FAKE}@127.0.0.1:{port}/t"],
    ):
        rc, out = run_once("--store", db.url, *args)
        assert rc == (0 if args[0] in ("--help", "--version") else 2), (args, out)
        outputs.append(out)
    rc, out = run_once("--store", f"mysql://tally:{FAKE}@127.0.0.1:{port}/tally?ssl=1")
    assert rc == 1
    outputs.append(out)
    # Redis and Kafka that are not there: tallyd runs, logs the outage, serves from the store.
    t = spawn("--bus", f"kafka://127.0.0.1:{port}/t?security.protocol=SASL_PLAINTEXT"
               f"&sasl.mechanism=PLAIN&sasl.username=u&sasl.password={FAKE}",
               store=db.url, cache=f"redis://:{FAKE}@127.0.0.1:{port}").start()
    assert t.request("PUT", "/v1/users/1/likes/article/8").status == 200
    wait_for(lambda: "Connection refused" in t.output(), what="librdkafka's connect error")
    outputs.append(t.get("/metrics").body)
    t.stop(sig=signal.SIGKILL)  # its producer would wait for the broker at a clean stop
    outputs.append(t.output())
    for out in outputs:
        assert_no_secret(out, "tallyd's output")
    assert "***" in "".join(outputs)


def test_a_password_written_as_the_user_is_hidden(db):
    """SCHEME://SECRET@HOST gives a user and no password: a password in the wrong place,
    as far as anyone can tell, so every message shows *** there. MariaDB takes such a URL
    (and fails to connect: it is not there); Redis and Kafka refuse it."""
    port = free_port()  # nothing listens there
    for args, status, shown in (
        (["--store", f"mysql://{AS_USER}@127.0.0.1:{port}/tally"], 1,
         f"cannot open mysql store ***@127.0.0.1:{port}/tally"),
        (["--store", f"mysql://{AS_USER}@127.0.0.1:{port}/tally?nope=1"], 2,
         f"'mysql://***@127.0.0.1:{port}/tally?nope=1'"),
        (["--cache", f"redis://{AS_USER}@127.0.0.1:{port}"], 2,
         f"'redis://***@127.0.0.1:{port}'"),
        (["--bus", f"kafka://{AS_USER}@127.0.0.1:{port}/t"], 2,
         f"'kafka://***@127.0.0.1:{port}/t'"),
    ):
        rc, out = run_once("--store", db.url, *args)
        assert rc == status and shown in out, (args, out)
        assert_no_secret(out, "tallyd's output")


@needs_mysql
@needs_redis
@needs_kafka
def test_no_password_anywhere_with_every_server_secured(db, spawn):
    """A whole life with every URL holding a password: start, traffic, /metrics, Redis
    dropping the connections, stop; then starts that fail. Zero hits for any password."""
    topic = f"tally.secrets.{os.getpid()}.{int(time.time() * 1000)}"
    t = spawn("--bus", kafka_url(topic), store=db.url).start()
    for i in range(20):
        assert t.request("PUT", f"/v1/users/{i + 1}/likes/article/1").status == 200
        assert t.request("POST", "/v1/items/article/1/reads").status == 202
    redis_cli("CLIENT", "KILL", "TYPE", "normal")
    wait_for(lambda: db.sql("SELECT read_cnt FROM interactive WHERE biz_id = 1") == [(20,)],
             timeout=60, what="the reads")
    texts = [t.get("/metrics").body, t.get("/v1/items/article/1").body]
    assert t.stop() == 0
    texts.append(t.output())
    assert "mysql://tally:***@" in t.output() and "sasl.password=***" in t.output()
    for args in (["--cache", redis_url("", WRONG_REDIS)],
                 ["--store", mysql_url(password=WRONG_MYSQL, db=db.name)]):
        rc, out = run_once("--store", db.url, "--bus", kafka_url(topic), *args)
        assert rc == 1
        texts.append(out)
    for text in texts:
        assert_no_secret(text, "tallyd's output")
