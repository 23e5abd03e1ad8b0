"""The daemon's skeleton as an operator sees it: processes, signals, reloads, pidfile, stats."""
import ctypes
import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time
import unittest

from harness import Warrend, rss_kib, wait_for, write_config

BUILD = os.environ.get("WARREN_BUILD", "build")


class ProcessModel(unittest.TestCase):
    def test_one_worker_per_port(self):
        with Warrend(ports=3) as w:
            pids = set()
            for i in range(3):
                status, _, body = w.request("GET", i, "/healthz")
                self.assertEqual(status, 200)
                pids.add(json.loads(body)["pid"])
            self.assertEqual(len(pids), 3)
            self.assertEqual(sorted(p["pid"] for p in w.worker_pids()), sorted(pids))

    def test_workers_per_port_share_a_port(self):
        with Warrend(ports=1, extra={"http": {"workers_per_port": 2}}) as w:
            workers = w.worker_pids()
            self.assertEqual(len(workers), 2)
            self.assertEqual({p["port"] for p in workers}, {w.ports[0]})
            seen = wait_for(lambda: len({json.loads(w.request("GET", 0, "/healthz")[2])["pid"]
                                         for _ in range(40)}) == 2, 5)
            self.assertTrue(seen, "both workers on the port should answer")

    def test_workers_per_port_defaults_to_one_per_usable_core(self):
        w = Warrend(ports=2)
        del w.config["http"]["workers_per_port"]  # the default: auto
        with w:
            cores = len(os.sched_getaffinity(0))
            workers = w.worker_pids()
            self.assertEqual(sorted(p["port"] for p in workers), sorted(w.ports * cores))

    def test_reload_from_one_to_two_workers_per_port_refuses_nothing(self):
        with Warrend(ports=1) as w:
            failures, answered, stop = [], [], threading.Event()

            def client():
                while not stop.is_set():
                    try:
                        status, _, body = w.request("GET", 0, "/healthz", timeout=2)
                        answered.append(json.loads(body)["pid"]) if status == 200 else failures.append(status)
                    except OSError as e:
                        failures.append(repr(e))

            thread = threading.Thread(target=client)
            thread.start()
            try:
                time.sleep(0.3)
                w.config["http"]["workers_per_port"] = 2
                w.write()
                w.reload()
                self.assertTrue(wait_for(lambda: len(w.worker_pids()) == 2
                                         and {p["generation"] for p in w.worker_pids()} == {2}, 10),
                                w.log())
                new_pids = {p["pid"] for p in w.worker_pids()}
                self.assertTrue(wait_for(lambda: new_pids <= set(answered[-200:]), 10),
                                "both new workers should answer")
            finally:
                stop.set()
                thread.join(10)
            self.assertEqual(failures, [])
            self.assertNotIn("reload: bind()", w.log())

    def test_a_worker_keeps_none_of_the_masters_descriptors(self):
        with Warrend(ports=2) as w:
            worker = next(p for p in w.worker_pids() if p["port"] == w.ports[0])
            links = [os.readlink(f"/proc/{worker['pid']}/fd/{fd}")
                     for fd in os.listdir(f"/proc/{worker['pid']}/fd") if int(fd) > 2]
            with open("/proc/net/tcp") as f:
                listening = {line.split()[9]: int(line.split()[1].split(":")[1], 16)
                             for line in f.readlines()[1:] if line.split()[3] == "0A"}
            ports = [listening[l[len("socket:["):-1]] for l in links
                     if l.startswith("socket:[") and l[len("socket:["):-1] in listening]
            self.assertEqual(ports, [w.ports[0]], links)
            self.assertNotIn(w.pidfile, links)
            self.assertFalse([l for l in links if l.endswith(".log")], links)

    def test_unknown_route_is_a_json_404(self):
        with Warrend(ports=1) as w:
            status, headers, body = w.request("GET", 0, "/no/such/route/here")
            self.assertEqual(status, 404)
            self.assertEqual(headers.get("Content-Type"), "application/json")
            self.assertIn("error", json.loads(body))

    def test_killed_worker_is_respawned_and_shown_in_stats(self):
        with Warrend(ports=2) as w:
            victim = w.worker_pids()[0]
            os.kill(victim["pid"], signal.SIGKILL)
            start = time.monotonic()

            def replaced():
                pids = {p["pid"] for p in w.worker_pids()}
                return len(pids) == 2 and victim["pid"] not in pids and pids

            pids = wait_for(replaced, 2)
            self.assertTrue(pids, "no new worker within 2 s")
            status = wait_for(lambda: w.request("GET", w.ports.index(victim["port"]), "/healthz")[0] == 200,
                              2 - (time.monotonic() - start))
            self.assertTrue(status)
            status, _, body = w.request("GET", 0, "/stats")
            self.assertEqual(status, 200)
            self.assertEqual({row["pid"] for row in json.loads(body)["workers"]}, pids)

    def test_respawns_count_deaths_not_reloads(self):
        with Warrend(ports=2) as w:
            def respawns():
                return json.loads(w.request("GET", 0, "/stats")[2])["respawns"]

            self.assertEqual(respawns(), 0)
            w.reload()  # a reload replaces every worker: not a respawn
            self.assertTrue(wait_for(lambda: all(p["generation"] == 2 for p in w.worker_pids())
                                     and len(w.worker_pids()) == 2, 10))
            victim = w.worker_pids()[1]
            os.kill(victim["pid"], signal.SIGKILL)
            self.assertTrue(wait_for(lambda: len(w.worker_pids()) == 2
                                     and victim["pid"] not in {p["pid"] for p in w.worker_pids()}, 5))
            self.assertTrue(wait_for(lambda: w.request("GET", 1, "/healthz")[0] == 200, 5))
            self.assertEqual(respawns(), 1)
            metrics = w.request("GET", 1, "/metrics")[2].decode()
            self.assertIn("\nwarren_worker_respawns_total 1\n", metrics)
            rc, out = w.ctl("status")
            self.assertEqual(rc, 0)
            self.assertIn("1 respawn", out)
            rc, out = w.ctl("status", "--json")
            self.assertEqual(json.loads(out)["respawns"], 1)

    def test_stats_sum_requests_over_all_workers(self):
        with Warrend(ports=3) as w:
            before = json.loads(w.request("GET", 0, "/stats")[2])["requests"]
            for n in range(30):
                self.assertEqual(w.request("GET", n % 3, "/healthz")[0], 200)
            status, _, body = w.request("GET", 1, "/stats")
            self.assertEqual(status, 200)
            stats = json.loads(body)
            # A /stats request counts as a GET when it arrives, as a 200 only once answered.
            self.assertEqual(stats["requests"]["response.200"], before["response.200"] + 31)
            self.assertEqual(stats["requests"]["method.GET"], before["method.GET"] + 31)
            self.assertEqual(len(stats["workers"]), 3)
            for key in ("page_faults", "cpu_time", "memory_usage", "timestamp", "connections",
                        "context_switches", "swap_outs", "page_size", "block", "signals_received"):
                self.assertIn(key, stats)
            rc, out = w.ctl("stats", "--json")
            self.assertEqual(rc, 0)
            self.assertEqual(json.loads(out)["requests"]["response.200"], before["response.200"] + 32)


