"""Forwarding (AMQP -> HTTP) as an operator sees it: a real broker, warrend, a real backend."""
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import uuid

import pika

from backend import Backend, make_cert
from harness import BrokerClient, Warrend, free_ports, wait_for
from test_limits import cpu_seconds


def uid():
    return uuid.uuid4().hex[:8]


def forwarder(name, queue, url, **kw):
    f = {"name": name, "queue_set": kw.pop("queue_set", "default"), "vhost": "/", "queue": queue,
         "declare": {"queue": {"durable": True}}, "format": "raw",
         "backend": {"url": url, "timeout": 2}, "prefetch": 16,
         "retry": {"max_attempts": 3, "initial_delay": 0.1, "max_delay": 0.4}}
    f.update(kw)
    return f


class ForwardTest(unittest.TestCase):
    def setUp(self):
        self.broker = BrokerClient()
        self.addCleanup(self.broker.close)
        self.queues = []

    def tearDown(self):
        for q in self.queues:
            try:
                self.broker.delete_queue(q)
            except Exception:
                pass

    def queue(self, prefix):
        q = f"{prefix}-{uid()}"
        self.queues.append(q)
        return q

    def dead_letters(self):
        """A fanout DLX and the queue bound to it: (exchange, queue)."""
        x, q = f"dlx-{uid()}", self.queue("dead")
        self.broker.declare_exchange(x, "fanout")
        self.broker.declare_queue(q)
        self.broker.bind(q, x)
        self.addCleanup(lambda: self.broker.channel.exchange_delete(x))
        return x, q

    def consumers(self, queue):
        return self.broker.consumer_count(queue)

    def start(self, forwarders, **extra):
        w = Warrend(ports=1, extra={"forwarders": forwarders, **extra})
        w.start()
        self.addCleanup(w.cleanup)
        for f in forwarders:
            self.assertTrue(wait_for(lambda: self.consumers(f["queue"]) >= 1, 15),
                            f"forwarder {f['name']} never consumed:\n{w.log()}")
        return w

    def publish(self, queue, body, headers=None, **props):
        self.broker.publish("", queue, body, pika.BasicProperties(headers=headers or {}, **props))

    def stats(self, w):
        status, _, body = w.request("GET", 0, "/stats")
        self.assertEqual(status, 200)
        return json.loads(body)

    def drain(self, queue, count, timeout=10):
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            m = self.broker.get(queue, timeout=max(0.1, deadline - time.monotonic()))
            if m:
                got.append(m)
        return got


