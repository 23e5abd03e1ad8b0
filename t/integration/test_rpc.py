"""POST /rpc against real oslo.messaging servers (t/integration/oslo_server.py, Debian's
python3-oslo.messaging) and, for the wire details, against pika playing the server's part."""
import json
import os
import subprocess
import sys
import threading
import time
import unittest
import uuid

import pika

from harness import BrokerClient, Warrend, broker_port, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
AUTH = ("guest", "guest")


class OsloServer:
    """One oslo.messaging RPC server process on the test broker."""

    def __init__(self, topic, server, record):
        self.proc = subprocess.Popen(
            [sys.executable if sys.executable.startswith("/usr/bin/") else "/usr/bin/python3",
             os.path.join(HERE, "oslo_server.py"), "--port", str(broker_port()), "--topic", topic,
             "--server", server, "--record", record],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_ready(self, timeout=20):
        ready = []
        t = threading.Thread(target=lambda: ready.append(self.proc.stdout.readline()), daemon=True)
        t.start()
        t.join(timeout)
        if not ready or ready[0].strip() != "ready":
            self.stop()
            raise RuntimeError(f"oslo server not ready: {self.proc.stderr.read()[-2000:]}")

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(10)
            except (subprocess.TimeoutExpired, OSError):
                self.proc.kill()
                self.proc.wait(5)


class RpcAgainstOslo(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.topic = "warren_it_" + uuid.uuid4().hex[:8]
        cls.w = Warrend(ports=3, extra={"rpc": {"timeout": 10}})
        cls.record = os.path.join(cls.w.dir, "casts.jsonl")
        cls.servers = [OsloServer(cls.topic, name, cls.record) for name in ("s1", "s2")]
        try:
            for s in cls.servers:
                s.wait_ready()
            cls.w.start()
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for s in cls.servers:
            s.stop()
        cls.w.cleanup()
        try:
            with BrokerClient() as b:
                for q in (cls.topic, cls.topic + ".s1", cls.topic + ".s2"):
                    b.delete_queue(q)
        except Exception:
            pass

    def rpc(self, body, query="", port=0, suffix="", auth=AUTH, timeout=15):
        path = f"/rpc/%2f/openstack/{self.topic}{suffix}" + (f"?{query}" if query else "")
        status, headers, raw = self.w.request("POST", port, path, body=json.dumps(body),
                                              headers={"Content-Type": "application/json"},
                                              auth=auth, timeout=timeout)
        return status, json.loads(raw) if raw else None

    def recorded(self):
        try:
            with open(self.record) as f:
                return [json.loads(line) for line in f]
        except FileNotFoundError:
            return []

    def rpc_stats(self):
        return json.loads(self.w.request("GET", 0, "/stats")[2])["rpc"]

    def test_results(self):
        self.assertEqual(self.rpc({"method": "add", "args": {"a": 2, "b": 40}}), (200, {"result": 42}))
        value = {"list": [1, "two", None], "text": "é\u20ac", "nested": {"t": True}}
        self.assertEqual(self.rpc({"method": "echo", "args": {"x": value}}), (200, {"result": value}))
        # a method returning None
        self.assertEqual(self.rpc({"method": "record", "args": {"value": "as call"}}),
                         (200, {"result": None}))
        latency = json.loads(self.w.request("GET", 0, "/stats")[2])["latency"]["rpc_seconds"]
        self.assertGreaterEqual(latency["count"], 3)

    def test_directed_to_one_server(self):
        for name in ("s1", "s2"):
            self.assertEqual(self.rpc({"method": "whoami"}, suffix=f"/{name}"), (200, {"result": name}))

    def test_context_reaches_the_server(self):
        ctx = {"user": "alice", "project_id": "p1", "roles": ["admin", "member"]}
        self.assertEqual(self.rpc({"method": "context", "context": ctx}), (200, {"result": ctx}))

    def test_remote_exception_is_a_500_naming_its_class(self):
        status, body = self.rpc({"method": "fail", "args": {"message": "no such volume"}})
        self.assertEqual(status, 500)
        self.assertEqual(body["error"], "remote failure")
        self.assertEqual(body["class"], "OsloTestError")
        self.assertEqual(body["module"], "__main__")
        self.assertEqual(body["message"], "no such volume")
        status, body = self.rpc({"method": "no_such_method"})
        self.assertEqual((status, body["class"]), (500, "NoSuchMethod"))
        self.assertEqual(body["module"], "oslo_messaging.rpc.dispatcher")

    def test_slow_method_past_the_timeout_is_a_504_and_the_late_reply_is_dropped(self):
        late_before = self.rpc_stats()["replies_late"]
        started = time.monotonic()
        status, body = self.rpc({"method": "slow", "args": {"seconds": 1.6}}, query="timeout=1")
        elapsed = time.monotonic() - started
        self.assertEqual(status, 504)
        self.assertEqual(body["error"], "timeout")
        self.assertGreaterEqual(elapsed, 0.9)
        self.assertLess(elapsed, 1.5)
        self.assertTrue(wait_for(lambda: self.rpc_stats()["replies_late"] > late_before, 5),
                        "the late reply should be counted")

    def test_heartbeats_keep_a_long_call_alive(self):
        # _timeout=2: the oslo server heartbeats every second; each restarts warren's 2 s wait.
        before = self.rpc_stats()["heartbeats"]
        status, body = self.rpc({"method": "slow", "args": {"seconds": 3.2}}, query="timeout=2")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["result"]["slept"], 3.2)
        self.assertGreaterEqual(wait_for(lambda: self.rpc_stats()["heartbeats"] - before >= 2, 3), True)

    def test_cast_arrives(self):
        value = uuid.uuid4().hex
        status, body = self.rpc({"method": "record", "args": {"value": value}}, query="cast=1")
        self.assertEqual(status, 202)
        self.assertEqual(len(body["unique_id"]), 32)
        got = wait_for(lambda: [r for r in self.recorded() if r["value"] == value], 5)
        self.assertEqual(len(got), 1, "a cast goes to one server of the topic")

    def test_fanout_reaches_every_server(self):
        value = uuid.uuid4().hex
        status, _ = self.rpc({"method": "record", "args": {"value": value}}, query="fanout=1")
        self.assertEqual(status, 202)
        got = wait_for(lambda: len([r for r in self.recorded() if r["value"] == value]) == 2, 5)
        self.assertTrue(got)
        self.assertEqual(sorted(r["server"] for r in self.recorded() if r["value"] == value),
                         ["s1", "s2"])

    def test_three_workers_at_once_each_get_their_own_replies(self):
        results, errors = {}, []

        def worker(port, n):
            for i in range(n):
                key = f"{port}-{i}-{uuid.uuid4().hex[:6]}"
                try:
                    results[key] = self.rpc({"method": "echo", "args": {"x": key}}, port=port)
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append(repr(e))

        threads = [threading.Thread(target=worker, args=(p, 15)) for p in range(3) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        self.assertEqual(len(results), 90)
        for key, answer in results.items():
            self.assertEqual(answer, (200, {"result": key}))
        # one reply queue per worker
        pids = {json.loads(self.w.request("GET", p, "/healthz")[2])["pid"] for p in range(3)}
        self.assertEqual(len(pids), 3)

    def test_reply_link_lost_mid_call_still_gets_the_reply(self):
        broker_dir = os.environ.get("WARREN_BROKER_DIR")
        if not broker_dir:
            self.skipTest("needs WARREN_BROKER_DIR (t/run-tests sets it)")

        def ctl(*args):
            return subprocess.run([os.path.join(HERE, "..", "..", "scripts", "broker"), "ctl",
                                   broker_dir, *args], capture_output=True, text=True, timeout=60).stdout

        answer = {}
        t = threading.Thread(target=lambda: answer.setdefault("r", self.rpc(
            {"method": "slow", "args": {"seconds": 1.5}}, query="timeout=8", port=2)))
        t.start()
        time.sleep(0.5)
        rows = ctl("list_connections", "pid", "client_properties").splitlines()
        pids = [r.split("\t")[0] for r in rows if "warren rpc replies" in r]
        self.assertTrue(pids, rows)
        for pid in pids:  # every worker's reply link: the call's worker is among them
            ctl("close_connection", pid, "test: reply link lost")
        t.join(15)
        # The reply waited in the (not exclusive) reply queue; the worker reconnected and took it.
        self.assertEqual(answer["r"][0], 200, answer)
        self.assertEqual(answer["r"][1]["result"]["slept"], 1.5)
        for port in range(3):
            self.assertEqual(self.rpc({"method": "add", "args": {"a": 1, "b": port}}, port=port),
                             (200, {"result": 1 + port}))

    def test_http_errors(self):
        self.assertEqual(self.rpc({"method": "echo"}, auth=None)[0], 401)
        status, body = self.rpc({"args": {}})
        self.assertEqual((status, body["error"]), (400, "bad field"))
        status, body = self.rpc({"method": "echo"}, query="fanout=1&cast=0")
        self.assertEqual(status, 400)
        # no queue for the topic: at once, not after the timeout
        started = time.monotonic()
        status, _, body = self.w.request("POST", 0, "/rpc/%2f/openstack/nobody_" + uuid.uuid4().hex,
                                      body=json.dumps({"method": "x"}), auth=AUTH)
        self.assertEqual(status, 404)
        self.assertEqual(json.loads(body)["error"], "no server")
        self.assertLess(time.monotonic() - started, 2)
        status, _, body = self.w.request("POST", 0, f"/rpc/%2f/no_such_exchange/{self.topic}",
                                      body=json.dumps({"method": "x"}), auth=AUTH)
        self.assertEqual(status, 404)
        self.assertEqual(self.w.request("GET", 0, f"/rpc/%2f/openstack/{self.topic}")[0], 405)

    def test_warrenctl_call(self):
        def ctl(*args):
            proc = subprocess.run([os.path.join(os.environ.get("WARREN_BUILD", "build"), "warrenctl"),
                                   "call", "-H", self.w.url(1), "-u", "guest:guest", *args],
                                  capture_output=True, text=True, timeout=30)
            return proc.returncode, proc.stdout.strip(), proc.stderr
        self.assertEqual(ctl(self.topic, "add", '{"a": 20, "b": 22}')[:2], (0, "42"))
        self.assertEqual(ctl("-S", "s2", self.topic, "whoami")[:2], (0, '"s2"'))
        rc, out, _ = ctl("-c", '{"user": "cli"}', self.topic, "context")
        self.assertEqual((rc, json.loads(out)), (0, {"user": "cli"}))
        rc, _, err = ctl(self.topic, "fail", '{"message": "from the shell"}')
        self.assertEqual(rc, 1)
        self.assertIn("OsloTestError: from the shell", err)
        self.assertEqual(ctl("-T", "1", self.topic, "slow", '{"seconds": 1.5}')[0], 1)
        value = uuid.uuid4().hex
        self.assertEqual(ctl("--cast", self.topic, "record", json.dumps({"value": value}))[0], 0)
        self.assertTrue(wait_for(lambda: [r for r in self.recorded() if r["value"] == value], 5))
        self.assertEqual(ctl(self.topic, "add", "[1]")[0], 64)
        unreachable = subprocess.run([os.path.join(os.environ.get("WARREN_BUILD", "build"), "warrenctl"),
                                      "call", "-H", "http://127.0.0.1:1", "t", "m"],
                                     capture_output=True, text=True, timeout=30)
        self.assertEqual(unreachable.returncode, 2)


class RpcAuthenticatesFirst(unittest.TestCase):
    """The reply queue is the service identity's: its outcome for a vhost (missing: 404) must
    never reach a caller the broker has not accepted, or anyone could list the vhosts."""

    def test_refused_callers_get_the_same_401_whatever_the_vhost(self):
        with Warrend() as w:
            answers = {}
            for auth in (("guest", "wrong-" + uuid.uuid4().hex), ("nosuchuser", "x"), None):
                for vhost in ("nosuchvhost", "%2f"):
                    status, headers, body = w.request("POST", 0, f"/rpc/{vhost}/openstack/t",
                                                      body=json.dumps({"method": "m"}), auth=auth)
                    self.assertEqual(status, 401, body)
                    self.assertEqual(headers["Content-Type"], "application/json")
                    answers.setdefault(auth, set()).add(body)
            for auth, bodies in answers.items():
                self.assertEqual(len(bodies), 1, (auth, bodies))
            # an accepted caller still learns what it may know
            status, _, body = w.request("POST", 0, "/rpc/nosuchvhost/openstack/t",
                                        body=json.dumps({"method": "m"}), auth=AUTH)
            self.assertEqual(status, 404, body)


class RpcWire(unittest.TestCase):
    """pika plays the server: what warren sends, and that a reply in oslo's format comes back."""

    def test_request_envelope_properties_reply_queue_and_redeclare(self):
        topic = "warren_wire_" + uuid.uuid4().hex[:8]
        with Warrend(ports=1) as w, BrokerClient() as b:
            b.declare_exchange("wire_ex", "topic")
            b.declare_queue(topic, auto_delete=False)
            b.bind(topic, "wire_ex", topic)
            try:
                for attempt in range(2):
                    answer = {}

                    def call():
                        answer["r"] = w.request(
                            "POST", 0, f"/rpc/%2f/wire_ex/{topic}?timeout=5",
                            body=json.dumps({"method": "m", "args": {"a": 1}, "version": "1.3",
                                             "namespace": "ns", "context": {"user": "u"}}),
                            auth=AUTH, timeout=10)

                    t = threading.Thread(target=call)
                    t.start()
                    got = b.get(topic, timeout=5)
                    self.assertIsNotNone(got, "the request should reach the topic queue")
                    method, props, body = got
                    self.assertEqual((method.exchange, method.routing_key), ("wire_ex", topic))
                    self.assertEqual(props.content_type, "application/json")
                    self.assertEqual(props.content_encoding, "utf-8")
                    self.assertEqual(props.delivery_mode, 2)
                    self.assertEqual(props.expiration, "5000")
                    outer = json.loads(body)
                    self.assertEqual(outer["oslo.version"], "2.0")
                    msg = json.loads(outer["oslo.message"])
                    self.assertEqual(msg["method"], "m")
                    self.assertEqual(msg["args"], {"a": 1})
                    self.assertEqual(msg["version"], "1.3")
                    self.assertEqual(msg["namespace"], "ns")
                    self.assertEqual(msg["_context_user"], "u")
                    self.assertEqual(msg["_timeout"], 5)
                    self.assertEqual(len(msg["_unique_id"]), 32)
                    self.assertRegex(msg["_reply_q"], r"^reply_[0-9a-f]{32}$")
                    # The reply queue is declared as oslo declares its own.
                    ok = b.channel.queue_declare(msg["_reply_q"], passive=True)
                    self.assertEqual(ok.method.consumer_count, 1)
                    # a heartbeat, then the result, to the default exchange as oslo replies
                    for reply in ({"result": None, "failure": None, "ending": False},
                                  {"result": {"ok": attempt}, "failure": None, "ending": True}):
                        reply.update({"_msg_id": msg["_msg_id"], "_unique_id": uuid.uuid4().hex})
                        b.publish("", msg["_reply_q"],
                                  json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(reply)}),
                                  pika.BasicProperties(content_type="application/json"))
                    t.join(10)
                    status, _, raw = answer["r"]
                    self.assertEqual((status, json.loads(raw)), (200, {"result": {"ok": attempt}}))
                    if attempt == 0:
                        # An operator deletes the reply queue: warren declares it again.
                        b.delete_queue(msg["_reply_q"])
                        self.assertTrue(wait_for(lambda: self._consumers(b, msg["_reply_q"]) == 1, 10))
            finally:
                b.delete_queue(topic)
                b.channel.exchange_delete("wire_ex")

    @staticmethod
    def _consumers(b, queue):
        try:
            return b.channel.queue_declare(queue, passive=True).method.consumer_count
        except pika.exceptions.ChannelClosedByBroker:
            return 0

    def test_garbage_on_the_reply_queue_is_counted_not_fatal(self):
        topic = "warren_wire_" + uuid.uuid4().hex[:8]
        with Warrend(ports=1) as w, BrokerClient() as b:
            b.declare_queue(topic)
            b.bind(topic, "amq.topic", topic)
            try:
                answer = {}
                t = threading.Thread(target=lambda: answer.setdefault("r", w.request(
                    "POST", 0, f"/rpc/%2f/amq.topic/{topic}?timeout=5",
                    body=json.dumps({"method": "m"}), auth=AUTH, timeout=10)))
                t.start()
                _, _, body = b.get(topic, timeout=5)
                msg = json.loads(json.loads(body)["oslo.message"])
                b.publish("", msg["_reply_q"], b"not json at all")
                b.publish("", msg["_reply_q"], json.dumps(
                    {"oslo.version": "2.0", "oslo.message": json.dumps(
                        {"result": 7, "failure": None, "ending": True, "_msg_id": msg["_msg_id"]})}))
                t.join(10)
                self.assertEqual(answer["r"][0], 200)
                stats = json.loads(w.request("GET", 0, "/stats")[2])["rpc"]
                self.assertTrue(wait_for(lambda: json.loads(w.request("GET", 0, "/stats")[2])
                                         ["rpc"]["replies_invalid"] == 1, 3), stats)
            finally:
                b.delete_queue(topic)


if __name__ == "__main__":
    unittest.main()
