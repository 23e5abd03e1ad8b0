"""A `format: oslo` forwarder serving oslo.messaging RPC from an HTTP backend: a real
oslo.messaging client (Debian's python3-oslo.messaging) calls and casts, warren POSTs to
t/integration/backend.py and answers in oslo's format; pika for the wire-level cases."""
import json
import time
import unittest
import uuid

import oslo_messaging
from oslo_config import cfg

from backend import Backend
from harness import BrokerClient, Warrend, broker_port, wait_for
from test_rpc import OsloServer

EXCHANGE = "openstack"



class ServeRpc(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.topic = "warren_serve_" + uuid.uuid4().hex[:8]
        cls.backend = Backend()
        cls.backend.start()
        cls.backend.route("/add", body='{"sum": 42}', content_type="application/json")
        cls.backend.route("/nothing", status=204, body="")
        cls.backend.route("/text", body="plain words")
        cls.backend.route("/broken", status=409, body="volume busy")
        cls.backend.route("/slow", delay=3.5, body='"slept"', content_type="application/json")
        cls.backend.route("/record", status=202, body="")
        forwarder = {"name": "osl", "format": "oslo", "vhost": "/",
                     "oslo": {"exchange": EXCHANGE, "topic": cls.topic, "server": "srv1"},
                     "backend": {"url": cls.backend.url, "timeout": 10}, "prefetch": 8,
                     "retry": {"max_attempts": 2, "initial_delay": 0.1, "max_delay": 0.2}}
        cls.w = Warrend(ports=1, extra={"forwarders": [forwarder], "rpc": {"timeout": 10}})
        try:
            cls.w.start()
            with BrokerClient() as b:
                ok = wait_for(lambda: all(b.consumer_count(q) for q in (cls.topic, cls.topic + ".srv1")), 10)
            if not ok:
                raise RuntimeError("the oslo forwarder does not consume: " + cls.w.log()[-2000:])
            conf = cfg.CONF
            conf([], project="warren-test")
            cls.transport = oslo_messaging.get_rpc_transport(
                conf, url=f"rabbit://guest:guest@127.0.0.1:{broker_port()}/")
            target = oslo_messaging.Target(exchange=EXCHANGE, topic=cls.topic)
            cls.client = oslo_messaging.get_rpc_client(cls.transport, target, timeout=10)
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "transport", None):
            cls.transport.cleanup()
        cls.w.cleanup()
        cls.backend.stop()
        try:
            with BrokerClient() as b:
                for q in (cls.topic, cls.topic + ".srv1"):
                    b.delete_queue(q)
        except Exception:
            pass

    def tearDown(self):
        if any(e for _, e in getattr(self._outcome, "errors", []) if e):
            print(self.w.log()[-3000:])

    def stats(self):
        return json.loads(self.w.request("GET", 0, "/stats")[2])["forwarders"]["osl"]

    def test_call_gets_the_backend_answer(self):
        ctx = {"user_id": "alice", "roles": ["admin"]}
        before = len(self.backend.received("/add"))
        self.assertEqual(self.client.call(ctx, "add", a=2, b=40), {"sum": 42})
        req = self.backend.received("/add")[before]
        self.assertEqual((req.method, req.path), ("POST", "/add"))
        self.assertEqual(json.loads(req.body), {"a": 2, "b": 40})
        h = {k.lower(): v for k, v in req.headers.items()}
        self.assertEqual(h["content-type"], "application/json")
        self.assertEqual(h["x-oslo-method"], "add")
        self.assertEqual(h["x-oslo-kind"], "call")
        self.assertEqual(len(h["x-oslo-unique-id"]), 32)
        self.assertEqual(json.loads(h["x-oslo-context"]), ctx)
        self.assertEqual(h["x-oslo-context-user-id"], "alice")
        self.assertEqual(json.loads(h["x-oslo-context-roles"]), ["admin"])
        # an empty 2xx body is None, a body that is not JSON a string
        self.assertIsNone(self.client.call({}, "nothing"))
        self.assertEqual(self.client.call({}, "text"), "plain words")

    def test_namespace_version_and_directed_server(self):
        before = len(self.backend.received("/add"))
        c = self.client.prepare(server="srv1", namespace="ns1", version="1.3")
        self.assertEqual(c.call({}, "add", a=1, b=1), {"sum": 42})
        h = {k.lower(): v for k, v in self.backend.received("/add")[before].headers.items()}
        self.assertEqual((h["x-oslo-namespace"], h["x-oslo-version"]), ("ns1", "1.3"))

    def test_http_error_is_a_remote_error(self):
        with self.assertRaises(oslo_messaging.RemoteError) as caught:
            self.client.call({}, "broken", volume="v1")
        e = caught.exception
        self.assertEqual(e.exc_type, "HTTPError")
        self.assertEqual(e.value, "HTTP 409: volume busy")
        self.assertIn("HTTP 409: volume busy", str(e))
        # a call is answered once, never retried behind the caller's back
        time.sleep(0.3)
        self.assertEqual(len(self.backend.received("/broken")), 1)

    def test_cast_reaches_the_backend(self):
        value = uuid.uuid4().hex
        self.client.cast({"request_id": "r1"}, "record", value=value)
        got = wait_for(lambda: [r for r in self.backend.received("/record") if json.loads(r.body) == {"value": value}], 5)
        self.assertEqual(len(got), 1)
        self.assertEqual({k.lower(): v for k, v in got[0].headers.items()}["x-oslo-kind"], "cast")

    def test_fanout_cast_reaches_the_backend(self):
        value = uuid.uuid4().hex
        self.client.prepare(fanout=True).cast({}, "record", value=value)
        got = wait_for(lambda: [r for r in self.backend.received("/record") if json.loads(r.body) == {"value": value}], 5)
        self.assertEqual(len(got), 1)

    def test_heartbeats_keep_a_slow_call_alive(self):
        # call_monitor_timeout=2: oslo sends _timeout 2 and gives up after 2 s without a word;
        # warren heartbeats every second while the backend takes 3.5 s.
        before = self.stats()["heartbeats"]
        c = self.client.prepare(timeout=10, call_monitor_timeout=2)
        started = time.monotonic()
        self.assertEqual(c.call({}, "slow"), "slept")
        self.assertGreaterEqual(time.monotonic() - started, 3.4)
        self.assertTrue(wait_for(lambda: self.stats()["heartbeats"] - before >= 2, 3))

    def test_duplicate_unique_id_is_forwarded_once(self):
        value, unique = uuid.uuid4().hex, uuid.uuid4().hex
        msg = {"method": "record", "args": {"value": value}, "_unique_id": unique}
        body = json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(msg)})
        before = self.stats()["duplicates"]
        with BrokerClient() as b:
            for _ in range(2):
                b.publish(EXCHANGE, self.topic, body)
        self.assertTrue(wait_for(lambda: self.stats()["duplicates"] - before >= 1, 5))
        time.sleep(0.3)
        got = [r for r in self.backend.received("/record") if json.loads(r.body) == {"value": value}]
        self.assertEqual(len(got), 1)

    def test_an_oslo_server_of_the_topic_declares_beside_warren(self):
        # Same exchange, same <topic> queue, same fanout exchange: a flag that differed would
        # make the oslo server's declare fail with 406 PRECONDITION_FAILED.
        server = OsloServer(self.topic, "oslo1", "")
        try:
            server.wait_ready()
            self.assertEqual(self.client.prepare(server="oslo1").call({}, "whoami"), "oslo1")
        finally:
            server.stop()
            with BrokerClient() as b:
                b.delete_queue(self.topic + ".oslo1")

    def test_warren_calls_warren(self):
        path = f"/rpc/%2f/{EXCHANGE}/{self.topic}"
        status, _, raw = self.w.request("POST", 0, path, body=json.dumps({"method": "add", "args": {"a": 1}}),
                                        headers={"Content-Type": "application/json"},
                                        auth=("guest", "guest"), timeout=15)
        self.assertEqual((status, json.loads(raw)), (200, {"result": {"sum": 42}}))
        status, _, raw = self.w.request("POST", 0, path, body=json.dumps({"method": "broken"}),
                                        headers={"Content-Type": "application/json"},
                                        auth=("guest", "guest"), timeout=15)
        body = json.loads(raw)
        self.assertEqual((status, body["class"], body["message"]), (500, "HTTPError", "HTTP 409: volume busy"))


if __name__ == "__main__":
    unittest.main()