class Signals(unittest.TestCase):
    def test_a_control_command_of_invalid_utf8_is_answered_not_fatal(self):
        with Warrend(ports=1) as w:
            with socket.socket(socket.AF_UNIX) as control:
                control.settimeout(5)
                control.connect(w.socket_path)
                control.sendall(b"stat\xff\xfeus\n")
                answer = b""
                while chunk := control.recv(4096):
                    answer += chunk
            self.assertEqual(json.loads(answer)["error"], "unknown command")
            self.assertIsNone(w.proc.poll(), w.log())
            self.assertEqual(w.ctl("status")[0], 0)

    def test_sigterm_exits_zero_and_removes_the_pidfile(self):
        w = Warrend(ports=2)
        w.start()
        try:
            self.assertTrue(os.path.exists(w.pidfile))
            workers = [p["pid"] for p in w.worker_pids()]
            self.assertEqual(w.stop(signal.SIGTERM), 0)
            self.assertFalse(os.path.exists(w.pidfile))
            for pid in workers:
                self.assertFalse(os.path.exists(f"/proc/{pid}") and
                                 open(f"/proc/{pid}/stat").read().split()[2] != "Z")
        finally:
            w.cleanup()

    def test_second_instance_on_the_same_pidfile_refuses(self):
        with Warrend(ports=1) as w:
            other = Warrend(ports=1, extra={"daemon": {"pidfile": w.pidfile}})
            other.write()
            proc = subprocess.run([f"{BUILD}/warrend", "-f", "-c", other.config_path],
                                  capture_output=True, text=True, timeout=10)
            other.cleanup()
            self.assertNotEqual(proc.returncode, 0)
            self.assertIn("pidfile", proc.stderr)
            self.assertEqual(w.request("GET", 0, "/healthz")[0], 200)

    def run_foreground(self, warrend, timeout=15):
        warrend.write()
        try:
            return subprocess.run([f"{BUILD}/warrend", "-f", "-c", warrend.config_path],
                                  capture_output=True, text=True, timeout=timeout)
        finally:
            warrend.cleanup()

    def test_port_in_use_exits_one_and_leaves_no_pidfile(self):
        for reuseport in (False, True):  # True: as another warrend's socket is
            with self.subTest(reuseport=reuseport):
                self.port_in_use_exits_one(reuseport)

    def port_in_use_exits_one(self, reuseport):
        busy = socket.socket()
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, int(reuseport))
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        try:
            w = Warrend(ports=1, extra={"http": {"ports": [port]}})
            pidfile = w.pidfile
            proc = self.run_foreground(w)
        finally:
            busy.close()
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn(f"bind() to 127.0.0.1:{port} failed", proc.stderr)
        self.assertFalse(os.path.exists(pidfile), "a stale pidfile names a warrend that never ran")

    @unittest.skipUnless(os.geteuid() == 0, "privileges are dropped only when started as root")
    def test_no_worker_able_to_start_exits_one(self):
        w = Warrend(ports=2, extra={"daemon": {"user": "no-such-user-warren"}})
        proc = self.run_foreground(w)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn('no such user "no-such-user-warren"', proc.stderr)
        self.assertIn("no worker left to run", proc.stderr)

    def test_usr1_right_after_a_fork_reaches_the_workers_handler(self):
        with Warrend(ports=2) as w:
            for _ in range(10):
                w.reload()  # the master forks a new generation ...
                os.kill(w.pid, signal.SIGUSR1)  # ... and passes USR1 on to it at once
                time.sleep(0.3)
            self.assertTrue(wait_for(lambda: len(w.worker_pids()) == 2
                                     and all(p["generation"] == 11 for p in w.worker_pids()), 15),
                            w.log())
            stats = json.loads(w.request("GET", 0, "/stats")[2])
            killed = [l for l in w.log().splitlines() if "User defined signal 1" in l]
            self.assertEqual(killed, [])
            self.assertEqual(stats["respawns"], 0)

    def test_sighup_with_a_broken_config_keeps_the_old_workers(self):
        with Warrend(ports=2) as w:
            before = sorted(p["pid"] for p in w.worker_pids())
            with open(w.config_path, "a") as f:
                f.write("http:\n  no_such_key: 1\n")
            w.reload()
            self.assertTrue(wait_for(lambda: "reload failed" in w.log(), 5), w.log())
            self.assertRegex(w.log(), r"\.yml:\d+: ")
            self.assertEqual(sorted(p["pid"] for p in w.worker_pids()), before)
            for i in range(2):
                self.assertEqual(w.request("GET", i, "/healthz")[0], 200)

    def test_sighup_under_load_refuses_no_request(self):
        with Warrend(ports=2) as w:
            before = {p["pid"] for p in w.worker_pids()}
            failures, answered = [], [0]
            stop = threading.Event()

            def client(index):
                deadline = time.monotonic() + 20
                while not stop.is_set() and time.monotonic() < deadline:
                    try:
                        status = w.request("GET", index, "/healthz")[0]
                        if status != 200:
                            failures.append(status)
                        answered[0] += 1
                    except Exception as e:  # a refused or reset connection
                        failures.append(repr(e))

            threads = [threading.Thread(target=client, args=(i % 2,)) for i in range(4)]
            for t in threads:
                t.start()
            time.sleep(0.5)
            w.config["logging"]["level"] = "info"
            write_config(w.config_path, w.config)
            w.reload()
            renewed = wait_for(lambda: {p["pid"] for p in w.worker_pids()}.isdisjoint(before)
                               and len(w.worker_pids()) == 2, 10)
            time.sleep(0.5)
            stop.set()
            for t in threads:
                t.join()
            self.assertTrue(renewed, "the old workers were not replaced")
            self.assertEqual(failures, [])
            self.assertGreater(answered[0], 20)

    def test_sigusr1_reopens_logs_and_keeps_serving(self):
        with Warrend(ports=1) as w:
            before = w.worker_pids()
            os.kill(w.pid, signal.SIGUSR1)
            time.sleep(0.3)
            self.assertEqual(w.worker_pids(), before)
            self.assertEqual(w.request("GET", 0, "/healthz")[0], 200)


