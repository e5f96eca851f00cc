"""make dist (scripts/dist.sh): the version rule between VERSION and CHANGELOG.md, the source
tarball (exactly the commit's tree, the same bytes on a second run, SHA256SUMS), the Debian
package's metadata and files, and then the package on this machine: dpkg -i, the unit through
`systemd-analyze verify`, the installed tallyd started as the tally user on the installed
/etc/default/tally (a like, a read, SIGTERM, exit 0), dpkg -r and dpkg -P with the conffile
kept and then purged. The machine is left as it was, also on failure.

The package is a release build of the commit, whatever build the suite tests: the tests run
once, with the release build on the embedded configuration (make test's first e2e run).
Installing needs root (make test runs as root); that test skips otherwise. Where systemd is
not PID 1 (a container), tallyd is started the way the unit would start it instead.
"""
import grp
import gzip
import hashlib
import http.client
import io
import json
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tarfile
import time

import pytest

from tallyd import BINARY, MYSQL, free_port
from test_deploy import known_variables

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
DIST = os.path.join(ROOT, "scripts/dist.sh")
SANITIZED = "build-asan" in BINARY or "build-tsan" in BINARY
IN_GIT = subprocess.run(["git", "-C", ROOT, "rev-parse", "--verify", "-q", "HEAD"],
                        capture_output=True).returncode == 0
UNIT = "/lib/systemd/system/tallyd.service"
WANTS = "/etc/systemd/system/multi-user.target.wants/tallyd.service"
SYSTEMD_RUNS = os.path.isdir("/run/systemd/system")

pytestmark = [
    pytest.mark.release,
    pytest.mark.skipif(bool(MYSQL), reason="the package does not depend on the store under "
                       "test: it is tested in the embedded configuration"),
    pytest.mark.skipif(SANITIZED, reason="the package is a release build of the commit, "
                       "whatever build is under test: tested with the release build"),
    pytest.mark.skipif(not IN_GIT, reason="make dist packages a git commit: not a checkout"),
]


