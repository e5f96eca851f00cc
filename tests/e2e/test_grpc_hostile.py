"""The gRPC port against clients that break the rules: raw HTTP/2 (the `h2` package), so
that what a generated client never sends can be sent: garbage, requests that never end,
too many calls, resets, compressed or oversized messages, other methods and content types.
Every case ends with the server still answering, and under ASan with nothing leaked."""
import socket
import struct
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest

from tallyd import free_port, store_write_lock
from test_auth import wait_until

GET = "/intr.v1.InteractiveService/Get"
LIKE = "/intr.v1.InteractiveService/Like"


def varint(n):
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def message(biz, biz_id, uid=0):
    """A GetRequest or LikeRequest (fields 1, 2, 3), framed as gRPC sends it."""
    m = b"\x0a" + varint(len(biz)) + biz.encode() + b"\x10" + varint(biz_id)
    if uid:
        m += b"\x18" + varint(uid)
    return b"\x00" + struct.pack(">I", len(m)) + m


class Client:
    """One HTTP/2 connection; events are gathered per stream."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.initiate_connection()
        self.streams, self.closed, self.goaway = {}, False, None
        self.flush()

    def flush(self):
        self.sock.sendall(self.h2.data_to_send())

    def call(self, path, body=b"", end=True, method="POST", ctype="application/grpc",
             headers=()):
        sid = self.h2.get_next_available_stream_id()
        self.h2.send_headers(sid, [(":method", method), (":scheme", "http"), (":path", path),
                                   (":authority", "tally"), ("content-type", ctype),
                                   ("te", "trailers"), *headers], end_stream=end and not body)
        if body:
            self.h2.send_data(sid, body, end_stream=end)
        self.flush()
        self.streams[sid] = {"headers": {}, "data": b"", "trailers": {}, "ended": False,
                             "reset": None}
        return sid

    def pump(self, until, timeout=10):
        """Reads and handles frames until until() holds or the connection closes."""
        deadline = time.monotonic() + timeout
        while not until() and not self.closed:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                break
            for ev in self.h2.receive_data(data):
                s = self.streams.get(getattr(ev, "stream_id", None))
                if isinstance(ev, h2.events.ResponseReceived):
                    s["headers"] = {k.decode(): v.decode() for k, v in ev.headers}
                elif isinstance(ev, h2.events.DataReceived):
                    s["data"] += ev.data
                    self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.TrailersReceived):
                    s["trailers"] = {k.decode(): v.decode() for k, v in ev.headers}
                elif isinstance(ev, h2.events.StreamEnded):
                    s["ended"] = True
                elif isinstance(ev, h2.events.StreamReset) and s is not None:
                    s["reset"] = ev.error_code
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    self.goaway = ev
            self.flush()
        return until()

    def status(self, sid, timeout=10):
        """grpc-status of a call, from its trailers or its trailers-only headers."""
        s = self.streams[sid]
        assert self.pump(lambda: s["ended"] or s["reset"] is not None, timeout), s
        return s

    def close(self):
        self.sock.close()


@pytest.fixture
def grpc(spawn):
    def make(*args):
        port = free_port()
        t = spawn("--grpc-listen", f"127.0.0.1:{port}", *args).start()
        t.grpc_port = port
        return t
    return make


def alive(t):
    c = Client(t.grpc_port)
    s = c.status(c.call(GET, message("article", 1)))
    c.close()
    return s["headers"].get(":status") == "200" and s["trailers"].get("grpc-status") == "0"


def code_of(s):
    return s["trailers"].get("grpc-status", s["headers"].get("grpc-status"))


def test_protocol_violations_get_protocol_answers(grpc):
    t = grpc()
    c = Client(t.grpc_port)
    s = c.status(c.call(GET, method="GET"))
    assert s["headers"][":status"] == "405", s
    s = c.status(c.call(GET, message("article", 1), ctype="application/json"))
    assert s["headers"][":status"] == "415", s
    s = c.status(c.call(GET, b"\x01" + message("article", 1)[1:]))  # compressed flag
    assert code_of(s) == "12", s
    s = c.status(c.call(GET, message("article", 1)[:-1]))  # the prefix says one byte more
    assert code_of(s) == "13", s
    s = c.status(c.call("/intr.v1.InteractiveService/Watch", message("a", 1)))
    assert code_of(s) == "12", s
    s = c.status(c.call(GET, message("article", 1), headers=[("idempotency-key", "a"),
                                                             ("idempotency-key", "b")]))
    assert code_of(s) == "3" and "twice" in s["headers"]["grpc-message"], s
    # The connection survived all of it.
    s = c.status(c.call(GET, message("article", 1)))
    assert code_of(s) == "0" and s["data"][:1] == b"\x00", s
    c.close()


def test_garbage_instead_of_http2_closes_only_that_connection(grpc):
    t = grpc()
    with socket.create_connection(("127.0.0.1", t.grpc_port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"\xff" * 1000)
        deadline, got = time.monotonic() + 5, b""
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(4096)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            got += chunk
    assert b"HTTP/1.1 200" not in got
    assert alive(t)


def test_a_request_that_never_ends_is_cut_at_the_deadline(grpc):
    t = grpc("--header-timeout-ms", "500")
    c = Client(t.grpc_port)
    c.call(GET, message("article", 1)[:4], end=False)  # half a message, never finished
    start = time.monotonic()
    c.pump(lambda: False, timeout=10)  # until tallyd closes it (or 10 s, and the assert fails)
    assert c.closed and time.monotonic() - start < 5
    assert t.metric("tally_grpc_timeouts_total") >= 1
    assert alive(t)


def test_an_idle_connection_is_closed(grpc):
    t = grpc("--idle-timeout-ms", "300")
    c = Client(t.grpc_port)
    assert code_of(c.status(c.call(GET, message("article", 1)))) == "0"
    c.pump(lambda: False, timeout=5)  # until tallyd closes it (or 5 s, and the assert fails)
    assert c.closed


def test_more_calls_than_announced_are_refused_and_the_rest_answered(grpc):
    t = grpc()
    c = Client(t.grpc_port)
    # Open 100 calls that stay open (no END_STREAM), then one more: HTTP/2 says no.
    sids = [c.call(GET, message("article", i + 1)[:3], end=False) for i in range(100)]
    # tallyd's SETTINGS announce the limit; the client library then enforces it.
    assert c.pump(lambda: c.h2.remote_settings.max_concurrent_streams == 100, 10)
    with pytest.raises(h2.exceptions.TooManyStreamsError):
        c.call(GET, message("article", 101))
    # Finish them: each is answered.
    for sid in sids:
        c.h2.send_data(sid, message("article", sid)[3:], end_stream=True)
    c.flush()
    assert c.pump(lambda: all(c.streams[s]["ended"] for s in sids), 20)
    assert all(code_of(c.streams[s]) == "0" for s in sids)
    c.close()
    assert alive(t)


def test_resets_and_vanishing_clients_while_calls_are_in_the_pools(grpc, db):
    t = grpc()
    with store_write_lock(db):  # every like waits in the write pool meanwhile
        for round_ in range(3):
            c = Client(t.grpc_port)
            sids = [c.call(LIKE, message("article", i + 1, uid=7)) for i in range(20)]
            for sid in sids[:10]:
                c.h2.reset_stream(sid)
            c.flush()
            c.close()  # the other ten vanish with their connection
    assert alive(t)
    # Once the lock goes, the likes that were in the pools commit and nothing is stuck.
    assert wait_until(lambda: t.metric("tally_grpc_connections") <= 1, 15)
    assert t.stop() == 0


def test_an_oversized_message_is_refused_and_its_window_given_back(grpc):
    t = grpc()
    c = Client(t.grpc_port)
    big = b"\x00" + struct.pack(">I", 200000) + b"\x00" * 200000
    # Several in a row on one connection: each gives its window back, or the next stalls.
    for _ in range(4):
        sid = c.h2.get_next_available_stream_id()
        c.h2.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":path", GET),
                                (":authority", "t"), ("content-type", "application/grpc")])
        c.streams[sid] = {"headers": {}, "data": b"", "trailers": {}, "ended": False,
                          "reset": None}
        sent = 0
        while sent < len(big):
            window = min(c.h2.local_flow_control_window(sid), c.h2.max_outbound_frame_size)
            if window == 0:
                assert c.pump(lambda: c.h2.local_flow_control_window(sid) > 0, 10), \
                    "the server never gave the window back"
                continue
            n = min(window, len(big) - sent)
            c.h2.send_data(sid, big[sent:sent + n], end_stream=sent + n == len(big))
            c.flush()
            sent += n
        s = c.status(sid)
        assert code_of(s) == "8", s
    assert code_of(c.status(c.call(GET, message("article", 1)))) == "0"
    c.close()


def frames_until_end_of(sock, sid, timeout=10):
    """Raw HTTP/2 frames (h2's state machine ends at a GOAWAY; the protocol does not):
    True once a frame of stream sid carries END_STREAM."""
    deadline, buf = time.monotonic() + timeout, b""
    while time.monotonic() < deadline:
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + length:
                break
            ftype, flags = buf[3], buf[4]
            stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            buf = buf[9 + length:]
            if stream == sid and ftype in (0, 1) and flags & 1:  # DATA or HEADERS, END_STREAM
                return True
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            return False
        buf += chunk
    return False


def test_stopping_answers_calls_in_flight_after_goaway(grpc, db):
    t = grpc("--drain-ms", "0")
    c = Client(t.grpc_port)
    with store_write_lock(db):
        sid = c.call(LIKE, message("article", 5, uid=9))
        # In flight: in the write pool, waiting on the lock (had it not reached the pool when
        # the SIGTERM comes, the GOAWAY still names it and it is still answered below).
        c.pump(lambda: False, timeout=0.3)
        t.proc.send_signal(15)
        assert c.pump(lambda: c.goaway is not None, 5), "no GOAWAY"
        assert c.goaway.last_stream_id >= sid  # the call in flight is still to be answered
    assert frames_until_end_of(c.sock, sid), "the call in flight was not answered"
    assert t.proc.wait(30) == 0
    assert db.sql("SELECT uid, biz_id, status FROM user_like") == [(9, 5, 1)]
