"""The fault suite (issue 7): faults under load, with every message counted in and out.

Publishing: the broker SIGKILLed and restarted, a broker memory alarm, a worker SIGKILLed mid-
request. Forwarding: a backend that hangs (and the forward worker SIGKILLed meanwhile), one that
resets connections, one that answers slowly. Each test asserts that nothing answered 2xx is
missing and that nothing consumed was acked before its backend answered 2xx, and prints one
`faults: ...` line with its counts to stderr (t/README.md quotes them).

These tests kill, restart and alarm the shared test broker; each leaves it healthy again.
"""
import base64
import collections
import http.client
import http.server
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
import unittest
import uuid

import pika

from harness import (BrokerClient, ClientThreads, Warrend, broker_command, broker_ready,
                     delete_queue_when_back, wait_for)

CONFIRM_TIMEOUT = 2
MARGIN = 1.5   # seconds beyond confirm_timeout a loaded 2-core machine may need to answer
REQUEST_TIMEOUT = CONFIRM_TIMEOUT + 5  # a client giving up here saw a hang
AUTH = "Basic " + base64.b64encode(b"guest:guest").decode()
HANG_LIMIT = 40  # seconds a "hanging" backend holds a request at most (the test releases it sooner)


def uid():
    return uuid.uuid4().hex[:8]


def summary(text):
    print(f"faults: {text}", file=sys.stderr, flush=True)


def by_status(answers):
    return dict(sorted(collections.Counter(str(a.status) for a in answers).items()))


Answer = collections.namedtuple("Answer", "id thread status body headers start end")


class Load(ClientThreads):
    """Client threads POSTing numbered persistent messages (message_id = body = "<prefix><t>-<i>")
    on keep-alive connections, each answer recorded; bounded by `per_thread` and by stop()."""

    join_timeout = REQUEST_TIMEOUT + 5

    def __init__(self, w, queue, threads=4, prefix="m", per_thread=2500):
        super().__init__(threads)
        self.w, self.queue, self.prefix, self.per_thread = w, queue, prefix, per_thread
        self.answers = []
        self.lock = threading.Lock()

    def snapshot(self):
        with self.lock:
            return list(self.answers)

    def wait_answers(self, count, timeout, since=0.0, status=None):
        """Until `count` answers (with `status`, if given) that ended after `since`."""
        return wait_for(lambda: len([a for a in self.snapshot() if a.end > since and
                                     (status is None or a.status == status)]) >= count, timeout)

    def _run(self, t):
        port = self.w.ports[t % len(self.w.ports)]
        conn = None
        for i in range(self.per_thread):
            if self.stopping.is_set():
                break
            mid = f"{self.prefix}{t}-{i}"
            start = time.monotonic()
            body, headers = b"", {}
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
                conn.request("POST", f"/%2f/amq.default/{self.queue}?message_id={mid}&delivery_mode=2",
                             body=mid, headers={"Authorization": AUTH, "Content-Type": "text/plain"})
                resp = conn.getresponse()
                body, status = resp.read(), resp.status
                headers = {k.lower(): v for k, v in resp.getheaders()}
                if resp.will_close:
                    conn.close()
                    conn = None
            except TimeoutError:
                status = "hang"
            except (OSError, http.client.HTTPException) as e:
                status = type(e).__name__  # a connection error: the worker went away
            if not isinstance(status, int) and conn is not None:
                conn.close()
                conn = None
            with self.lock:
                self.answers.append(Answer(mid, t, status, body, headers, start, time.monotonic()))
            if status == 503 or not isinstance(status, int):
                time.sleep(0.05)  # a stand-in for Retry-After, so a refusing warren is not hammered
        if conn is not None:
            conn.close()