class CommandLine(unittest.TestCase):
    def test_config_test_reports_file_line_and_key(self):
        ok = Warrend(ports=1)
        ok.write()
        proc = subprocess.run([f"{BUILD}/warrend", "-t", "-c", ok.config_path], capture_output=True, text=True)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        with open(ok.config_path, "a") as f:
            f.write("rpc:\n  timeout: soon\n")
        proc = subprocess.run([f"{BUILD}/warrend", "-t", "-c", ok.config_path], capture_output=True, text=True)
        ok.cleanup()
        self.assertEqual(proc.returncode, 1)
        self.assertRegex(proc.stderr, r"\.yml:\d+: rpc\.timeout: ")

    def test_version_and_help(self):
        proc = subprocess.run([f"{BUILD}/warrend", "-V"], capture_output=True, text=True)
        self.assertEqual(proc.returncode, 0)
        self.assertIn("warrend", proc.stdout)
        proc = subprocess.run([f"{BUILD}/warrend", "-h"], capture_output=True, text=True)
        self.assertIn("-c FILE", proc.stdout)

    def test_warrenctl_commands(self):
        with Warrend(ports=2) as w:
            rc, out = w.ctl("status")
            self.assertEqual(rc, 0)
            self.assertIn(f"pid {w.pid}", out)
            rc, out = w.ctl("workers")
            self.assertEqual(rc, 0)
            self.assertEqual(len(out.strip().splitlines()), 3)
            rc, out = w.ctl("stats")
            self.assertEqual(rc, 0)
            self.assertIn("workers:", out)
            rc, out = w.ctl("bogus")
            self.assertEqual(rc, 64)
            rc, out = w.ctl("stop")
            self.assertEqual(rc, 0)
            self.assertEqual(w.wait(15), 0)

    def test_warrenctl_without_a_daemon_says_so(self):
        proc = subprocess.run([f"{BUILD}/warrenctl", "-s", "/nonexistent/warrend.sock", "status"],
                              capture_output=True, text=True)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("connect()", proc.stderr)