def git(*args, cwd=ROOT, **kw):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, **kw).stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """scripts/dist.sh run once on the commit at HEAD now: its artifacts and facts."""
    out = tmp_path_factory.mktemp("dist")
    commit = git("rev-parse", "HEAD", text=True).strip()
    t0 = time.time()
    p = subprocess.run([DIST, "--rev", commit, str(out)], cwd=ROOT, capture_output=True,
                       text=True, timeout=1200)
    assert p.returncode == 0, p.stdout + p.stderr
    version = subprocess.run([DIST, "--check", "--rev", commit], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()
    d = dict(out=out, commit=commit, version=version, seconds=time.time() - t0,
             tarball=out / f"tally-{version}.tar.gz", deb=out / f"tally_{version}-1_{arch}.deb",
             arch=arch)
    assert sorted(os.listdir(out)) == sorted(["SHA256SUMS", d["tarball"].name, d["deb"].name])
    return d


# --- the version rule ----------------------------------------------------------------------

HEAD = "# Changelog\n\nIntro.\n\n"
RELEASED_110 = "## [1.1.0] - 2026-11-28\n\n### Added\n\n- b\n\n## [1.0.0] - 2026-01-02\n\n- a\n"


@pytest.mark.parametrize("version,changelog,expect", [
    # A release: its section is the newest, nothing listed since.
    pytest.param("1.1.0", "## [Unreleased]\n\n### Added\n\n" + RELEASED_110, "1.1.0",
                 id="release"),
    pytest.param("1.1.0", RELEASED_110, "1.1.0", id="release-without-unreleased"),
    # On the way to a version: changes listed, VERSION above every release.
    pytest.param("1.2.0", "## [Unreleased]\n\n### Fixed\n\n- c\n\n" + RELEASED_110,
                 "1.2.0~dev", id="dev"),
    pytest.param("0.1.0", "## [Unreleased]\n\n- first\n", "0.1.0~dev", id="dev-first"),
    # Refused: changes listed under a version already released.
    pytest.param("1.1.0", "## [Unreleased]\n\n### Fixed\n\n- c\n\n" + RELEASED_110,
                 "raise VERSION", id="changes-after-release"),
    # Refused: VERSION older than the newest release, or below it.
    pytest.param("1.0.0", "## [Unreleased]\n\n- c\n\n" + RELEASED_110, "older than",
                 id="older-release"),
    pytest.param("1.0.5", "## [Unreleased]\n\n- c\n\n" + RELEASED_110, "below",
                 id="below-release"),
    # Refused: neither released nor any change listed.
    pytest.param("1.2.0", "## [Unreleased]\n\n### Added\n\n" + RELEASED_110,
                 "lists no changes", id="no-changes"),
    pytest.param("1.2.0", RELEASED_110, "lists no changes", id="no-unreleased"),
    # Refused: a heading of another form, a bad VERSION, Unreleased below a release.
    pytest.param("1.1.0", "## [1.1.0]\n\n- b\n", "neither", id="no-date"),
    pytest.param("1.1.0", "## [Unreleased]\n\n## [1.1.0] - 28 Nov 2026\n\n- b\n", "neither",
                 id="bad-date"),
    pytest.param("1.1", "## [Unreleased]\n\n- c\n", "not X.Y.Z", id="bad-version"),
    pytest.param("1.2.0", RELEASED_110 + "\n## [Unreleased]\n\n- c\n",
                 "comes after a release", id="unreleased-last"),
])
def test_version_follows_the_changelog(tmp_path, version, changelog, expect):
    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "-q", cwd=repo)
    (repo / "VERSION").write_text(version + "\n")
    (repo / "CHANGELOG.md").write_text(HEAD + changelog)
    git("add", "VERSION", "CHANGELOG.md", cwd=repo)
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "c", cwd=repo)
    # The committed files decide, not the working tree.
    (repo / "VERSION").write_text("9.9.9\n")
    p = subprocess.run([DIST, "--check"], cwd=repo, capture_output=True, text=True)
    if re.fullmatch(r"[0-9.]+(~dev)?", expect):
        assert (p.returncode, p.stdout, p.stderr) == (0, expect + "\n", "")
        return
    assert p.returncode == 2 and p.stdout == "", p.stdout + p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dist: ") and expect in lines[0], p.stderr
    # A full run is refused the same way before it writes anything.
    p = subprocess.run([DIST, str(tmp_path / "out")], cwd=repo, capture_output=True, text=True)
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1, p.stderr
    assert not (tmp_path / "out").exists()


def test_repository_version_follows_the_changelog(dist):
    """HEAD's own VERSION and CHANGELOG.md pass the rule, as make dist needs."""
    version = git("show", f"{dist['commit']}:VERSION", text=True).strip()
    assert dist["version"] in (version, version + "~dev")


# --- the source tarball --------------------------------------------------------------------