class RawFormat(ForwardTest):
    def test_request_reply_and_stats(self):
        with Backend() as b:
            b.route("/api/items", status=201, body='{"made": true}', content_type="application/json")
            q, replies = self.queue("raw"), self.queue("replies")
            self.broker.declare_queue(replies)
            w = self.start([forwarder("f1", q, b.url + "/api",
                                      rewrite={"from": "^/api/f1", "to": ""},
                                      declare={"queue": {"durable": True,
                                                         "arguments": {"x-queue-type": "quorum"}}})])
            for i in range(3):
                self.publish(q, f"body-{i}", {"x-http-method": "PUT", "x-http-path": f"/api/f1/items/{i}?v=1",
                                              "tenant": "acme"},
                             content_type="text/plain", correlation_id=f"corr-{i}", reply_to=replies,
                             message_id=f"m-{i}")
            got = b.wait_for(3, "/api/items")
            self.assertEqual(len(got), 3, w.log())
            by_path = {r.path: r for r in got}
            r = by_path["/api/items/1?v=1"]
            self.assertEqual(r.method, "PUT")
            self.assertEqual(r.body, b"body-1")
            self.assertEqual(r.headers["Content-Type"], "text/plain")
            self.assertEqual(r.headers["X-AMQP-Correlation-Id"], "corr-1")
            self.assertEqual(r.headers["X-AMQP-Message-Id"], "m-1")
            self.assertEqual(r.headers["X-AMQP-Reply-To"], replies)
            self.assertEqual(r.headers["X-AMQP-Header-tenant"], "acme")
            answers = self.drain(replies, 3)
            self.assertEqual(len(answers), 3)
            self.assertEqual(sorted(p.correlation_id for _, p, _ in answers), ["corr-0", "corr-1", "corr-2"])
            for _, props, body in answers:
                self.assertEqual(props.headers["x-http-status"], 201)
                self.assertEqual(props.content_type, "application/json")
                self.assertEqual(json.loads(body), {"made": True})
            # queue arguments were applied: a quorum queue
            self.assertTrue(wait_for(lambda: self.stats(w)["forwarders"].get("f1", {}).get("acked") == 3, 5))
            f = self.stats(w)["forwarders"]["f1"]
            self.assertEqual((f["consumed"], f["replied"], f["status_2xx"], f["dead_lettered"]), (3, 3, 3, 0))
            self.assertGreater(f["latency_us"], 0)
            self.assertEqual(self.stats(w)["latency"]["forward_seconds"]["count"], 3)
            _, _, metrics = w.request("GET", 0, "/metrics")
            self.assertIn('warren_forwarder_acked_total{forwarder="f1"} 3', metrics.decode())
            rc, out = w.ctl("stats")
            self.assertEqual(rc, 0)
            self.assertIn("f1", out)
            self.assertIn("consumed 3 acked 3", out)
            workers = w.worker_pids()
            self.assertEqual([x["queue_set"] for x in workers if x["kind"] == "forward"], ["default"])
            rc, out = w.ctl("workers")
            self.assertIn("default", out)

    def test_3xx_4xx_and_unparseable_are_dead_lettered_at_once(self):
        with Backend() as b:
            b.route("/gone", status=404, body="nope")
            b.route("/moved", status=302, body="elsewhere")  # not followed: never acked as done
            q, replies = self.queue("raw4xx"), self.queue("replies")
            self.broker.declare_queue(replies)
            dlx, dead = self.dead_letters()
            w = self.start([forwarder("f4", q, b.url, dead_letter_exchange=dlx)])
            self.publish(q, "a", {"x-http-path": "/gone"}, message_id="m-404")
            self.publish(q, "m", {"x-http-path": "/moved"}, message_id="m-302")
            self.publish(q, "b", {"x-http-path": "not a path"}, message_id="m-bad", reply_to=replies,
                         correlation_id="c-bad")
            self.publish(q, "c", {"x-http-path": "not a path either"}, message_id="m-bad-noreply")
            got = self.drain(dead, 3)
            self.assertEqual(len(got), 3, w.log())
            by_id = {p.message_id: (p, body) for _, p, body in got}
            p, body = by_id["m-404"]
            self.assertEqual(body, b"a")
            self.assertEqual(p.headers["x-warren-status"], 404)
            self.assertEqual(p.headers["x-warren-attempts"], 1)
            self.assertEqual(p.headers["x-warren-forwarder"], "f4")
            p, body = by_id["m-302"]
            self.assertEqual((body, p.headers["x-warren-status"]), (b"m", 302))
            p, _ = by_id["m-bad-noreply"]
            self.assertIn("x-http-path", p.headers["x-warren-error"])
            self.assertEqual(len(b.received("/gone")), 1)  # never retried
            self.assertEqual(len(b.received("/moved")), 1)
            # answered 400 to reply_to: that answer is the message's end, not also a dead letter
            (_, rp, rbody), = self.drain(replies, 1)
            self.assertEqual(rp.correlation_id, "c-bad")
            self.assertEqual(rp.headers["x-http-status"], 400)
            self.assertIn("x-http-path", json.loads(rbody)["detail"])
            f = self.stats(w)["forwarders"]["f4"]
            self.assertEqual((f["dead_lettered"], f["invalid"], f["retried"], f["status_3xx"], f["status_4xx"],
                              f["acked"], f["replied"]), (3, 2, 0, 1, 1, 1, 1))

    def test_backend_down_then_up_delivers_each_message_once_or_dead_letters(self):
        port = free_ports(1)[0]
        b = Backend(port)
        q_retry, q_dl = self.queue("down-up"), self.queue("down-dl")
        dlx, dead = self.dead_letters()
        w = self.start([
            forwarder("up", q_retry, f"http://127.0.0.1:{port}", dead_letter_exchange=dlx,
                      retry={"max_attempts": 100, "initial_delay": 0.05, "max_delay": 0.2}),
            forwarder("down", q_dl, f"http://127.0.0.1:{free_ports(1)[0]}", dead_letter_exchange=dlx,
                      retry={"max_attempts": 3, "initial_delay": 0.05, "max_delay": 0.1})])
        n = 30
        for i in range(n):
            self.publish(q_retry, f"up-{i}", message_id=f"up-{i}")
            self.publish(q_dl, f"down-{i}", message_id=f"down-{i}")
        time.sleep(1.0)
        self.assertEqual(b.received(), [])
        b.start()
        try:
            got = b.wait_for(n, timeout=15)
            time.sleep(0.5)  # any duplicate would show up now
            bodies = sorted(r.body.decode() for r in b.received())
        finally:
            b.stop()
        self.assertEqual(bodies, sorted(f"up-{i}" for i in range(n)), w.log())
        dead_msgs = self.drain(dead, n)
        self.assertEqual(sorted(p.message_id for _, p, _ in dead_msgs), sorted(f"down-{i}" for i in range(n)))
        for _, p, _ in dead_msgs:
            self.assertEqual(p.headers["x-warren-attempts"], 3)
            self.assertEqual(p.headers["x-warren-status"], 0)
            self.assertTrue(p.headers["x-warren-error"])
        self.assertIsNone(self.broker.get(dead, timeout=0.3))
        stats = self.stats(w)["forwarders"]
        self.assertEqual(stats["up"]["acked"], n)
        self.assertGreaterEqual(stats["up"]["retried"], n)
        self.assertEqual(stats["down"]["dead_lettered"], n)
        self.assertEqual(stats["down"]["retried"], 2 * n)
        self.assertEqual(stats["down"]["status_error"], 3 * n)

    def test_no_dead_letter_exchange_rejects_to_the_queues_own_dlx(self):
        with Backend() as b:
            b.route("/", status=400)
            q = self.queue("own-dlx")
            dlx, dead = self.dead_letters()
            w = self.start([forwarder("own", q, b.url, declare={"queue": {
                "durable": True, "arguments": {"x-dead-letter-exchange": dlx}}})])
            self.publish(q, "x", message_id="m-own")
            got = self.drain(dead, 1)
            self.assertEqual([p.message_id for _, p, _ in got], ["m-own"], w.log())
            self.assertEqual(self.stats(w)["forwarders"]["own"]["dead_lettered"], 1)

    def test_killed_worker_redelivers_unacked_messages(self):
        with Backend() as b:
            b.route("/", status=200, delay=0.2)
            q = self.queue("kill9")
            w = self.start([forwarder("k", q, b.url, prefetch=4)])
            n = 24
            for i in range(n):
                self.publish(q, f"k-{i}")
            self.assertTrue(wait_for(lambda: len(b.received()) >= 4, 10))
            victim = [x for x in w.worker_pids() if x["kind"] == "forward"][0]["pid"]
            os.kill(victim, signal.SIGKILL)
            served = lambda: {r.body.decode() for r in b.received()}
            self.assertTrue(wait_for(lambda: served() == {f"k-{i}" for i in range(n)}, 30),
                            f"missing {sorted({f'k-{i}' for i in range(n)} - served())}\n{w.log()}")
            pids = [x["pid"] for x in w.worker_pids() if x["kind"] == "forward"]
            self.assertNotIn(victim, pids)
            self.assertTrue(wait_for(lambda: self.broker.channel.queue_declare(
                q, passive=True).method.message_count == 0, 5))

    def test_sigterm_requeues_messages_waiting_for_a_retry(self):
        with Backend() as b:
            b.route("/", status=503)
            q = self.queue("term")
            w = self.start([forwarder("t", q, b.url, retry={"max_attempts": 100, "initial_delay": 30,
                                                            "max_delay": 30})])
            for i in range(5):
                self.publish(q, f"t-{i}")
            self.assertTrue(wait_for(lambda: len(b.received()) >= 5, 10))
            start = time.monotonic()
            self.assertEqual(w.stop(), 0)
            self.assertLess(time.monotonic() - start, 5)
            count = wait_for(lambda: self.broker.channel.queue_declare(q, passive=True).method.message_count == 5, 5)
            self.assertTrue(count, w.log())
            self.assertIn("requeued", w.log())


