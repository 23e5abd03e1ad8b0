"""HTTP/1.1 on the wire, as a client relies on it connection by connection: pipelined requests
answered in order; a client that never reads neither starves the others nor grows its worker;
HTTP/1.0 with and without keep-alive; HEAD; Expect: 100-continue; chunked bodies with
extensions and trailers; a request trickled a byte at a time; a client that half-closes;
Date and Content-Length on every answer; hostile request lines; idle connections closed.

Written against evhttp to pin what warren's own connection handling (issue 14) had to keep;
where evhttp was wrong, the comment says how. Header framing (400), 431, 408, 405, 401 and 413 themselves are in test_security and
test_limits."""
import email.utils
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

from harness import BROKER_DIR, RSS_TELLS, BrokerClient, Warrend, broker_command, rss_kib, wait_for
from test_limits import GET, RawClient

AUTH = b"Authorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\n"  # guest:guest
HUNG = 5  # seconds: no answer and no close by then is a hang


def log(text):
    """What today's server does where more than one answer is right, for the run's output."""
    print(f"wire: {text}", file=sys.stderr, flush=True)


def publish_head(queue, framing):
    """The head of a raw-body publish to queue through the default exchange; framing: the
    Content-Length or Transfer-Encoding line(s) and any other header lines."""
    return (f"POST /%2f/amq.default/{queue} HTTP/1.1\r\nHost: x\r\n".encode() + AUTH +
            b"Content-Type: application/octet-stream\r\n" + framing + b"\r\n")


def publish(queue, body):
    return publish_head(queue, f"Content-Length: {len(body)}\r\n".encode()) + body


def send_in_pieces(c, data, size, pause=0.002):
    """data in writes of size bytes, each its own TCP segment: the server's parser must carry
    its state across reads cut anywhere."""
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(0, len(data), size):
        c.send(data[i:i + size])
        time.sleep(pause)


def http_worker_pid(w):
    return [x["pid"] for x in w.worker_pids() if x.get("kind", "http") == "http"][0]


def read_until_close(c, timeout=HUNG):
    """Everything the peer sends until it closes or timeout passes: (bytes, closed)."""
    deadline = time.monotonic() + timeout
    data = c.buf
    while time.monotonic() < deadline:
        c.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = c.sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def pipeline_answers(test, c):
    """The statuses of every answer until the server closes; only the last says
    Connection: close."""
    data, closed = read_until_close(c)
    test.assertTrue(closed, f"not closed after {data!r}")
    c.buf, answers = data, []
    while c.buf:
        answers.append(c.response()[:2])
    test.assertEqual([h.get("connection") == "close" for _, h in answers],
                     [False] * (len(answers) - 1) + [True], answers)
    return [status for status, _ in answers]


class QueueTest(unittest.TestCase):
    """Raw connections to self.w and a queue of the test's own."""

    def setUp(self):
        if BROKER_DIR:
            self.broker = BrokerClient()
            self.addCleanup(self.broker.close)
            self.queue = self.broker.declare_queue(f"wire-{uuid.uuid4().hex[:8]}")
            self.addCleanup(self.broker.delete_queue, self.queue)

    def connect(self):
        c = RawClient(self.w.ports[0])
        self.addCleanup(c.close)
        return c

    def bodies(self, count):
        """The bodies of the next count messages in the test's queue (None: all), in order."""
        return [body for _, _, body in self.broker.messages(self.queue, count, timeout=2)]


class WireTest(QueueTest):
    """One warrend for the class; each test gets its own queue, and after each the worker that
    served it must still be the same process and answer."""

    EXTRA = None

    @classmethod
    def setUpClass(cls):
        cls.w = Warrend(extra=cls.EXTRA)
        cls.w.start()
        cls.pid = http_worker_pid(cls.w)

    @classmethod
    def tearDownClass(cls):
        cls.w.cleanup()

    def tearDown(self):
        self.assert_worker_lives()

    def assert_worker_lives(self):
        self.assertEqual(self.w.request("GET", 0, "/healthz", timeout=2)[0], 200)
        self.assertEqual(http_worker_pid(self.w), self.pid, "the worker was restarted")