def test_source_tarball_is_the_commit_and_reproducible(dist, tmp_path):
    raw = gzip.decompress(dist["tarball"].read_bytes())
    commit_id = subprocess.run(["git", "get-tar-commit-id"], input=raw, capture_output=True,
                               check=True).stdout.decode().strip()
    assert commit_id == dist["commit"]
    epoch = int(git("log", "-1", "--format=%ct", dist["commit"], text=True))
    top = f"tally-{dist['version']}/"
    tree = {}
    for entry in git("ls-tree", "-r", "-z", dist["commit"]).split(b"\0"):
        if entry:
            meta, path = entry.split(b"\t", 1)
            mode, _, oid = meta.decode().split()
            tree[top + path.decode()] = (mode, oid)
    files = {}
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        for m in tar.getmembers():
            assert m.name.startswith(top) or m.name == top.rstrip("/"), m.name
            assert m.mtime == epoch, m.name
            if not m.isdir():
                data = tar.extractfile(m).read() if m.isfile() else m.linkname.encode()
                oid = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
                files[m.name] = (m.mode & 0o100, oid)
    # Every file of the commit (the vendored libvalkey among them), with its content and its
    # executable bit, and nothing else.
    assert set(files) == set(tree)
    assert any("third_party/libvalkey/src/" in n for n in files)
    for name, (mode, oid) in tree.items():
        assert files[name] == ((0o100 if mode == "100755" else 0), oid), name

    sums = dict(reversed(line.split("  ", 1))
                for line in (dist["out"] / "SHA256SUMS").read_text().splitlines())
    assert set(sums) == {dist["tarball"].name, dist["deb"].name}
    for name, digest in sums.items():
        assert hashlib.sha256((dist["out"] / name).read_bytes()).hexdigest() == digest, name

    # The same commit gives the same bytes.
    again = tmp_path / "again"
    subprocess.run([DIST, "--source", "--rev", dist["commit"], str(again)], cwd=ROOT,
                   check=True, capture_output=True)
    assert (again / dist["tarball"].name).read_bytes() == dist["tarball"].read_bytes()
    print(f"make dist took {dist['seconds']:.0f} s; tarball {dist['tarball'].stat().st_size} "
          f"bytes, package {dist['deb'].stat().st_size} bytes")


# --- the Debian package, unpacked ----------------------------------------------------------

EXPECTED_FILES = {
    "usr/bin/tallyd": 0o755, "usr/bin/tallyctl": 0o755,
    "lib/systemd/system/tallyd.service": 0o644, "etc/default/tally": 0o644,
    "usr/share/doc/tally/copyright": 0o644, "usr/share/doc/tally/changelog.gz": 0o644,
    "usr/share/doc/tally/changelog.Debian.gz": 0o644, "usr/share/doc/tally/README.md.gz": 0o644,
    "usr/share/doc/tally/operations.md.gz": 0o644,
    "usr/share/doc/tally/examples/tallyd.env.example": 0o644,
}


def env_file(text):
    """NAME=VALUE settings of an EnvironmentFile (comments and blank lines skipped)."""
    settings = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", name), line
            settings[name] = value
    return settings


def unit_lines(text):
    return [l for l in text.splitlines() if l and not l.startswith("#")]


