"""warren on a 3-node RabbitMQ cluster, as a user runs it: a quorum queue, clients publishing,
a node killed or restarted under them. Run by `t/run-tests --cluster` (`make check-cluster`),
which starts the cluster (scripts/broker start DIR --nodes 3)."""
import collections
import json
import os
import re
import sys
import threading
import time
import unittest
import uuid

import pika

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from backend import Backend  # noqa: E402
from harness import Warrend, broker_command, http_request, wait_for  # noqa: E402

PORTS = [int(p) for p in os.environ.get("WARREN_BROKER_PORTS", "").split()]


def node_channel(node):
    """A pika channel on node `node` (1-based)."""
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", PORTS[node - 1], socket_timeout=10, connection_attempts=3, retry_delay=1))
    return conn, conn.channel()


def queue_bodies(queue, node):
    """Every body in `queue`, read through `node` and acked (the queue ends empty)."""
    conn, ch = node_channel(node)
    try:
        bodies = []
        while True:
            method, _, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                return bodies
            bodies.append(body.decode())
    finally:
        conn.close()


class Publishers:
    """`clients` threads POSTing persistent messages to `queue` until stopped; every answer kept
    by message body, with the time it came."""

    def __init__(self, warrend, queue, clients=8):
        self.warrend, self.queue = warrend, queue
        self.answers = {}  # body -> (status or exception name, detail, monotonic time)
        self.lock = threading.Lock()
        self.running = True
        self.threads = [threading.Thread(target=self.client, args=(i,)) for i in range(clients)]
        for t in self.threads:
            t.start()

    def client(self, i):
        n = 0
        while self.running:
            n += 1
            body = f"{i}-{n}"
            try:
                status, _, detail = http_request(
                    "127.0.0.1", self.warrend.ports[0], "POST", f"/%2f/amq.default/{self.queue}",
                    {"body": body, "delivery_mode": "2"}, None, ("guest", "guest"), 15)
            except Exception as e:  # a dropped connection: what must never happen
                status, detail = type(e).__name__, str(e).encode()
            with self.lock:
                self.answers[body] = (status, detail, time.monotonic())
            if status != 204:
                time.sleep(0.05)

    def stop(self):
        self.running = False
        for t in self.threads:
            t.join(30)

    def with_status(self, status, after=0.0):
        with self.lock:
            return {b for b, (s, _, at) in self.answers.items() if s == status and at >= after}

    def dropped(self):
        with self.lock:
            return {b: a for b, a in self.answers.items() if not isinstance(a[0], int)}