def queue_ids(queue, timeout=30):
    """message_id of every message in the queue, consumed (auto-ack): a list, duplicates kept."""
    ids = []
    with BrokerClient() as b:
        expected = b.channel.queue_declare(queue, passive=True).method.message_count
        b.channel.basic_qos(prefetch_count=1000)
        deadline = time.monotonic() + timeout
        for method, props, _ in b.channel.consume(queue, auto_ack=True, inactivity_timeout=1.0):
            if method is None:
                if len(ids) >= expected or time.monotonic() > deadline:
                    break
                continue
            ids.append(props.message_id)
            if time.monotonic() > deadline:
                break
        b.channel.cancel()
    return ids


def peek_ids(queue, limit=10000):
    """message_id of every ready message, left in the queue (got unacked, then requeued)."""
    ids = []
    with BrokerClient() as b:
        ch = b.conn.channel()
        for _ in range(limit):
            method, props, _ = ch.basic_get(queue, auto_ack=False)
            if method is None:
                break
            ids.append(props.message_id)
        ch.close()  # unacked: back to the queue
    return ids


class PublishFaultBase(unittest.TestCase):
    def setUp(self):
        self.queue = f"it-faults-{uid()}"
        with BrokerClient() as b:
            b.declare_queue(self.queue, durable=True)

    def tearDown(self):
        delete_queue_when_back(self.queue)

    def start_warrend(self, ports):
        w = Warrend(ports=ports, extra={"http": {"confirm_timeout": CONFIRM_TIMEOUT}})
        self.addCleanup(w.cleanup)
        return w.start()

    def post(self, w, port, mid):
        try:
            return w.request("POST", port, f"/%2f/amq.default/{self.queue}?message_id={mid}"
                             "&delivery_mode=2", body=mid, auth=("guest", "guest"),
                             timeout=REQUEST_TIMEOUT)[0]
        except OSError as e:
            return repr(e)

    def wait_publishing(self, w, timeout=30):
        """Until a publish on every port answers 204 (bounded); the ids published."""
        sent = []
        for port in range(len(w.ports)):
            deadline = time.monotonic() + timeout
            while True:
                mid = f"probe-{port}-{uid()}"
                if self.post(w, port, mid) == 204:
                    sent.append(mid)
                    break
                self.assertLess(time.monotonic(), deadline,
                                f"port {w.ports[port]}: publishing did not come back\n{w.log()[-3000:]}")
                time.sleep(0.1)
        return sent

    def check_answers(self, answers, allowed):
        """Statuses in `allowed`; error answers are JSON; 503 says Retry-After; none hung."""
        statuses = by_status(answers)
        self.assertTrue(set(statuses) <= {str(s) for s in allowed}, statuses)
        for a in answers:
            if isinstance(a.status, int) and a.status >= 400:
                doc = json.loads(a.body)
                self.assertIn("error", doc, a)
                if a.status == 503:
                    self.assertIn("retry-after", a.headers, a)
            if a.status in (503, 504):
                self.assertLess(a.end - a.start, CONFIRM_TIMEOUT + MARGIN, f"{a.id}: {a.status} too late")

    def balance(self, answers, probes):
        """Reads the queue: (ids answered 204, ids in the queue as a Counter); nothing lost."""
        confirmed = {a.id for a in answers if a.status == 204} | set(probes)
        in_queue = collections.Counter(queue_ids(self.queue))
        lost = confirmed - set(in_queue)
        self.assertEqual(lost, set(), f"{len(lost)} of {len(confirmed)} answered 204 are missing")
        # 503 promises the message was never sent (safe to send again); one the broker may have
        # kept is answered 504 (outcome unknown).
        resendable = {a.id for a in answers if a.status == 503} & set(in_queue)
        self.assertEqual(resendable, set(), "answered 503, yet the broker has them")
        return confirmed, in_queue