class Pipelining(WireTest):
    def test_32_gets_in_one_send_are_32_answers_in_order(self):
        c = self.connect()
        c.send(GET * 32)
        statuses = [c.response()[0] for _ in range(32)]
        self.assertEqual(statuses, [200] * 32)
        self.assertTrue(c.nothing_received(), c.buf)

    @unittest.skipUnless(BROKER_DIR, "needs t/run-tests' broker")
    def test_publishes_and_gets_mixed_in_one_send_are_answered_in_order(self):
        c = self.connect()
        c.send(publish(self.queue, b"first") + b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n" +
               publish(self.queue, b"second") + GET)
        answers = [c.response() for _ in range(4)]
        self.assertEqual([a[0] for a in answers], [204, 200, 204, 200], answers)
        self.assertIn("requests", json.loads(answers[1][2]))  # /stats' answer, not /healthz's
        self.assertEqual(self.bodies(2), [b"first", b"second"])

    @unittest.skipUnless(BROKER_DIR, "needs t/run-tests' broker")
    def test_a_pipeline_cut_every_3_bytes_is_answered_in_order(self):
        c = self.connect()
        send_in_pieces(c, publish(self.queue, b"first\r\n\r\n") + GET +
                       publish(self.queue, b"second") + b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n", 3)
        self.assertEqual([c.response()[0] for _ in range(4)], [204, 200, 204, 200])
        self.assertEqual(self.bodies(2), [b"first\r\n\r\n", b"second"])

    @unittest.skipUnless(BROKER_DIR, "needs t/run-tests' broker")
    def test_a_body_of_almost_max_body_arrives_whole(self):
        body = os.urandom(1048576 - 100)  # many reads; the default http.max_body is 1 MiB
        c = self.connect()
        c.send(publish(self.queue, body) + GET)
        self.assertEqual([c.response()[0] for _ in range(2)], [204, 200])
        self.assertEqual(self.bodies(1), [body])

    def test_errors_in_a_pipeline_keep_the_rest_in_step(self):
        c = self.connect()
        c.send(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n" +
               b"POST /%2f/amq.default/q HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nm" + GET)
        answers = [c.response() for _ in range(3)]
        self.assertEqual([a[0] for a in answers], [404, 401, 200], answers)
        self.assertEqual(json.loads(answers[2][2])["status"], "ok")

    def test_nothing_is_served_after_connection_close(self):
        c = self.connect()
        c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + GET)
        status, headers, _ = c.response()
        self.assertEqual((status, headers.get("connection")), (200, "close"))
        self.assertEqual(read_until_close(c), (b"", True))


    @unittest.skipUnless(BROKER_DIR, "needs t/run-tests' broker")
    def test_publishes_after_connection_close_are_not_published(self):
        # RFC 9112 9.6: nothing after the request that closes is read, so nothing after it is
        # published; everything before it is answered.
        for closing in (b"Connection: close\r\n", b"HTTP/1.0"):
            with self.subTest(closing=closing):
                c = self.connect()
                last = publish(self.queue, b"last")
                last = (last.replace(b"HTTP/1.1", b"HTTP/1.0", 1) if closing == b"HTTP/1.0"
                        else last.replace(b"Host: x\r\n", b"Host: x\r\n" + closing, 1))
                c.send(publish(self.queue, b"one") + publish(self.queue, b"two") + last +
                       publish(self.queue, b"after"))
                self.assertEqual(pipeline_answers(self, c), [204, 204, 204])
                self.assertEqual(self.bodies(None), [b"one", b"two", b"last"])


