"""Limits, each counted in /stats `limits`: a worker out of file descriptors, or at
http.max_connections, pauses accepting instead of spinning on the readable listening socket; a
header block over http.max_header_size is answered 431; a client that does not send its whole
request within http.request_timeout is answered 408 and cut off (slowloris); the bodies a worker
reads at once are bounded by http.max_body_buffer (503), and the answers clients do not take by
http.max_output_buffer; broker.max_connections closes the least recently used idle broker
connection, or answers 503 when every one is busy."""
import base64
import json
import os
import resource
import socket
import threading
import time
import unittest
import uuid

from harness import (BROKER_DIR, RSS_TELLS, BrokerClient, Warrend, broker_command, broker_eval, erl, rss_kib,
                     wait_for)
from test_events import SseClient


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


class AcceptPause(unittest.TestCase):
    def test_emfile_pauses_accept_without_busy_loop(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        w = Warrend()
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))  # inherited by warrend only
        try:
            w.start()
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        clients = []
        try:
            with w:
                pid = [x["pid"] for x in w.worker_pids() if x.get("kind", "http") == "http"][0]
                for _ in range(120):  # more than the worker can hold; the kernel queues the rest
                    s = socket.create_connection(("127.0.0.1", w.ports[0]), timeout=5)
                    clients.append(s)
                time.sleep(0.5)
                before = cpu_seconds(pid)
                time.sleep(1.5)
                busy = cpu_seconds(pid) - before
                self.assertLess(busy, 0.5, f"worker used {busy:.2f} s CPU in 1.5 s: busy loop")
                for s in clients:
                    s.close()
                clients.clear()
                deadline = time.monotonic() + 10
                status = None
                while time.monotonic() < deadline:
                    try:
                        status = w.request("GET", 0, "/healthz", timeout=2)[0]
                        if status == 200:
                            break
                    except OSError:
                        pass
                    time.sleep(0.2)
                self.assertEqual(status, 200, w.log())
                self.assertIn("accept paused", w.log())
                stats = json.loads(w.request("GET", 0, "/stats")[2])
                self.assertGreaterEqual(stats["limits"]["accept_paused"], 1, stats.get("limits"))
        finally:
            for s in clients:
                s.close()


class RawClient:
    """HTTP/1.1 by hand on one socket, so a test controls every byte and sees every close."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {self.buf!r}")
        self.buf += chunk

    def response(self, timeout=5, to_head=False):
        """The next response: (status, headers dict with lower-case names, body bytes). head: it
        answers a HEAD request, so its Content-Length announces a body that is not sent."""
        self.sock.settimeout(timeout)
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        length = 0 if to_head else int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return int(lines[0].split()[1]), headers, body

    def closed_by_peer(self, timeout=3):
        """True once the peer closes (EOF or reset) within timeout; False if nothing comes."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def nothing_received(self):
        """True if no byte and no close has come from the peer so far."""
        self.sock.settimeout(0)
        try:
            self.sock.recv(1, socket.MSG_PEEK)  # data, or b"" for a close
            return False
        except BlockingIOError:
            return True


GET = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


def limits(w):
    return json.loads(w.request("GET", 0, "/stats")[2])["limits"]


MAX_HEADER_SIZE = 1024


class HeaderSize(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.w = Warrend(extra={"http": {"max_header_size": MAX_HEADER_SIZE}})
        cls.w.start()

    @classmethod
    def tearDownClass(cls):
        cls.w.cleanup()

    def test_over_the_limit_is_431_json(self):
        status, headers, body = self.w.request("GET", 0, "/healthz",
                                               headers={"X-Big": "a" * (MAX_HEADER_SIZE + 10)})
        self.assertEqual(status, 431, body)
        self.assertEqual(headers["Content-Type"], "application/json")
        error = json.loads(body)
        self.assertEqual(error["error"], "request header fields too large")
        self.assertIn("http.max_header_size (1024)", error["detail"])
        self.assertGreaterEqual(limits(self.w)["header_too_large"], 1)
        # just under it is served
        status, _, body = self.w.request("GET", 0, "/healthz",
                                         headers={"X-Big": "a" * (MAX_HEADER_SIZE - 200)})
        self.assertEqual(status, 200, body)

    def test_far_over_the_limit_is_431_and_closes_before_the_rest_is_read(self):
        # Refused as the head arrives: a head that never ends is never held whole.
        c = RawClient(self.w.ports[0])
        self.addCleanup(c.close)
        c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (64 * MAX_HEADER_SIZE))
        status, headers, body = c.response()
        self.assertEqual(status, 431, body)
        self.assertEqual(headers.get("connection"), "close")
        self.assertTrue(c.closed_by_peer())