class Lifecycle(ForwardTest):
    def test_deleted_queue_is_declared_again_and_consumed(self):
        with Backend() as b:
            q = self.queue("cancel")
            w = self.start([forwarder("c", q, b.url)])
            self.broker.delete_queue(q)  # the broker cancels the consumer (consumer_cancel_notify)
            self.assertTrue(wait_for(lambda: self.consumers(q) >= 1, 15), w.log())
            self.publish(q, "after cancel")
            self.assertEqual([r.body for r in b.wait_for(1)], [b"after cancel"], w.log())
            self.assertIn("cancelled", w.log())

    def test_a_declaration_the_broker_refuses_is_retried_with_growing_pauses(self):
        """The queue exists with other arguments than the forwarder declares (406 on every
        connection): the forwarder retries as for a host that keeps failing, not in a loop."""
        with Backend() as b:
            q = self.queue("refused")
            self.broker.declare_queue(q, durable=False)  # the forwarder declares it durable
            w = Warrend(ports=1, extra={"forwarders": [forwarder("x", q, b.url)]})
            w.start()
            self.addCleanup(w.cleanup)
            time.sleep(5)
            # Pauses from 0.05-0.1 s doubling each time: at most 7 connections in 5 s; a pause
            # that starts short again after every open allowed over 60.
            connects = self.stats(w)["broker"]["connects"]
            self.assertGreaterEqual(connects, 2, w.log())
            self.assertLessEqual(connects, 8, w.log())
            self.assertIn("PRECONDITION_FAILED", w.log())
            # Once the queue is as declared, the pauses are short again and it is consumed.
            self.broker.delete_queue(q)
            self.broker.declare_queue(q, durable=True)
            self.assertTrue(wait_for(lambda: self.consumers(q) >= 1, 15), w.log())

    def test_reload_replaces_forward_workers_without_losing_messages(self):
        with Backend() as b:
            b.route("/", status=200, delay=0.05)
            q = self.queue("reload")
            w = self.start([forwarder("r", q, b.url, prefetch=4)])
            old = {x["pid"] for x in w.worker_pids() if x["kind"] == "forward"}
            n = 40
            for i in range(n // 2):
                self.publish(q, f"r-{i}")
            w.reload()
            for i in range(n // 2, n):
                self.publish(q, f"r-{i}")
            self.assertTrue(wait_for(lambda: {r.body.decode() for r in b.received()} ==
                                     {f"r-{i}" for i in range(n)}, 20), w.log())

            def replaced():
                now = [x for x in w.worker_pids() if x["kind"] == "forward"]
                return len(now) == 1 and now[0]["pid"] not in old and now[0]["generation"] == 2
            self.assertTrue(wait_for(replaced, 10), w.worker_pids())
            self.assertTrue(wait_for(lambda: self.broker.channel.queue_declare(
                q, passive=True).method.message_count == 0, 5))


def vcd_message(uri, rights, org, body=b'{"hello": "vcd"}', method="POST"):
    request = {"id": f"req-{uid()}", "method": method, "requestUri": uri, "queryString": "a=1",
               "headers": {"Accept": "application/json", "Content-Type": "application/json"},
               "body": base64.b64encode(body).decode()}
    context = {"user": "urn:vcloud:user:bob", "org": org, "rights": rights}
    return request["id"], json.dumps([request, context])


class VcdFormat(ForwardTest):
    def test_round_trip_and_refusals(self):
        with Backend() as b:
            b.route("/ext/vms", status=200, body='{"vms": []}', content_type="application/vnd.vms+json")
            q, replies = self.queue("vcd"), self.queue("vcdreplies")
            rx = f"vcdreply-{uid()}"
            self.broker.declare_exchange(rx, "direct")
            self.addCleanup(lambda: self.broker.channel.exchange_delete(rx))
            self.broker.declare_queue(replies)
            self.broker.bind(replies, rx, "rk")
            w = self.start([forwarder("v", q, b.url + "/ext", format="vcd",
                                      rewrite={"from": "^/api/example1", "to": ""},
                                      vcd={"extension": "example1",
                                           "required_rights": ["urn:vcloud:right:use-ext"],
                                           "allowed_orgs": ["urn:vcloud:org:acme"]})])
            cases = [("ok", "/api/example1/vms", ["urn:vcloud:right:use-ext"], "urn:vcloud:org:acme", 200),
                     ("noright", "/api/example1/vms", ["urn:vcloud:right:other"], "urn:vcloud:org:acme", 403),
                     ("badorg", "/api/example1/vms", ["urn:vcloud:right:use-ext"], "urn:vcloud:org:evil", 403)]
            ids = {}
            for name, uri, rights, org, _ in cases:
                rid, body = vcd_message(uri, rights, org)
                ids[rid] = name
                self.publish(q, body, {"replyToExchange": rx}, reply_to="rk", correlation_id=f"c-{name}")
            answers = self.drain(replies, 3)
            self.assertEqual(len(answers), 3, w.log())
            want = {name: status for name, *_, status in cases}
            for _, props, body in answers:
                doc = json.loads(body)
                name = ids[doc["id"]]
                self.assertEqual(props.correlation_id, f"c-{name}")
                self.assertEqual(doc["statusCode"], want[name])
                self.assertIs(doc["request"], False)
                payload = base64.b64decode(doc["body"])
                if name == "ok":
                    self.assertEqual(doc["headers"]["Content-Type"], "application/vnd.vms+json")
                    self.assertEqual(json.loads(payload), {"vms": []})
                else:
                    err = json.loads(payload)
                    self.assertEqual(err["majorErrorCode"], 403)
                    self.assertEqual(err["minorErrorCode"], "ACCESS_TO_RESOURCE_IS_FORBIDDEN")
            (req,) = b.received()
            self.assertEqual(req.path, "/ext/vms?a=1")
            self.assertEqual(req.method, "POST")
            self.assertEqual(req.headers["org_id"], "acme")  # the bare ids, as vcdextproxy sends them
            self.assertEqual(req.headers["user_id"], "bob")
            self.assertEqual(json.loads(req.body), {"hello": "vcd"})

    def test_backend_down_answers_503_in_vcd_format(self):
        q, replies = self.queue("vcddown"), self.queue("vcdreplies")
        self.broker.declare_queue(replies)
        self.start([forwarder("vd", q, f"http://127.0.0.1:{free_ports(1)[0]}", format="vcd",
                              retry={"max_attempts": 2, "initial_delay": 0.05, "max_delay": 0.05},
                              vcd={"extension": "example1"})])
        rid, body = vcd_message("/api/example1/x", [], "urn:vcloud:org:any")
        self.publish(q, body, reply_to=replies, correlation_id="c-down")
        (_, props, body), = self.drain(replies, 1)
        doc = json.loads(body)
        self.assertEqual((doc["id"], doc["statusCode"]), (rid, 503))
        self.assertIn("message", json.loads(base64.b64decode(doc["body"])))


class HttpsBackend(ForwardTest):
    def test_ca_verification(self):
        tmp = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"warren-tls-{uid()}")
        good, other = make_cert(tmp, "good"), make_cert(tmp, "other")
        self.addCleanup(lambda: __import__("shutil").rmtree(tmp, ignore_errors=True))
        with Backend(tls=good) as b:
            q_ok, q_bad = self.queue("tls-ok"), self.queue("tls-bad")
            dlx, dead = self.dead_letters()
            w = self.start([
                forwarder("tls_ok", q_ok, b.url, backend={"url": b.url, "ca": good["ca"], "timeout": 2}),
                forwarder("tls_bad", q_bad, b.url, dead_letter_exchange=dlx,
                          retry={"max_attempts": 1, "initial_delay": 0.1, "max_delay": 0.1},
                          backend={"url": b.url, "ca": other["ca"], "timeout": 2})])
            self.publish(q_ok, "secure")
            self.publish(q_bad, "mitm", message_id="m-mitm")
            self.assertEqual([r.body for r in b.wait_for(1)], [b"secure"], w.log())
            (_, p, _), = self.drain(dead, 1)
            self.assertEqual(p.message_id, "m-mitm")
            self.assertIn("certificate", p.headers["x-warren-error"].lower())
            self.assertEqual(len(b.received()), 1)

    def test_client_certificate(self):
        tmp = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"warren-tls-{uid()}")
        server, client = make_cert(tmp, "server"), make_cert(tmp, "client")
        self.addCleanup(lambda: __import__("shutil").rmtree(tmp, ignore_errors=True))
        with Backend(tls=server, client_ca=client["ca"]) as b:
            q_cert, q_nocert = self.queue("mtls"), self.queue("mtls-none")
            dlx, dead = self.dead_letters()
            self.start([
                forwarder("mtls", q_cert, b.url, backend={"url": b.url, "ca": server["ca"], "cert": client["cert"],
                                                          "key": client["key"], "timeout": 2}),
                forwarder("nocert", q_nocert, b.url, dead_letter_exchange=dlx,
                          retry={"max_attempts": 1, "initial_delay": 0.1, "max_delay": 0.1},
                          backend={"url": b.url, "ca": server["ca"], "timeout": 2})])
            self.publish(q_cert, "with cert")
            self.publish(q_nocert, "without", message_id="m-nocert")
            self.assertEqual([r.body for r in b.wait_for(1)], [b"with cert"])
            (_, p, _), = self.drain(dead, 1)
            self.assertEqual(p.message_id, "m-nocert")
            self.assertEqual(len(b.received()), 1)


