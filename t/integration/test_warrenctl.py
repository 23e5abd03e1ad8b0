"""warrenctl's bus commands: publish a message and tail an exchange from a shell."""
import os
import subprocess
import time
import unittest

from harness import BrokerClient, Warrend

BUILD = os.environ.get("WARREN_BUILD", "build")


class BusCommands(unittest.TestCase):
    def test_publish_from_argument_and_stdin(self):
        with Warrend(ports=1) as w, BrokerClient() as broker:
            queue = broker.declare_queue("warrenctl-publish", auto_delete=False)
            broker.purge(queue)
            ctl = [f"{BUILD}/warrenctl", "publish", "-H", w.url(0, "")]
            proc = subprocess.run(ctl + ["/", "amq.default", queue, "from argv"], capture_output=True, text=True)
            self.assertEqual(proc.returncode, 0, proc.stderr)
            proc = subprocess.run(ctl + ["-t", "application/json", "/", "amq.default", queue, "-"],
                                  input='{"from": "stdin"}', capture_output=True, text=True)
            self.assertEqual(proc.returncode, 0, proc.stderr)
            first, second = broker.get(queue), broker.get(queue)
            broker.delete_queue(queue)
            self.assertEqual(first[2], b"from argv")
            self.assertEqual(first[1].content_type, "text/plain")
            self.assertEqual(second[2], b'{"from": "stdin"}')
            self.assertEqual(second[1].content_type, "application/json")
            proc = subprocess.run(ctl + ["/", "no-such-exchange", "k", "x"], capture_output=True, text=True)
            self.assertEqual(proc.returncode, 1)
            self.assertIn("404", proc.stderr)
            proc = subprocess.run(ctl + ["-u", "guest:wrong", "/", "amq.default", "k", "x"],
                                  capture_output=True, text=True)
            self.assertEqual(proc.returncode, 1)
            self.assertIn("401", proc.stderr)

    def test_credentials_from_the_environment_not_the_command_line(self):
        with Warrend(ports=1) as w, BrokerClient() as broker:
            queue = broker.declare_queue("warrenctl-env-auth", auto_delete=False)
            broker.purge(queue)

            def run(*args, **env):
                clean = {k: v for k, v in os.environ.items() if not k.startswith("WARRENCTL_")}
                return subprocess.run([f"{BUILD}/warrenctl", *args], capture_output=True, text=True,
                                      env={**clean, **env}, stdin=subprocess.DEVNULL,
                                      start_new_session=True, timeout=15)  # no terminal to ask on

            publish = ["publish", "-H", w.url(0, "")]
            target = ["/", "amq.default", queue]
            proc = run(*publish, *target, "env auth", WARRENCTL_AUTH="guest:guest")
            self.assertEqual(proc.returncode, 0, proc.stderr)
            proc = run(*publish, *target, "x", WARRENCTL_AUTH="guest:wrong")
            self.assertEqual(proc.returncode, 1)
            self.assertIn("401", proc.stderr)
            proc = run(*publish, "-u", "guest", *target, "env password", WARRENCTL_PASSWORD="guest")
            self.assertEqual(proc.returncode, 0, proc.stderr)
            proc = run(*publish, "-u", "guest", *target, "x", WARRENCTL_PASSWORD="wrong")
            self.assertIn("401", proc.stderr)
            proc = run(*publish, "-u", "guest", *target, "x")
            self.assertEqual(proc.returncode, 64)
            self.assertIn("WARRENCTL_PASSWORD", proc.stderr)
            proc = run("call", "-H", w.url(0, ""), "sometopic", "ping", WARRENCTL_AUTH="guest:wrong")
            self.assertEqual(proc.returncode, 1)
            self.assertIn("401", proc.stderr)
            self.assertEqual([broker.get(queue)[2], broker.get(queue)[2]], [b"env auth", b"env password"])
            broker.delete_queue(queue)

    def test_tail_prints_events_as_they_come(self):
        with Warrend(ports=1) as w:
            tail = subprocess.Popen([f"{BUILD}/warrenctl", "tail", "-H", w.url(0, ""), "/", "amq.topic", "logs.#"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                self.assertEqual(tail.stdout.readline(), ": subscribed\n")
                for i in range(3):
                    status = w.request("POST", 0, "/%2f/amq.topic/logs.app", auth=("guest", "guest"),
                                       body={"body": f"line {i}", "type": "log"})[0]
                    self.assertEqual(status, 204)
                lines = []
                deadline = time.monotonic() + 5
                while len([l for l in lines if l.startswith("data:")]) < 3 and time.monotonic() < deadline:
                    lines.append(tail.stdout.readline())
                self.assertEqual([l for l in lines if l.startswith("data:")],
                                 ["data: line 0\n", "data: line 1\n", "data: line 2\n"])
                self.assertIn("event: log\n", lines)
            finally:
                # SIGTERM, not SIGINT: a test run started in the background (`&` in a script)
                # ignores SIGINT, and so would tail, which inherits that.
                tail.terminate()
                tail.communicate(timeout=5)

    def test_tail_reports_a_refused_subscription(self):
        with Warrend(ports=1) as w:
            proc = subprocess.run([f"{BUILD}/warrenctl", "tail", "-H", w.url(0, ""), "/", "nope", "x"],
                                  capture_output=True, text=True, timeout=10)
            self.assertEqual(proc.returncode, 1)
            self.assertIn("HTTP 404", proc.stderr)


if __name__ == "__main__":
    unittest.main()
