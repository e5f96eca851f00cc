"""Who may call, and as whom (issue 9): API keys and scopes, users' JWTs bound to their
uid, tallyctl key, the open API and its loopback rule, and HTTPS.

Every refusal is checked twice: the status and body the caller sees, and the store, read
directly (SQLite file or MariaDB database), which must not have changed by a single row.
Tokens are built by hand here (base64url header and payload, signed with `cryptography`
or hmac) so that forged and malformed ones can be built as easily as good ones.
"""
import base64
import datetime
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import signal
import socket
import ssl
import statistics
import subprocess
import threading
import time
import warnings

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tallyd import BINARY, MYSQL

# No store, cache or bus of its own to test: see conftest.py.
pytestmark = pytest.mark.any_config

TALLYCTL = os.environ.get("TALLYCTL", os.path.join(os.path.dirname(__file__),
                                                   "../../build/tallyctl"))
ISSUER = "https://id.example.test"
AUDIENCE = "tally"


# ---------------------------------------------------------------- helpers


def b64url(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_key(name, scopes):
    """A token and its keys-file line, made the way tallyctl makes them."""
    token = b64url(secrets.token_bytes(32))
    return token, f"{name} {scopes} {hashlib.sha256(token.encode()).hexdigest()}"


def write_keys(path, lines):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write("# tally API keys\n\n" + "\n".join(lines) + "\n")
    os.replace(tmp, path)


def sign(alg, key, claims, header=None):
    """A compact JWT. key: RSA/EC private key, HMAC secret bytes, or None for alg none."""
    head = b64url(json.dumps(header or {"alg": alg, "typ": "JWT"}))
    body = b64url(json.dumps(claims))
    msg = f"{head}.{body}".encode()
    if alg in ("RS256", "RS512"):
        h = hashes.SHA256() if alg == "RS256" else hashes.SHA512()
        sig = key.sign(msg, padding.PKCS1v15(), h)
    elif alg == "ES256":
        r, s = decode_dss_signature(key.sign(msg, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    elif alg == "HS256":
        sig = hmac.new(key, msg, hashlib.sha256).digest()
    else:
        sig = b""
    return f"{head}.{body}.{b64url(sig)}"


def claims(sub="42", ttl=300, **extra):
    c = {"sub": sub, "exp": int(time.time()) + ttl, "iat": int(time.time())}
    c.update(extra)
    return {k: v for k, v in c.items() if v is not None}


def public_pem(private_key):
    return private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def snapshot(db):
    """Every row that counts something, apart from the fence item (see fence())."""
    return (sorted(db.sql("SELECT biz, biz_id, read_cnt, like_cnt, collect_cnt FROM interactive"
                          " WHERE biz <> 'fence'")),
            sorted(db.sql("SELECT uid, biz, biz_id, status FROM user_like")),
            sorted(db.sql("SELECT uid, cid, biz, biz_id, status FROM user_collection")))


def fence(t, token):
    """Waits until every read accepted so far is in the store: reads go through one ordered
    queue, so once an authorized read queued after them has landed, so have they."""
    n = int(t.get("/v1/items/fence/1", token=token).json["read_cnt"]) + 1
    assert t.request("POST", "/v1/items/fence/1/reads", token=token).status == 202
    deadline = time.time() + 20
    while t.get("/v1/items/fence/1", token=token).json["read_cnt"] < n:
        assert time.time() < deadline, "the fence read never landed"
        time.sleep(0.02)


def assert_error(r, status, code):
    assert r.status == status, r
    assert r.headers["content-type"] == "application/json", r.headers
    assert r.json["error"]["code"] == code, r
    assert r.json["error"]["message"]


def assert_401(r):
    assert r.status == 401, r
    assert r.headers.get("www-authenticate") == "Bearer", r.headers
    if r.body:  # HEAD has none
        assert_error(r, 401, "unauthenticated")


def wait_until(fn, timeout=10):
    deadline = time.time() + timeout
    while not fn():
        if time.time() > deadline:
            return False
        time.sleep(0.05)
    return True


def report(name, **figures):
    """Records measured figures (make test prints them at the end)."""
    line = json.dumps({"test": name, **figures})
    print(line)
    if os.environ.get("TALLY_REPORT"):
        with open(os.environ["TALLY_REPORT"], "a") as f:
            f.write(line + "\n")


@pytest.fixture
def server(spawn):
    """Like spawn, and checks at the end that each tallyd stopped cleanly, sanitizers quiet."""
    started = []

    def make(*args, **kw):
        t = spawn(*args, **kw)
        started.append(t)
        return t

    yield make
    for t in started:
        if t.proc is not None:
            rc = t.stop()
            assert rc == 0, f"tallyd exited with {rc}:\n{t.output()}"
        assert "ERROR: AddressSanitizer" not in t.output()
        assert "runtime error" not in t.output()


def run(*argv, timeout=20):
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------- API keys and scopes

# Every route, with a request that succeeds when allowed: (method, path, body, status, scope).
ROUTES = [
    ("GET", "/v1/items/article/1", None, 200, "read"),
    ("HEAD", "/v1/items/article/1", None, 200, "read"),
    ("GET", "/v1/items/article?ids=1,2", None, 200, "read"),
    ("HEAD", "/v1/items/article?ids=1", None, 200, "read"),
    ("POST", "/v1/items/article/1/reads", None, 202, "write"),
    ("POST", "/v1/items/article/1/reads", {"uid": 5}, 202, "write"),
    ("PUT", "/v1/users/5/likes/article/1", None, 200, "write"),
    ("PUT", "/v1/users/6/likes/article/2", None, 200, "write"),
    ("DELETE", "/v1/users/6/likes/article/2", None, 200, "write"),
    ("GET", "/v1/users/5/likes/article", None, 200, "read"),
    ("HEAD", "/v1/users/5/likes/article", None, 200, "read"),
    ("PUT", "/v1/users/5/collections/3/items/article/1", None, 200, "write"),
    ("PUT", "/v1/users/6/collections/3/items/article/2", None, 200, "write"),
    ("DELETE", "/v1/users/6/collections/3/items/article/2", None, 200, "write"),
    ("GET", "/v1/users/5/collections/3/items", None, 200, "read"),
    ("GET", "/v1/top/article?by=like_cnt", None, 200, "read"),
    ("PATCH", "/v1/items/article/1", None, 405, "write"),  # a method no route has
    ("GET", "/metrics", None, 200, "metrics"),
    ("HEAD", "/metrics", None, 200, "metrics"),
    ("GET", "/healthz", None, 200, "open"),
    ("HEAD", "/healthz", None, 200, "open"),
    ("GET", "/ui", None, 200, "open"),  # the operator's page: no data in it
    ("GET", "/ui/", None, 200, "open"),
    ("GET", "/v1/nope", None, 404, "any"),
    ("GET", "/nope/at/all", None, 404, "any"),
    ("DELETE", "/v1/items/article/1/reads/x", None, 404, "any"),
]
SCOPE_SETS = ["read", "write", "metrics", "admin", "read,write", "read,metrics", "write,metrics"]


def allows(scopes, need):
    have = set(scopes.split(","))
    return need in ("open", "any") or "admin" in have or need in have


@pytest.fixture
def keyed(server, tmp_path):
    """A tallyd with one key per scope set; returns (tallyd, {scopes: token})."""
    tokens, lines = {}, []
    for i, scopes in enumerate(SCOPE_SETS):
        tokens[scopes], line = new_key(f"k{i}", scopes)
        lines.append(line)
    write_keys(tmp_path / "keys", lines)
    t = server("--keys", str(tmp_path / "keys")).start()
    return t, tokens


def test_every_scope_against_every_route(keyed, db):
    t, tokens = keyed
    # Refused callers first, on an empty store: not one row may appear.
    before = snapshot(db)
    refused = {"no credential": "", "unknown token": new_key("x", "admin")[0],
               **{s: tokens[s] for s in SCOPE_SETS if "write" not in s and "admin" not in s}}
    for who, token in refused.items():
        for method, path, body, status, need in ROUTES:
            r = t.request(method, path, body=body, token=token)
            if need == "open":
                assert r.status == status, (who, method, path, r)
            elif token == "" or who == "unknown token":
                assert_401(r)
            elif allows(who, need):
                assert r.status == status, (who, method, path, r)
            else:
                assert r.status == 403, (who, method, path, r)
                if method != "HEAD":
                    assert_error(r, 403, "permission_denied")
    fence(t, tokens["admin"])
    assert snapshot(db) == before
    # Then every scope set, each route answered or refused by its scope.
    for scopes in SCOPE_SETS:
        for method, path, body, status, need in ROUTES:
            r = t.request(method, path, body=body, token=tokens[scopes])
            want = status if allows(scopes, need) else 403
            assert r.status == want, (scopes, method, path, r)
    fence(t, tokens["admin"])
    # Four scope sets may write: each read 2x, liked and collected item 1 as uid 5.
    assert snapshot(db) == ([("article", 1, 8, 1, 1), ("article", 2, 0, 0, 0)],
                            [(5, "article", 1, 1), (6, "article", 2, 0)],
                            [(5, 3, "article", 1, 1), (6, 3, "article", 2, 0)])


def test_401_shape_and_header(keyed, db):
    t, tokens = keyed
    good = tokens["admin"]
    for headers in [{}, {"Authorization": ""}, {"Authorization": "Bearer"},
                    {"Authorization": "Bearer "}, {"Authorization": f"Basic {good}"},
                    {"Authorization": good}, {"Authorization": f"Bearer {good[:-1]}"},
                    {"Authorization": f"Bearer {good}x"}, {"Authorization": f"Bearer x{good}"},
                    {"Authorization": "Bearer " + "A" * 10000},
                    {"Authorization": f"Token {good}"}]:
        for method, path in [("GET", "/v1/items/article/1"), ("PUT", "/v1/users/1/likes/a/1"),
                             ("GET", "/metrics"), ("GET", "/v1/unknown"), ("GET", "/x"),
                             ("POST", "/v1/items/article/1/reads")]:
            r = t.request(method, path, headers=headers, token="")
            assert_401(r)
            assert r.json == {"error": {"code": "unauthenticated",
                                        "message": r.json["error"]["message"]}}
    # The scheme is case-insensitive; the token around it may carry spaces.
    for auth in [f"bearer {good}", f"BEARER {good}", f"Bearer  {good}", f"Bearer {good} "]:
        r = t.request("GET", "/v1/items/article/1", headers={"Authorization": auth})
        assert r.status == 200, (auth, r)
    # Two credentials on one request are refused outright.
    with socket.create_connection(("127.0.0.1", t.port), timeout=5) as s:
        s.sendall(f"PUT /v1/users/1/likes/article/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                  f"{good}\r\nAuthorization: Bearer {good}\r\nContent-Length: 0\r\n\r\n".encode())
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    # /healthz needs nothing, and a bad credential does not spoil it.
    assert t.get("/healthz", token="").status == 200
    assert t.get("/healthz", token="wrong").status == 200
    fence(t, good)
    assert snapshot(db) == ([], [], [])


def test_keys_file_is_reloaded_on_sighup(server, tmp_path, db):
    keys = tmp_path / "keys"
    old, old_line = new_key("old", "read,write")
    new, new_line = new_key("new", "read,write")
    admin, admin_line = new_key("ops", "admin")
    write_keys(keys, [old_line, admin_line])
    t = server("--keys", str(keys)).start()
    assert t.get("/v1/items/article/1", token=old).status == 200
    assert_401(t.get("/v1/items/article/1", token=new))

    # Requests keep being answered, with a key that stays, through every reload below.
    stop, seen = threading.Event(), []

    def steady():
        conn = t.connect()
        while not stop.is_set():
            seen.append(t.request("GET", "/v1/items/article/9", conn=conn, token=admin).status)
        conn.close()

    th = threading.Thread(target=steady)
    th.start()
    try:
        write_keys(keys, [old_line, new_line, admin_line])
        t.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: t.get("/v1/items/article/1", token=new).status == 200)
        write_keys(keys, [new_line, admin_line])  # old is revoked
        t.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: t.get("/v1/items/article/1", token=old).status == 401)
        before = snapshot(db)
        r = t.request("PUT", "/v1/users/1/likes/article/1", token=old)
        assert_401(r)

        # A file that does not parse, or is gone, leaves the keys in force, with an error.
        for broken in ["new read,write nothex\n", f"{new_line}\n{new_line}\n",
                       f"{new_line}\nx sudo {'0' * 64}\n", None]:
            logged = t.output().count("keeping the API keys in force")
            if broken is None:
                os.unlink(keys)
            else:
                keys.write_text(f"{admin_line}\n{old_line}\n{broken}")
            t.proc.send_signal(signal.SIGHUP)
            assert wait_until(lambda: t.output().count("keeping the API keys in force") > logged)
            assert t.get("/v1/items/article/1", token=new).status == 200, broken
            assert_401(t.get("/v1/items/article/1", token=old))
    finally:
        stop.set()
        th.join()
    assert seen and set(seen) == {200}, set(seen)
    fence(t, admin)
    assert snapshot(db) == before
    err = [ln for ln in t.output().splitlines() if "keeping the API keys" in ln]
    assert len(err) == 4 and f"{keys}:3" in err[0], err


def test_bad_keys_file_at_start_is_refused(tmp_path, db):
    """A keys file that does not load whole stops tallyd before it serves: one line naming
    the file (and the line), never a hash, exit 2. So does one that would lock every caller
    out (no key) or give one token two names (which scopes would it get?)."""
    keys = tmp_path / "keys"
    for text, where in [("ok read " + "a" * 64 + "\nbad read,admin " + "a" * 63 + "\n", ":2:"),
                        ("# c\n\nsvc read,root " + "a" * 64 + "\n", ":3:"),
                        ("svc read " + "a" * 64 + " extra\n", ":1:"),
                        ("svc read, " + "a" * 64 + "\n", ":1:"),
                        ("", ": no keys"), ("# tally API keys\n\n# none yet\n", ": no keys"),
                        ("svc read,write " + "a" * 64 + "\nroot admin " + "a" * 64 + "\n",
                         ":2: the same token")]:
        keys.write_text(text)
        r = run(BINARY, "--listen", "127.0.0.1:0", "--store", db.url, "--keys", str(keys))
        assert r.returncode == 2 and f"{keys}{where}" in r.stderr, (text, r)
        assert len(r.stderr.strip().splitlines()) == 1 and "a" * 64 not in r.stderr, r.stderr
    for path, why in [(tmp_path / "no", "No such file"), (tmp_path, "Is a directory")]:
        r = run(BINARY, "--listen", "127.0.0.1:0", "--store", db.url, "--keys", str(path))
        assert r.returncode == 2 and f"cannot read '{path}': {why}" in r.stderr, r
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_a_keys_reload_that_would_hurt_is_refused_whole(server, tmp_path):
    """SIGHUP with a keys file that is empty, comments only, a directory, gives one token two
    names, or has a malformed line: refused as a whole. The keys in force stay (no 401 for
    everyone, no read,write token turned admin); one error line names the file (and the
    line), never a hash; tally_keys_reload_failures_total counts each. A good file then
    loads, and the line says how many keys are in force."""
    keys = tmp_path / "keys"
    rw, rw_line = new_key("svc", "read,write")
    ops, ops_line = new_key("ops", "admin")
    write_keys(keys, [rw_line, ops_line])
    t = server("--keys", str(keys), token=ops).start()
    rw_hash = rw_line.split()[2]
    cases = [("", ": no keys"), ("# tally API keys\n\n# none yet\n", ": no keys"),
             (None, f"cannot read '{keys}': Is a directory"),
             (f"{rw_line}\n{ops_line}\nroot admin {rw_hash}\n", f"{keys}:3: the same token"),
             (f"{rw_line}\n{ops_line}\nsvc2 read nothex\n", f"{keys}:3: expected")]

    def refusals():
        return [ln for ln in t.output().splitlines() if "keeping the API keys in force" in ln]

    for i, (text, reason) in enumerate(cases):
        if keys.is_dir():
            keys.rmdir()
        if text is None:
            os.unlink(keys)
            keys.mkdir()
        else:
            keys.write_text(text)
        t.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: len(refusals()) == i + 1), (text, t.output())
        assert reason in refusals()[i] and str(keys) in refusals()[i], refusals()[i]
        assert rw_hash not in t.output() and ops_line.split()[2] not in t.output()
        assert t.metric("tally_keys_reload_failures_total") == i + 1
        assert t.get("/v1/items/article/1", token=rw).status == 200, text
        assert t.get("/metrics", token=rw).status == 403, text  # not admin
    new, new_line = new_key("new", "read")
    write_keys(keys, [rw_line, ops_line, new_line])
    t.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: "API keys reloaded: 3 in force" in t.output()), t.output()
    assert t.get("/v1/items/article/1", token=new).status == 200
    assert t.metric("tally_keys_reload_failures_total") == len(cases)