@unittest.skipUnless(os.environ.get("WARREN_BROKER_DIR"), "needs t/run-tests' broker")
class BrokerFaults(PublishFaultBase):
    def test_broker_sigkill_and_restart_under_publish_load(self):
        w = self.start_warrend(ports=2)
        load = Load(w, self.queue, threads=4, prefix="k").start()
        try:
            self.assertTrue(load.wait_answers(1000, 20, status=204), by_status(load.snapshot()))
            # The queue's declaration is RabbitMQ's metadata (mnesia), not a message: once in
            # ~30 kills a queue declared two seconds earlier did not come back. Flush mnesia's
            # log first, so that the kill tests warren's messages, not the broker's metadata.
            broker_command("ctl", "eval", "disk_log:sync(latest_log).")
            killed = time.monotonic()
            broker_command("kill")
            time.sleep(1.0)  # publishing against a dead broker
            broker_command("restart")
            broker_ready()
            back = time.monotonic()
            with BrokerClient() as b:
                try:
                    b.channel.queue_declare(self.queue, passive=True)
                except pika.exceptions.ChannelClosedByBroker as e:
                    self.fail(f"the broker lost the durable queue itself in the kill: {e}")
            # the stream goes on until the workers confirm again (their reconnect backoff
            # grew while the broker was away)
            load.wait_answers(500, 35, since=back, status=204)
        finally:
            joined = load.stop()
        self.assertTrue(joined, "a client hung")
        answers = load.snapshot()
        self.check_answers(answers, {204, 503, 504})
        during = [a for a in answers if a.end > killed and a.start < back]
        self.assertTrue(any(a.status in (503, 504) for a in during), by_status(during))
        self.assertTrue(any(a.status == 204 and a.start > back for a in answers), "no 204 after")
        probes = self.wait_publishing(w)
        confirmed, in_queue = self.balance(answers, probes)
        s = by_status(answers)
        summary(f"broker SIGKILL+restart: sent {len(answers)}, 2xx {s.get('204', 0)}, "
                f"503 {s.get('503', 0)}, 504 {s.get('504', 0)}, in queue {sum(in_queue.values())} "
                f"(incl. {len(probes)} probes; {len(set(in_queue) - confirmed)} answered non-2xx, "
                f"{sum(in_queue.values()) - len(in_queue)} duplicates), lost 0; "
                f"broker back after {back - killed:.1f} s")

    def test_memory_alarm_while_publishing(self):
        w = self.start_warrend(ports=1)
        load = Load(w, self.queue, threads=3, prefix="a").start()
        healthz = None
        try:
            self.assertTrue(load.wait_answers(100, 20, status=204), by_status(load.snapshot()))
            alarmed = time.monotonic()
            try:
                broker_command("ctl", "set_vm_memory_high_watermark", "0")
                # The broker blocks the connection on its first publish after the alarm (that
                # one waits for its confirm: 504); from connection.blocked on, 503 at once.
                self.assertTrue(load.wait_answers(1, CONFIRM_TIMEOUT + 10, since=alarmed, status=503),
                                f"no 503 during the alarm: {by_status(load.snapshot())}\n{w.log()[-2000:]}")
                blocked = time.monotonic()
                time.sleep(CONFIRM_TIMEOUT + MARGIN)  # the alarm lasts; whatever was sent times out
                start = time.monotonic()  # the worker's loop is not stuck behind the broker
                self.assertEqual(w.request("GET", 0, "/healthz", timeout=2)[0], 200)
                healthz = time.monotonic() - start
            finally:
                cleared = time.monotonic()
                broker_command("ctl", "set_vm_memory_high_watermark", "0.4")
            self.assertTrue(load.wait_answers(100, 20, since=cleared, status=204),
                            f"publishing did not come back: {by_status(load.snapshot())}")
        finally:
            joined = load.stop()
        self.assertTrue(joined, "a client hung")
        answers = load.snapshot()
        self.check_answers(answers, {204, 503, 504})
        self.assertLess(healthz, 0.5)
        alarm = [a for a in answers if blocked < a.start < cleared]
        self.assertTrue(alarm, "no request while the connection was blocked")
        self.assertEqual(by_status(alarm), {"503": len(alarm)})
        self.assertLess(max(a.end - a.start for a in alarm), 0.5, "a 503 was not prompt")
        for a in alarm:
            self.assertIn("blocked", json.loads(a.body)["detail"], a)
        probes = self.wait_publishing(w)
        confirmed, in_queue = self.balance(answers, probes)
        s = by_status(answers)
        summary(f"memory alarm: sent {len(answers)}, 2xx {s.get('204', 0)}, 503 {s.get('503', 0)}, "
                f"504 {s.get('504', 0)}, in queue {sum(in_queue.values())} (incl. {len(probes)} probes; "
                f"{len(set(in_queue) - confirmed)} answered non-2xx, "
                f"{sum(in_queue.values()) - len(in_queue)} duplicates), lost 0; alarm "
                f"{cleared - alarmed:.1f} s, 503s in under {max(a.end - a.start for a in alarm) * 1000:.0f} ms "
                f"once blocked, /healthz {healthz * 1000:.0f} ms during it")