class BackendOptions(ForwardTest):
    def test_basic_auth_and_timeout(self):
        with Backend() as b:
            b.route("/slow", status=200, delay=2.5)
            q = self.queue("opts")
            dlx, dead = self.dead_letters()
            w = self.start([forwarder("opts", q, b.url, dead_letter_exchange=dlx,
                                      retry={"max_attempts": 2, "initial_delay": 0.05, "max_delay": 0.05},
                                      backend={"url": b.url, "username": "svc", "password": "s:cret",
                                               "timeout": 1.0})])  # room for a loaded machine
            self.publish(q, "fast", {"x-http-path": "/fast"})
            self.publish(q, "slow", {"x-http-path": "/slow"}, message_id="m-slow")
            (fast,) = b.wait_for(1, "/fast")
            self.assertEqual(fast.headers["Authorization"],
                             "Basic " + base64.b64encode(b"svc:s:cret").decode())
            (_, p, _), = self.drain(dead, 1)
            self.assertEqual(p.message_id, "m-slow")
            self.assertEqual(p.headers["x-warren-attempts"], 2)
            self.assertIn("timed out", p.headers["x-warren-error"].lower())
            f = self.stats(w)["forwarders"]["opts"]
            self.assertEqual((f["status_error"], f["retried"], f["acked"]), (2, 1, 1))

    def test_requests_of_one_worker_take_nothing_from_each_other(self):
        # Two forwarders in one worker share its easy handles, which keep their options from one
        # request to the next like it: a request must carry its own method, body and
        # credentials, never the previous one's.
        with Backend() as b:
            q_auth, q_anon = self.queue("auth"), self.queue("anon")
            auth = {"url": b.url, "username": "svc", "password": "pw", "timeout": 5}
            self.start([forwarder("auth", q_auth, b.url, backend=auth, prefetch=1),
                        forwarder("anon", q_anon, b.url, prefetch=1)])
            sent = []
            for i, (method, body) in enumerate([("HEAD", ""), ("POST", "p"), ("GET", ""), ("PUT", "u"),
                                                ("GET", "g"), ("DELETE", ""), ("POST", "q"), ("HEAD", "")] * 2):
                q = (q_auth, q_anon)[i % 2]
                sent.append((f"/{q}/{i}", method, body))
                self.publish(q, body, {"x-http-path": f"/{q}/{i}", "x-http-method": method})
                b.wait_for(i + 1)  # one at a time: each request takes the handle the last one left
            got = {r.path: r for r in b.wait_for(len(sent))}
            expected_auth = "Basic " + base64.b64encode(b"svc:pw").decode()
            for path, method, body in sent:
                r = got[path]
                self.assertEqual((r.method, r.body.decode()), (method, body), path)
                self.assertEqual(r.headers.get("Authorization"), expected_auth if q_auth in path else None, path)

    def test_sigterm_lets_in_flight_requests_finish(self):
        with Backend() as b:
            b.route("/", status=200, delay=1.0)
            q = self.queue("inflight")
            w = self.start([forwarder("inf", q, b.url, prefetch=2)])
            for i in range(2):
                self.publish(q, f"i-{i}")
            self.assertTrue(wait_for(lambda: len(b.received()) >= 2, 5))
            self.assertEqual(w.stop(), 0)
            self.assertIn("drained", w.log())
            # both finished and were acked: nothing went back to the queue
            self.assertEqual(self.broker.channel.queue_declare(q, passive=True).method.message_count, 0)
            self.assertEqual(len(b.received()), 2)