class Cluster(unittest.TestCase):
    def setUp(self):
        self.assertEqual(len(PORTS), 3, "t/run-tests --cluster starts 3 nodes")
        self.queue = f"quorum-{uuid.uuid4().hex[:8]}"
        # Declared through node 1: its leader is there (client-local), with warren's connections.
        conn, ch = node_channel(1)
        ch.queue_declare(self.queue, durable=True, arguments={"x-queue-type": "quorum"})
        conn.close()

    def start(self, ports=1, **extra):
        self.warrend = Warrend(ports=ports, extra={
            "broker": {"hosts": [f"127.0.0.1:{p}" for p in PORTS]}, "logging": {"level": "info"},
            **extra})
        self.warrend.start()
        self.addCleanup(self.warrend.cleanup)

    def tearDown(self):
        for node in (1, 2, 3):  # a test that failed half-way may leave a node down
            if not self.node_up(node):
                broker_command("restart", "--node", str(node))
        conn, ch = node_channel(2)
        ch.queue_delete(self.queue)
        conn.close()

    @staticmethod
    def node_up(node):
        try:
            node_channel(node)[0].close()
            return True
        except Exception:
            return False

    def check_nothing_lost(self, load, reader_node):
        in_queue = set(queue_bodies(self.queue, reader_node))
        log = self.warrend.log()[-4000:]
        self.assertFalse(load.dropped(), f"requests without an HTTP answer\n{log}")
        confirmed = load.with_status(204)
        self.assertFalse(confirmed - in_queue, f"answered 2xx, not in the queue\n{log}")
        # 503 says "not sent, safe to send again": such a message must not be there.
        self.assertFalse(load.with_status(503) & in_queue, f"answered 503, yet in the queue\n{log}")
        return confirmed

    def test_workers_spread_their_connections_over_the_nodes(self):
        self.start(ports=3)
        for i in range(3):
            status, _, body = http_request("127.0.0.1", self.warrend.ports[i], "POST",
                                           f"/%2f/amq.default/{self.queue}", {"body": f"w{i}"},
                                           None, ("guest", "guest"), 10)
            self.assertEqual(status, 204, body)
        # Worker slot i starts at broker.hosts[i]: one connection per node, not three on node 1,
        # and /stats and /metrics say which.
        nodes = {f"127.0.0.1:{p}" for p in PORTS}
        stats = json.loads(self.warrend.request("GET", 0, "/stats")[2])
        self.assertEqual(stats["broker_nodes"], {node: 1 for node in nodes})
        self.assertEqual({w["broker_nodes"]["/:guest"] for w in stats["workers"]}, nodes)
        metrics = self.warrend.request("GET", 0, "/metrics")[2].decode()
        self.assertEqual(set(re.findall(r'warren_broker_link_node\{[^}]*link="/:guest",node="([^"]+)"\} 1',
                                        metrics)), nodes)
        self.assertEqual(sorted(queue_bodies(self.queue, 1)), ["w0", "w1", "w2"])

    def test_killing_the_node_under_warren_loses_nothing_and_publishing_resumes(self):
        self.start()
        load = Publishers(self.warrend, self.queue)
        try:
            time.sleep(3)
            self.assertTrue(load.with_status(204), self.warrend.log())
            broker_command("kill", "--node", "1")
            killed = time.monotonic()
            time.sleep(10)
        finally:
            load.stop()
        after = sorted(at for _, (s, _, at) in load.answers.items() if s == 204 and at > killed)
        self.assertTrue(after, f"no 2xx after the kill\n{self.warrend.log()[-4000:]}")
        self.assertLess(after[0] - killed, 5, "publishing resumes within 5 s")
        self.assertGreater(len(after), 100, "and keeps going")
        self.check_nothing_lost(load, reader_node=2)

    def test_a_forwarder_whose_node_dies_delivers_every_message_and_empties_its_queue(self):
        n = 500
        with Backend() as backend:
            backend.route("/", status=200, delay=0.005)
            self.start(forwarders=[{
                "name": "qq", "vhost": "/", "queue": self.queue, "format": "raw", "prefetch": 16,
                "declare": {"queue": {"durable": True, "arguments": {"x-queue-type": "quorum"}}},
                "backend": {"url": backend.url, "timeout": 5},
                "retry": {"max_attempts": 5, "initial_delay": 0.1, "max_delay": 0.5}}])
            conn, ch = node_channel(1)
            for i in range(n):
                ch.basic_publish("", self.queue, f"m{i}",
                                 pika.BasicProperties(delivery_mode=2, message_id=f"m{i}"))
            conn.close()
            self.assertTrue(wait_for(lambda: len(backend.received()) >= n // 4, 30), self.warrend.log())
            # The forward worker is slot 1: it started at the second host, node 2.
            broker_command("kill", "--node", "2")
            seen = lambda: {r.body.decode() for r in backend.received()}  # noqa: E731
            self.assertTrue(wait_for(lambda: len(seen()) == n, 60),
                            f"{n - len(seen())} never reached the backend\n{self.warrend.log()[-4000:]}")
        # Acked only after a 2xx: nothing is left, and what was in flight at the kill came again.
        conn, ch = node_channel(1)
        self.assertTrue(wait_for(lambda: ch.queue_declare(self.queue, passive=True).method.message_count == 0, 20))
        conn.close()
        self.assertIn(f"127.0.0.1:{PORTS[1]}", self.warrend.log())

    def test_an_rpc_call_whose_reply_queue_node_dies_is_answered(self):
        self.start()
        topic = f"rpc-{uuid.uuid4().hex[:8]}"
        conn, ch = node_channel(3)  # the service's side, on a node that stays up
        ch.exchange_declare("warren_cluster_rpc", "topic")
        ch.queue_declare(topic, auto_delete=True)
        ch.queue_bind(topic, "warren_cluster_rpc", topic)
        answer = {}

        def call():
            answer["r"] = http_request("127.0.0.1", self.warrend.ports[0], "POST",
                                       f"/rpc/%2f/warren_cluster_rpc/{topic}?timeout=10",
                                       json.dumps({"method": "m", "args": {}}), None,
                                       ("guest", "guest"), 20)
            answer["at"] = time.monotonic()
        t = threading.Thread(target=call)
        started = time.monotonic()
        t.start()
        request = None
        while request is None and time.monotonic() - started < 5:
            request = ch.basic_get(topic, auto_ack=True)[2]
            time.sleep(0.05)
        self.assertIsNotNone(request, self.warrend.log())
        msg = json.loads(json.loads(request)["oslo.message"])
        # warren's reply queue and connections are on node 1 (worker slot 0): it dies mid-call.
        broker_command("kill", "--node", "1")
        # The reply queue, declared again on a live node, takes the answer sent after the loss.
        self.assertTrue(wait_for(lambda: self.queue_exists(ch, msg["_reply_q"]), 8), self.warrend.log())
        reply = {"result": {"after": "failover"}, "failure": None, "ending": True,
                 "_msg_id": msg["_msg_id"], "_unique_id": uuid.uuid4().hex}
        ch.basic_publish("", msg["_reply_q"], json.dumps(
            {"oslo.version": "2.0", "oslo.message": json.dumps(reply)}))
        t.join(20)
        conn.close()
        status, _, body = answer["r"]
        self.assertEqual((status, json.loads(body)), (200, {"result": {"after": "failover"}}),
                         self.warrend.log()[-4000:])
        self.assertLess(answer["at"] - started, 10, "within rpc.timeout")

    @staticmethod
    def queue_exists(ch, queue):
        try:
            ch.connection.channel().queue_declare(queue, passive=True)
            return True
        except pika.exceptions.ChannelClosedByBroker:
            return False

    def test_a_rolling_restart_of_every_node_loses_nothing(self):
        self.start()
        load = Publishers(self.warrend, self.queue)
        try:
            time.sleep(2)
            for node in (1, 2, 3):
                broker_command("restart", "--node", str(node))
                time.sleep(2)
        finally:
            load.stop()
        confirmed = self.check_nothing_lost(load, reader_node=3)
        self.assertGreater(len(confirmed), 100)


if __name__ == "__main__":
    unittest.main()
