"""The operator's page (/ui, issue 11) in a real headless browser.

Debian's chromium, driven by Playwright (from PyPI, pinned in tests/e2e/ui-requirements.txt)
through `executable_path`: Playwright's own browser download is never used. `scripts/deps.sh
ui` installs both (chromium only when missing; Playwright into .cache/ui-venv, which this
file puts on sys.path when the running Python lacks Playwright and has the venv's version).
The tests skip, saying why, when either is missing.

What they check: the page shows which tallyd it looks at (host:pid, version, commit,
uptime) and a pill per part (store, cache, bus, reads), red for a cache that does not
answer; the items and counts the test put in the store (top by likes and by reads), follows
them when they change (the DOM is polled with a deadline, the page itself polls every 2 s),
shows the rates, errors and "—" for the lag on the local bus, fits a phone's width; with
--keys it asks for a token, says when one is refused, then shows the data, and the token
never reaches the console.

TALLY_UI_SCREENSHOT=PATH saves a screenshot of the loaded page there (docs/ui.png in the
README comes from `TALLY_UI_SCREENSHOT=docs/ui.png`).
"""
import glob
import hashlib
import os
import re
import secrets
import shutil
import subprocess
import sys
import time

import pytest

from tallyd import BINARY, MYSQL, Tallyd, free_port

# No store, cache or bus of its own to test: see conftest.py.
pytestmark = pytest.mark.any_config

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "../.."))


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
        return sync_playwright, None
    except ImportError:
        pass
    want = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    site = glob.glob(os.path.join(ROOT, ".cache/ui-venv/lib", want, "site-packages"))
    if not site:
        return None, ("Playwright is not installed for this Python (run scripts/deps.sh ui, "
                      f"which makes .cache/ui-venv for {want})")
    sys.path.insert(0, site[0])
    try:
        from playwright.sync_api import sync_playwright
        return sync_playwright, None
    except ImportError as e:
        return None, f"Playwright in {site[0]} does not import: {e}"


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM:
        pytest.skip("no chromium on PATH (Debian package `chromium`: scripts/deps.sh ui)")
    sync_playwright, why = _playwright()
    if why:
        pytest.skip(why)
    with sync_playwright() as p:
        # Never `playwright install`: the system chromium, headless.
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1100, "height": 760})
    pg = ctx.new_page()
    pg.console_lines = []
    pg.on("console", lambda m: pg.console_lines.append(m.text))
    pg.on("pageerror", lambda e: pg.console_lines.append(f"pageerror: {e}"))
    yield pg
    ctx.close()


def rows(page, table):
    """[(id, read_cnt text, like_cnt text)] of a top table as the page shows it."""
    return page.eval_on_selector_all(
        f"#{table} tbody tr[data-id]",
        "trs => trs.map(tr => [tr.dataset.id, tr.querySelector('.read_cnt').textContent,"
        " tr.querySelector('.like_cnt').textContent])")


def wait_dom(page, what, check, timeout=15):
    """Polls check(page) until it is true, failing with what and the page's text after
    timeout seconds."""
    deadline = time.time() + timeout
    while True:
        try:
            if check(page):
                return
        except Exception:  # an element being replaced mid-read: look again
            pass
        if time.time() > deadline:
            pytest.fail(f"the page did not show {what} within {timeout} s:\n"
                        f"{page.inner_text('body')}\nconsole: {page.console_lines}")
        time.sleep(0.1)


def text(page, sel):
    return page.text_content(sel).strip()


def like(t, uid, item, token=None):
    r = t.request("PUT", f"/v1/users/{uid}/likes/article/{item}", token=token)
    assert r.status == 200, r


def read(t, item, n, token=None):
    for _ in range(n):
        assert t.request("POST", f"/v1/items/article/{item}/reads", token=token).status == 202


def wait_reads(t, item, n, token=None):
    deadline = time.time() + 10
    while t.get(f"/v1/items/article/{item}", token=token).json["read_cnt"] != n:
        assert time.time() < deadline, f"reads of {item} not applied"
        time.sleep(0.02)


def test_page_is_served_from_the_binary(tallyd):
    for path in ["/ui", "/ui/"]:
        r = tallyd.get(path)
        assert r.status == 200, r
        assert r.headers["content-type"] == "text/html; charset=utf-8"
        assert "<title>tally</title>" in r.body and 'name="viewport"' in r.body
        assert "connect-src 'self'" in r.headers["content-security-policy"]
        # Nothing from elsewhere: no framework, no CDN.
        assert "http://" not in r.body and "https://" not in r.body
    r = tallyd.request("HEAD", "/ui")
    assert r.status == 200 and r.body == "" and int(r.headers["content-length"]) > 1000
    assert tallyd.request("POST", "/ui").status == 405
    assert tallyd.get("/ui/x").status == 404