MAX_BODY = 1024


class RoutePreamble(unittest.TestCase):
    """Every route checks its method, the credentials and http.max_body alike: the same status,
    headers and JSON body, whichever route a client hits."""
    # (method, path, needs credentials)
    ROUTES = [("POST", "/%2f/amq.default/k", True),
              ("POST", "/%2f/amq.default", True),
              ("POST", "/rpc/%2f/openstack/topic", True),
              ("GET", "/events/%2f/amq.topic/x", True),
              ("GET", "/", False)]

    @classmethod
    def setUpClass(cls):
        cls.w = Warrend(extra={"http": {"max_body": MAX_BODY}})
        cls.w.start()

    @classmethod
    def tearDownClass(cls):
        cls.w.cleanup()

    def error(self, response, status, error):
        code, headers, body = response
        self.assertEqual(code, status, body)
        self.assertEqual(headers["Content-Type"], "application/json")
        doc = json.loads(body)
        self.assertEqual(doc["error"], error)
        self.assertTrue(doc["detail"])
        return headers, doc

    def test_another_method_is_405_with_allow(self):
        for method, path, _ in self.ROUTES:
            other = "GET" if method == "POST" else "POST"
            with self.subTest(path=path):
                headers, _ = self.error(self.w.request(other, 0, path, auth=("guest", "guest")),
                                        405, "method not allowed")
                self.assertEqual(headers.get("Allow"), "GET, HEAD" if path == "/" else method)

    def test_no_credentials_is_401_with_the_challenge(self):
        for method, path, needs in self.ROUTES:
            if not needs:
                continue
            with self.subTest(path=path):
                headers, _ = self.error(self.w.request(method, 0, path), 401, "unauthorized")
                self.assertEqual(headers.get("WWW-Authenticate"), 'Basic realm="warren"')

    def test_a_body_over_max_body_is_413_naming_the_limit(self):
        for method, path, _ in self.ROUTES:
            with self.subTest(path=path):
                _, doc = self.error(self.w.request(method, 0, path, body="x" * (MAX_BODY + 1),
                                                   headers={"Content-Type": "application/json"},
                                                   auth=("guest", "guest")),
                                    413, "payload too large")
                self.assertIn(f"http.max_body ({MAX_BODY})", doc["detail"])


REQUEST_TIMEOUT = 1