def worker_channel(pid):
    """A duplicate of worker `pid`'s end of its channel to the master (pidfd_getfd(2)): what is
    written to it reaches the master as if the worker had sent it."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/net/unix") as f:
        unix_inodes = {line.split()[6] for line in f.readlines()[1:]}
    fds = [int(fd) for fd in os.listdir(f"/proc/{pid}/fd")
           if os.readlink(f"/proc/{pid}/fd/{fd}").removeprefix("socket:[").rstrip("]") in unix_inodes]
    if len(fds) != 1:
        raise RuntimeError(f"worker {pid}: unix sockets on fds {fds}, expected one")
    pidfd = libc.syscall(434, pid, 0)  # pidfd_open
    fd = libc.syscall(438, pidfd, fds[0], 0)  # pidfd_getfd
    os.close(pidfd)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "pidfd_getfd")
    return socket.socket(fileno=fd)


def frame(frame_type, payload):
    """channel.h's wire form: big-endian length of type byte + payload, the type, the payload."""
    return struct.pack(">IB", len(payload) + 1, frame_type) + payload


class WorkerFrames(unittest.TestCase):
    """The master never trusts what a worker sends: a bad frame costs that worker, never the master."""
    SNAPSHOT = 2

    def stats(self, w):
        return json.loads(w.request("GET", 0, "/stats")[2])

    def test_malformed_snapshots_are_counted_and_dropped(self):
        with Warrend(ports=1) as w:
            victim = w.worker_pids()[0]["pid"]
            with worker_channel(victim) as channel:
                for bad in (b'{"pid": "x"}', b'[1, 2]', b'{"pid": 1, "slot": 1, "kind": "http", '
                            b'"counters": 7, "connections": [], "usage": {}}', b'\xff\xfe'):
                    channel.sendall(frame(self.SNAPSHOT, bad))
            self.assertTrue(wait_for(lambda: self.stats(w).get("worker_frames_refused") == 4, 5),
                            w.log())
            self.assertEqual(self.stats(w)["respawns"], 0)
            self.assertEqual([p["pid"] for p in w.worker_pids()], [victim])
            self.assertIsNone(w.proc.poll())

    def test_an_oversized_frame_costs_the_worker_its_channel_at_once(self):
        with Warrend(ports=1) as w:
            victim = w.worker_pids()[0]["pid"]
            before = rss_kib(w.pid)
            chunk = b"x" * (1 << 20)
            sent = 0
            with worker_channel(victim) as channel:
                channel.settimeout(5)
                try:
                    channel.sendall(struct.pack(">IB", 0x7fffffff, self.SNAPSHOT))
                    deadline = time.monotonic() + 20
                    while sent < (96 << 20) and time.monotonic() < deadline:
                        channel.sendall(chunk)
                        sent += len(chunk)
                except OSError:
                    pass  # the master closed its end: what should happen
            self.assertLess(rss_kib(w.pid) - before, 32 << 10, f"{sent} bytes sent")
            self.assertTrue(wait_for(lambda: victim not in {p["pid"] for p in w.worker_pids()}
                                     and len(w.worker_pids()) == 1, 5))
            self.assertTrue(wait_for(lambda: w.request("GET", 0, "/healthz")[0] == 200, 5))
            stats = self.stats(w)
            self.assertEqual(stats["worker_frames_refused"], 1)
            self.assertEqual(stats["respawns"], 1)
            self.assertIn("malformed frame", w.log())