class NeverReading(WireTest):
    """A client that pipelines requests and never reads an answer."""

    def pipeline_without_reading(self, requests, seconds):
        """Sends up to `requests` GET /healthz in sends of 1000, for at most `seconds`, until the
        worker stops taking them; the connection and how many it took."""
        hog = self.connect()
        hog.sock.settimeout(1)  # a send that cannot go on for 1 s: the worker stopped reading
        sent, stop = 0, time.monotonic() + seconds
        try:
            while sent < requests and time.monotonic() < stop:
                hog.send(GET * 1000)
                sent += 1000
        except socket.timeout:
            pass
        return hog, sent


class SlowReader(NeverReading):
    def test_client_that_never_reads_starves_nobody(self):
        hog, sent = self.pipeline_without_reading(3000, 3)
        slowest = 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            start = time.monotonic()
            self.assertEqual(self.w.request("GET", 0, "/healthz", timeout=2)[0], 200)
            slowest = max(slowest, time.monotonic() - start)
            time.sleep(0.1)
        self.assertLess(slowest, 1, f"/healthz took {slowest:.2f} s beside a client that never "
                                    f"reads ({sent} requests sent)")
        if RSS_TELLS:
            self.assertLess(rss_kib(self.pid), 64 * 1024)
        hog.close()


