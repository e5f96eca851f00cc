"""The README's tour shows what tally really answers.

The tour is every fenced block tagged `console` in README.md. In it a line starting with `$ `
is a command (continued on the next line while a line ends with `\\`); the lines up to the
next command are what it prints, blank lines at the end left out. The test starts a tallyd
as `make run` does (its own store, open API on loopback, on a free port instead of 8080),
runs each command in order with bash (`localhost:8080` replaced by the test's address), and
compares what it printed with what the README shows:

- output that parses as JSON is compared as JSON: key order and white space are free, so a
  long answer may be wrapped over several lines;
- any other output is compared line for line, exactly;
- `…` (one character, U+2026) stands for what differs from run to run, and only for that:
  as a JSON value it matches any value, in text any run of characters within a line;
- a command shown with no output must print nothing, and every command must exit 0.

A person types slower than tallyd counts reads (in batches, within about 100 ms), so before
each command the test waits, with a deadline, until every read accepted so far has been
through the store: the outputs are the ones a person sees. Runs on the embedded default and
on MariaDB + Redis (TALLY_TEST_MYSQL, TALLY_TEST_REDIS): the answers are the same.
"""
import json
import os
import re
import subprocess
import time

README = os.path.join(os.path.dirname(__file__), "../../README.md")
ANY = "\u2026"
TOUR_ADDRESS = "localhost:8080"


def tour_steps(text):
    """[(command, expected output)] of the README's `console` blocks, in order."""
    steps = []
    for block in re.findall(r"^```console\n(.*?)^```$", text, re.M | re.S):
        lines = block.splitlines()
        i = 0
        while i < len(lines):
            if not lines[i].strip():
                i += 1
                continue
            assert lines[i].startswith("$ "), f"output with no command before it: {lines[i]!r}"
            cmd = [lines[i][2:]]
            i += 1
            while cmd[-1].endswith("\\") and i < len(lines):
                cmd.append(lines[i])
                i += 1
            out = []
            while i < len(lines) and not lines[i].startswith("$ "):
                out.append(lines[i])
                i += 1
            steps.append(("\n".join(cmd), "\n".join(out).rstrip()))
    return steps


def as_json(text):
    """text parsed as JSON, a bare … read as the wildcard; None when it is not JSON."""
    try:
        return json.loads(re.sub(f'(?<!"){ANY}(?!")', f'"{ANY}"', text))
    except ValueError:
        return None


def json_matches(expected, actual):
    if expected == ANY:
        return True
    if isinstance(expected, dict):
        return (isinstance(actual, dict) and expected.keys() == actual.keys()
                and all(json_matches(v, actual[k]) for k, v in expected.items()))
    if isinstance(expected, list):
        return (isinstance(actual, list) and len(expected) == len(actual)
                and all(json_matches(e, a) for e, a in zip(expected, actual)))
    # 1 == True and 1 == 1.0 in Python; the README must show the JSON type tally answers.
    return type(expected) is type(actual) and expected == actual


def output_matches(expected, actual):
    want = as_json(expected) if expected else None
    if want is not None:
        try:
            got = json.loads(actual)
        except ValueError:
            return False
        return json_matches(want, got)
    pattern = ".*".join(re.escape(part) for part in expected.split(ANY))
    return re.fullmatch(pattern, actual) is not None


def reads_settled(t):
    """True once every read accepted has been counted or rightly not counted."""
    m = t.metric
    done = (m("tally_read_events_applied_total") + m("tally_read_events_deduplicated_total")
            + m("tally_read_events_idempotent_repeats_total"))
    return done >= m("tally_read_events_queued_total")


def wait_for(cond, what, timeout=10):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_parser_reads_commands_outputs_and_placeholders():
    text = ("```sh\n$ not the tour\n```\n"
            "```console\n$ a \\\n    b   # note\n{\"x\":1,\n \"t\":…}\n\n$ c\n$ d\nline …\n```\n")
    assert tour_steps(text) == [("a \\\n    b   # note", '{"x":1,\n "t":…}'), ("c", ""),
                                ("d", "line …")]
    assert output_matches('{"x":1,\n "t":…}', '{"t":{"a":[1]},"x":1}')
    assert not output_matches('{"x":1,"t":…}', '{"x":1}')             # a key missing
    assert not output_matches('{"x":1,"t":…}', '{"x":1,"t":2,"y":3}')  # a key too many
    assert not output_matches('{"x":1}', '{"x":true}')
    assert output_matches('{"x":"…"}', '{"x":"a"}')                     # a quoted … is any too
    assert output_matches("line …", "line 42") and not output_matches("line …", "line\n42")
    assert not output_matches("", "something") and output_matches("", "")


def test_readme_tour(tallyd):
    with open(README) as f:
        steps = tour_steps(f.read())
    assert len(steps) >= 10, "README.md has no tour (fenced blocks tagged console)"
    # The tour's two reads land in one hour of the history it shows: keep off the turn of
    # an hour (the whole tour takes about a second).
    wait_for(lambda: time.time() % 3600 < 3600 - 5, "the turn of the hour")
    address = f"localhost:{tallyd.port}"
    wrong = []
    for cmd, expected in steps:
        wait_for(lambda: reads_settled(tallyd), "the reads accepted to be counted")
        p = subprocess.run(["bash", "-o", "pipefail", "-c", cmd.replace(TOUR_ADDRESS, address)],
                           capture_output=True, text=True, timeout=10)
        actual = p.stdout.rstrip("\n")
        if p.returncode != 0 or p.stderr or not output_matches(expected, actual):
            wrong.append(f"$ {cmd}\n--- README shows:\n{expected}\n--- it printed "
                         f"(exit {p.returncode}):\n{actual}\n{p.stderr}")
    assert not wrong, f"{len(wrong)} of {len(steps)} tour outputs are wrong:\n\n" + \
        "\n\n".join(wrong)
