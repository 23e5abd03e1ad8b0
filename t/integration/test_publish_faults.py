"""Publishing while the broker fails: a restart loses nothing answered 204, a stopped broker
costs bounded waits (503/504 within confirm_timeout) while /healthz stays fast.

These tests restart or SIGSTOP the shared test broker; each leaves it healthy again.
"""
import json
import os
import threading
import time
import unittest
import uuid

from harness import BrokerClient, Warrend, broker_command, broker_ready, delete_queue_when_back

BROKER_DIR = os.environ.get("WARREN_BROKER_DIR")
CONFIRM_TIMEOUT = 2
MARGIN = 1.0  # seconds beyond confirm_timeout a loaded 2-core machine may need to answer


def form(body):
    return {"body": body, "delivery_mode": "2"}


@unittest.skipUnless(BROKER_DIR, "needs t/run-tests' broker (WARREN_BROKER_DIR)")
class PublishFaults(unittest.TestCase):
    def setUp(self):
        self.w = Warrend(ports=3, extra={"http": {"confirm_timeout": CONFIRM_TIMEOUT}})
        self.w.start()
        self.queue = f"it-faults-{uuid.uuid4().hex[:8]}"
        with BrokerClient() as b:
            b.declare_queue(self.queue, durable=True)

    def tearDown(self):
        self.w.cleanup()
        delete_queue_when_back(self.queue)

    def post(self, port, body, auth=("guest", "guest"), timeout=CONFIRM_TIMEOUT + 10):
        start = time.monotonic()
        try:
            status = self.w.request("POST", port, f"/%2f/amq.default/{self.queue}", body=form(body),
                                    auth=auth, timeout=timeout)[0]
        except OSError as e:  # a refused or reset connection: the test fails on it below
            status = repr(e)
        return status, time.monotonic() - start

    def wait_publishing(self, port, timeout):
        """Until a publish on `port` answers 204 (bounded): the bodies published meanwhile."""
        deadline = time.monotonic() + timeout
        sent = []
        while time.monotonic() < deadline:
            body = f"probe-{port}-{len(sent)}"
            status, _ = self.post(port, body)
            if status == 204:
                sent.append(body)
                return sent
            time.sleep(0.1)
        self.fail(f"port {self.w.ports[port]}: no 204 within {timeout} s of the broker's return")

    def queued_bodies(self):
        with BrokerClient() as b:
            return [body.decode() for _, _, body in b.messages(self.queue)]

    def test_restart_during_a_stream_loses_nothing_answered_204(self):
        stop = threading.Event()
        results = []  # (thread, i, status, seconds, finished_at)
        lock = threading.Lock()

        def client(t):
            for i in range(2000):  # bounded in count; `stop` bounds it in time
                if stop.is_set():
                    return
                status, took = self.post(t % 3, f"t{t}-{i}")
                with lock:
                    results.append((t, i, status, took, time.monotonic()))

        threads = [threading.Thread(target=client, args=(t,), daemon=True) for t in range(4)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.5)
            restart_started = time.monotonic()
            broker_command("restart")
            restarted = time.monotonic()
            broker_ready()
            time.sleep(1.0)  # keep the stream going past the broker's return
        finally:
            stop.set()
            for t in threads:
                t.join(CONFIRM_TIMEOUT + 15)
        self.assertFalse(any(t.is_alive() for t in threads), "a client thread hung")
        # Publishing comes back on every worker (the reconnect backoff bounds how soon).
        probes = [b for port in range(3) for b in self.wait_publishing(port, 40)]

        statuses = {}
        for _, _, status, _, _ in results:
            statuses[status] = statuses.get(status, 0) + 1
        self.assertTrue(set(statuses) <= {204, 503, 504}, statuses)
        before = [r for r in results if r[4] < restart_started and r[2] == 204]
        self.assertTrue(before, f"nothing confirmed before the restart: {statuses}")
        slow = [r for r in results if r[3] > CONFIRM_TIMEOUT + MARGIN]
        self.assertEqual(slow, [], f"answers beyond confirm_timeout + {MARGIN} s")

        confirmed = {f"t{t}-{i}" for t, i, status, _, _ in results if status == 204}
        queued = self.queued_bodies()
        missing = confirmed - set(queued)
        self.assertEqual(missing, set(), f"answered 204 but lost ({len(missing)} of "
                         f"{len(confirmed)}; statuses {statuses}; restart took "
                         f"{restarted - restart_started:.1f} s)")
        self.assertTrue(set(probes) <= set(queued))

    def test_stopped_broker_healthz_fast_publishes_bounded(self):
        # Every worker has its broker connection open before the broker stops.
        for port in range(3):
            self.assertEqual(self.post(port, f"warm-{port}")[0], 204)
        broker_command("pause")
        try:
            # One publish per worker on its open connection, and one with credentials never
            # seen (a new connection that cannot finish its handshake), all at once.
            outcomes = {}

            def one(key, port, auth):
                outcomes[key] = self.post(port, f"paused-{key}", auth=auth)

            jobs = [threading.Thread(target=one, args=(p, p, ("guest", "guest"))) for p in range(3)]
            jobs.append(threading.Thread(target=one, args=("new", 0, ("guest", "not-yet-seen"))))
            for j in jobs:
                j.start()
            time.sleep(0.2)
            # While those wait for the broker, every worker's loop still serves /healthz.
            for _ in range(3):
                for port in range(3):
                    start = time.monotonic()
                    status, _, body = self.w.request("GET", port, "/healthz", timeout=2)
                    took = time.monotonic() - start
                    self.assertEqual(status, 200)
                    self.assertEqual(json.loads(body)["status"], "ok")
                    self.assertLess(took, 0.1, f"/healthz on port {self.w.ports[port]}")
            for j in jobs:
                j.join(CONFIRM_TIMEOUT + 15)
            self.assertEqual(len(outcomes), 4, outcomes)
            for key, (status, took) in outcomes.items():
                self.assertIn(status, (503, 504), f"{key}: {status}")
                self.assertLess(took, CONFIRM_TIMEOUT + MARGIN, f"{key}: answered after {took:.2f} s")
                self.assertGreater(took, CONFIRM_TIMEOUT - 0.5, f"{key}: gave up early")
            # the new connection never got to send: 503 (unavailable), not 504
            self.assertEqual(outcomes["new"][0], 503)
        finally:
            broker_command("resume")
        for port in range(3):
            self.wait_publishing(port, 15)


if __name__ == "__main__":
    unittest.main()
