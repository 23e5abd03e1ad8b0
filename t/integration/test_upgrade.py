"""The binary upgrade, nginx's way: SIGUSR2 starts the binary installed at the running one's path
on the same listening sockets, SIGQUIT to the old master drains it. Under a wrk load nothing is
refused and nothing goes unanswered; a new binary that fails leaves the old master in charge.
"""
import json
import os
import shutil
import signal
import subprocess
import time
import threading
import unittest
import urllib.parse
import uuid

from harness import BUILD, ROOT, BrokerClient, Warrend, alive, broker_command, delete_queue_when_back, wait_for
from test_events import SseClient


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


CONFIRM_TIMEOUT = 2


class Upgrade(unittest.TestCase):
    def setUp(self):
        self.w = Warrend(ports=1, extra={"http": {"workers_per_port": 2}})
        self.start_copy()

    def start_copy(self):
        # warrend runs from a copy in its directory, so that the test can install over it.
        self.w.binary = os.path.join(self.w.dir, "warrend")
        shutil.copy2(os.path.join(BUILD, "warrend"), self.w.binary)
        self.w.start()
        self.old = self.w.pid
        self.queue = f"it-upgrade-{uuid.uuid4().hex[:8]}"
        with BrokerClient() as b:
            b.declare_queue(self.queue, durable=True)

    def publish(self, body, timeout=CONFIRM_TIMEOUT + 10):
        try:
            return self.w.request("POST", 0, f"/%2f/amq.default/{self.queue}",
                                  body=urllib.parse.urlencode({"body": body}).encode(),
                                  headers={"Content-Type": "application/x-www-form-urlencoded"},
                                  auth=("guest", "guest"), timeout=timeout)[0]
        except OSError as e:  # refused, reset or timed out: the test fails on it below
            return repr(e)

    def tearDown(self):
        self.w.cleanup()
        with BrokerClient() as b:
            b.delete_queue(self.queue)

    def install(self, source):
        """As install(1) does: a new file renamed over the path, the running one untouched."""
        fresh = self.w.binary + ".new"
        shutil.copy2(source, fresh)
        os.rename(fresh, self.w.binary)

    def status(self):
        rc, out = self.w.ctl("status", "--json")
        return json.loads(out) if rc == 0 else {}

    def new_master_serving(self):
        """The new master's pid once it holds the pidfile and control socket and its workers
        all serve, else 0."""
        pid = read_pid(self.w.pidfile)
        if pid in (0, self.old) or self.status().get("pid") != pid:
            return 0
        rows = [r for r in self.w.worker_pids() if not r["quitting"]]
        return pid if len(rows) == 2 and all(r["ready"] for r in rows) else 0

    def test_an_upgrade_under_wrk_load_refuses_nothing_and_answers_every_request(self):
        self.install(os.path.join(BUILD, "warrend"))
        url = f"{self.w.url(0)}%2f/amq.default/{self.queue}"
        wrk = subprocess.Popen(
            ["wrk", "-t2", "-c16", "-d8s", "-s", os.path.join(ROOT, "bench", "publish.lua"), url,
             "--", "guest", "guest", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            time.sleep(1.5)
            os.kill(self.old, signal.SIGUSR2)
            new = wait_for(self.new_master_serving, 10)
            self.assertTrue(new, f"no new master serving:\n{self.w.log()}")
            self.assertEqual(read_pid(self.w.pidfile + ".oldbin"), self.old)
            self.assertEqual(os.readlink(f"/proc/{new}/exe"), self.w.binary, "not the installed binary")
            time.sleep(1)
            os.kill(self.old, signal.SIGQUIT)
            self.assertEqual(self.w.proc.wait(15), 0, self.w.log())
            out = wrk.communicate(timeout=30)[0]
        finally:
            if wrk.poll() is None:
                wrk.kill()
        report = json.loads(next(l for l in out.splitlines() if l.startswith("WRK_JSON"))[9:])
        self.assertGreater(report["requests"], 200, out)
        self.assertEqual((report["socket_errors"], report["non2xx"], report["timeouts"]), (0, 0, 0), out)
        with BrokerClient() as b:
            queued = b.channel.queue_declare(self.queue, passive=True).method.message_count
        self.assertGreaterEqual(queued, report["requests"], "a 204 without its message")
        # The old master removed only its own files: .oldbin, not the new pidfile or socket.
        self.assertFalse(os.path.exists(self.w.pidfile + ".oldbin"))
        self.assertEqual(read_pid(self.w.pidfile), new)
        self.assertEqual(self.status().get("pid"), new)
        self.assertEqual(self.w.request("GET", 0, "/healthz")[0], 200)
        # The new master stops as any does, and takes its files with it.
        os.kill(new, signal.SIGTERM)
        self.assertTrue(wait_for(lambda: not alive(new), 15), self.w.log())
        self.assertFalse(os.path.exists(self.w.pidfile) or os.path.exists(self.w.socket_path))

    def test_a_new_binary_that_cannot_start_leaves_the_old_master_in_charge(self):
        broken = os.path.join(self.w.dir, "broken")
        with open(broken, "w") as f:
            f.write("#!/bin/sh\necho 'the new binary refuses to start' >&2\nexit 1\n")
        os.chmod(broken, 0o755)
        self.install(broken)
        os.kill(self.old, signal.SIGUSR2)
        self.assertTrue(wait_for(lambda: "this master goes on serving" in self.w.log(), 10), self.w.log())
        self.assertEqual(read_pid(self.w.pidfile), self.old)
        self.assertFalse(os.path.exists(self.w.pidfile + ".oldbin"))
        self.assertEqual(self.status().get("pid"), self.old)
        self.assertEqual(self.w.request("GET", 0, "/healthz")[0], 200)
        self.assertEqual(self.w.stop(), 0)
        self.assertFalse(os.path.exists(self.w.pidfile))

    def test_a_new_master_killed_before_the_old_one_quits_hands_everything_back(self):
        self.install(os.path.join(BUILD, "warrend"))
        os.kill(self.old, signal.SIGUSR2)
        new = wait_for(self.new_master_serving, 10)
        self.assertTrue(new, self.w.log())
        # A second upgrade is refused by both while the first is undecided.
        os.kill(self.old, signal.SIGUSR2)
        os.kill(new, signal.SIGUSR2)
        self.assertTrue(wait_for(lambda: "still runs" in self.w.log(), 5), self.w.log())
        new_workers = {r["pid"] for r in self.w.worker_pids()}
        os.kill(new, signal.SIGKILL)
        self.assertTrue(wait_for(lambda: self.status().get("pid") == self.old, 10), self.w.log())
        self.assertEqual(read_pid(self.w.pidfile), self.old)
        self.assertFalse(os.path.exists(self.w.pidfile + ".oldbin"))
        # The orphaned workers drain and go; the old master's keep serving.
        self.assertTrue(wait_for(lambda: not any(alive(p) for p in new_workers), 15))
        for _ in range(20):
            self.assertEqual(self.w.request("GET", 0, "/healthz")[0], 200)
        self.assertEqual(self.w.stop(), 0)

    def test_an_upgrade_while_the_broker_is_stopped_answers_every_request(self):
        # Publishes wait on a SIGSTOPped broker while the master is replaced: each gets its
        # answer from the old workers as they drain (504 past confirm_timeout, or 204 once the
        # broker is back, and then the message is queued), and the new master serves after.
        self.w.cleanup()
        self.w = Warrend(ports=1, extra={"http": {"workers_per_port": 2, "confirm_timeout": CONFIRM_TIMEOUT}})
        self.start_copy()
        self.addCleanup(delete_queue_when_back, self.queue)
        for i in range(4):  # both workers hold their broker connection
            self.assertEqual(self.publish(f"warm-{i}"), 204)
        self.install(os.path.join(BUILD, "warrend"))
        answers = {}

        def one(key):
            answers[key] = self.publish(key)

        broker_command("pause")
        try:
            jobs = [threading.Thread(target=one, args=(f"paused-{i}",)) for i in range(8)]
            for j in jobs:
                j.start()
            time.sleep(0.3)
            os.kill(self.old, signal.SIGUSR2)
            self.assertTrue(wait_for(lambda: read_pid(self.w.pidfile) not in (0, self.old), 10), self.w.log())
            new = read_pid(self.w.pidfile)
            os.kill(self.old, signal.SIGQUIT)
            time.sleep(0.5)
        finally:
            broker_command("resume")
        for j in jobs:
            j.join(CONFIRM_TIMEOUT + 20)
        self.assertEqual(len(answers), 8, answers)
        for key, status in answers.items():
            self.assertIn(status, (204, 503, 504), f"{key}: {status}")
        self.assertEqual(self.w.proc.wait(20), 0, self.w.log())
        self.assertTrue(wait_for(lambda: self.publish("after") == 204, 15), self.w.log())
        with BrokerClient() as b:
            queued = {body.decode() for _, _, body in b.messages(self.queue)}
        confirmed = {k for k, s in answers.items() if s == 204}
        self.assertLessEqual(confirmed, queued, "a 204 without its message")
        self.assertEqual(self.status().get("pid"), new)

    def test_a_client_that_stops_reading_does_not_hold_the_old_master(self):
        # An event stream whose client reads nothing, with events waiting for it: on SIGQUIT the
        # old worker ends the stream and goes, without waiting on the client until
        # shutdown_timeout and its SIGKILL.
        self.install(os.path.join(BUILD, "warrend"))
        stalled = SseClient(self.w.ports[0], "/events/%2f/amq.topic/stalled", rcvbuf=4096)
        self.assertTrue(stalled.read_until(b": subscribed"))
        with BrokerClient() as b:
            for _ in range(32):  # 128 KiB: more than the sockets hold, less than sse_max_buffer
                b.publish("amq.topic", "stalled", "x" * 4096)
        time.sleep(0.5)
        os.kill(self.old, signal.SIGUSR2)
        new = wait_for(self.new_master_serving, 10)
        self.assertTrue(new, self.w.log())
        quit_at = time.monotonic()
        os.kill(self.old, signal.SIGQUIT)
        self.assertEqual(self.w.proc.wait(15), 0, self.w.log())
        self.assertLess(time.monotonic() - quit_at, 5, "the old master waited on the stalled client")
        self.assertNotIn("SIGKILL;", self.w.log())
        fresh = SseClient(self.w.ports[0], "/events/%2f/amq.topic/fresh")
        self.assertTrue(fresh.read_until(b": subscribed"), "the new master serves events")
        stalled.sock.close()
        fresh.sock.close()

    def test_sigusr2_to_a_worker_is_ignored(self):
        # `pkill -USR2 warrend` reaches the workers too: the upgrade is the master's alone.
        workers = {r["pid"] for r in self.w.worker_pids()}
        for pid in workers:
            os.kill(pid, signal.SIGUSR2)
        time.sleep(0.5)
        self.assertTrue(all(alive(p) for p in workers), self.w.log())
        self.assertEqual({r["pid"] for r in self.w.worker_pids()}, workers)


if __name__ == "__main__":
    unittest.main()