class NginxTarget(ForwardTest):
    """nginx (`return 200`) as the backend: keep-alive connections are reused."""

    def nginx(self, keepalive="keepalive_requests 100000;"):
        """nginx answering 200 on a free port, with these keep-alive directives: (port, access log
        path). Its access log names each request's connection."""
        if not shutil.which("nginx") and not os.path.exists("/usr/sbin/nginx"):
            self.skipTest("nginx not installed")
        d = tempfile.mkdtemp(prefix="warren-nginx-")
        self.addCleanup(lambda: shutil.rmtree(d, ignore_errors=True))
        port = free_ports(1)[0]
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(NGINX_CONF.format(dir=d, port=port, keepalive=keepalive))
        nginx = subprocess.Popen(["/usr/sbin/nginx", "-p", d, "-c", os.path.join(d, "nginx.conf"),
                                  "-e", os.path.join(d, "error.log")], stdin=subprocess.DEVNULL)
        self.addCleanup(lambda: (nginx.terminate(), nginx.wait(10)))
        self.assertTrue(wait_for(lambda: port_open(port), 5))
        return port, os.path.join(d, "access.log")

    def forward_worker(self, w):
        return [x["pid"] for x in w.worker_pids() if x["kind"] == "forward"][0]

    def publish_and_wait(self, w, q, name, first, n, timeout=15):
        for i in range(first, first + n):
            self.publish(q, f"n-{i}", {"x-http-path": f"/n/{i}"})
        self.assertTrue(wait_for(lambda: self.stats(w)["forwarders"][name]["acked"] == first + n, timeout),
                        w.log())

    def test_keep_alive_reuse(self):
        port, access_log = self.nginx()
        q = self.queue("nginx")
        w = self.start([forwarder("ngx", q, f"http://127.0.0.1:{port}/app", prefetch=8)])
        n = 200
        self.publish_and_wait(w, q, "ngx", 0, n)
        with open(access_log) as f:
            lines = [line.split() for line in f if line.strip()]
        self.assertEqual(len(lines), n)
        connections = {line[0] for line in lines}
        self.assertTrue(all(line[2].startswith("/app/n/") for line in lines))
        # at most one connection per message in flight (prefetch 8), each used many times
        self.assertLessEqual(len(connections), 8, connections)

    def test_a_reused_connection_is_not_registered_again(self):
        # A keep-alive connection goes back to curl's cache after each answer and is taken again
        # for the next request: its interest stays with epoll meanwhile, so a request costs no
        # epoll_ctl on the backend's sockets (it cost 2: an EPOLL_CTL_DEL and an
        # EPOLL_CTL_ADD each). The broker link's own (acks turning EPOLLOUT on) are not
        # counted.
        if not shutil.which("strace"):
            self.skipTest("strace not installed")
        # A backend slower than the round trip: each answer comes through epoll, not at once.
        backend = Backend().start()
        self.addCleanup(backend.stop)
        backend.route("/", delay=0.005)
        q = self.queue("slow")
        w = self.start([forwarder("ngx", q, f"{backend.url}/app", prefetch=8)])
        self.publish_and_wait(w, q, "ngx", 0, 50)  # the connections are open
        out = os.path.join(w.dir, "strace.txt")
        strace = subprocess.Popen(["strace", "-f", "-e", "trace=epoll_ctl,sendto", "-o", out,
                                   "-p", str(self.forward_worker(w))], stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: strace.poll() is None and (strace.kill(), strace.wait()))
        time.sleep(0.5)  # attached
        self.publish_and_wait(w, q, "ngx", 50, 300, timeout=30)
        strace.send_signal(signal.SIGINT)
        strace.wait(10)
        with open(out) as f:
            calls = [re.search(r"(sendto|epoll_ctl)\((?:\d+, \w+, )?(\d+), (.{4})", line) for line in f]
        requests = [c for c in calls if c and c[1] == "sendto" and c[3] == '"POS']
        backend_fds = {c[2] for c in requests}
        interest_changes = [c[0] for c in calls if c and c[1] == "epoll_ctl" and c[2] in backend_fds]
        self.assertGreaterEqual(len(requests), 300, "strace saw fewer requests than were forwarded")
        self.assertLess(len(interest_changes), 0.1 * len(requests), interest_changes[:20])

    def test_connections_the_backend_closes_cost_nothing_and_lose_nothing(self):
        # nginx closes a connection after its 3rd request (Connection: close) and an idle one
        # after 1 s, without a word: curl closes the first at once and finds the second dead when
        # it next wants it; the sockets' numbers come back for new connections. No message may
        # hang on a number epoll no longer watches, and an idle connection's EOF must not spin the
        # worker.
        port, access_log = self.nginx("keepalive_requests 3; keepalive_timeout 1s;")
        q = self.queue("nginx")
        w = self.start([forwarder("ngx", q, f"http://127.0.0.1:{port}/app", prefetch=8)])
        pid = self.forward_worker(w)
        for round in range(3):
            self.publish_and_wait(w, q, "ngx", 60 * round, 60)
            time.sleep(1.5)  # nginx has closed every idle connection
            before = cpu_seconds(pid)
            time.sleep(1)
            busy = cpu_seconds(pid) - before
            self.assertLess(busy, 0.2, f"forward worker used {busy:.2f} s CPU in 1 s while idle: busy loop")
        with open(access_log) as f:
            self.assertEqual(sum(1 for line in f if line.strip()), 180)


