"""The hostile-client soak (issue 12): every route is fed malformed and hostile requests for
about 30 s while a well-behaved client publishes, then four promises are checked:

1. no worker restarted: each worker's PID is the same after the load as before it, and /stats
   `respawns` (the master's count) is 0;
2. every well-behaved message answered 204 is in the queue;
3. /healthz answered throughout (polled every 100 ms on a new connection);
4. memory flat: each process's VmRSS (workers and master) at the end is within RSS_GROWTH of
   its value after a warm-up, and /stats stays under STATS_MAX_BYTES.

Besides, the well-behaved client's publishes must not hang and must mostly be answered 204 (the
hostile clients do not lock it out). A forwarder (rewrite `^/api/(.*)$`) on a queue the hostile
clients publish to, with a local backend, makes a forward worker part of the soak.

The random parts come from one seed, printed as `soak: seed N`. WARREN_SOAK_SEED=N runs another
sequence (each client thread draws from its own Random(seed, thread)), WARREN_SOAK_ATTACKS=a,b
keeps only those kinds of attack (to bisect a failure: the kinds are the names in
hostile.ATTACKS),
WARREN_SOAK_SECONDS sets the length of the load. Run alone: `t/run-tests test_hostile_soak`.
"""
import collections
import json
import os
import sys
import time
import unittest

from backend import Backend
from harness import RSS_TELLS, BrokerClient, ClientThreads, Warrend, http_request, wait_for
from hostile import ATTACKS, Hostile, Targets
from test_faults import Load, queue_ids, uid
from test_forward import forwarder

SEED = int(os.environ.get("WARREN_SOAK_SEED") or 20261127)
LOAD_SECONDS = float(os.environ.get("WARREN_SOAK_SECONDS") or 30)
WARMUP_SECONDS = 5          # RSS is sampled this long into the load: pools and arenas are warm
HEALTH_INTERVAL = 0.1
HEALTH_TIMEOUT = 3.0        # proves "does not hang", not speed (2 cores shared with builds)
RSS_GROWTH = 16 << 20
STATS_MAX_BYTES = 64 << 10
MAX_BODY = 128 << 10        # http.max_body: room for a 100 kB x-http-path, "oversize" goes beyond
REQUEST_TIMEOUT = 1         # http.request_timeout: bounds the slowloris clients


def log(text):
    print(f"soak: {text}", file=sys.stderr, flush=True)


class Watch(ClientThreads):
    """One thread polling /healthz every HEALTH_INTERVAL on alternate ports (new connection each
    time, HEALTH_TIMEOUT) and /stats every second (its size, and the worker PIDs it lists)."""

    join_timeout = HEALTH_TIMEOUT * 2 + 5

    def __init__(self, w):
        super().__init__(1)
        self.w = w
        self.failures = []          # (time, port, what)
        self.polls = 0
        self.poll_times = []        # when each poll started
        self.slowest = 0.0
        self.stats_sizes = []
        self.stats_pids = set()

    def _run(self, _):
        last_stats = 0.0
        while not self.stopping.is_set():
            port = self.polls % len(self.w.ports)
            start = time.monotonic()
            self.poll_times.append(start)
            try:
                status = http_request("127.0.0.1", self.w.ports[port], "GET", "/healthz",
                                      timeout=HEALTH_TIMEOUT)[0]
                if status != 200:
                    self.failures.append((start, self.w.ports[port], f"status {status}"))
            except OSError as e:
                self.failures.append((start, self.w.ports[port], repr(e)))
            self.slowest = max(self.slowest, time.monotonic() - start)
            self.polls += 1
            if start - last_stats >= 1.0:
                last_stats = start
                try:
                    body = http_request("127.0.0.1", self.w.ports[port], "GET", "/stats",
                                        timeout=HEALTH_TIMEOUT)[2]
                    self.stats_sizes.append(len(body))
                    self.stats_pids.update(x["pid"] for x in json.loads(body).get("workers", []))
                except (OSError, ValueError):
                    pass  # /healthz is the liveness check; /stats only feeds the size figure
            self.stopping.wait(max(0.0, HEALTH_INTERVAL - (time.monotonic() - start)))


def rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None