class LogLines(unittest.TestCase):
    """A client's bytes cannot forge a log line, and a flood of one kind of line is bounded."""
    REFUSED = "broker refused the login of"

    def refused_login(self, w, user):
        status, _, _ = w.request("POST", 0, "/%2f/amq.topic/log.test", body={"body": "x"},
                                 auth=(user, "wrong"))
        self.assertIn(status, (401, 403))

    def test_a_crlf_user_name_does_not_forge_a_line(self):
        with Warrend(ports=1) as w:
            self.refused_login(w, "evil\r\nFAKE LINE")
            self.assertTrue(wait_for(lambda: self.REFUSED in w.log(), 5), w.log())
            lines = w.log().splitlines()
            self.assertFalse([l for l in lines if l.startswith("FAKE LINE")], w.log())
            self.assertTrue([l for l in lines if "evil\\r\\nFAKE LINE" in l], w.log())

    def test_a_flood_of_failed_logins_is_logged_with_a_count(self):
        with Warrend(ports=1) as w:
            users = [f"flood{i}" for i in range(120)]
            threads = [threading.Thread(target=lambda part=users[i::8]: [
                self.refused_login(w, u) for u in part]) for i in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            during = sum(l.count(self.REFUSED) for l in w.log().splitlines())
            self.assertLess(during, 120)
            time.sleep(5.5)  # the window ends; the next line reports what was left out
            self.refused_login(w, "after-the-flood")
            self.assertTrue(wait_for(lambda: "suppressed" in w.log(), 5), w.log())
            lines = [l for l in w.log().splitlines() if self.REFUSED in l]
            summaries = [l for l in lines if "similar lines suppressed" in l]
            suppressed = sum(int(l.split(" similar lines suppressed")[0].split()[-1]) for l in summaries)
            self.assertEqual(len(lines) - len(summaries) + suppressed, 121, w.log())


if __name__ == "__main__":
    unittest.main()