class UnreadAnswers(NeverReading):
    """Past the point where a worker must stop taking its requests; a warrend of its own, as
    memory a worker has grown to may not go back to the system."""

    # What a worker holds for one client must be bounded: once answers wait unread, it should
    # stop reading that client (the kernel's buffers then push back). evhttp read on into its
    # input buffer without limit: 2.3 million requests (80 MiB) in flight cost as much RSS.
    @unittest.skipUnless(RSS_TELLS, "RSS says nothing under ASan")
    def test_client_that_never_reads_is_not_buffered_without_bound(self):
        hog, sent = self.pipeline_without_reading(80 * 1024 * 1024 // len(GET), 20)
        rss = rss_kib(self.pid)
        log(f"never-reading client: {sent} requests taken, worker VmRSS {rss} KiB")
        self.assertLess(rss, 64 * 1024, f"{sent} requests taken")
        hog.close()


class Http10(WireTest):
    def test_without_keep_alive_answered_then_closed(self):
        c = self.connect()
        c.send(b"GET /healthz HTTP/1.0\r\n\r\n")
        status, _, _ = c.response()
        self.assertEqual(status, 200)
        self.assertTrue(c.closed_by_peer())

    def test_with_keep_alive_a_second_request_is_answered(self):
        c = self.connect()
        request = b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        c.send(request)
        status, headers, _ = c.response()
        self.assertEqual(status, 200)
        # an HTTP/1.0 client keeps the connection only when the answer says so
        self.assertEqual(headers.get("connection", "").lower(), "keep-alive", headers)
        c.send(request)
        self.assertEqual(c.response()[0], 200)

    def test_with_keep_alive_pipelined_requests_are_answered_in_turn(self):
        # Each 1.0 answer is given before the next request is read (a 1.0 stream would end the
        # connection), then reading goes on.
        c = self.connect()
        c.send(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" * 3 + b"GET /healthz HTTP/1.0\r\n\r\n")
        answers = [c.response()[:2] for _ in range(4)]
        self.assertEqual([(s, h.get("connection", "").lower()) for s, h in answers],
                         [(200, "keep-alive")] * 3 + [(200, "close")], answers)
        self.assertTrue(c.closed_by_peer())


class Head(WireTest):
    HEAD = b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"

    # RFC 9110 section 9.3.2: the server MUST NOT send content in an answer to HEAD, else a
    # client reads those bytes as the start of its next answer (evhttp did).
    def test_head_is_answered_without_a_body(self):
        c = self.connect()
        c.send(GET)
        _, get_headers, get_body = c.response()
        c.send(self.HEAD)
        status, headers, _ = c.response(to_head=True)
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("content-type"), get_headers.get("content-type"))
        time.sleep(0.3)
        self.assertEqual(c.buf, b"")
        self.assertTrue(c.nothing_received(), "bytes after the HEAD answer's headers")
        c.send(GET)  # a stray body byte would be read as the start of this answer
        status, _, body = c.response()
        self.assertEqual((status, body), (200, get_body))
        self.assertTrue(c.nothing_received())

    # RFC 9110 section 9.3.2: the server SHOULD send the header fields GET's answer would have,
    # and Content-Length is known before any content is made (evhttp left it out).
    def test_head_has_the_content_length_of_get(self):
        c = self.connect()
        c.send(GET + self.HEAD)
        get_body = c.response()[2]
        headers = c.response(to_head=True)[1]
        self.assertEqual(headers.get("content-length"), str(len(get_body)), headers)


@unittest.skipUnless(BROKER_DIR, "needs t/run-tests' broker")
class ExpectContinue(WireTest):
    def test_100_continue_comes_before_the_body_is_sent(self):
        c = self.connect()
        body = b"sent after the 100"
        c.send(publish_head(self.queue, f"Content-Length: {len(body)}\r\n"
                                        "Expect: 100-continue\r\n".encode()))
        status, _, interim = c.response(timeout=1)
        self.assertEqual((status, interim), (100, b""))
        c.send(body)
        self.assertEqual(c.response()[0], 204)
        self.assertEqual(self.bodies(1), [body])

    def test_without_credentials_the_final_answer_is_401(self):
        # a 401 at once, or a 100 and the 401 once the body is in: both are right
        c = self.connect()
        c.send(b"POST /%2f/amq.default/q HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
               b"Expect: 100-continue\r\n\r\n")
        status = c.response(timeout=1)[0]
        log(f"Expect: 100-continue without credentials: {status} first")
        if status == 100:
            c.send(b"body")
            status = c.response()[0]
        self.assertEqual(status, 401)

    def test_http10_expect_is_ignored(self):
        # RFC 9110 section 10.1.1: a 100-continue expectation in an HTTP/1.0 request MUST be
        # ignored: no 100 (an HTTP/1.0 client would read it as the answer).
        c = self.connect()
        body = b"an HTTP/1.0 body"
        c.send(publish_head(self.queue, f"Content-Length: {len(body)}\r\n"
                                        "Expect: 100-continue\r\n".encode())
               .replace(b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", 1))
        time.sleep(0.3)
        self.assertTrue(c.nothing_received(), c.buf)
        c.send(body)
        self.assertEqual(c.response()[0], 204)
        self.assertEqual(self.bodies(1), [body])

    def test_curl_does_not_wait_for_its_expect_timeout(self):
        # curl sends Expect: 100-continue with a body over 1 KiB, then waits up to 1 s for the
        # 100 before it sends the body anyway.
        body = os.urandom(2500).hex().encode()  # 5000 bytes
        with tempfile.NamedTemporaryFile() as f:
            f.write(body)
            f.flush()
            out = subprocess.run(
                ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
                 "-u", "guest:guest", "-H", "Content-Type: application/octet-stream",
                 "-H", "Expect: 100-continue", "--data-binary", f"@{f.name}",
                 self.w.url(0, f"/%2f/amq.default/{self.queue}")],
                capture_output=True, text=True, timeout=10).stdout
        code, took = out.split()
        self.assertEqual(code, "204", out)
        self.assertLess(float(took), 0.5, out)
        self.assertEqual(self.bodies(1), [body])


@unittest.skipUnless(BROKER_DIR, "needs t/run-tests' broker")
class Chunked(WireTest):
    CHUNKS = b"5\r\nhello\r\n5\r\n worl\r\na\r\nd \x00\r\n\xff\r\n!!\r\n0\r\nX-Trailer: t\r\n\r\n"
    BODY = b"hello world \x00\r\n\xff\r\n!!"

    def send_chunked(self, chunks, then=b""):
        """A publish with chunks as its chunked body (a write each), then the bytes of then."""
        c = self.connect()
        c.send(publish_head(self.queue, b"Transfer-Encoding: chunked\r\n"))
        for chunk in chunks:
            c.send(chunk)
            time.sleep(0.02)
        c.send(then)
        return c

    def test_chunks_and_a_trailer_publish_the_exact_body(self):
        pieces = [self.CHUNKS[i:i + 12] for i in range(0, len(self.CHUNKS), 12)]
        c = self.send_chunked(pieces, then=GET)  # and a request behind it
        status, _, reply = c.response()
        self.assertEqual(status, 204, reply)
        self.assertEqual(c.response()[0], 200)
        self.assertEqual(self.bodies(1), [self.BODY])

    def test_chunks_cut_every_byte_publish_the_exact_body(self):
        c = self.send_chunked([])
        send_in_pieces(c, self.CHUNKS, 1)
        status, _, reply = c.response()
        self.assertEqual(status, 204, reply)
        self.assertEqual(self.bodies(1), [self.BODY])

    def test_bad_chunk_framing_is_an_error_and_a_close_and_publishes_nothing(self):
        bad = {"size over 64 bits": b"ffffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
               "negative size": b"-1\r\nabc\r\n0\r\n\r\n",
               "size not hex": b"xyz\r\nabc\r\n0\r\n\r\n",
               "more data than its size": b"3\r\nabcX\r\n0\r\n\r\n"}
        outcomes = {}
        for name, chunks in bad.items():
            c = self.send_chunked([chunks], then=GET)  # never to be served
            try:
                status, _, _ = c.response(timeout=HUNG)
            except (ConnectionError, socket.timeout):
                status = None
            outcomes[name] = (status, c.closed_by_peer(timeout=1), c.buf)
        log(f"bad chunk framing: {outcomes}")
        for name, (status, closed, rest) in outcomes.items():
            with self.subTest(name):
                self.assertTrue(status and 400 <= status < 500 and closed and not rest)
        self.assertEqual(self.bodies(1), [])

    # RFC 9112 section 7.1: a chunk-size is 1*HEXDIG. evhttp skipped an empty line where a
    # size belongs, took "abc" for the size 0xabc and waited for 2748 bytes (the request
    # behind them among them) until http.request_timeout.
    def test_an_empty_chunk_size_line_is_400_at_once(self):
        c = self.send_chunked([b"\r\nabc\r\n0\r\n\r\n"], then=GET)
        try:
            status = c.response(timeout=HUNG)[0]
        except socket.timeout:
            status = None
        self.assertEqual(status, 400)

    # RFC 9112 section 7.1.1: a recipient MUST ignore chunk extensions it does not understand
    # (evhttp answered 413 and closed).
    def test_a_chunk_extension_is_ignored(self):
        status, _, reply = self.send_chunked([b"5\r\nhello\r\n", b"6;x=y\r\n world\r\n",
                                              b"0\r\nX-Trailer: t\r\n\r\n"]).response()
        self.assertEqual(status, 204, reply)
        self.assertEqual(self.bodies(1), [b"hello world"])


class Trickle(WireTest):
    def test_a_request_sent_a_byte_every_20_ms_is_answered(self):
        c = self.connect()
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: trickle\r\n\r\n":
            c.send(bytes([byte]))
            time.sleep(0.02)
        self.assertEqual(c.response()[0], 200)


@unittest.skipUnless(BROKER_DIR, "needs t/run-tests' broker")
class HalfClose(WireTest):
    def test_publish_then_shut_wr(self):
        c = self.connect()
        c.send(publish(self.queue, b"half-closed"))
        c.sock.shutdown(socket.SHUT_WR)
        data, closed = read_until_close(c)
        self.assertTrue(data or closed, "neither an answer nor a close")
        got = self.bodies(1)
        log(f"half-close: answer {data[:30]!r}, closed {closed}, queue {got}")
        if data:
            self.assertTrue(data.startswith(b"HTTP/1.1 204 "), data)
            self.assertEqual(got, [b"half-closed"])


class DateAndLength(WireTest):
    def test_every_answer_has_date_and_a_correct_content_length(self):
        cases = [("GET", "/healthz", None, 200), ("GET", "/nowhere", None, 404),
                 ("POST", "/", None, 405), ("POST", "/%2f/amq.default/q", None, 401)]
        if BROKER_DIR:
            cases.append(("POST", f"/%2f/amq.default/{self.queue}", ("guest", "guest"), 204))
        for method, path, auth, expected in cases:
            with self.subTest(status=expected):
                c = self.connect()
                c.send(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n".encode() +
                       (AUTH if auth else b"") + b"\r\nm")
                status, headers, body = c.response()
                self.assertEqual(status, expected, body)
                date = email.utils.parsedate_to_datetime(headers["date"])
                self.assertLess(abs(date.timestamp() - time.time()), 5, headers["date"])
                self.assertTrue(headers["date"].endswith(" GMT"), headers["date"])
                if status == 204:  # RFC 9110 section 8.6: never in a 204
                    self.assertNotIn("content-length", headers)
                else:
                    self.assertEqual(headers.get("content-length"), str(len(body)))
                time.sleep(0.1)
                self.assertTrue(c.nothing_received(), f"more than Content-Length: {c.buf!r}")


# Each on its own connection: what a user must get is an error status and a close, or a correct
# answer; never a hang, never a dead worker.
HOSTILE_LINES = {
    "unknown method": b"FOO /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    "NUL in the target": b"GET /heal\x00thz HTTP/1.1\r\nHost: x\r\n\r\n",
    "100 KB target": b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "two spaces": b"GET  /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    "bare LF line ends": b"GET /healthz HTTP/1.1\nHost: x\n\n",
    "absolute-form": b"GET http://x/healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    "HTTP/2.0": b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n",
    "HTTP/1.1 without Host": b"GET /healthz HTTP/1.1\r\n\r\n",
}


class HostileRequestLines(WireTest):
    def outcome(self, raw):
        """(status or None, body, the connection) for raw sent on a new connection; status None:
        a close without an answer, or nothing at all within HUNG seconds."""
        c = self.connect()
        try:
            c.send(raw)
        except OSError:  # it closed on us while we sent: its answer may be there still
            pass
        try:
            status, _, body = c.response(timeout=HUNG)
        except (ConnectionError, socket.timeout):
            return None, b"", c
        return status, body, c

    def test_each_is_an_error_and_a_close_or_a_correct_answer(self):
        healthz = self.w.request("GET", 0, "/healthz")[2]
        table, failures = [], []
        for name, raw in HOSTILE_LINES.items():
            start = time.monotonic()
            status, body, c = self.outcome(raw)
            took = time.monotonic() - start
            closed = c.closed_by_peer(timeout=1)
            table.append(f"{name:24} {status} {'closed' if closed else 'open'} {took:.2f} s")
            if status is None:
                failures.append(f"{name}: {'a close' if closed else 'nothing'} without a status")
            elif status < 400 and (status, body) != (200, healthz):
                failures.append(f"{name}: {status} {body!r}")
            elif not closed:  # kept: it must still be in step, the next request answered
                c.send(GET)
                then, _, then_body = c.response()
                if (then, then_body) != (200, healthz):
                    failures.append(f"{name}: {status}, then {then} {then_body!r} to a GET")
            self.assertEqual(http_worker_pid(self.w), self.pid, name)
        log("hostile request lines:\n  " + "\n  ".join(table))
        self.assertEqual(failures, [], "\n".join(failures))

    # RFC 9112 section 3.2: "A server MUST respond with a 400 (Bad Request) status code to any
    # HTTP/1.1 request message that lacks a Host header field" (evhttp served it).
    def test_http11_without_host_is_400(self):
        self.assertEqual(self.outcome(HOSTILE_LINES["HTTP/1.1 without Host"])[0], 400)


    # RFC 9112 section 3.2.2: a server MUST accept the absolute form (evhttp answered it as a
    # proxy request: 200 without "Connection: close", then closed, dropping a request
    # pipelined behind it).
    def test_absolute_form_keeps_the_connection(self):
        c = self.connect()
        c.send(HOSTILE_LINES["absolute-form"] + GET)
        self.assertEqual([c.response()[0], c.response()[0]], [200, 200])


IDLE_TIMEOUT = 1


class IdleConnections(WireTest):
    EXTRA = {"http": {"idle_connection_timeout": IDLE_TIMEOUT}}

    def test_200_silent_connections_starve_nobody_and_are_closed_when_idle(self):
        connecting = time.monotonic()  # no connection's idle clock starts before this
        idle = [self.connect() for _ in range(200)]
        used = self.connect()  # one request, then as idle as the others
        used.send(GET)
        self.assertEqual(used.response()[0], 200)
        opened = time.monotonic()
        self.assertEqual(self.w.request("GET", 0, "/healthz", timeout=2)[0], 200)
        self.assertLess(time.monotonic() - opened, 0.5)
        time.sleep(max(0, connecting + IDLE_TIMEOUT / 2 - time.monotonic()))
        # (Unless connecting took most of the timeout, as it may under ASan.)
        if time.monotonic() < connecting + IDLE_TIMEOUT * 0.9:
            self.assertTrue(all(c.nothing_received() for c in idle + [used]), "closed too early")
        for c in idle + [used]:
            self.assertTrue(c.closed_by_peer(timeout=max(0.01, opened + IDLE_TIMEOUT + 3 -
                                                         time.monotonic())),
                            "an idle connection outlived http.idle_connection_timeout")



@unittest.skipUnless(BROKER_DIR, "needs t/run-tests' broker")
class GracefulStop(QueueTest):
    """The server ends a keep-alive connection as it stops: every request it has read (and
    maybe published) is answered, in order, the last answer saying Connection: close; a request
    it has not read is never published, so the client may safely send it again."""

    def setUp(self):
        self.w = Warrend(extra={"http": {"confirm_timeout": 20}})  # its own: the test stops it
        self.addCleanup(self.w.cleanup)
        self.w.start()
        super().setUp()

    def posts(self):
        return json.loads(self.w.request("GET", 0, "/stats")[2])["requests"].get("method.POST", 0)

    def test_every_publish_read_is_answered_and_none_is_read_after(self):
        c = self.connect()
        c.send(publish(self.queue, b"warm"))  # the worker's broker link is up
        self.assertEqual(c.response()[0], 204)
        broker_command("pause")
        try:
            c.send(b"".join(publish(self.queue, f"p{i}".encode()) for i in range(5)))
            # Read and published; the stopped broker holds their confirms.
            self.assertTrue(wait_for(lambda: self.posts() == 6, 10), self.posts())
            self.w.proc.send_signal(signal.SIGQUIT)
            self.assertTrue(wait_for(lambda: ": draining" in self.w.log(), 10), self.w.log())
            c.send(publish(self.queue, b"sent-while-draining"))
            time.sleep(0.2)
        finally:
            broker_command("resume")
        self.assertEqual(pipeline_answers(self, c), [204] * 5)
        self.assertEqual(self.bodies(None), [b"warm"] + [f"p{i}".encode() for i in range(5)])
        self.assertEqual(self.w.proc.wait(15), 0, self.w.log())


@unittest.skipUnless(BROKER_DIR, "needs t/run-tests' broker")
class KeepAliveOff(WireTest):
    EXTRA = {"http": {"keep_alive": False}}

    def test_only_the_first_request_of_a_pipeline_is_read(self):
        c = self.connect()
        c.send(b"".join(publish(self.queue, f"p{i}".encode()) for i in range(5)))
        self.assertEqual(pipeline_answers(self, c), [204])
        self.assertEqual(self.bodies(None), [b"p0"])


if __name__ == "__main__":
    unittest.main()