def test_package_metadata_and_files(dist, tmp_path):
    deb = str(dist["deb"])
    fields = {}
    for line in subprocess.run(["dpkg-deb", "--field", deb], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        if not line.startswith(" "):
            name, _, value = line.partition(": ")
            fields[name] = value
    assert fields["Package"] == "tally"
    assert fields["Version"] == dist["version"] + "-1"
    assert fields["Architecture"] == dist["arch"]
    assert fields["Maintainer"] and int(fields["Installed-Size"]) > 100

    # The payload: these files, owned by root, with these modes, and directories.
    listing = subprocess.run(["dpkg-deb", "--contents", deb], capture_output=True, text=True,
                             check=True).stdout.splitlines()
    seen = {}
    for line in listing:
        perms, owner, *_, path = line.split()
        assert owner == "root/root", line
        if not perms.startswith("d"):
            seen[path.removeprefix("./")] = perms
    assert set(seen) == set(EXPECTED_FILES)
    for path, mode in EXPECTED_FILES.items():
        assert seen[path] == stat.filemode(stat.S_IFREG | mode), path

    x = tmp_path / "x"
    subprocess.run(["dpkg-deb", "--raw-extract", deb, str(x)], check=True)
    assert (x / "DEBIAN/conffiles").read_text() == "/etc/default/tally\n"
    for script in ("postinst", "prerm", "postrm"):
        assert os.access(x / "DEBIAN" / script, os.X_OK), script
        subprocess.run(["sh", "-n", str(x / "DEBIAN" / script)], check=True)
    # md5sums: every file but the conffile, which dpkg tracks itself.
    sums = dict(reversed(l.split("  ", 1)) for l in (x / "DEBIAN/md5sums").read_text().splitlines())
    assert set(sums) == set(EXPECTED_FILES) - {"etc/default/tally"}
    for path, digest in sums.items():
        assert hashlib.md5((x / path).read_bytes()).hexdigest() == digest, path

    # Depends: the package of every shared library the binaries name (DT_NEEDED; what those
    # load in turn comes with their packages), found here the other way round (ldd's path for
    # it, then dpkg -S), and adduser for the postinst.
    depends = {d.split()[0] for d in fields["Depends"].split(", ")}
    assert "adduser" in depends
    for b in ("tallyd", "tallyctl"):
        needed = re.findall(r"\(NEEDED\).*\[(.+)\]", subprocess.run(
            ["readelf", "-dW", str(x / "usr/bin" / b)], capture_output=True, text=True,
            check=True).stdout)
        ldd = dict(re.findall(r"^\s*(\S+) => (/\S+)", subprocess.run(
            ["ldd", str(x / "usr/bin" / b)], capture_output=True, text=True, check=True).stdout,
            re.M))
        assert len(needed) > 10 and set(needed) <= set(ldd), (needed, ldd)
        for lib in (ldd[n] for n in needed):
            owner = subprocess.run(["dpkg", "-S", os.path.realpath(lib)], capture_output=True,
                                   text=True)
            if owner.returncode != 0:  # reached through /lib -> /usr/lib: ask for that name
                owner = subprocess.run(["dpkg", "-S", lib], capture_output=True, text=True,
                                       check=True)
            pkg = owner.stdout.split(":")[0]
            assert pkg in depends, f"{b}: {lib} comes from {pkg}, not in Depends"
        # A release build of that commit, stripped, with Debian's hardening.
        out = subprocess.run([str(x / "usr/bin" / b), "--version"], capture_output=True,
                             text=True).stdout
        version = git("show", f"{dist['commit']}:VERSION", text=True).strip()
        assert f" {version} (" in out and dist["commit"][:12] in out, out
        sections = subprocess.run(["readelf", "-SW", str(x / "usr/bin" / b)], capture_output=True,
                                  text=True, check=True).stdout
        assert ".symtab" not in sections and ".debug_info" not in sections, b
        dynamic = subprocess.run(["readelf", "-dW", str(x / "usr/bin" / b)], capture_output=True,
                                 text=True, check=True).stdout
        assert "BIND_NOW" in dynamic, b

    # The unit: the repository's, with the package's paths and its static user; every other
    # setting as it is there.
    unit = (x / UNIT.lstrip("/")).read_text()
    src = git("show", f"{dist['commit']}:deploy/systemd/tallyd.service", text=True)
    replaced = {"ExecStart=/usr/local/bin/tallyd": "ExecStart=/usr/bin/tallyd",
                "EnvironmentFile=-/etc/tally/tallyd.env": "EnvironmentFile=-/etc/default/tally",
                "DynamicUser=yes": "User=tally", "SupplementaryGroups=tally": "Group=tally",
                "Documentation=file:///usr/local/share/doc/tally/operations.md":
                    "Documentation=file:///usr/share/doc/tally/operations.md.gz"}
    expected = [replaced.get(l, l) for l in unit_lines(src)]
    assert sorted(unit_lines(unit)) == sorted(expected)
    settings = "\n".join(unit_lines(unit))
    assert "DynamicUser" not in settings and "/usr/local" not in settings

    # /etc/default/tally: an open API on loopback only, SQLite in the state directory, and
    # only variables tallyd knows.
    default = (x / "etc/default/tally").read_text()
    settings = env_file(default)
    assert settings["TALLY_LISTEN"].startswith("127.0.0.1:"), settings
    assert settings["TALLY_STORE"] == "sqlite:/var/lib/tally/tally.db"
    assert "TALLY_INSECURE" not in settings
    mentioned = set(re.findall(r"\bTALLY_[A-Z0-9_]+", default))
    assert mentioned - known_variables() == set()

    copyright_text = (x / "usr/share/doc/tally/copyright").read_text()
    assert "Apache License" in copyright_text and "libvalkey contributors" in copyright_text
    changelog = gzip.decompress((x / "usr/share/doc/tally/changelog.gz").read_bytes()).decode()
    assert changelog == git("show", f"{dist['commit']}:CHANGELOG.md", text=True)

    if shutil.which("lintian"):  # not installed by the suite: 140 packages of Perl
        p = subprocess.run(["lintian", "--fail-on", "error", deb], capture_output=True,
                           text=True, timeout=300)
        assert p.returncode == 0, p.stdout + p.stderr


# --- the Debian package, installed ---------------------------------------------------------

def dpkg(*args, check=True):
    """dpkg with ARGS, never prompting; waits (30 s at most) for a lock another apt holds."""
    deadline = time.time() + 30
    while True:
        p = subprocess.run(["dpkg", *args], stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=300)
        if p.returncode == 0 or "lock" not in p.stderr or time.time() > deadline:
            break
        time.sleep(0.5)
    assert not check or p.returncode == 0, f"dpkg {' '.join(args)}: {p.stdout}{p.stderr}"
    return p


def package_status():
    p = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "tally"], capture_output=True,
                       text=True)
    return "not-installed" if p.returncode or "not-installed" in p.stdout else p.stdout