class NothingLost(ForwardTest):
    """A message is acked only after the backend's 2xx, or once its reply or dead-letter copy was
    confirmed and routed; otherwise it ends in a dead-letter queue or stays in its queue."""

    def own_dlx_queue(self):
        """A queue argument x-dead-letter-exchange and the queue it leads to: (arguments, dead queue)."""
        x, dead = self.dead_letters()
        return {"x-dead-letter-exchange": x}, dead

    def unbound_exchange(self):
        x = f"nobinding-{uid()}"
        self.broker.declare_exchange(x, "direct")
        self.addCleanup(lambda: self.broker.channel.exchange_delete(x))
        return x

    def oslo_forwarder(self, name, url, **kw):
        topic = f"warren_lost_{uid()}"
        self.queues += [topic, topic + ".s1"]
        f = {"name": name, "format": "oslo", "vhost": "/", "backend": {"url": url, "timeout": 2},
             "oslo": {"exchange": f"osx-{uid()}", "topic": topic, "server": "s1"}, "prefetch": 4,
             "retry": {"max_attempts": 1, "initial_delay": 0.1, "max_delay": 0.1}}
        f.update(kw)
        return f

    def test_unroutable_reply_is_not_acked_into_the_void(self):
        with Backend() as b:
            b.route("/gone", status=404, body="nope")
            b.route("/broken", status=409, body="busy")
            args, own_dead = self.own_dlx_queue()
            dlx, dead = self.dead_letters()
            q = self.queue("noreplyq")
            osl = self.oslo_forwarder("osl", b.url, dead_letter_exchange=dlx)
            w = Warrend(ports=1, extra={"forwarders": [
                forwarder("raw", q, b.url, declare={"queue": {"durable": True, "arguments": args}}), osl]})
            w.start()
            self.addCleanup(w.cleanup)
            topic = osl["oslo"]["topic"]
            self.assertTrue(wait_for(lambda: self.consumers(q) and self.consumers(topic), 15), w.log())
            nowhere = f"no-such-queue-{uid()}"
            self.publish(q, "raw", {"x-http-path": "/gone"}, message_id="m-raw", reply_to=nowhere)
            call = {"method": "broken", "args": {}, "_msg_id": uid(), "_reply_q": nowhere, "_unique_id": uid()}
            self.broker.publish(osl["oslo"]["exchange"], topic,
                                json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(call)}),
                                pika.BasicProperties(message_id="m-oslo", content_type="application/json"))
            got = self.drain(own_dead, 1)
            self.assertEqual([p.message_id for _, p, _ in got], ["m-raw"], w.log())
            got = self.drain(dead, 1)
            self.assertEqual([p.message_id for _, p, _ in got], ["m-oslo"], w.log())
            self.assertEqual(got[0][1].headers["x-warren-status"], 409)
            stats = self.stats(w)["forwarders"]
            self.assertEqual((stats["raw"]["reply_failed"], stats["raw"]["acked"], stats["raw"]["dead_lettered"]),
                             (1, 0, 1))
            self.assertEqual((stats["osl"]["reply_failed"], stats["osl"]["acked"], stats["osl"]["dead_lettered"]),
                             (1, 0, 1))
            self.assertIn("not delivered", w.log())

    def test_dead_letter_exchange_without_binding_loses_nothing(self):
        with Backend() as b:
            b.route("/", status=400, body="bad")
            args, own_dead = self.own_dlx_queue()
            unbound = self.unbound_exchange()
            q_own, q_kept = self.queue("dl-own"), self.queue("dl-kept")
            w = self.start([
                forwarder("own", q_own, b.url, dead_letter_exchange=unbound,
                          declare={"queue": {"durable": True, "arguments": args}}),
                forwarder("kept", q_kept, b.url, dead_letter_exchange=unbound,
                          retry={"max_attempts": 3, "initial_delay": 0.1, "max_delay": 0.3})])
            self.publish(q_own, "one", message_id="m-own")
            self.publish(q_kept, "two", message_id="m-kept")
            # the queue's own dead-letter exchange catches what dead_letter_exchange did not route
            got = self.drain(own_dead, 1)
            self.assertEqual([p.message_id for _, p, _ in got], ["m-own"], w.log())
            # no own DLX: the message stays in its queue (unacked) and its dead letter is tried again
            self.assertTrue(wait_for(lambda: self.stats(w)["forwarders"]["kept"]["dead_letter_failed"] >= 2, 10),
                            w.log())
            self.assertEqual(self.stats(w)["forwarders"]["kept"]["acked"], 0)
            late = self.queue("late")
            self.broker.declare_queue(late)
            self.broker.bind(late, unbound, q_kept)
            (_, p, body), = self.drain(late, 1)
            self.assertEqual((p.message_id, body, p.headers["x-warren-status"]), ("m-kept", b"two", 400))
            self.assertEqual(len(b.received()), 2)  # the backend was not asked again
            self.assertTrue(wait_for(lambda: self.stats(w)["forwarders"]["kept"]["dead_lettered"] == 1, 5))
            self.assertIn("stays in the queue", w.log())

    def test_4xx_answered_to_reply_to_is_acked_not_dead_lettered(self):
        with Backend() as b:
            b.route("/", status=404, body='{"missing": true}', content_type="application/json")
            q_raw, q_vcd, replies = self.queue("a404"), self.queue("v404"), self.queue("replies")
            self.broker.declare_queue(replies)
            dlx, dead = self.dead_letters()
            w = self.start([forwarder("r404", q_raw, b.url, dead_letter_exchange=dlx),
                            forwarder("v404", q_vcd, b.url, dead_letter_exchange=dlx, format="vcd",
                                      vcd={"extension": "example1"})])
            self.publish(q_raw, "x", {"x-http-path": "/nothing/here"}, reply_to=replies, correlation_id="c-raw")
            rid, body = vcd_message("/api/example1/nothing", [], "urn:vcloud:org:any")
            self.publish(q_vcd, body, reply_to=replies, correlation_id="c-vcd")
            answers = {p.correlation_id: (p, body) for _, p, body in self.drain(replies, 2)}
            self.assertEqual(set(answers), {"c-raw", "c-vcd"}, w.log())
            self.assertEqual(answers["c-raw"][0].headers["x-http-status"], 404)
            self.assertEqual(json.loads(answers["c-vcd"][1])["statusCode"], 404)
            for name in ("r404", "v404"):
                self.assertTrue(wait_for(lambda: self.stats(w)["forwarders"][name]["acked"] == 1, 5), w.log())
            self.assertIsNone(self.broker.get(dead, timeout=0.5))
            for name in ("r404", "v404"):
                f = self.stats(w)["forwarders"][name]
                self.assertEqual((f["acked"], f["dead_lettered"], f["replied"], f["status_4xx"]), (1, 0, 1, 1))
            self.assertEqual(len(b.received()), 2)