def test_page_shows_the_data_and_follows_it(tallyd, page):
    # Known data: likes 3, 2, 1 on items 1, 2, 3; reads 5 on item 3 and 2 on item 1.
    for uid in (1, 2, 3):
        like(tallyd, uid, 1)
    for uid in (1, 2):
        like(tallyd, uid, 2)
    like(tallyd, 1, 3)
    read(tallyd, 3, 5)
    read(tallyd, 1, 2)
    wait_reads(tallyd, 3, 5)
    wait_reads(tallyd, 1, 2)
    assert tallyd.get("/v1/nope").status == 404  # one 4xx for the errors tile

    page.goto(f"http://127.0.0.1:{tallyd.port}/ui")
    wait_dom(page, "the top list by likes",
             lambda p: rows(p, "top-like")[:3] == [["1", "2", "3"], ["2", "0", "2"],
                                                   ["3", "5", "1"]])
    assert rows(page, "top-read")[:2] == [["3", "5", "1"], ["1", "2", "3"]]
    # Rates need two scrapes; the lag is "—" on the local bus.
    wait_dom(page, "rates", lambda p: text(p, "#likes-rate") not in ("—", "…"))
    assert text(page, "#lag") == "—"
    assert text(page, "#err4") == "1"
    assert text(page, "#err5") == "0"
    assert "/" in text(page, "#batch")

    # More likes on another item: it goes to the top without a reload, and the likes/s
    # tile sees them.
    for uid in range(10, 15):
        like(tallyd, uid, 4)
    wait_dom(page, "item 4 at the top by likes",
             lambda p: rows(p, "top-like")[:2] == [["4", "0", "5"], ["1", "2", "3"]])
    read(tallyd, 2, 7)
    wait_dom(page, "item 2 at the top by reads",
             lambda p: rows(p, "top-read")[0] == ["2", "7", "2"])
    if os.environ.get("TALLY_UI_SCREENSHOT"):
        page.screenshot(path=os.environ["TALLY_UI_SCREENSHOT"], full_page=True)

    # Another window and another biz are asked for as they are chosen.
    page.select_option("#window", "24h")
    wait_dom(page, "the 24h window", lambda p: "(last 24h)" in text(p, "#likes-scope")
             and rows(p, "top-like")[0][0] == "4")
    page.fill("#biz", "video")
    page.dispatch_event("#biz", "change")
    wait_dom(page, "an empty biz", lambda p: "no items yet" in text(p, "#top-like"))

    # Readable on a phone: nothing wider than the screen.
    page.set_viewport_size({"width": 375, "height": 740})
    wait_dom(page, "a page that fits 375 px",
             lambda p: p.evaluate("document.documentElement.scrollWidth") <= 375)
    assert not [m for m in page.console_lines if "pageerror" in m], page.console_lines


def test_page_shows_the_instance_and_its_parts(spawn, page):
    """The strip above the tiles: host:pid, version and commit, uptime, and a pill per part,
    green when it is well and red when not (here a Redis where nothing listens)."""
    out = subprocess.run([BINARY, "--version"], capture_output=True, text=True).stdout
    version, commit = re.match(r"tallyd (\S+) \(([^;)]+)", out).groups()
    t = spawn(cache=f"redis://127.0.0.1:{free_port()}").start()
    page.goto(f"http://127.0.0.1:{t.port}/ui")
    wait_dom(page, "the instance", lambda p: text(p, "#instance").endswith(f":{t.proc.pid}"))
    assert text(page, "#version") == f"tally {version} ({commit})"
    assert re.fullmatch(r"\d+s|\d+m \d+s", text(page, "#uptime")), text(page, "#uptime")
    store = "mysql" if MYSQL else "sqlite"
    assert text(page, "#part-store") == f"store {store}: ok"
    assert "good" in page.get_attribute("#part-store", "class")
    assert text(page, "#part-bus") == "bus local: ok"
    assert text(page, "#part-ready") == "tallyd: ready"
    assert text(page, "#part-reads") == "reads: ok"
    assert text(page, "#part-cache") == "cache redis: unavailable"
    assert "bad" in page.get_attribute("#part-cache", "class")
    # The page polls: the uptime moves on without a reload.
    first = text(page, "#uptime")
    wait_dom(page, "the uptime moving", lambda p: text(p, "#uptime") != first)
    assert not [m for m in page.console_lines if "pageerror" in m], page.console_lines
    assert t.stop() == 0


def new_key(name, scopes):
    token = secrets.token_urlsafe(32)
    return token, f"{name} {scopes} {hashlib.sha256(token.encode()).hexdigest()}"


def test_page_asks_for_a_token_with_keys_on(spawn, tmp_path, page):
    ops, ops_line = new_key("ops", "read,metrics")
    admin, admin_line = new_key("admin", "admin")
    (tmp_path / "keys").write_text(f"{ops_line}\n{admin_line}\n")
    t = spawn("--keys", str(tmp_path / "keys"), token=admin).start()
    try:
        like(t, 7, 42)
        like(t, 8, 42)
        page.goto(f"http://127.0.0.1:{t.port}/ui")
        wait_dom(page, "the token prompt", lambda p: p.is_visible("#login")
                 and not p.is_visible("#dash"))

        page.fill("#token", "not-a-key")
        page.click("#login button[type=submit]")
        wait_dom(page, "a refused token", lambda p: "refused" in text(p, "#login-why")
                 and p.is_visible("#login"))

        page.fill("#token", ops)
        page.click("#login button[type=submit]")
        wait_dom(page, "the data once the token is given",
                 lambda p: p.is_visible("#dash") and rows(p, "top-like")[:1] == [["42", "0", "2"]])
        assert page.input_value("#token") == ""  # not left in the field
        assert page.evaluate("sessionStorage.getItem('tally.token')") == ops
        assert all(ops not in m for m in page.console_lines), page.console_lines

        # A reload keeps it (same tab); forgetting it brings the prompt back.
        page.reload()
        wait_dom(page, "the data after a reload", lambda p: rows(p, "top-like")[:1] == [["42", "0", "2"]])
        page.click("#logout")
        wait_dom(page, "the prompt again", lambda p: p.is_visible("#login"))
    finally:
        rc = t.stop()
    assert rc == 0, t.output()
    assert ops not in t.output()