# ---------------------------------------------------------------- tallyctl key


def test_tallyctl_key_output_works_in_a_keys_file(server, tmp_path):
    tokens = set()
    lines = []
    for name, scopes in [("web-1", "read,write"), ("prom_scraper", "metrics"),
                         ("a" * 64, "admin"), ("x.y", "read")]:
        r = run(TALLYCTL, "key", name, scopes)
        assert r.returncode == 0 and r.stderr == "", r
        out = r.stdout.split("\n")
        assert len(out) == 3 and out[2] == "", r.stdout
        token, line = out[0], out[1]
        assert len(token) == 43, token
        assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                 "0123456789-_"), token
        assert base64.urlsafe_b64decode(token + "=") and len(base64.urlsafe_b64decode(
            token + "=")) == 32
        assert line == f"{name} {scopes} {hashlib.sha256(token.encode()).hexdigest()}"
        tokens.add(token)
        lines.append((token, scopes, line))
    assert len(tokens) == 4  # random each time
    write_keys(tmp_path / "keys", [ln for _, _, ln in lines])
    t = server("--keys", str(tmp_path / "keys")).start()
    for token, scopes, _ in lines:
        assert (t.get("/v1/items/article/1", token=token).status == 200) == allows(scopes, "read")
        assert (t.get("/metrics", token=token).status == 200) == allows(scopes, "metrics")