@unittest.skipUnless(os.environ.get("WARREN_BROKER_PORT"), "needs a broker")
class WorkerKilled(PublishFaultBase):
    def test_http_worker_sigkilled_mid_request(self):
        w = self.start_warrend(ports=1)
        born = time.monotonic()
        load = Load(w, self.queue, threads=4, prefix="w").start()
        try:
            # a worker killed younger than 1 s is respawned after a 1 s throttle: older here
            self.assertTrue(load.wait_answers(500, 20, status=204), by_status(load.snapshot()))
            time.sleep(max(0.0, born + 1.5 - time.monotonic()))
            (victim,) = [x["pid"] for x in w.worker_pids() if x["kind"] == "http"]
            # a request surely in flight: headers and half its body sent
            partial = socket.create_connection(("127.0.0.1", w.ports[0]), timeout=5)
            partial.sendall(f"POST /%2f/amq.default/{self.queue} HTTP/1.1\r\nHost: x\r\n"
                            f"Authorization: {AUTH}\r\nContent-Length: 100\r\n\r\n{'x' * 50}".encode())
            time.sleep(0.2)
            killed = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            try:
                cut = partial.recv(100)  # the peer is gone: EOF or a reset, never an answer
            except ConnectionResetError:
                cut = b""
            partial.close()
            self.assertEqual(cut, b"")
            self.assertTrue(load.wait_answers(50, 15, since=killed, status=204),
                            f"no 204 after the kill: {by_status(load.snapshot())}\n{w.log()[-3000:]}")
            respawned = [a.end for a in load.snapshot() if a.status == 204 and a.start > killed]
            serving_after = min(respawned) - killed if respawned else None
        finally:
            joined = load.stop()
        self.assertTrue(joined, "a client hung")
        self.assertNotIn(victim, [x["pid"] for x in w.worker_pids()])
        answers = load.snapshot()
        errors = [a for a in answers if not isinstance(a.status, int)]
        self.assertTrue(set(by_status(answers)) - {"204"} <= {a.status for a in errors},
                        by_status(answers))
        self.assertNotIn("hang", by_status(answers))
        # only a request in flight on the dead worker, or the next one on a connection to it
        per_thread = collections.Counter(a.thread for a in errors)
        self.assertTrue(all(n <= 1 for n in per_thread.values()), errors)
        self.assertTrue(all(a.start < killed + 0.5 for a in errors), errors)
        self.assertLess(serving_after, 5.0)
        confirmed, in_queue = self.balance(answers, [])
        s = by_status(answers)
        summary(f"HTTP worker SIGKILL: sent {len(answers)}, 2xx {s.get('204', 0)}, connection errors "
                f"{len(errors)} ({', '.join(sorted({a.status for a in errors})) or '-'}), in queue "
                f"{sum(in_queue.values())} (of which {len(set(in_queue) - confirmed)} unanswered), lost 0; "
                f"serving again after {serving_after:.2f} s")