def exists(name, db):
    try:
        db(name)
        return True
    except KeyError:
        return False


def call(port, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None)
        r = conn.getresponse()
        data = r.read()
        return r.status, json.loads(data) if data else None
    finally:
        conn.close()


def wait_for(what, cond, seconds, proc=None):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            if cond():
                return
        except OSError:
            pass
        time.sleep(0.05)
    pytest.fail(f"{what}: not within {seconds} s")


def run_installed_tallyd(tmp_path):
    """The installed tallyd as the unit starts it: user and group tally, the working and
    state directory /var/lib/tally, the installed /etc/default/tally as its only settings but
    for the port (a free one). A like, a read, both counted; SIGTERM; exit 0."""
    with open("/etc/default/tally") as f:
        settings = env_file(f.read())
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **settings}
    port = free_port()
    env["TALLY_LISTEN"] = f"127.0.0.1:{port}"
    log_path = tmp_path / "installed-tallyd.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(["setpriv", "--reuid=tally", "--regid=tally", "--init-groups",
                                 "/usr/bin/tallyd"], env=env, cwd="/var/lib/tally",
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for("/readyz 200", lambda: call(port, "GET", "/readyz")[0] == 200, 15, proc)
        status, item = call(port, "PUT", "/v1/users/42/likes/article/7")
        assert status == 200 and item["like_cnt"] >= 1 and item["liked"], (status, item)
        status, _ = call(port, "POST", "/v1/items/article/7/reads", {"uid": 42})
        assert status in (200, 202), status
        likes = item["like_cnt"]
        wait_for("the read counted", lambda: call(port, "GET", "/v1/items/article/7?uid=42")[1]
                 ["read_cnt"] >= 1, 10, proc)
        _, item = call(port, "GET", "/v1/items/article/7?uid=42")
        assert item["like_cnt"] == likes and item["liked"], item
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 0, log_path.read_text()
    db = os.stat("/var/lib/tally/tally.db")
    assert db.st_uid == pwd.getpwnam("tally").pw_uid and db.st_size > 0


