"""Limits: a worker out of file descriptors pauses accepting (counted) instead of spinning on
the readable listening socket, and serves again once descriptors are free."""
import json
import os
import resource
import socket
import time
import unittest

from harness import Warrend


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


if __name__ == "__main__":
    unittest.main()