class FaultBackend:
    """A backend whose answer per request comes from policy(kind, number, attempt): ("ok", status,
    delay) | ("hang",) | ("reset",). kind is the path's first segment, number the message id's
    trailing number, attempt counts this id's requests. Every request is recorded.

    HTTP/1.0, one request per connection: libcurl would transparently resend a request that
    failed on a reused keep-alive connection, and the per-id counts would not be exact."""

    Seen = collections.namedtuple("Seen", "kind id attempt outcome")

    def __init__(self, policy):
        self.policy = policy
        self.lock = threading.Lock()
        self.seen = []
        self.attempts = collections.Counter()
        self.release = threading.Event()  # ends every hang
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                kind = self.path.strip("/").split("/")[0]
                mid = self.headers.get("X-AMQP-Message-Id", "")
                with backend.lock:
                    backend.attempts[mid] += 1
                    attempt = backend.attempts[mid]
                action = backend.policy(kind, int(mid.rsplit("-", 1)[1]), attempt)
                if action[0] == "hang":
                    backend.record(kind, mid, attempt, "hang")
                    backend.release.wait(HANG_LIMIT)
                    self.close_connection = True
                    return
                if action[0] == "reset":
                    backend.record(kind, mid, attempt, "reset")
                    # SO_LINGER 0: close() sends a RST, not a FIN
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                _, status, delay = action
                time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
                self.wfile.flush()
                backend.record(kind, mid, attempt, status)

            def finish(self):
                try:
                    super().finish()
                except OSError:  # the socket reset above, or a client that went away
                    pass

            def handle(self):
                try:
                    super().handle()
                except OSError:
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def record(self, kind, mid, attempt, outcome):
        with self.lock:
            self.seen.append(self.Seen(kind, mid, attempt, outcome))

    def received(self, kind):
        with self.lock:
            return [s for s in self.seen if s.kind == kind]

    def answered_2xx(self, kind):
        return collections.Counter(s.id for s in self.received(kind)
                                   if isinstance(s.outcome, int) and 200 <= s.outcome < 300)

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@unittest.skipUnless(os.environ.get("WARREN_BROKER_PORT"), "needs a broker")
class ForwardFaults(unittest.TestCase):
    def setUp(self):
        self.broker = BrokerClient()
        self.addCleanup(self.broker.close)

    def queue(self, prefix):
        q = f"it-ffaults-{prefix}-{uid()}"
        self.addCleanup(lambda: self.broker.channel.queue_delete(q))
        return q

    def backend(self, policy):
        b = FaultBackend(policy)
        self.addCleanup(b.close)
        return b

    def forwarder(self, name, queue, url, timeout, prefetch, max_attempts=3, dlx=None):
        f = {"name": name, "queue_set": "faults", "vhost": "/", "queue": queue,
             "declare": {"queue": {"durable": True}}, "format": "raw",
             "backend": {"url": url, "timeout": timeout}, "prefetch": prefetch,
             "retry": {"max_attempts": max_attempts, "initial_delay": 0.1, "max_delay": 0.3}}
        if dlx:
            f["dead_letter_exchange"] = dlx
        return f

    def start(self, forwarders):
        w = Warrend(ports=1, extra={"forwarders": forwarders})
        self.addCleanup(w.cleanup)
        w.start()
        for f in forwarders:
            self.assertTrue(wait_for(lambda: self.queue_state(f["queue"])[1] >= 1, 15),
                            f"{f['name']} never consumed:\n{w.log()}")
        return w

    def queue_state(self, queue):
        """(ready messages, consumers); (0, 0) until the forwarder declared the queue."""
        try:
            m = self.broker.channel.queue_declare(queue, passive=True).method
        except pika.exceptions.ChannelClosedByBroker:
            return 0, 0
        return m.message_count, m.consumer_count

    def publish(self, queue, ids):
        for mid in ids:
            self.broker.publish("", queue, mid, pika.BasicProperties(message_id=mid, delivery_mode=2))

    def forward_stats(self, w, name):
        """The forwarder's counters in /stats (0 for any not there yet)."""
        return collections.Counter(json.loads(w.request("GET", 0, "/stats")[2])
                                   .get("forwarders", {}).get(name, {}))

    def test_hanging_backend_and_forward_worker_sigkilled(self):
        # until the kill, every third message hangs; the others are answered 200 at once
        hang_phase = threading.Event()
        hang_phase.set()
        b = self.backend(lambda kind, n, attempt: ("hang",) if n % 3 == 0 and hang_phase.is_set()
                         else ("ok", 200, 0))
        q, n, prefetch = self.queue("hang"), 30, 6
        w = self.start([self.forwarder("hang", q, b.url + "/hang", timeout=30, prefetch=prefetch)])
        ids = [f"h-{i}" for i in range(n)]
        self.publish(q, ids)
        # the prefetch window fills up with hanging requests
        self.assertTrue(wait_for(lambda: len([s for s in b.received("hang") if s.outcome == "hang"])
                                 == prefetch, 15), f"{b.received('hang')}\n{w.log()}")
        time.sleep(0.3)  # nothing else is answered meanwhile
        answered = set(b.answered_2xx("hang"))
        hanging = {s.id for s in b.received("hang") if s.outcome == "hang"}
        self.assertTrue(wait_for(lambda: self.forward_stats(w, "hang")["acked"] == len(answered), 5))
        # Freeze the master (no respawn yet), SIGKILL the forward worker: whatever it held
        # unacked goes back to the queue, and that must be every message not answered 2xx.
        (victim,) = [x["pid"] for x in w.worker_pids() if x["kind"] == "forward"]
        os.kill(w.pid, signal.SIGSTOP)
        try:
            os.kill(victim, signal.SIGKILL)
            hang_phase.clear()
            b.release.set()  # the hung requests end unanswered (their client is dead anyway)
            self.assertTrue(wait_for(lambda: self.queue_state(q)[1] == 0, 10))
            self.assertTrue(wait_for(lambda: self.queue_state(q)[0] == n - len(answered), 5),
                            (self.queue_state(q), len(answered)))
            back = peek_ids(q)
        finally:
            os.kill(w.pid, signal.SIGCONT)
        self.assertEqual(set(back), set(ids) - answered, "acked without a 2xx, or lost")
        self.assertTrue(hanging <= set(back))
        # the respawned worker delivers the rest; the once-hanging ones answer 200 this time
        self.assertTrue(wait_for(lambda: set(b.answered_2xx("hang")) == set(ids), 20),
                        f"never answered 2xx: {set(ids) - set(b.answered_2xx('hang'))}\n{w.log()}")
        self.assertTrue(wait_for(lambda: self.queue_state(q)[0] == 0, 5))
        new_worker = [x for x in w.worker_pids() if x["kind"] == "forward"][0]
        # the dead worker's last counters are kept: acked in all, each message once
        self.assertTrue(wait_for(lambda: self.forward_stats(w, "hang")["acked"] == n, 5),
                        self.forward_stats(w, "hang"))
        twice = sum(c - 1 for c in b.answered_2xx("hang").values())
        self.assertEqual(twice, 0)  # every 2xx was acked before the kill: no redelivery of those
        summary(f"backend hangs, forward worker SIGKILL: in {n}, 2xx before kill {len(answered)}, "
                f"hanging {len(hanging)}, back in queue {len(back)} (= in - 2xx), after respawn "
                f"2xx {n - len(answered)} (worker {victim} -> {new_worker['pid']}), lost 0, "
                f"acked before 2xx 0, duplicates {twice}")

    def test_resetting_and_slow_backends(self):
        def policy(kind, n, attempt):
            if kind == "reset":  # every 4th always resets; the rest reset once, then 200
                return ("reset",) if n % 4 == 0 or attempt == 1 else ("ok", 200, 0)
            return ("ok", 200, 0.4)  # slow, well within the timeout
        b = self.backend(policy)
        dlx, dead = f"it-ffaults-dlx-{uid()}", self.queue("dead")
        self.broker.declare_exchange(dlx, "fanout")
        self.addCleanup(lambda: self.broker.channel.exchange_delete(dlx))
        self.broker.declare_queue(dead)
        self.broker.bind(dead, dlx)
        q_reset, q_slow, n = self.queue("reset"), self.queue("slow"), 20
        w = self.start([self.forwarder("reset", q_reset, b.url + "/reset", timeout=3, prefetch=4,
                                       max_attempts=3, dlx=dlx),
                        self.forwarder("slow", q_slow, b.url + "/slow", timeout=3, prefetch=4)])
        reset_ids, slow_ids = [f"r-{i}" for i in range(n)], [f"s-{i}" for i in range(n)]
        self.publish(q_reset, reset_ids)
        self.publish(q_slow, slow_ids)
        doomed = {f"r-{i}" for i in range(n) if i % 4 == 0}

        def settled():
            r, s = self.forward_stats(w, "reset"), self.forward_stats(w, "slow")
            return r["acked"] + r["dead_lettered"] == n and s["acked"] == n
        self.assertTrue(wait_for(settled, 25), f"{self.forward_stats(w, 'reset')}\n{w.log()[-3000:]}")
        dead_msgs = []
        deadline = time.monotonic() + 10
        while len(dead_msgs) < len(doomed) and time.monotonic() < deadline:
            m = self.broker.get(dead, timeout=1)
            if m:
                dead_msgs.append(m)
        dead_ids = collections.Counter(p.message_id for _, p, _ in dead_msgs)
        ok_reset = b.answered_2xx("reset")

        # resets: each message 2xx'd exactly once or dead-lettered after max_attempts, never both
        self.assertEqual(set(ok_reset), set(reset_ids) - doomed)
        self.assertEqual(set(ok_reset.values()), {1})
        self.assertEqual(dict(dead_ids), {i: 1 for i in doomed})
        for _, p, _ in dead_msgs:
            self.assertEqual(p.headers["x-warren-attempts"], 3)
        tries = collections.Counter(s.id for s in b.received("reset"))
        self.assertEqual({i: tries[i] for i in doomed}, {i: 3 for i in doomed})
        self.assertEqual({tries[i] for i in set(reset_ids) - doomed}, {2})
        r = self.forward_stats(w, "reset")
        self.assertEqual((r["acked"], r["dead_lettered"], r["retried"]),
                         (n - len(doomed), len(doomed), (n - len(doomed)) + 2 * len(doomed)))
        # slow: every message exactly once, no retry
        ok_slow = b.answered_2xx("slow")
        self.assertEqual(dict(ok_slow), {i: 1 for i in slow_ids})
        self.assertEqual(len(b.received("slow")), n)
        s = self.forward_stats(w, "slow")
        self.assertEqual((s["acked"], s["retried"], s["dead_lettered"]), (n, 0, 0))
        self.assertEqual((self.queue_state(q_reset)[0], self.queue_state(q_slow)[0]), (0, 0))
        summary(f"backend resets: in {n}, 2xx {len(ok_reset)} (after 1 reset each), dead-lettered "
                f"{len(dead_ids)} (3 resets each), in queue 0, requests {len(b.received('reset'))}, "
                f"lost 0; slow backend (0.4 s, timeout 3 s): in {n}, 2xx {sum(ok_slow.values())}, "
                f"retries 0, duplicates 0")


if __name__ == "__main__":
    unittest.main()