class HostileSoak(unittest.TestCase):
    def setUp(self):
        self.broker = BrokerClient()
        self.addCleanup(self.broker.close)
        self.queue = f"it-soak-{uid()}"
        self.forward_queue = f"it-soak-fwd-{uid()}"
        self.dlx, self.dead = f"it-soak-dlx-{uid()}", f"it-soak-dead-{uid()}"
        for q in (self.queue, self.forward_queue):  # the forwarder declares its own the same way
            self.broker.declare_queue(q, durable=True)
        self.broker.declare_exchange(self.dlx, "fanout")
        self.broker.declare_queue(self.dead)
        self.broker.bind(self.dead, self.dlx)
        self.addCleanup(self._delete_broker_objects)

    def _delete_broker_objects(self):
        with BrokerClient() as b:
            for q in (self.queue, self.forward_queue, self.dead):
                b.delete_queue(q)
            b.channel.exchange_delete(self.dlx)

    def start_warrend(self, backend_url):
        f = forwarder("soak", self.forward_queue, backend_url, dead_letter_exchange=self.dlx,
                      rewrite={"from": "^/api/(.*)$", "to": "/$1"})
        w = Warrend(ports=2, extra={
            "http": {"workers_per_port": 1, "max_body": MAX_BODY, "confirm_timeout": 2,
                     "request_timeout": REQUEST_TIMEOUT, "idle_connection_timeout": 5,
                     "sse_keepalive": 0.5, "sse_max_buffer": 65536, "max_header_size": 8192},
            "rpc": {"timeout": 1, "max_timeout": 2},
            "logging": {"level": "info"},
            "forwarders": [f]})
        self.addCleanup(w.cleanup)
        w.start()
        self.assertTrue(wait_for(lambda: self.broker.consumer_count(self.forward_queue), 15), f"the forwarder never consumed:\n{w.log()[-3000:]}")
        return w

    def test_hostile_clients_take_nothing_down_and_lose_nothing(self):
        attacks = set((os.environ.get("WARREN_SOAK_ATTACKS") or ",".join(ATTACKS)).split(","))
        log(f"seed {SEED} (WARREN_SOAK_SEED), {LOAD_SECONDS:g} s, attacks {sorted(attacks)}")
        with Backend() as backend:
            w = self.start_warrend(backend.url + "/api")
            workers = {x["pid"]: x["kind"] for x in w.worker_pids()}
            self.assertEqual(sorted(workers.values()), ["forward", "http", "http"])
            processes = {**workers, w.pid: "master"}
            self.started = time.monotonic()
            watch = Watch(w).start()
            good = Load(w, self.queue, threads=2, prefix="good", per_thread=10000).start()
            hostile = Hostile(w.ports, Targets(self.forward_queue, MAX_BODY), SEED, attacks).start()
            try:
                time.sleep(WARMUP_SECONDS)
                rss_warm = {pid: rss_bytes(pid) for pid in processes}
                time.sleep(max(0.0, LOAD_SECONDS - WARMUP_SECONDS))
            finally:
                joined = [hostile.stop(), good.stop(), watch.stop()]
            log(f"load ran {time.monotonic() - self.started:.1f} s; {hostile.report()}")
            time.sleep(1.5)  # the workers' next counter snapshot reaches the master
            rss_end = {pid: rss_bytes(pid) for pid in processes}
            stats = self.final_stats(w, watch)
            problems = self.restarts(w, workers, stats, watch, hostile)
        problems += [f"a hostile client failed:\n{e}" for e in hostile.errors]
        if not all(joined):
            problems.append("a client thread was still stuck in a request at the end")
        problems += self.lost_messages(good)
        problems += self.health(watch)
        problems += self.memory(processes, rss_warm, rss_end, watch.stats_sizes)
        if problems:
            self.fail(f"seed {SEED}:\n" + "\n".join(problems) +
                      f"\n{hostile.report()}\nlog tail:\n{w.log()[-3000:]}")

    def final_stats(self, w, watch):
        """/stats after the load from whichever port answers ({} if none: a problem below)."""
        for port in range(len(w.ports)):
            try:
                status, _, body = w.request("GET", port, "/stats", timeout=10)
                watch.stats_sizes.append(len(body))
                return json.loads(body) if status == 200 else {}
            except (OSError, ValueError):
                continue
        return {}

    def restarts(self, w, workers, stats, watch, hostile):
        """1. No worker restarted: the same PIDs, /stats `respawns` 0. On a failure, the log's
        words about it and the requests whose connection ended without an answer (the crash's
        suspects; WARREN_SOAK_ATTACKS narrows them down)."""
        problems = []
        after = {x["pid"] for x in w.worker_pids()}
        if after != set(workers):
            problems.append(f"workers restarted: PIDs before {sorted(workers)}, after {sorted(after)}; "
                            f"/stats listed {sorted(watch.stats_pids)}")
        if stats.get("respawns") != 0:
            problems.append(f"/stats respawns is {stats.get('respawns', 'missing')}, not 0")
        said = [line for line in w.log().splitlines()
                if "respawning" in line or "terminate called" in line or "what():" in line]
        if said:
            problems.append("the log says:\n    " + "\n    ".join(said[:20]))
        if problems and hostile.suspects:
            problems.append("requests whose connection ended without an answer (first 15):\n    " +
                            "\n    ".join(f"t+{s[0] - self.started:.2f} thread {s[1]} #{s[2]} {s[3]}/"
                                          f"{s[4]} {s[5]}: {s[6]!r}" for s in hostile.suspects[:15]))
        return problems

    def lost_messages(self, good):
        """2. Every well-behaved message answered 204 is in the queue; none was refused with a
        4xx or hung; the well-behaved client was served (most answers 204: the hostile ones did not
        lock it out)."""
        problems = []
        answers = good.snapshot()
        confirmed = {a.id for a in answers if a.status == 204}
        in_queue = set(queue_ids(self.queue))
        lost = confirmed - in_queue
        by_status = collections.Counter(str(a.status) for a in answers)
        log(f"well-behaved: {len(answers)} sent, {dict(by_status)}, {len(in_queue)} in the queue, "
            f"{len(lost)} lost")
        for a in [a for a in answers if a.status != 204][:5]:
            log(f"well-behaved {a.id} (t+{a.start - self.started:.2f}): "
                f"{a.status} {a.body[:300]!r}")
        if lost:
            problems.append(f"{len(lost)} of {len(confirmed)} messages answered 204 are not in the "
                            f"queue, e.g. {sorted(lost)[:5]}")
        refused = collections.Counter(a.status for a in answers
                                      if isinstance(a.status, int) and 400 <= a.status < 500)
        if refused:
            problems.append(f"well-behaved publishes were refused: {dict(refused)} (another "
                            "client's error answered to them?)")
        if by_status["hang"]:
            problems.append(f"{by_status['hang']} well-behaved publishes got no answer in time")
        if len(confirmed) < len(answers) / 2:
            problems.append(f"the well-behaved client was mostly refused: {dict(by_status)}")
        return problems

    def health(self, watch):
        """3. /healthz answered every poll, and the polls covered the whole load (no gap longer
        than a poll that times out twice: the poller was not starved)."""
        problems = []
        times = [self.started] + watch.poll_times + [self.started + LOAD_SECONDS]
        gap = max(b - a for a, b in zip(times, times[1:]))
        log(f"/healthz: {watch.polls} polls, {len(watch.failures)} failed, slowest "
            f"{watch.slowest:.2f} s, longest gap between polls {gap:.2f} s")
        if watch.failures:
            problems.append(f"/healthz failed {len(watch.failures)} of {watch.polls} polls: " +
                            "; ".join(f"t+{t - self.started:.1f} port {p} {what}"
                                      for t, p, what in watch.failures[:8]))
        if gap > 2 * HEALTH_TIMEOUT + 2:
            problems.append(f"/healthz was not polled for {gap:.1f} s: the poller was starved")
        return problems

    def memory(self, processes, rss_warm, rss_end, stats_sizes):
        """4. Memory flat: each process's VmRSS (workers and master) grew by at most RSS_GROWTH
        after the warm-up; /stats stayed under STATS_MAX_BYTES."""
        problems = []
        for pid, kind in processes.items():
            warm, end = rss_warm[pid], rss_end[pid]
            log(f"{kind} {pid}: VmRSS {warm} after the warm-up, {end} at the end")
            if RSS_TELLS and warm is not None and end is not None and end - warm > RSS_GROWTH:
                problems.append(f"{kind} {pid} grew from {warm >> 10} kB to {end >> 10} kB")
        biggest = max(stats_sizes, default=0)
        log(f"/stats sizes {min(stats_sizes, default=0)}..{biggest} bytes")
        if biggest >= STATS_MAX_BYTES:
            problems.append(f"/stats grew to {biggest} bytes (limit {STATS_MAX_BYTES})")
        return problems


if __name__ == "__main__":
    unittest.main()