def test_tallyctl_errors_are_one_line_and_exit_2():
    for argv in [[], ["key"], ["key", "svc"], ["key", "svc", "read", "extra"],
                 ["key", "", "read"], ["key", "bad name", "read"], ["key", "a" * 65, "read"],
                 ["key", "caf\u00e9", "read"], ["key", "svc/1", "read"], ["key", "svc", ""],
                 ["key", "svc", "root"], ["key", "svc", "read,"], ["key", "svc", ",read"],
                 ["key", "svc", "read,,write"], ["key", "svc", "READ"],
                 ["key", "svc", "read write"], ["nope"]]:
        r = run(TALLYCTL, *argv)
        assert r.returncode == 2, (argv, r)
        assert r.stdout == "", (argv, r.stdout)
        if argv:  # with no command at all, the usage is printed
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("tallyctl: "), (argv, r.stderr)


# ---------------------------------------------------------------- users' JWTs


@pytest.fixture
def jwt_server(server, tmp_path, rsa_key):
    """tallyd with an RS256 key, issuer and audience, and a service key for the checks."""
    (tmp_path / "jwt.pem").write_bytes(public_pem(rsa_key))
    svc, svc_line = new_key("backend", "read,write")
    admin, admin_line = new_key("ops", "admin")
    write_keys(tmp_path / "keys", [svc_line, admin_line])
    t = server("--keys", str(tmp_path / "keys"), "--jwt-key", str(tmp_path / "jwt.pem"),
               "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE).start()
    t.svc, t.admin = svc, admin
    return t


def user_token(rsa_key, sub="42", **kw):
    return sign("RS256", rsa_key, claims(sub, **{"iss": ISSUER, "aud": AUDIENCE, **kw}))


@pytest.mark.parametrize("alg", ["RS256", "ES256", "HS256"])
def test_valid_user_token_acts_for_its_uid(server, tmp_path, db, alg, rsa_key, ec_key):
    secret = secrets.token_bytes(48)
    if alg == "HS256":
        (tmp_path / "secret").write_bytes(b64url(secret).encode() + b"\n")
        key, spec = b64url(secret).encode(), f"hs256:{tmp_path / 'secret'}"
    else:
        key = rsa_key if alg == "RS256" else ec_key
        (tmp_path / "jwt.pem").write_bytes(public_pem(key))
        spec = str(tmp_path / "jwt.pem")
    t = server("--jwt-key", spec).start()
    token = sign(alg, key, claims("42"))
    r = t.request("PUT", "/v1/users/42/likes/article/7", token=token)
    assert r.status == 200 and r.json["liked"] is True and r.json["like_cnt"] == 1, r
    r = t.request("PUT", "/v1/users/42/collections/2/items/article/7", token=token)
    assert r.status == 200 and r.json["collected"] is True, r
    assert t.request("POST", "/v1/items/article/7/reads", token=token).status == 202
    assert t.request("POST", "/v1/items/article/7/reads", body={"uid": 42},
                     token=token).status == 202
    # Without ?uid= the flags are the token's own.
    assert wait_until(lambda: t.get("/v1/items/article/7", token=token).json["read_cnt"] == 2)
    r = t.get("/v1/items/article/7", token=token)
    assert r.json["liked"] is True and r.json["collected"] is True, r
    assert t.get("/v1/items/article?ids=7,8", token=token).json["items"][0]["liked"] is True
    assert t.get("/v1/items/article/7?uid=42", token=token).json["liked"] is True
    r = t.get("/v1/users/42/likes/article", token=token)
    assert r.status == 200 and [e["id"] for e in r.json["items"]] == [7], r
    assert t.get("/v1/users/42/collections/2/items", token=token).status == 200
    assert t.get("/v1/top/article?by=read_cnt", token=token).status == 200
    assert t.get("/metrics", token=token).status == 403  # a user's token is read + write only
    assert sorted(db.sql("SELECT uid, biz, biz_id, status FROM user_like")) == [
        (42, "article", 7, 1)]
    # The same claims signed by another key of the same kind are a forgery.
    other = {"RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
             "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
             "HS256": lambda: b64url(secrets.token_bytes(48)).encode()}[alg]()
    assert_401(t.request("PUT", "/v1/users/42/likes/article/8",
                         token=sign(alg, other, claims("42"))))
    # Without a keys file, a token that is not a JWT is nobody.
    assert_401(t.get("/v1/items/article/7", token=new_key("x", "admin")[0]))
    assert_401(t.get("/v1/items/article/7", token=""))
    assert [r[2] for r in db.sql("SELECT uid, biz, biz_id FROM user_like")] == [7]


def test_bad_user_tokens_are_401_and_change_nothing(jwt_server, db, rsa_key, ec_key,
                                                    tmp_path):
    t = jwt_server
    now = int(time.time())
    pem = (tmp_path / "jwt.pem").read_bytes()
    good = claims("42", iss=ISSUER, aud=AUDIENCE)
    head, body, sig = sign("RS256", rsa_key, good).split(".")
    forged_body = b64url(json.dumps(dict(good, sub="43")))
    other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    bad = {
        "forged signature": sign("RS256", other_rsa, good),
        "payload changed after signing": f"{head}.{forged_body}.{sig}",
        "signature cut": f"{head}.{body}.{sig[:-4]}",
        "no signature": f"{head}.{body}.",
        "expired 120 s ago": user_token(rsa_key, ttl=-120),
        "not valid for 120 s": user_token(rsa_key, nbf=now + 120),
        "wrong issuer": user_token(rsa_key, iss="https://evil.example"),
        "no issuer": sign("RS256", rsa_key, claims("42", aud=AUDIENCE)),
        "wrong audience": user_token(rsa_key, aud="other"),
        "wrong audience array": user_token(rsa_key, aud=["other", "more"]),
        "empty audience array": user_token(rsa_key, aud=[]),
        "no audience": sign("RS256", rsa_key, claims("42", iss=ISSUER)),
        "no exp": sign("RS256", rsa_key, {k: v for k, v in good.items() if k != "exp"}),
        "exp a string": sign("RS256", rsa_key, dict(good, exp=str(now + 300))),
        "nbf a string": sign("RS256", rsa_key, dict(good, nbf=str(now + 3600))),
        "nbf a far-future string": sign("RS256", rsa_key, dict(good, nbf="99999999999")),
        "nbf a fraction 120 s ahead": sign("RS256", rsa_key, dict(good, nbf=now + 120.5)),
        "exp null": sign("RS256", rsa_key, dict(good, exp=None)),
        "exp true": sign("RS256", rsa_key, dict(good, exp=True)),
        "exp most negative": sign("RS256", rsa_key, dict(good, exp=-9223372036854775808)),
        "exp a huge fraction": sign("RS256", rsa_key, dict(good, exp=1e300)),
        "sub not a number": user_token(rsa_key, sub="alice"),
        "sub zero": user_token(rsa_key, sub="0"),
        "sub negative": user_token(rsa_key, sub="-42"),
        "sub with a sign": user_token(rsa_key, sub="+42"),
        "sub 2^63": user_token(rsa_key, sub="9223372036854775808"),
        "sub a JSON number": user_token(rsa_key, sub=42),
        "sub empty": user_token(rsa_key, sub=""),
        "no sub": sign("RS256", rsa_key, {k: v for k, v in good.items() if k != "sub"}),
        "alg none": sign("none", None, good),
        "alg none, signature kept": f"{b64url(json.dumps({'alg': 'none'}))}.{body}.{sig}",
        "HS256 with the public key as secret": sign("HS256", pem, good),
        "HS256 with the trimmed public key": sign("HS256", pem.strip(), good),
        "RS512 by the right key": sign("RS512", rsa_key, good),
        "ES256 by another key": sign("ES256", ec_key, good),
        "RS256 header, ES256 body": sign("ES256", ec_key, good,
                                         header={"alg": "RS256", "typ": "JWT"}),
        "header not JSON": f"{b64url('{')}.{body}.{sig}",
    }
    t.request("PUT", "/v1/users/43/likes/article/1", token=t.svc)
    fence(t, t.admin)
    before = snapshot(db)
    for name, token in bad.items():
        for method, path, payload in [("PUT", "/v1/users/42/likes/article/1", None),
                                      ("DELETE", "/v1/users/43/likes/article/1", None),
                                      ("PUT", "/v1/users/42/collections/1/items/article/1", None),
                                      ("POST", "/v1/items/article/1/reads", None),
                                      ("GET", "/v1/items/article/1", None),
                                      ("GET", "/v1/users/42/likes/article", None)]:
            r = t.request(method, path, body=payload, token=token)
            assert r.status == 401, (name, method, path, r)
            assert_401(r)
    fence(t, t.admin)
    assert snapshot(db) == before
    # Within the 60 s leeway, and the audience in an array: accepted.
    for name, token in {"expired 30 s ago": user_token(rsa_key, ttl=-30),
                        "valid in 30 s": user_token(rsa_key, nbf=now + 30),
                        "audience in an array": user_token(rsa_key, aud=["x", AUDIENCE]),
                        "exp a fraction": sign("RS256", rsa_key, dict(good, exp=now + 300.5)),
                        "exp as late as can be": sign("RS256", rsa_key,
                                                      dict(good, exp=9223372036854775807)),
                        "sub with leading zeros": user_token(rsa_key, sub="0042")}.items():
        r = t.request("PUT", "/v1/users/42/likes/article/2", token=token)
        assert r.status == 200 and r.json["liked"], (name, r)
        assert t.request("DELETE", "/v1/users/42/likes/article/2", token=token).status == 200


def test_a_remembered_token_still_expires(jwt_server, rsa_key):
    """A verified token is remembered (to spare the signature check on repeats) only until its
    exp plus the leeway: one that expires while remembered is refused from then on."""
    t = jwt_server
    token = user_token(rsa_key, ttl=-58)  # within the 60 s leeway for about 2 more seconds
    good_until = time.time() - 58 + 60
    assert t.request("GET", "/v1/items/article/1", token=token).status == 200
    assert t.request("GET", "/v1/items/article/1", token=token).status == 200  # remembered
    while time.time() < good_until + 1.1:  # past exp + leeway, whole seconds on tallyd's side
        time.sleep(0.1)
    assert_401(t.request("GET", "/v1/items/article/1", token=token))


def forged_token(sub="42"):
    """A well-formed RS256 token whose signature is 256 random bytes: distinct every call."""
    head = b64url(json.dumps({"alg": "RS256", "typ": "JWT"}))
    body = b64url(json.dumps(claims(sub, iss=ISSUER, aud=AUDIENCE)))
    return f"{head}.{body}.{b64url(secrets.token_bytes(256))}"


def refusals(t, why):
    want = f'tally_auth_token_refusals_total{{why="{why}"}} '
    lines = [l for l in t.get("/metrics", token=t.admin).body.splitlines() if l.startswith(want)]
    return int(float(lines[0].rsplit(" ", 1)[1])) if lines else None


FAIL_MAX = 50  # auth.c: signature checks an address may fail in FAIL_WINDOW_S (10 s)


def test_bad_tokens_are_refused_without_signature_work(jwt_server, rsa_key):
    """A token that failed is refused unchecked for a while; an address that failed FAIL_MAX
    checks has its new tokens refused unchecked (429) until its window ends, while API keys,
    tokens verified before and the open probes still work."""
    t = jwt_server
    good = user_token(rsa_key)
    assert t.get("/v1/items/article/1", token=good).status == 200  # verified, remembered
    bad = forged_token()
    assert_401(t.get("/v1/items/article/1", token=bad))
    assert_401(t.get("/v1/items/article/1", token=bad))  # the same one again: unchecked
    assert (refusals(t, "invalid"), refusals(t, "remembered")) == (1, 1)
    for _ in range(FAIL_MAX - 1):  # the address's failures, up to the limit
        assert_401(t.get("/v1/items/article/1", token=forged_token()))
    assert refusals(t, "invalid") == FAIL_MAX
    for token in [forged_token(), user_token(rsa_key, sub="43")]:  # new ones, even good
        r = t.get("/v1/items/article/1", token=token)
        assert_error(r, 429, "rate_limited")
        assert 1 <= int(r.headers["retry-after"]) <= 10, r.headers
    assert refusals(t, "throttled") == 2 and refusals(t, "invalid") == FAIL_MAX
    assert t.get("/v1/items/article/1", token=good).status == 200
    assert t.get("/v1/items/article/1", token=t.svc).status == 200
    assert t.get("/livez", token=forged_token()).status == 200


def test_user_token_cannot_act_for_another_uid(jwt_server, db, rsa_key):
    t = jwt_server
    me = user_token(rsa_key, sub="42")
    # uid 43's state, made by the trusted backend; 42 likes item 2 itself.
    for path in ["/v1/users/43/likes/article/1", "/v1/users/43/collections/5/items/article/1"]:
        assert t.request("PUT", path, token=t.svc).status == 200
    assert t.request("PUT", "/v1/users/42/likes/article/2", token=me).status == 200
    fence(t, t.admin)
    before = snapshot(db)
    for method, path, body in [
            ("PUT", "/v1/users/43/likes/article/3", None),
            ("DELETE", "/v1/users/43/likes/article/1", None),
            ("PUT", "/v1/users/43/collections/5/items/article/3", None),
            ("DELETE", "/v1/users/43/collections/5/items/article/1", None),
            ("PUT", "/v1/users/4200/likes/article/3", None),
            ("GET", "/v1/users/43/likes/article", None),
            ("GET", "/v1/users/43/collections/5/items", None),
            ("GET", "/v1/items/article/1?uid=43", None),
            ("GET", "/v1/items/article?ids=1,2&uid=43", None),
            ("POST", "/v1/items/article/1/reads", {"uid": 43}),
            ("POST", "/v1/items/article/1/reads", '{"uid": 1}')]:
        r = t.request(method, path, body=body, token=me)
        assert r.status == 403, (method, path, body, r)
        assert_error(r, 403, "permission_denied")
    fence(t, t.admin)
    assert snapshot(db) == before
    # Its own uid, named or left out, works; flags are its own, not 43's.
    r = t.get("/v1/items/article?ids=1,2", token=me)
    assert [(i["liked"], i["like_cnt"]) for i in r.json["items"]] == [(False, 1), (True, 1)]
    assert t.get("/v1/items/article/1?uid=42", token=me).json["collected"] is False
    assert t.request("POST", "/v1/items/article/1/reads", body={"uid": 42},
                     token=me).status == 202
    assert t.request("POST", "/v1/items/article/1/reads", token=me).status == 202
    # A service key with write acts for any uid (the trusted backend).
    r = t.request("DELETE", "/v1/users/43/likes/article/1", token=t.svc)
    assert r.status == 200 and r.json["like_cnt"] == 0
    for uid in [1, 43, 77, 9223372036854775807]:
        r = t.request("PUT", f"/v1/users/{uid}/likes/article/4", token=t.svc)
        assert r.status == 200 and r.json["liked"], r
        assert t.request("POST", "/v1/items/article/4/reads", body={"uid": uid},
                         token=t.svc).status == 202
        assert t.get(f"/v1/items/article/4?uid={uid}", token=t.svc).json["liked"] is True
    assert t.get("/v1/users/43/likes/article", token=t.svc).status == 200
    fence(t, t.admin)
    assert t.get("/v1/items/article/1", token=t.svc).json["read_cnt"] == 2
    assert t.get("/v1/items/article/4", token=t.svc).json["read_cnt"] == 4
    assert t.get("/v1/items/article/4", token=t.svc).json["like_cnt"] == 4


def test_idempotency_keys_are_scoped_to_caller_and_item(jwt_server, rsa_key):
    """A key suppresses only its own caller's repeat on its own item: two services, a
    service and a user, or one key on two items never take each other's reads."""
    t = jwt_server
    me = user_token(rsa_key, sub="42")

    def read(item, key, token):
        r = t.request("POST", f"/v1/items/article/{item}/reads", token=token,
                      headers={"Idempotency-Key": key})
        assert r.status == 202, r

    read(1, "order-123", t.svc)
    read(1, "order-123", t.admin)  # another caller: counts
    read(1, "order-123", t.svc)    # the same caller's repeat: does not
    read(2, "order-123", t.svc)    # the same key on another item: counts
    for k in range(1, 51):         # a user's keys never block a service's
        read(3, str(k), me)
    read(3, "17", t.svc)
    read(3, "17", me)              # the user's own repeat
    fence(t, t.admin)
    got = [t.get(f"/v1/items/article/{i}", token=t.svc).json["read_cnt"] for i in (1, 2, 3)]
    assert got == [2, 1, 51]
    repeats = [line for line in t.get("/metrics", token=t.admin).body.splitlines()
               if line.startswith("tally_read_events_idempotent_repeats_total ")]
    assert repeats == ["tally_read_events_idempotent_repeats_total 2"], repeats


@pytest.mark.parametrize("ows", [" ", "\t", " \t "])
def test_header_values_are_trimmed_of_whitespace(jwt_server, rsa_key, ows):
    """One rule for every header value (RFC 9110 5.5): optional whitespace at either end is
    not part of it, for a user's token as for a key, an Idempotency-Key and an X-Request-Id."""
    t = jwt_server
    me = user_token(rsa_key, sub="42")
    auth = {who: t.request("PUT", "/v1/users/42/likes/article/9",
                           headers={"Authorization": f"Bearer {token}{ows}"}).status
            for who, token in (("user_token", me), ("api_key", t.svc))}
    ids = []
    for key in ("ks", f"ks{ows}", f"{ows}ks{ows}"):  # one key, three spellings: one read
        r = t.request("POST", "/v1/items/article/9/reads", token=t.svc,
                      headers={"Idempotency-Key": key, "X-Request-Id": f"{ows}req-9{ows}"})
        assert r.status == 202, r
        ids.append(r.headers["x-request-id"])
    fence(t, t.admin)
    read_cnt = t.get("/v1/items/article/9", token=t.svc).json["read_cnt"]
    report("header_values_trimmed", ows=repr(ows), authorization=auth, read_cnt=read_cnt,
           request_ids=ids)
    assert auth == {"user_token": 200, "api_key": 200}
    assert ids == ["req-9"] * 3
    assert read_cnt == 1


# ---------------------------------------------------------------- key rotation by kid (JWKS)


def b64url_int(n, size=None):
    return b64url(n.to_bytes(size or (n.bit_length() + 7) // 8, "big"))


def jwk(key, kid, **extra):
    """The public JWK of an RSA or EC private key, or the oct JWK of an HMAC secret."""
    if isinstance(key, bytes):
        return {"kty": "oct", "kid": kid, "k": b64url(key), **extra}
    pub = key.public_key().public_numbers()
    if isinstance(key, rsa.RSAPrivateKey):
        return {"kty": "RSA", "kid": kid, "n": b64url_int(pub.n), "e": b64url_int(pub.e),
                **extra}
    return {"kty": "EC", "kid": kid, "crv": "P-256", "x": b64url_int(pub.x, 32),
            "y": b64url_int(pub.y, 32), **extra}


def write_jwks(path, keys):
    """Replaces the JWKS at path at once, as an operator's deploy would (rename)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(keys if isinstance(keys, str) else json.dumps({"keys": keys}, indent=1))
    os.replace(tmp, path)


ALG = {"RSA": "RS256", "EC": "ES256", "oct": "HS256"}


def kid_token(key, kid, sub="42", alg=None, **kw):
    """A user token signed by key, naming kid in its header (kid None: no kid)."""
    alg = alg or ("HS256" if isinstance(key, bytes) else
                  "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256")
    header = {"alg": alg, "typ": "JWT", **({"kid": kid} if kid is not None else {})}
    return sign(alg, key, claims(sub, **{"iss": ISSUER, "aud": AUDIENCE, **kw}), header=header)


def reloads(t, what):
    return t.output().count(what)


def sighup_and_wait(t, what):
    """Sends SIGHUP to this tallyd (its own pid) and waits for one more log line with what."""
    before = reloads(t, what)
    t.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: reloads(t, what) > before), t.output()[-2000:]


RELOADED = "users' token keys reloaded"
KEPT = "keeping the users' token keys in force"


@pytest.fixture
def jwks_server(server, tmp_path):
    """Starts tallyd with --jwt-key set to a JWKS of the given keys (and an admin key)."""
    def start(keys, *args):
        admin, admin_line = new_key("ops", "admin")
        write_keys(tmp_path / "keys", [admin_line])
        write_jwks(tmp_path / "jwks.json", keys)
        t = server("--keys", str(tmp_path / "keys"), "--jwt-key", str(tmp_path / "jwks.json"),
                   "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE, *args).start()
        t.admin, t.jwks = admin, tmp_path / "jwks.json"
        t.token = admin  # for t.metric()
        return t
    return start


def test_jwks_selects_the_key_by_kid(jwks_server, rsa_key, ec_key):
    """Tokens of every key of the set pass, each by its kid and its key's algorithm only."""
    secret = secrets.token_bytes(32)
    rsa2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    t = jwks_server([jwk(rsa_key, "r1", alg="RS256", use="sig"), jwk(rsa2, "r2"),
                     jwk(ec_key, "e1"), jwk(secret, "h1", alg="HS256")])
    for key, kid in [(rsa_key, "r1"), (rsa2, "r2"), (ec_key, "e1"), (secret, "h1")]:
        r = t.request("PUT", "/v1/users/42/likes/article/1", token=kid_token(key, kid))
        assert r.status == 200 and r.json["liked"], (kid, r)
    for name, token in {
            "signed by r1, naming r2": kid_token(rsa_key, "r2"),
            "signed by e1, naming r1": sign("ES256", ec_key,
                                            claims("42", iss=ISSUER, aud=AUDIENCE),
                                            header={"alg": "RS256", "kid": "r1"}),
            "an RS256 token naming the EC key": kid_token(rsa_key, "e1"),
            "HS256 keyed with r1's PEM, naming r1": sign("HS256", public_pem(rsa_key),
                                                          claims("42", iss=ISSUER, aud=AUDIENCE),
                                                          header={"alg": "HS256", "kid": "r1"}),
            "a kid not in the set": kid_token(rsa_key, "r3"),
            "no kid, the set holds several keys": kid_token(rsa_key, None),
            "a kid that is not a string": sign("RS256", rsa_key,
                                               claims("42", iss=ISSUER, aud=AUDIENCE),
                                               header={"alg": "RS256", "kid": 1})}.items():
        assert_401(t.request("GET", "/v1/items/article/1", token=token)), name


def test_jwks_of_one_key_takes_tokens_without_kid(jwks_server, rsa_key):
    """A set of one key verifies the tokens that name no kid (moving from a PEM key to a
    JWKS leaves the tokens already issued valid); a kid must still be the key's."""
    t = jwks_server([jwk(rsa_key, "r1")])
    assert t.get("/v1/items/article/1", token=kid_token(rsa_key, None)).status == 200
    assert t.get("/v1/items/article/1", token=kid_token(rsa_key, "r1")).status == 200
    assert_401(t.get("/v1/items/article/1", token=kid_token(rsa_key, "r0")))


def test_key_rotation_on_sighup_without_401s(jwks_server, rsa_key, ec_key):
    """The rotation of docs/security.md: add the new key, reload, sign with it, drop the old
    one, reload. Tokens of the old key pass throughout the first reload; the new key's pass
    from the first reload on, even one refused before it; the old key's (remembered ones
    too) are refused from the second on. The reload lines name kids, never key material."""
    old, new = rsa_key, ec_key
    t = jwks_server([jwk(old, "2026-01")])
    remembered = kid_token(old, "2026-01")
    assert t.get("/v1/items/article/1", token=remembered).status == 200
    early = kid_token(new, "2026-02")
    assert_401(t.get("/v1/items/article/1", token=early))  # not loaded yet: refused

    # Old tokens, each new, sent without a pause while the set grows and is reloaded.
    statuses, stop = [], threading.Event()

    def hammer():
        conn = t.connect()
        while not stop.is_set():
            r = t.request("GET", "/v1/items/article/1", conn=conn,
                          token=kid_token(old, "2026-01", sub=str(len(statuses) + 1)))
            statuses.append(r.status)
        conn.close()

    th = threading.Thread(target=hammer)
    th.start()
    try:
        assert wait_until(lambda: len(statuses) >= 20)
        write_jwks(t.jwks, [jwk(old, "2026-01"), jwk(new, "2026-02")])
        sighup_and_wait(t, RELOADED)
        n = len(statuses)
        assert wait_until(lambda: len(statuses) >= n + 20)
    finally:
        stop.set()
        th.join()
    assert set(statuses) == {200}, [s for s in statuses if s != 200][:5]
    assert "users' token keys reloaded from %s: 2 keys from a JWKS (kids: 2026-01 RS256, " \
           "2026-02 ES256)" % t.jwks in t.output()
    assert t.get("/v1/items/article/1", token=early).status == 200  # no longer remembered
    assert t.get("/v1/items/article/1", token=kid_token(new, "2026-02", sub="7")).status == 200
    assert t.get("/v1/items/article/1", token=remembered).status == 200

    write_jwks(t.jwks, [jwk(new, "2026-02")])
    sighup_and_wait(t, RELOADED)
    for token in [remembered, kid_token(old, "2026-01")]:
        assert_401(t.get("/v1/items/article/1", token=token))
    assert t.get("/v1/items/article/1", token=early).status == 200
    assert t.get("/v1/items/article/1", token=kid_token(new, "2026-02")).status == 200
    out = t.output()
    pub = old.public_key().public_numbers()
    assert b64url_int(pub.n) not in out and b64url_int(pub.n)[:40] not in out
    assert remembered not in out and early not in out
    assert t.metric("tally_jwt_keys_reload_failures_total") == 0


def test_a_bad_jwks_on_reload_keeps_the_keys_in_force(jwks_server, rsa_key, ec_key, tmp_path):
    """Each way a set is refused, on SIGHUP: one line says why (naming the file and the key,
    never key material), the keys in force stay, tally_jwt_keys_reload_failures_total counts
    it; at start the same set is one stderr line and exit 2."""
    secret = secrets.token_bytes(40)
    t = jwks_server([jwk(rsa_key, "r1"), jwk(secret, "h1")])
    tokens = [kid_token(rsa_key, "r1"), kid_token(secret, "h1")]
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    private_rsa = dict(jwk(rsa_key, "r2"), d=b64url_int(rsa_key.private_numbers().d))
    bad_point = dict(jwk(ec_key, "e1"), y=b64url_int(ec_key.public_key().public_numbers().y ^ 1,
                                                     32))
    cases = {
        "not JSON": ('{"keys": [', "not valid JSON (line"),
        "no keys": ({"keys": []}, 'a JWKS needs "keys": an array of 1 to 64 keys'),
        "keys not an array": ('{"keys": {}}', 'a JWKS needs "keys"'),
        "a key without kid": ([{k: v for k, v in jwk(rsa_key, "x").items() if k != "kid"}],
                              "keys[0]: needs a kid"),
        "a kid twice": ([jwk(rsa_key, "r1"), jwk(ec_key, "r1")],
                        'keys[1]: kid "r1" is already in the set'),
        "a private RSA key": ([jwk(ec_key, "e1"), private_rsa],
                              'keys[1] (kid "r2"): it holds a private key (d)'),
        "an unknown kty": ([{"kty": "OKP", "kid": "o1", "crv": "Ed25519", "x": "AAAA"}],
                           'keys[0] (kid "o1"): kty must be RSA, EC or oct'),
        "a P-384 key": ([dict(jwk(ec_key, "e1"), crv="P-384")], "crv must be P-256"),
        "a point off the curve": ([bad_point], "x and y are not a point of P-256"),
        "a short secret": ([jwk(secret[:31], "h1")], "at least 32 bytes"),
        "alg not the key's": ([jwk(rsa_key, "r1", alg="RS512")],
                              "alg must be RS256 for an RSA key"),
        "use enc": ([jwk(rsa_key, "r1", use="enc")], 'use must be "sig"'),
        "a 1024-bit RSA key": ([jwk(small, "s1")], "an RSA key under 2048 bits"),
        "n not base64url": ([dict(jwk(rsa_key, "r1"), n="+/==")],
                            "n and e must be base64url numbers"),
    }
    secret_b64 = b64url(secret)
    for i, (name, (content, why)) in enumerate(cases.items()):
        write_jwks(t.jwks, content if isinstance(content, str) else
                   json.dumps(content if isinstance(content, dict) else {"keys": content}))
        sighup_and_wait(t, KEPT)
        line = [l for l in t.output().splitlines() if KEPT in l][-1]
        assert why in line and str(t.jwks) in line, (name, line)
        assert secret_b64 not in line and b64url_int(rsa_key.public_key().public_numbers().n)[
            :32] not in line, (name, line)
        assert t.metric("tally_jwt_keys_reload_failures_total") == i + 1, name
        for token in tokens:
            assert t.get("/v1/items/article/1", token=token).status == 200, name
        # At start: the same file is refused, one line, exit 2.
        r = run(BINARY, "--listen", "127.0.0.1:0", "--store", f"sqlite:{tmp_path}/s.db",
                "--jwt-key", str(t.jwks))
        assert r.returncode == 2 and why in r.stderr, (name, r)
        assert len(r.stderr.strip().splitlines()) == 1, (name, r.stderr)
    os.replace(t.jwks, f"{t.jwks}.gone")
    sighup_and_wait(t, KEPT)
    assert f"cannot read '{t.jwks}': No such file or directory" in t.output()
    os.replace(f"{t.jwks}.gone", t.jwks)
    assert t.get("/v1/items/article/1", token=tokens[0]).status == 200
    assert secret_b64 not in t.output()


def log_records(t, msg):
    """tallyd's JSON Lines log records whose msg starts with msg."""
    out = []
    for line in t.output().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("msg", "").startswith(msg):
            out.append(rec)
    return out


def reason_count(t, reason):
    return t.metric(f'tally_auth_token_refusal_reasons_total{{reason="{reason}"}}')


REFUSED = "auth: a user token refused"


def test_each_refusal_is_logged_with_its_reason_never_the_token(jwks_server, rsa_key, ec_key):
    """A token refused after its check is logged with its reason (at most a line a second per
    reason, with how many were left out) and counted by reason; the caller still sees the
    same 401 (403 for another uid) and the log never shows a token or a signature."""
    t = jwks_server([jwk(rsa_key, "r1"), jwk(ec_key, "e1")], "--log-format", "json")
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    good = claims("42", iss=ISSUER, aud=AUDIENCE)
    cases = {
        "expired": kid_token(rsa_key, "r1", ttl=-120),
        "not_yet_valid": kid_token(rsa_key, "r1", nbf=now + 600),
        "wrong_issuer": kid_token(rsa_key, "r1", iss="https://evil.example"),
        "wrong_audience": kid_token(rsa_key, "r1", aud="other"),
        "bad_signature": kid_token(other, "r1"),
        "unknown_kid": kid_token(rsa_key, "r9"),
        "wrong_alg": kid_token(rsa_key, "e1"),
        "malformed": f"{b64url('{')}.{b64url(json.dumps(good))}.{b64url(b'x' * 256)}",
    }
    cases["malformed sub"] = kid_token(rsa_key, "r1", sub="alice")
    tokens = list(cases.values())
    for name, token in cases.items():
        assert_401(t.request("PUT", "/v1/users/42/likes/article/1", token=token))
    me = kid_token(rsa_key, "r1")
    tokens.append(me)
    assert_error(t.request("PUT", "/v1/users/43/likes/article/1", token=me), 403,
                 "permission_denied")
    reasons = ["expired", "not_yet_valid", "wrong_issuer", "wrong_audience", "bad_signature",
               "unknown_kid", "wrong_alg", "malformed", "uid_mismatch"]
    # Each reason's first refusal is logged (a second one within the second may not be).
    assert wait_until(lambda: {r["reason"] for r in log_records(t, REFUSED)} == set(reasons))
    recs = log_records(t, REFUSED)
    for reason in reasons:
        assert reason_count(t, reason) == (2 if reason == "malformed" else 1), reason
        rec = [r for r in recs if r["reason"] == reason][0]
        assert rec["level"] == "warn" and rec["caller"] == "addr:127.0.0.1", rec
        assert rec["suppressed"] == 0, rec
    assert [r["kid"] for r in recs if r["reason"] == "unknown_kid"] == ["r9"]
    assert refusals(t, "invalid") == len(cases)  # uid_mismatch is a 403, not a refusal
    out = t.output()
    for token in tokens:
        for part in token.split("."):
            if len(part) > 16:
                assert part not in out, part

    # A flood of one reason: a line a second at most, the rest counted in the next line.
    sent, start = 0, time.monotonic()
    while sent < 40:
        assert_401(t.get("/v1/items/article/1", token=kid_token(rsa_key, "r1", ttl=-300 - sent)))
        sent += 1
    last = time.monotonic()
    assert wait_until(lambda: int(time.monotonic()) > int(last), timeout=3)
    assert_401(t.get("/v1/items/article/1", token=kid_token(rsa_key, "r1", ttl=-1000)))
    assert reason_count(t, "expired") == 1 + sent + 1
    # The last one, alone in its second, is logged: with it the lines and the ones they
    # say were left out add up to every refusal of the flood.
    assert wait_until(lambda: sum(1 + r["suppressed"] for r in log_records(t, REFUSED)
                                  if r["reason"] == "expired") == 1 + sent + 1)
    flood = [r for r in log_records(t, REFUSED) if r["reason"] == "expired"][1:]
    assert len(flood) <= int(last) - int(start) + 2, flood
    assert len(flood) + sum(r["suppressed"] for r in flood) == sent + 1, flood


# ---------------------------------------------------------------- open API, loopback rule


def test_open_api_warns_once_and_answers_anyone(server, tmp_path, db):
    t = server().start()
    r = t.request("PUT", "/v1/users/1/likes/article/1", token="")
    assert r.status == 200 and r.json["like_cnt"] == 1
    assert t.get("/metrics", token="").status == 200
    # Any token, even a JWT-shaped one, is simply ignored.
    assert t.request("PUT", "/v1/users/2/likes/article/1", token="a.b.c").status == 200
    warned = [ln for ln in t.output().splitlines() if "the API is open" in ln]
    assert len(warned) == 1, t.output()
    write_keys(tmp_path / "keys", [new_key("svc", "read")[1]])
    keyed = server("--keys", str(tmp_path / "keys")).start()  # keys: closed, no warning
    assert_401(keyed.get("/v1/items/article/1", token=""))
    assert "the API is open" not in keyed.output()


def test_open_api_off_loopback_needs_insecure(server, tmp_path, db):
    for listen in ["0.0.0.0:0", "[::]:0", "192.0.2.1:0"]:
        r = run(BINARY, "--listen", listen, "--store", db.url)
        assert r.returncode == 2, (listen, r)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("tallyd: ") and listen in lines[0], r
    # Loopback, or a credential, or --insecure: it starts.
    _, line = new_key("svc", "read")
    write_keys(tmp_path / "keys", [line])
    t = server("--keys", str(tmp_path / "keys"))
    t.args += ["--listen", f"0.0.0.0:{t.port}"]
    t.start()
    assert_401(t.get("/v1/items/article/1", token=""))
    t.stop()
    t = server("--insecure")
    t.args += ["--listen", f"0.0.0.0:{t.port}"]
    t.start()
    assert t.get("/v1/items/article/1", token="").status == 200
    assert sum("the API is open" in ln for ln in t.output().splitlines()) == 1


def test_flags_that_go_together(tmp_path, db):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    for args in [["--tls-cert", str(cert)], ["--tls-key", str(key)],
                 ["--jwt-issuer", ISSUER], ["--jwt-audience", AUDIENCE]]:
        r = run(BINARY, "--listen", "127.0.0.1:0", "--store", db.url, *args)
        assert r.returncode == 2, (args, r)
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("tallyd: ")
    short = tmp_path / "short"
    short.write_text("x" * 31 + "\n")
    r = run(BINARY, "--listen", "127.0.0.1:0", "--store", db.url, "--jwt-key", f"hs256:{short}")
    assert r.returncode == 2 and "32 bytes" in r.stderr, r
    r = run(BINARY, "--listen", "127.0.0.1:0", "--store", db.url, "--jwt-key", str(short))
    assert r.returncode == 2 and "PEM" in r.stderr, r
    for spec in (str(tmp_path), f"hs256:{tmp_path}"):  # a directory: not an empty key
        r = run(BINARY, "--listen", "127.0.0.1:0", "--store", db.url, "--jwt-key", spec)
        assert r.returncode == 2 and f"cannot read '{tmp_path}': Is a directory" in r.stderr, r


# ---------------------------------------------------------------- HTTPS


def start_tls(t):
    """Starts t and waits for its listening line (its /healthz probe would need HTTPS)."""
    t.start(wait=False)
    assert wait_until(lambda: "listening on" in t.output() or t.proc.poll() is not None, 20)
    assert t.proc.poll() is None, t.output()
    return t


def make_ca():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tally test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_server_cert(ca, cn, cert_path, key_path):
    """A certificate for 127.0.0.1 and localhost signed by ca; returns its serial number."""
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert.serial_number


def peer_serial(port, ctx):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            der = s.getpeercert(binary_form=True)
            return x509.load_der_x509_certificate(der).serial_number, s.version()


def test_https_with_a_ca_verified_client(server, tmp_path, db):
    ca = make_ca()
    (tmp_path / "ca.pem").write_bytes(ca[1].public_bytes(serialization.Encoding.PEM))
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    serial1 = make_server_cert(ca, "tally-1", cert, key)
    token, line = new_key("svc", "admin")
    write_keys(tmp_path / "keys", [line])
    ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    t = start_tls(server("--keys", str(tmp_path / "keys"), "--tls-cert", str(cert),
                         "--tls-key", str(key), tls=ctx, token=token))
    assert "(HTTPS)" in t.output()
    r = t.request("PUT", "/v1/users/1/likes/article/1")
    assert r.status == 200 and r.json["like_cnt"] == 1
    assert_401(t.get("/v1/items/article/1", token=""))
    serial, version = peer_serial(t.port, ctx)
    assert serial == serial1 and version in ("TLSv1.2", "TLSv1.3")

    # A client that trusts nothing of ours cannot verify it; TLS 1.1 is refused.
    with pytest.raises(ssl.SSLCertVerificationError):
        peer_serial(t.port, ssl.create_default_context())
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError):
        peer_serial(t.port, old)

    # Plain HTTP gets no HTTP answer.
    for raw_req in [b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"PUT /v1/users/2/likes/article/1 HTTP/1.1\r\nHost: x\r\nAuthorization: "
                    b"Bearer " + token.encode() + b"\r\nContent-Length: 0\r\n\r\n"]:
        got = b""
        with socket.create_connection(("127.0.0.1", t.port), timeout=5) as s:
            s.sendall(raw_req)
            try:
                while chunk := s.recv(4096):
                    got += chunk
            except (socket.timeout, ConnectionResetError):
                pass
        assert b"HTTP/" not in got, got
    assert db.sql("SELECT uid FROM user_like") == [(1,)]
    assert t.get("/healthz").status == 200  # and HTTPS still answers


def test_https_certificate_reloads_on_sighup(server, tmp_path, db):
    ca = make_ca()
    (tmp_path / "ca.pem").write_bytes(ca[1].public_bytes(serialization.Encoding.PEM))
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    serial1 = make_server_cert(ca, "tally-1", cert, key)
    ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    t = start_tls(server("--tls-cert", str(cert), "--tls-key", str(key), tls=ctx))
    kept = t.connect()  # a connection from before the reload stays usable
    assert t.request("GET", "/healthz", conn=kept).status == 200
    assert peer_serial(t.port, ctx)[0] == serial1

    serial2 = make_server_cert(ca, "tally-2", cert, key)
    t.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: peer_serial(t.port, ctx)[0] == serial2), "not reloaded"
    assert t.request("GET", "/v1/items/article/1", conn=kept).status == 200

    # A broken certificate, or one that does not match the key, leaves the old in force.
    good_key = key.read_bytes()
    other_key = tmp_path / "other.key"
    for breakage in ["garbage", "mismatch", "missing"]:
        logged = t.output().count("keeping the TLS certificate in force")
        if breakage == "garbage":
            cert.write_text("-----BEGIN CERTIFICATE-----\nnot a cert\n-----END CERTIFICATE-----\n")
        elif breakage == "mismatch":
            make_server_cert(ca, "tally-3", cert, other_key)
            key.write_bytes(good_key)
        else:
            cert.unlink()
        t.proc.send_signal(signal.SIGHUP)
        assert wait_until(
            lambda: t.output().count("keeping the TLS certificate in force") > logged), breakage
        assert peer_serial(t.port, ctx)[0] == serial2, breakage
        assert t.get("/healthz").status == 200
    assert t.request("GET", "/healthz", conn=kept).status == 200
    kept.close()


# ---------------------------------------------------------------- figures


@pytest.mark.release
def test_auth_latency_figures(server, tmp_path, rsa_key, ec_key):
    """Median time of a sequential kept-alive GET, per credential kind. A figure, not a
    test of speed: nothing here asserts a time."""
    n = 2000
    (tmp_path / "rsa.pem").write_bytes(public_pem(rsa_key))
    (tmp_path / "ec.pem").write_bytes(public_pem(ec_key))
    secret = b64url(secrets.token_bytes(48)).encode()
    (tmp_path / "hs").write_bytes(secret)
    one, line = new_key("svc", "read")
    write_keys(tmp_path / "keys1", [line])
    many = [new_key(f"k{i}", "read") for i in range(1000)]
    write_keys(tmp_path / "keys1000", [ln for _, ln in many])
    servers = {
        "open": server().start(),
        "keyed_rs256": server("--keys", str(tmp_path / "keys1"), "--jwt-key",
                              str(tmp_path / "rsa.pem")).start(),
        "keyed1000_es256": server("--keys", str(tmp_path / "keys1000"), "--jwt-key",
                                  str(tmp_path / "ec.pem")).start(),
        "hs256": server("--jwt-key", f"hs256:{tmp_path / 'hs'}").start(),
    }
    modes = {
        "open_api": ("open", ""),
        "api_key_1_in_file": ("keyed_rs256", one),
        "api_key_1000_in_file": ("keyed1000_es256", many[-1][0]),
        "jwt_rs256": ("keyed_rs256", sign("RS256", rsa_key, claims("42", ttl=3600))),
        "jwt_es256": ("keyed1000_es256", sign("ES256", ec_key, claims("42", ttl=3600))),
        "jwt_hs256": ("hs256", sign("HS256", secret, claims("42", ttl=3600))),
    }
    conns = {m: servers[s].connect() for m, (s, _) in modes.items()}
    times = {m: [] for m in modes}
    for _ in range(n // 200):  # interleaved rounds, so drift on a shared machine hits all
        for m, (s, token) in modes.items():
            t = servers[s]
            for _ in range(200):
                start = time.perf_counter()
                r = t.request("GET", "/v1/items/article/1?uid=42", conn=conns[m], token=token)
                times[m].append(time.perf_counter() - start)
                assert r.status == 200, (m, r)
    for c in conns.values():
        c.close()
    base = statistics.median(times["open_api"])
    figures = {}
    for m, ts in times.items():
        med = statistics.median(ts)
        figures[f"{m}_median_us"] = round(med * 1e6, 1)
        if m != "open_api":
            figures[f"{m}_added_us"] = round((med - base) * 1e6, 1)
    report("auth_latency_sequential_get", requests_each=n,
           store="mariadb" if MYSQL else "sqlite", **figures)