class RequestTimeout(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.w = Warrend(extra={"http": {"request_timeout": REQUEST_TIMEOUT,
                                        "sse_keepalive": 0.2}})
        cls.w.start()

    @classmethod
    def tearDownClass(cls):
        cls.w.cleanup()

    def connect(self):
        c = RawClient(self.w.ports[0])
        self.addCleanup(c.close)
        return c

    def test_slowloris_gets_408_json_and_is_cut_off(self):
        before = limits(self.w)["request_timeouts"]
        c = self.connect()
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"b" * 40 + b"\r\n\r\n"
        start = time.monotonic()
        cut = None
        for byte in request:  # one byte every 0.3 s: evhttp's own timeout would never fire
            try:
                c.send(bytes([byte]))
            except OSError:
                cut = time.monotonic() - start
                break
            c.sock.settimeout(0.3)
            try:
                if c.sock.recv(1, socket.MSG_PEEK):
                    cut = time.monotonic() - start
                    break
            except socket.timeout:
                pass
        self.assertIsNotNone(cut, "the slow request was never cut off")
        self.assertLess(cut, REQUEST_TIMEOUT + 0.8)
        status, headers, body = c.response()
        self.assertEqual(status, 408)
        self.assertEqual(headers["content-type"], "application/json")
        self.assertEqual(headers["connection"], "close")
        error = json.loads(body)
        self.assertEqual(error["error"], "request timeout")
        self.assertIn("http.request_timeout", error["detail"])
        self.assertTrue(c.closed_by_peer())
        stats = json.loads(self.w.request("GET", 0, "/stats")[2])
        self.assertEqual(stats["limits"]["request_timeouts"], before + 1)
        self.assertGreaterEqual(stats["requests"]["response.408"], 1)

    def test_stalled_request_after_a_pipelined_one_gets_408(self):
        # The clock of a request that arrived while the one before it was answered starts
        # when that answer has gone out; here the second one stops in its body.
        c = self.connect()
        c.send(GET + b"POST /%2f/amq.default/q HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
        self.assertEqual(c.response()[0], 200)
        start = time.monotonic()
        status, _, body = c.response(timeout=REQUEST_TIMEOUT + 3)
        self.assertEqual(status, 408, body)
        self.assertLess(time.monotonic() - start, REQUEST_TIMEOUT + 0.8)
        self.assertTrue(c.closed_by_peer())

    def test_idle_keepalive_connection_gets_no_408(self):
        fresh = self.connect()  # never sends a byte
        used = self.connect()   # one request, then idle
        used.send(GET)
        self.assertEqual(used.response()[0], 200)
        time.sleep(REQUEST_TIMEOUT + 1)
        for c in (fresh, used):
            self.assertTrue(c.nothing_received())  # no 408, no close
            c.send(GET)
            self.assertEqual(c.response()[0], 200)

    def test_keepalive_client_with_many_quick_requests_is_unaffected(self):
        c = self.connect()
        start = time.monotonic()
        statuses = []
        while time.monotonic() - start < REQUEST_TIMEOUT * 2:  # longer than the timeout in all
            c.send(GET)
            statuses.append(c.response()[0])
            time.sleep(0.2)
        c.send(GET * 2)  # and two pipelined in one write
        statuses += [c.response()[0], c.response()[0]]
        self.assertEqual(set(statuses), {200}, statuses)
        self.assertGreaterEqual(len(statuses), 6)

    @unittest.skipUnless(BROKER_DIR, "needs t/run-tests' broker")
    def test_event_stream_outlives_the_request_timeout(self):
        # A stream is a request with its handler: no deadline runs while it lasts, and its
        # connection's close is still seen (the close callback is shared).
        c = self.connect()
        c.send(b"GET /events/%2f/amq.topic/limits.test HTTP/1.1\r\nHost: x\r\n"
               b"Authorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\n\r\n")
        c.sock.settimeout(5)
        while b"\r\n\r\n" not in c.buf:
            c._fill()
        self.assertTrue(c.buf.startswith(b"HTTP/1.1 200"), c.buf)
        c.sock.settimeout(0.5)
        data, deadline = c.buf, time.monotonic() + REQUEST_TIMEOUT * 2.5
        while time.monotonic() < deadline:
            try:
                chunk = c.sock.recv(4096)
            except socket.timeout:
                continue
            self.assertTrue(chunk, "the stream was closed")
            data += chunk
        self.assertIn(b"keepalive", data)
        closed = lambda: json.loads(self.w.request("GET", 0, "/stats")[2])["events"]["streams_closed"]
        before = closed()
        c.close()
        self.assertTrue(wait_for(lambda: closed() > before, 5), "stream end not seen")


USERS = [(f"warren_it_limit{i}", f"limit-secret-{i}") for i in range(3)]


BUFFER_BODY = 64 * 1024
BODY_BUFFER = 160 * 1024


class BodyBuffer(unittest.TestCase):
    """http.max_body_buffer: the bytes of request bodies a worker holds while it reads them, all
    its clients together. A body with no room is answered 503 (Retry-After) before it is read
    when its Content-Length says so, else as it arrives; what has room goes on."""

    @classmethod
    def setUpClass(cls):
        cls.w = Warrend(extra={"http": {"max_body": BUFFER_BODY, "max_body_buffer": BODY_BUFFER}})
        cls.w.start()
        cls.b = BrokerClient()
        cls.queue = f"body_buffer_{uuid.uuid4().hex[:8]}"
        cls.b.declare_queue(cls.queue, auto_delete=False)

    @classmethod
    def tearDownClass(cls):
        cls.b.delete_queue(cls.queue)
        cls.b.close()
        cls.w.cleanup()

    def head(self, length=None, chunked=False):
        auth = base64.b64encode(b"guest:guest").decode()
        framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}"
        return (f"POST /%2f/amq.default/{self.queue} HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Basic {auth}\r\nContent-Type: application/octet-stream\r\n"
                f"{framing}\r\n\r\n").encode()

    def half_sent(self, fill):
        """A client that sent all of a BUFFER_BODY body but its last 4 KiB: the worker holds the rest."""
        c = RawClient(self.w.ports[0])
        self.addCleanup(c.close)
        c.send(self.head(BUFFER_BODY) + fill * (BUFFER_BODY - 4096))
        return c

    def assert_no_room(self, c):
        status, headers, body = c.response()
        self.assertEqual(status, 503, body)
        self.assertEqual(headers.get("retry-after"), "1")
        self.assertEqual(headers.get("content-type"), "application/json")
        self.assertIn(f"http.max_body_buffer ({BODY_BUFFER} bytes)", json.loads(body)["detail"])
        self.assertTrue(c.closed_by_peer())

    def post(self, body):
        return self.w.request("POST", 0, f"/%2f/amq.default/{self.queue}", body=body,
                              headers={"Content-Type": "application/octet-stream"},
                              auth=("guest", "guest"))[0]

    def test_a_body_with_no_room_is_503_before_it_is_read_and_the_others_go_on(self):
        before = limits(self.w)["body_buffer_full"]
        a, b = self.half_sent(b"a"), self.half_sent(b"b")
        time.sleep(0.3)  # 120 KiB of 160 held
        refused = RawClient(self.w.ports[0])
        self.addCleanup(refused.close)
        refused.send(self.head(BUFFER_BODY))  # 64 KiB more would not fit: refused at its head
        self.assert_no_room(refused)
        self.assertEqual(self.post(b"s" * 1024), 204)  # a small one fits
        for c, fill in ((a, b"a"), (b, b"b")):
            c.send(fill * 4096)
            self.assertEqual(c.response()[0], 204)
        self.assertEqual(self.post(b"c" * BUFFER_BODY), 204)  # the room came back
        bodies = sorted(m[2][:1] + str(len(m[2])).encode() for m in self.b.messages(self.queue, 4))
        self.assertEqual(bodies, [b"a65536", b"b65536", b"c65536", b"s1024"])
        self.assertEqual(limits(self.w)["body_buffer_full"], before + 1)

    def test_a_chunked_body_past_the_room_is_503_and_nothing_of_it_is_published(self):
        a, b = self.half_sent(b"a"), self.half_sent(b"b")
        time.sleep(0.3)
        chunked = RawClient(self.w.ports[0])
        self.addCleanup(chunked.close)
        chunked.send(self.head(chunked=True) + b"c000\r\n" + b"x" * 0xc000 + b"\r\n")  # 48 KiB
        self.assert_no_room(chunked)
        for c, fill in ((a, b"a"), (b, b"b")):
            c.send(fill * 4096)
            self.assertEqual(c.response()[0], 204)
        self.assertEqual(sorted(m[2][:1] for m in self.b.messages(self.queue, 3)), [b"a", b"b"])


class ManyBigBodies(unittest.TestCase):
    def test_many_clients_sending_big_bodies_at_once_hold_no_more_than_the_buffer(self):
        # An attacker's clients each send a 1 MiB body (http.max_body) at once. Without a bound
        # on them all, the worker held every one while reading it (400 clients: 400 MiB).
        buffer, clients, size = 16 << 20, 120, 1 << 20
        with Warrend(extra={"http": {"max_body_buffer": buffer}}) as w:
            pid = [x["pid"] for x in w.worker_pids() if x.get("kind", "http") == "http"][0]
            idle = rss_kib(pid)
            auth = base64.b64encode(b"guest:guest").decode()
            head = (f"POST /%2f/amq.fanout/x HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n"
                    f"Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n").encode()
            body = b"x" * (size - 1)  # the last byte never comes: each body is held till refused
            socks = []
            try:
                for _ in range(clients):
                    s = socket.create_connection(("127.0.0.1", w.ports[0]), timeout=5)
                    s.sendall(head)
                    s.setblocking(False)
                    socks.append([s, 0])
                peak, deadline = idle, time.monotonic() + 20
                while time.monotonic() < deadline:
                    moving = False
                    for entry in socks:
                        s, sent = entry
                        if sent >= len(body):
                            continue
                        try:
                            entry[1] += s.send(body[sent:sent + 262144])
                            moving = True
                        except BlockingIOError:
                            pass
                        except OSError:  # refused and closed by the worker
                            entry[1] = len(body)
                    peak = max(peak, rss_kib(pid))
                    if not moving:
                        time.sleep(0.05)
                        if all(e[1] >= len(body) for e in socks):
                            break
                # Every body is held or refused before the clients go (slowly under ASan).
                refused = clients - buffer // size
                self.assertTrue(wait_for(lambda: limits(w)["body_buffer_full"] >= refused, 15), limits(w))
                peak = max(peak, rss_kib(pid))
            finally:
                for s, _ in socks:
                    s.close()
            grown = (peak - idle) / 1024
            if RSS_TELLS:  # under ASan, RSS is its quarantine
                # The buffer, a read buffer and an answer per connection, the allocator's slack.
                self.assertLess(grown, buffer / (1 << 20) + 24, f"worker grew {grown:.0f} MiB over idle")
            self.assertEqual(w.request("POST", 0, "/%2f/amq.fanout/x", body="after",
                                       auth=("guest", "guest"))[0], 204)

    def test_idle_keep_alive_connections_keep_no_big_read_buffer(self):
        # Each client publishes a 60 KB body and keeps its connection open, as a pool does. A
        # connection kept the 64 KiB buffer its body was read into: 400 of them held 26 MiB.
        clients, size = 400, 60000
        with Warrend() as w:
            pid = [x["pid"] for x in w.worker_pids() if x.get("kind", "http") == "http"][0]
            idle = rss_kib(pid)
            auth = base64.b64encode(b"guest:guest").decode()
            request = (f"POST /%2f/amq.fanout/x HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n"
                       f"Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n"
                       ).encode() + b"x" * size
            conns = []
            try:
                for _ in range(clients):
                    c = RawClient(w.ports[0])
                    conns.append(c)
                    c.send(request)
                self.assertEqual({c.response()[0] for c in conns}, {204})
                time.sleep(1.5)  # a worker gives free heap back once a second
                grown = (rss_kib(pid) - idle) / 1024
                if RSS_TELLS:  # under ASan, RSS is its quarantine
                    self.assertLess(grown, 12, f"worker grew {grown:.0f} MiB over idle")
            finally:
                for c in conns:
                    c.close()


class MaxConnections(unittest.TestCase):
    def test_past_max_connections_clients_wait_in_the_backlog_until_one_closes(self):
        # Each connection may hold a read buffer, an answer and its kernel buffers: only their
        # number bounds what many clients hold (http.max_connections, nginx's worker_connections).
        cap = 20
        with Warrend(extra={"http": {"max_connections": cap}}) as w:
            pid = [x["pid"] for x in w.worker_pids() if x.get("kind", "http") == "http"][0]
            held = []
            try:
                for _ in range(cap):  # each accepted and served, then a request under way: not idle
                    c = RawClient(w.ports[0])
                    held.append(c)
                    c.send(GET)
                    self.assertEqual(c.response()[0], 200)
                    c.send(GET[:-2])
                waiting = RawClient(w.ports[0])  # the kernel completes the handshake: the backlog
                self.addCleanup(waiting.close)
                waiting.send(GET)
                with self.assertRaises(socket.timeout):
                    waiting.response(timeout=1)
                before = cpu_seconds(pid)
                time.sleep(1)
                self.assertLess(cpu_seconds(pid) - before, 0.3, "a busy loop on the listening socket")
                held[0].send(b"\r\n")
                self.assertEqual(held[0].response()[0], 200)
                held[0].send(b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertGreaterEqual(json.loads(held[0].response()[2])["limits"]["connections_full"], 1)
                held.pop().close()  # room for one: the waiting client is accepted and answered
                self.assertEqual(waiting.response(timeout=5)[0], 200)
            finally:
                for c in held:
                    c.close()


    def test_at_max_connections_idle_connections_make_room(self):
        # An attacker opens http.max_connections connections and sends nothing: every other
        # client waited in the backlog for http.idle_connection_timeout (300 s). Idle ones are
        # closed to make room, as nginx does with its reusable connections.
        cap = 20
        with Warrend(extra={"http": {"max_connections": cap}}) as w:
            silent = [socket.create_connection(("127.0.0.1", w.ports[0])) for _ in range(cap)]
            try:
                for _ in range(3):  # and again once the attacker has filled the room
                    time.sleep(0.3)
                    self.assertEqual(w.request("GET", 0, "/healthz", timeout=3)[0], 200)
                    silent += [socket.create_connection(("127.0.0.1", w.ports[0])) for _ in range(cap)]
            finally:
                for s in silent:
                    s.close()


class ManyUnreadAnswers(unittest.TestCase):
    def test_clients_that_read_no_answers_hold_no_more_than_the_buffer(self):
        # An attacker's clients each pipeline GET /metrics and read nothing. Each connection was
        # bounded alone (16 answers owed, 256 KiB unsent) and nothing bounded them all: 200 such
        # clients held 100-140 MiB of a worker, and the worker's 20,000 file descriptors 10 GiB.
        buffer, clients = 8 << 20, 200
        with Warrend(extra={"http": {"max_output_buffer": buffer}}) as w:
            pid = [x["pid"] for x in w.worker_pids() if x.get("kind", "http") == "http"][0]
            answer = len(w.request("GET", 0, "/metrics")[2])
            idle = rss_kib(pid)
            requests = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 64
            socks = []
            try:
                for _ in range(clients):
                    s = socket.socket()
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel holds less
                    s.connect(("127.0.0.1", w.ports[0]))
                    s.setblocking(False)
                    socks.append(s)
                # Until the worker reads from none of them (every send blocks for a second).
                peak, still_since, deadline = idle, time.monotonic(), time.monotonic() + 30
                while time.monotonic() < deadline and time.monotonic() - still_since < 1:
                    for s in socks:
                        try:
                            s.send(requests)
                            still_since = time.monotonic()
                        except BlockingIOError:
                            pass
                    peak = max(peak, rss_kib(pid))
                    time.sleep(0.01)
                self.assertTrue(wait_for(lambda: limits(w)["output_buffer_full"] > 0, 5), limits(w))
                # Clients that read their answers are served as before, the attackers held: a
                # pipelining one too (one request at a time while the buffer is full), and every
                # publish answered 204 is in the queue, in order.
                self.assertEqual(w.request("GET", 0, "/healthz")[0], 200)
                held = limits(w)["output_buffer_full"]
                reader = RawClient(w.ports[0])
                self.addCleanup(reader.close)
                reader.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 40)
                self.assertEqual([reader.response()[0] for _ in range(40)], [200] * 40)
                with BrokerClient() as b:
                    queue = b.declare_queue(exclusive=True)
                    auth = base64.b64encode(b"guest:guest").decode()
                    reader.send(b"".join(
                        f"POST /%2f/amq.default/{queue} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n"
                        f"Content-Type: text/plain\r\nContent-Length: 2\r\n\r\n{i:02}".encode() for i in range(20)))
                    self.assertEqual([reader.response()[0] for _ in range(20)], [204] * 20)
                    self.assertEqual([m[2] for m in b.messages(queue, 20)], [f"{i:02}".encode() for i in range(20)])
                self.assertGreater(limits(w)["output_buffer_full"], held)  # it was held back
                peak = max(peak, rss_kib(pid))
            finally:
                for s in socks:
                    s.close()
            grown = (peak - idle) / 1024
            if RSS_TELLS:  # under ASan, RSS is its quarantine
                # The buffer, then an answer and a read buffer (64 KiB) per connection, and slack.
                bound = (buffer + clients * (answer + 65536)) / (1 << 20) + 16
                self.assertLess(grown, bound, f"worker grew {grown:.0f} MiB over idle")


@unittest.skipUnless(BROKER_DIR, "needs t/run-tests' broker (WARREN_BROKER_DIR)")
class BrokerConnections(unittest.TestCase):
    """broker.max_connections 2 and three users, each needing its own broker connection."""

    @classmethod
    def setUpClass(cls):
        steps = []
        for user, password in USERS:
            steps += [f"ok = rabbit_auth_backend_internal:add_user({erl(user)}, {erl(password)}, A)",
                      f"ok = rabbit_auth_backend_internal:set_permissions({erl(user)}, <<\"/\">>, "
                      f"<<\".*\">>, <<\".*\">>, <<\".*\">>, A)"]
        broker_eval(*steps)
        cls.queue = f"it-limits-{uuid.uuid4().hex[:8]}"
        with BrokerClient() as b:
            b.declare_queue(cls.queue)
        cls.w = Warrend(extra={"broker": {"max_connections": 2},
                               "http": {"confirm_timeout": 2}})
        cls.w.start()

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "w", None):
            cls.w.cleanup()
        with BrokerClient() as b:
            b.delete_queue(cls.queue)
        broker_eval(*(f"ok = rabbit_auth_backend_internal:delete_user({erl(u)}, A)"
                      for u, _ in USERS))

    def post(self, i, body, timeout=10):
        start = time.monotonic()
        status, headers, reply = self.w.request("POST", 0, f"/%2f/amq.default/{self.queue}",
                                                body={"body": body}, auth=USERS[i],
                                                timeout=timeout)
        return status, headers, reply, time.monotonic() - start

    def stats(self):
        return json.loads(self.w.request("GET", 0, "/stats")[2])

    def test_idle_connection_evicted_busy_ones_refuse(self):
        for i in range(2):
            self.assertEqual(self.post(i, f"warm-{i}")[0], 204)
        # A third user: the least recently used idle connection (user 0's) makes room.
        self.assertEqual(self.post(2, "third")[0], 204)
        self.assertTrue(wait_for(lambda: self.stats()["limits"]["broker_connections_evicted"] == 1
                                 and not self.stats()["connections"][f"/:{USERS[0][0]}"]["connected"],
                                 5), self.stats())
        self.assertIn("broker.max_connections 2 reached", self.w.log())

        # Users 1 and 2 with messages in flight (the broker stopped): user 0 is refused at once.
        outcomes = {}
        broker_command("pause")
        try:
            jobs = [threading.Thread(target=lambda i=i: outcomes.setdefault(i, self.post(i, "stuck")))
                    for i in (1, 2)]
            for j in jobs:
                j.start()
            time.sleep(0.5)
            status, headers, body, took = self.post(0, "refused")
            self.assertEqual(status, 503, body)
            self.assertLess(took, 1)
            self.assertEqual(headers["Retry-After"], "1")
            error = json.loads(body)
            self.assertEqual(error["error"], "too many broker connections")
            self.assertIn("broker.max_connections (2)", error["detail"])
            for j in jobs:
                j.join(15)
        finally:
            broker_command("resume")
        self.assertEqual(sorted(o[0] in (503, 504) for o in outcomes.values()), [True, True], outcomes)
        self.assertTrue(wait_for(lambda: self.stats()["limits"]["broker_connections_refused"] == 1, 5))
        # Once they are idle again, user 0 gets a connection by closing one of theirs.
        self.assertTrue(wait_for(lambda: self.post(0, "again")[0] == 204, 15))