class HostileMessages(ForwardTest):
    def forward_pids(self, w):
        return sorted(x["pid"] for x in w.worker_pids() if x["kind"] == "forward")

    def test_poison_path_is_dead_lettered_and_the_worker_lives(self):
        with Backend() as b:
            q, q_big = self.queue("poison"), self.queue("poison-big")
            dlx, dead = self.dead_letters()
            rewrite = {"from": "^/api/(.*)$", "to": "/$1"}
            w = self.start([forwarder("p", q, b.url, dead_letter_exchange=dlx, rewrite=rewrite),
                            # a cap raised past the path: the pattern itself must survive it
                            forwarder("pbig", q_big, b.url, dead_letter_exchange=dlx, rewrite=rewrite,
                                      max_path=200000)])
            pids = self.forward_pids(w)
            poison = "/api/" + "a" * 100000
            self.publish(q, "poison", {"x-http-path": poison}, message_id="m-poison")
            self.publish(q, "after", {"x-http-path": "/api/ok"}, message_id="m-after")
            # (60 kB: the test backend answers 414 past 64 kB)
            self.publish(q_big, "big", {"x-http-path": "/api/" + "a" * 60000}, message_id="m-big")
            got = self.drain(dead, 1)
            self.assertEqual([p.message_id for _, p, _ in got], ["m-poison"], w.log()[-3000:])
            err = got[0][1].headers["x-warren-error"]
            self.assertIn("forwarders[].max_path", err)
            self.assertIn("100005 bytes", err)
            self.assertTrue(b.wait_for(1, "/ok"), w.log()[-3000:])
            self.assertTrue(wait_for(lambda: len(b.received("/aaaa")) == 1, 10), w.log()[-3000:])
            self.assertEqual(b.received("/aaaa")[0].path, "/" + "a" * 60000)
            self.assertEqual(self.forward_pids(w), pids)
            self.assertIsNone(self.broker.get(dead, timeout=0.3))
            self.assertEqual(self.stats(w)["forwarders"]["p"]["invalid"], 1)

    def test_deeply_nested_vcd_and_oslo_bodies_are_dead_lettered(self):
        with Backend() as b:
            q = self.queue("deep")
            dlx, dead = self.dead_letters()
            w = self.start([forwarder("deep", q, b.url, dead_letter_exchange=dlx, format="vcd",
                                      vcd={"extension": "example1"})])
            pids = self.forward_pids(w)
            deep = "[" * 100000 + "]" * 100000
            body = '[{"id": %s, "method": "GET", "requestUri": "/api/example1/x"}, {}]' % deep
            self.publish(q, body, message_id="m-deep")
            rid, ok = vcd_message("/api/example1/fine", [], "urn:vcloud:org:any")
            self.publish(q, ok, message_id="m-fine")
            (_, p, _), = self.drain(dead, 1)
            self.assertEqual(p.message_id, "m-deep", w.log()[-3000:])
            self.assertIn("deeper than 128", p.headers["x-warren-error"])
            self.assertTrue(b.wait_for(1, "/api/example1/fine"), w.log()[-3000:])
            self.assertEqual(self.forward_pids(w), pids)