@pytest.mark.skipif(os.geteuid() != 0, reason="installing a package needs root")
def test_package_installs_runs_and_purges(dist, tmp_path):
    if package_status() != "not-installed":
        pytest.skip(f"a tally package is on this machine ({package_status()}): not replaced")
    before = dict(user=exists("tally", pwd.getpwnam), group=exists("tally", grp.getgrnam),
                  state=os.path.lexists("/var/lib/tally"), etc=os.path.lexists("/etc/tally"),
                  wants=os.path.lexists(WANTS))
    deb = str(dist["deb"])
    try:
        dpkg("-i", deb)
        assert package_status() == "install ok installed"
        user = pwd.getpwnam("tally")
        assert user.pw_uid < 1000 and user.pw_shell == "/usr/sbin/nologin"
        assert grp.getgrgid(user.pw_gid).gr_name == "tally"
        st = os.stat("/var/lib/tally")
        if not before["state"]:
            assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (user.pw_uid, 0o700)
        st = os.stat("/etc/tally")
        if not before["etc"]:
            assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, user.pw_gid, 0o750)
        if shutil.which("systemctl"):  # enabled, even where systemd does not run
            assert os.path.islink(WANTS)
        if SYSTEMD_RUNS:
            subprocess.run(["systemctl", "is-active", "--quiet", "tallyd.service"], check=True)

        if shutil.which("systemd-analyze"):
            r = subprocess.run(["systemd-analyze", "verify", UNIT], capture_output=True,
                               text=True, timeout=60)
            about_unit = [l for l in (r.stdout + r.stderr).splitlines() if "tallyd.service" in l]
            assert r.returncode == 0 and not about_unit, r.stdout + r.stderr

        run_installed_tallyd(tmp_path)

        # An upgrade (here to the same version): the edited conffile kept, without a question;
        # the service still enabled.
        with open("/etc/default/tally", "a") as f:
            f.write("TALLY_LOG_FORMAT=json\n")
        dpkg("-i", deb)
        assert package_status() == "install ok installed"
        with open("/etc/default/tally") as f:
            assert f.read().endswith("TALLY_LOG_FORMAT=json\n")
        assert not shutil.which("systemctl") or os.path.islink(WANTS)

        # Remove: the program goes, the edited conffile, the enabling link and the counts stay.
        dpkg("-r", "tally")
        assert package_status() == "deinstall ok config-files"
        for path in ("/usr/bin/tallyd", "/usr/bin/tallyctl", UNIT, "/usr/share/doc/tally"):
            assert not os.path.lexists(path), path
        with open("/etc/default/tally") as f:
            assert f.read().endswith("TALLY_LOG_FORMAT=json\n")
        assert os.path.exists("/var/lib/tally/tally.db")
        assert not shutil.which("systemctl") or os.path.islink(WANTS)

        # Installed again: the edited conffile kept.
        dpkg("-i", deb)
        assert package_status() == "install ok installed"
        with open("/etc/default/tally") as f:
            assert f.read().endswith("TALLY_LOG_FORMAT=json\n")

        # Purge: the conffile and the enabling link go; the counts are kept, and said so.
        p = dpkg("-P", "tally")
        assert package_status() == "not-installed"
        assert not [n for n in os.listdir("/etc/default") if n.startswith("tally")]
        assert not os.path.lexists(WANTS) or before["wants"]
        assert os.path.exists("/var/lib/tally/tally.db")
        assert "/var/lib/tally is not empty: kept" in p.stderr, p.stderr
        if not before["etc"]:
            assert not os.path.lexists("/etc/tally")
        assert exists("tally", pwd.getpwnam)  # system users stay (see deploy/debian/postrm)
    finally:
        if package_status() != "not-installed":
            dpkg("-P", "tally", check=False)
        if not before["state"]:
            shutil.rmtree("/var/lib/tally", ignore_errors=True)
        if not before["etc"]:
            shutil.rmtree("/etc/tally", ignore_errors=True)
        if not before["wants"] and os.path.lexists(WANTS):
            os.unlink(WANTS)
        if not before["user"] and exists("tally", pwd.getpwnam):
            subprocess.run(["userdel", "tally"], check=True)
        if not before["group"] and exists("tally", grp.getgrnam):
            subprocess.run(["groupdel", "tally"], check=True)