if __name__ == "__main__":
    unittest.main()


class EventStreamsAndPendingCalls(unittest.TestCase):
    """http.max_event_streams and rpc.max_pending_calls: each stream holds its own broker
    connection, each pending call a request for up to rpc.max_timeout; past the cap, 503 at once."""

    CAP = 2

    @classmethod
    def setUpClass(cls):
        cls.w = Warrend(extra={"http": {"max_event_streams": cls.CAP},
                               "rpc": {"max_pending_calls": cls.CAP, "timeout": 4}})
        cls.w.start()

    @classmethod
    def tearDownClass(cls):
        cls.w.cleanup()

    def assert_refused(self, response, key):
        status, headers, body = response
        self.assertEqual(status, 503, body)
        self.assertEqual(headers.get("Retry-After"), "1")
        self.assertEqual(headers.get("Content-Type"), "application/json")
        self.assertIn(f"{key} ({self.CAP})", json.loads(body)["detail"])

    def test_one_stream_past_the_cap_is_503(self):
        streams = [SseClient(self.w.ports[0], "/events/%2f/amq.topic/limits.#") for _ in range(self.CAP)]
        try:
            for s in streams:
                self.assertTrue(s.read_until(b": subscribed"), s.buf)
            started = time.monotonic()
            self.assert_refused(self.w.request("GET", 0, "/events/%2f/amq.topic/limits.#",
                                               auth=("guest", "guest")), "http.max_event_streams")
            self.assertLess(time.monotonic() - started, 1)
            self.assertGreaterEqual(limits(self.w)["event_streams_refused"], 1)
        finally:
            for s in streams:
                s.close()
        # the closed streams free their places
        again = SseClient(self.w.ports[0], "/events/%2f/amq.topic/limits.#")
        self.addCleanup(again.close)
        self.assertTrue(again.read_until(b": subscribed"), again.buf)

    @unittest.skipUnless(BROKER_DIR, "needs t/run-tests' broker")
    def test_one_call_past_the_cap_is_503_at_once(self):
        topic = f"limits_{uuid.uuid4().hex[:8]}"
        with BrokerClient() as b:
            # a queue for the topic and no server on it: calls wait for their timeout
            b.declare_exchange("openstack", "topic")
            b.declare_queue(topic, auto_delete=False)
            b.bind(topic, "openstack", topic)
            try:
                answers = []

                def call():
                    answers.append(self.w.request("POST", 0, f"/rpc/%2f/openstack/{topic}",
                                                  body=json.dumps({"method": "m"}),
                                                  auth=("guest", "guest"), timeout=10)[0])

                threads = [threading.Thread(target=call) for _ in range(self.CAP)]
                for t in threads:
                    t.start()
                self.assertTrue(wait_for(lambda: b.channel.queue_declare(topic, passive=True)
                                         .method.message_count == self.CAP, 5))
                started = time.monotonic()
                self.assert_refused(self.w.request("POST", 0, f"/rpc/%2f/openstack/{topic}",
                                                   body=json.dumps({"method": "m"}),
                                                   auth=("guest", "guest")), "rpc.max_pending_calls")
                self.assertLess(time.monotonic() - started, 1)
                self.assertGreaterEqual(limits(self.w)["rpc_calls_refused"], 1)
                for t in threads:
                    t.join(10)
                self.assertEqual(answers, [504] * self.CAP)
            finally:
                b.delete_queue(topic)