class BackendCredentials(ForwardTest):
    """backend.url with user:password@: the password shows nowhere, and no message can send the
    request (with those credentials) to another host."""
    PASSWORD = "s3cr3t-pw"

    def test_failures_never_show_the_password(self):
        with Backend() as slow:
            slow.route("/", status=200, delay=2)
            closed = free_ports(1)[0]
            q_down, q_slow, replies = self.queue("cred-down"), self.queue("cred-slow"), self.queue("replies")
            self.broker.declare_queue(replies)
            dlx, dead = self.dead_letters()
            one_try = {"max_attempts": 1, "initial_delay": 0.1, "max_delay": 0.1}
            w = self.start([
                forwarder("down", q_down, f"http://svc:{self.PASSWORD}@127.0.0.1:{closed}/api",
                          dead_letter_exchange=dlx, retry=one_try),
                forwarder("slow", q_slow, "x", dead_letter_exchange=dlx, retry=one_try,
                          backend={"url": f"http://svc:{self.PASSWORD}@127.0.0.1:{slow.port}/api", "timeout": 0.5}),
            ])
            for q in (q_down, q_slow):
                self.publish(q, "dl", message_id=f"dl-{q}")
                self.publish(q, "reply", message_id=f"r-{q}", reply_to=replies, correlation_id=f"c-{q}")
            dead_msgs = self.drain(dead, 2)
            answers = self.drain(replies, 2)
            self.assertEqual(len(dead_msgs), 2, w.log())
            self.assertEqual(len(answers), 2, w.log())
            for _, p, _ in dead_msgs:
                self.assertIn("127.0.0.1", p.headers["x-warren-error"])  # still says where it failed
                self.assertNotIn(self.PASSWORD, json.dumps(p.headers))
            for _, p, body in answers:
                self.assertIn(p.headers["x-http-status"], (503, 504))
                self.assertNotIn(self.PASSWORD, body.decode())
            _, _, stats = w.request("GET", 0, "/stats")
            self.assertNotIn(self.PASSWORD, stats.decode())
            self.assertNotIn(self.PASSWORD, w.log())
            # the credentials still reach their own backend
            self.assertEqual(slow.received()[0].headers["Authorization"],
                             "Basic " + base64.b64encode(f"svc:{self.PASSWORD}".encode()).decode())

    def test_hostile_paths_never_reach_another_host(self):
        with Backend() as good, Backend() as evil:
            q_raw, q_vcd = self.queue("hostile"), self.queue("hostile-vcd")
            dlx, dead = self.dead_letters()
            w = self.start([
                forwarder("hraw", q_raw, "x", dead_letter_exchange=dlx, rewrite={"from": "^/api/x/", "to": ""},
                          backend={"url": good.url, "username": "svc", "password": self.PASSWORD, "timeout": 2},
                          retry={"max_attempts": 1, "initial_delay": 0.1, "max_delay": 0.1}),
                forwarder("hvcd", q_vcd, good.url, dead_letter_exchange=dlx, format="vcd",
                          rewrite={"from": "^/api/example1/", "to": ""}, vcd={"extension": "example1"},
                          retry={"max_attempts": 1, "initial_delay": 0.1, "max_delay": 0.1})])
            e = f"127.0.0.1:{evil.port}"
            hostile = [f"/api/x/@{e}/p", f"/api/x//{e}/p", f"/api/x/\\{e}/p", f"/api/x/%2F%2F{e}/p",
                       f"/api/x/http://{e}/p", f"/api/x/@{e}?q=1", f"/api/x/a\r\nHost: {e}"]
            for i, path in enumerate(hostile):
                self.publish(q_raw, "h", {"x-http-path": path}, message_id=f"raw-{i}")
            for i, uri in enumerate([f"/api/example1/@{e}/p", f"http://{e}/api/example1/@{e}/p"]):
                _, body = vcd_message(uri, [], "urn:vcloud:org:any")
                self.publish(q_vcd, body, message_id=f"vcd-{i}")
            self.publish(q_raw, "fine", {"x-http-path": "/other/fine"}, message_id="fine")
            self.assertTrue(good.wait_for(1, "/other/fine"), w.log())
            # every message is accounted for: forwarded to the good backend or dead-lettered
            n = len(hostile) + 2 + 1
            self.assertTrue(wait_for(lambda: sum(self.stats(w)["forwarders"][f]["acked"] +
                                                 self.stats(w)["forwarders"][f]["dead_lettered"]
                                                 for f in ("hraw", "hvcd")) == n, 10), w.log())
            self.assertEqual(evil.received(), [])
            for r in good.received():
                self.assertTrue(r.path.startswith("/"), r.path)




NGINX_CONF = """daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
events {{ worker_connections 256; }}
http {{
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fcgi;
  uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  log_format conn '$connection $connection_requests $request_uri';
  access_log {dir}/access.log conn;
  {keepalive}
  server {{ listen 127.0.0.1:{port}; location / {{ return 200 "ok"; }} }}
}}
"""


def port_open(port):
    s = socket.socket()
    try:
        s.settimeout(0.2)
        s.connect(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


if __name__ == "__main__":
    unittest.main()
