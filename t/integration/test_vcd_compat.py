"""warren in vcdextproxy's place: vCD 10's request messages, a backend written the way
vcdextproxy's users wrote theirs, and the replies vCD gets back, on a real broker.

vcdextproxy (lrivallain/vcdextproxy) consumes vCD's API extension messages and calls a REST
backend with the request's own headers plus org_id and user_id (the bare ids) and, with
backend.forward_rights, user_rights; it answers every request once: the backend's answer, or
504 (timeout), 503 (connection error), 502 (other transport error), 405 (a method it cannot
send), 403 (a failed check).
"""
import base64
import gzip
import json
import socket
import socketserver
import threading
import time
import unittest
import uuid
import wsgiref.simple_server

import pika

from backend import Backend
from harness import free_ports, wait_for
from test_forward import ForwardTest, forwarder, uid

ORG = "1d0e5d2f-0b1a-4c7e-9a58-3f5c2d0a7e11"
USER = "8f9c0b2e-7c2d-4a36-b0a4-5e1f3d6c9a20"
RIGHT_VIEW = "urn:vcloud:right:0b6b8e5c-1b2f-4bd5-8e0a-9f8d7c6b5a41"
RIGHT_OTHER = "urn:vcloud:right:3c2a1b0f-9e8d-4c7b-a6f5-e4d3c2b1a098"
BACKEND_AUTH = ("rest_username", "rest-s3cret")
TOKEN = "3f1c4a2e9b7d4e0c8a6f2b1d5e9c7a3b"


def vcd10_request(method, uri, query=None, body=b"", rights=(RIGHT_VIEW,), org=f"urn:vcloud:org:{ORG}",
                  user=f"urn:vcloud:user:{USER}", extra_headers=None):
    """A request message body as vCD 10 sends it: [request, context], the body base64, the
    request's headers with the user's token (x-vcloud-authorization and Bearer): (id, body)."""
    headers = {"Host": "vcd.example.com", "Accept": "application/json;version=34.0",
               "Accept-Encoding": "gzip, deflate, br", "User-Agent": "vcd-ui/10.1",
               "x-vcloud-authorization": TOKEN, "Authorization": f"Bearer {TOKEN}",
               "X-VMWARE-VCLOUD-TENANT-CONTEXT": ORG, **(extra_headers or {})}
    if body:
        headers.update({"Content-Type": "application/json", "Content-Length": str(len(body))})
    request = {"id": str(uuid.uuid4()), "scheme": "https", "protocol": "HTTP/1.1", "method": method,
               "requestUri": uri, "queryString": query, "remoteAddr": "192.0.2.10",
               "remotePort": 51234, "localAddr": "192.0.2.1", "localPort": 443, "request": True,
               "headers": headers, "body": base64.b64encode(body).decode()}
    context = {"user": user, "org": org, "rights": list(rights)}
    return request["id"], json.dumps([request, context])


class VcdextproxyStyleBackend:
    """A WSGI backend written for vcdextproxy: it requires its Basic credentials (vcdextproxy's
    backend.auth), finds the tenant by the bare org_id, logs the user by the bare user_id,
    checks the user's token header and the rights in user_rights, and compresses what it sends
    when asked to (as Flask-Compress does)."""

    def __init__(self):
        self.tenants = {ORG: {"vms": {"vm-1": {"name": "web"}}}}
        self.calls = []  # (method, path, environ's HTTP_* entries)
        self.lock = threading.Lock()

    def app(self, environ, start_response):
        method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
        with self.lock:
            self.calls.append((method, path, {k: v for k, v in environ.items() if k.startswith("HTTP_")}))
        status, doc = self.handle(environ, method, path)
        body = b"" if doc is None else json.dumps(doc).encode()
        headers = [("Content-Type", "application/json")] if body else []
        if body and "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            body = gzip.compress(body)
            headers.append(("Content-Encoding", "gzip"))
        start_response(status, headers + [("Content-Length", str(len(body)))])
        return [body]

    def handle(self, environ, method, path):
        expected = "Basic " + base64.b64encode(":".join(BACKEND_AUTH).encode()).decode()
        if environ.get("HTTP_AUTHORIZATION") != expected:
            return "401 Unauthorized", {"error": "backend credentials wanted"}
        if environ.get("HTTP_X_VCLOUD_AUTHORIZATION") != TOKEN:
            return "401 Unauthorized", {"error": "no vCD token"}
        tenant = self.tenants.get(environ.get("HTTP_ORG_ID"))
        if tenant is None:
            return "404 Not Found", {"error": f"no tenant {environ.get('HTTP_ORG_ID')}"}
        if RIGHT_VIEW not in json.loads(environ.get("HTTP_USER_RIGHTS", "[]")):
            return "403 Forbidden", {"error": "right missing"}
        vms, name = tenant["vms"], path.rsplit("/", 1)[-1]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        sent = json.loads(environ["wsgi.input"].read(length)) if length else None
        if method == "GET" and path == "/vms":
            return "200 OK", {"vms": sorted(vms), "by": environ.get("HTTP_USER_ID"),
                              "query": environ.get("QUERY_STRING")}
        if method == "POST" and path == "/vms":
            vms[sent["id"]] = {"name": sent["name"]}
            return "201 Created", {"created": sent["id"], "by": environ.get("HTTP_USER_ID")}
        if method == "PUT" and name in vms:
            vms[name].update(sent)
            return "200 OK", vms[name]
        if method == "DELETE" and name in vms:
            del vms[name]
            return "204 No Content", None
        return "404 Not Found", {"error": f"no {path}"}

    def __enter__(self):
        class Server(socketserver.ThreadingMixIn, wsgiref.simple_server.WSGIServer):
            daemon_threads = True

        class Quiet(wsgiref.simple_server.WSGIRequestHandler):
            def log_message(self, *args):
                pass

        self.server = wsgiref.simple_server.make_server("127.0.0.1", 0, self.app, Server, Quiet)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
        return False


class CutShortBackend:
    """Answers every request with a status line and half the body its Content-Length promises,
    then closes: a transport error that is neither a refusal nor a timeout."""

    def __enter__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()
        return self

    def serve(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            with conn:
                conn.settimeout(2)
                data = b""
                while b"\r\n\r\n" not in data and len(data) < 65536:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 100\r\n\r\n{\"half\":")

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()
        return False


class VcdCompat(ForwardTest):
    def vcd_reply_queue(self):
        """vCD's reply exchange (direct) and a queue bound to it with the routing key
        reply_to: (exchange, routing key, queue)."""
        exchange, queue, key = f"vcdreply-{uid()}", self.queue("vcdreplies"), f"rk-{uid()}"
        self.broker.declare_exchange(exchange, "direct", durable=True)
        self.addCleanup(lambda: self.broker.channel.exchange_delete(exchange))
        self.broker.declare_queue(queue)
        self.broker.bind(queue, exchange, key)
        return exchange, key, queue

    def ask(self, queue, body, reply_exchange, reply_key, correlation_id):
        """Publishes a request as vCD does: reply_to, correlation_id, messageType and
        replyToExchange headers."""
        self.publish(queue, body, {"messageType": "ProcessHttpRequest", "replyToExchange": reply_exchange},
                     reply_to=reply_key, correlation_id=correlation_id)

    def answers(self, replies, count, w, timeout=15):
        """The replies by correlation id: {correlation_id: (reply document, decoded body)}."""
        got = {}
        for _, props, body in self.drain(replies, count, timeout):
            doc = json.loads(body)
            self.assertIs(doc["request"], False)
            self.assertEqual(props.content_type, "application/json")
            got[props.correlation_id] = (doc, base64.b64decode(doc["body"]))
        self.assertEqual(len(got), count, w.log())
        return got

    def vcd_forwarder(self, name, queue, url, **kw):
        vcd = {"extension": "example1", **kw.pop("vcd", {})}
        return forwarder(name, queue, url, format="vcd", rewrite={"from": "^/api/example1", "to": ""},
                         vcd=vcd, **kw)

    def test_a_vcdextproxy_backend_works_unchanged(self):
        with VcdextproxyStyleBackend() as b:
            q = self.queue("example1")
            rx, key, replies = self.vcd_reply_queue()
            w = self.start([self.vcd_forwarder(
                "example1", q, b.url, vcd={"forward_rights": True},
                backend={"url": b.url, "timeout": 5, "username": BACKEND_AUTH[0], "password": BACKEND_AUTH[1]})])
            # (name, method, URI, query, body, status, answer); the list call also carries a
            # tenant's forged org_id and User-Id: a WSGI server would join them to warren's
            calls = [("list", "GET", "/api/example1/vms", "page=1", b"", 200,
                      {"vms": ["vm-1"], "by": USER, "query": "page=1"}),
                     ("create", "POST", "/api/example1/vms", None, b'{"id": "vm-2", "name": "db"}', 201,
                      {"created": "vm-2", "by": USER}),
                     ("update", "PUT", "/api/example1/vms/vm-1", None, b'{"name": "www"}', 200, {"name": "www"}),
                     ("delete", "DELETE", "/api/example1/vms/vm-2", None, b"", 204, None)]
            forged = {"org_id": "another-tenant", "User-Id": "root"}
            for name, method, uri, query, body, status, answer in calls:  # in order: each sees the last
                rid, message = vcd10_request(method, uri, query, body, extra_headers=forged if name == "list" else {})
                self.ask(q, message, rx, key, f"c-{name}")
                doc, payload = self.answers(replies, 1, w)[f"c-{name}"]
                self.assertEqual((doc["id"], doc["statusCode"]), (rid, status), payload)
                if answer is None:
                    self.assertEqual(payload, b"")
                else:
                    self.assertEqual(doc["headers"]["Content-Type"], "application/json")
                    self.assertEqual(json.loads(payload), answer)
            self.assertEqual(b.tenants[ORG]["vms"], {"vm-1": {"name": "www"}})
            self.assertEqual(len(b.calls), len(calls))
            for method, path, env in b.calls:
                self.assertEqual((env["HTTP_ORG_ID"], env["HTTP_USER_ID"]), (ORG, USER))
                self.assertEqual(json.loads(env["HTTP_USER_RIGHTS"]), [RIGHT_VIEW])
                self.assertEqual(env["HTTP_X_VMWARE_VCLOUD_TENANT_CONTEXT"], ORG)

    def test_a_redirect_is_followed_as_vcdextproxy_follows_it(self):
        """vcdextproxy's HTTP library follows redirects: a Flask route declared with a trailing
        slash answers 308 to the URI without it, and its users never saw that answer (nor the
        backend's own address in its Location)."""
        with Backend() as b:
            b.route("/vms", status=308, body="", location="/vms/")
            b.route("/vms/", status=200, body='{"vms": []}', content_type="application/json")
            b.route("/loop", status=302, body="", location="/loop")
            q = self.queue("example1")
            rx, key, replies = self.vcd_reply_queue()
            w = self.start([self.vcd_forwarder("example1", q, b.url, backend={"url": b.url, "timeout": 5})])
            for method, uri, body, status in (("GET", "/api/example1/vms", b"", 200),
                                              ("POST", "/api/example1/vms", b'{"id": "x"}', 200),
                                              ("GET", "/api/example1/loop", b"", 502)):
                rid, message = vcd10_request(method, uri, body=body)
                self.ask(q, message, rx, key, f"c-{method}-{uri}")
                doc, payload = self.answers(replies, 1, w)[f"c-{method}-{uri}"]
                self.assertEqual((doc["id"], doc["statusCode"]), (rid, status), payload)
                if status == 200:
                    self.assertEqual(json.loads(payload), {"vms": []})
            posted = [r for r in b.received("/vms/") if r.method == "POST"]
            self.assertEqual([r.body for r in posted], [b'{"id": "x"}'], "308 keeps the method and body")

    def test_a_redirect_to_another_origin_is_not_followed(self):
        """A backend that sends vCD's users elsewhere (another port is another origin) must
        not hand that place the user's session token, its Bearer, its cookies or the backend's
        own Basic credentials."""
        with Backend() as b, Backend() as elsewhere:
            b.route("/away", status=307, body="", location=f"{elsewhere.url}/landing")
            b.route("/hop", status=308, body="", location="/away")  # same origin first, then away
            b.route("/made", status=201, body='{"id": "vm-9"}', content_type="application/json",
                    location=f"{elsewhere.url}/vms/vm-9")
            elsewhere.route("/landing", status=200, body='{"landed": true}', content_type="application/json")
            q = self.queue("example1")
            rx, key, replies = self.vcd_reply_queue()
            w = self.start([self.vcd_forwarder(
                "example1", q, b.url,
                backend={"url": b.url, "timeout": 5, "username": BACKEND_AUTH[0], "password": BACKEND_AUTH[1]})])
            rid, message = vcd10_request("GET", "/api/example1/away", extra_headers={"Cookie": "vcloud_session=s3cret"})
            self.ask(q, message, rx, key, "away")
            doc, payload = self.answers(replies, 1, w)["away"]
            for r in elsewhere.received("/landing"):
                self.fail(f"followed to another origin with {dict(r.headers)}")
            # curl would drop Authorization and Cookie but not x-vcloud-authorization: such a
            # redirect is not followed. vCD gets a 502 (no backend address in it); the log says why.
            self.assertEqual((doc["id"], doc["statusCode"]), (rid, 502), payload)
            self.assertTrue(wait_for(lambda: f"redirect to another origin not followed ({elsewhere.url}/landing)"
                                     in w.log(), 5), w.log())
            # The second hop of a chain is checked as the first is.
            rid, message = vcd10_request("GET", "/api/example1/hop")
            self.ask(q, message, rx, key, "hop")
            doc, payload = self.answers(replies, 1, w)["hop"]
            self.assertEqual((doc["id"], doc["statusCode"]), (rid, 502), payload)
            self.assertEqual(len(b.received("/away")), 2, "the same-origin hop was followed")
            self.assertEqual(elsewhere.received("/landing"), [])
            # A Location that is no redirect (201 Created) is the answer, whatever its origin.
            rid, message = vcd10_request("POST", "/api/example1/made", body=b"{}")
            self.ask(q, message, rx, key, "made")
            doc, payload = self.answers(replies, 1, w)["made"]
            self.assertEqual((doc["id"], doc["statusCode"]), (rid, 201), payload)
            self.assertEqual(json.loads(payload), {"id": "vm-9"})

    def test_failures_are_answered_as_vcdextproxy_answers_them(self):
        """Every failure is a reply to vCD, after one attempt (the retry policy allows three):
        vCD waits, and a POST retried behind its back would run twice."""
        with Backend() as b, CutShortBackend() as cut:
            b.route("/slow", status=200, delay=3)
            b.route("/broken", status=500, body='{"trace": "KeyError"}', content_type="application/json")
            rx, key, replies = self.vcd_reply_queue()
            queues = {n: self.queue(n) for n in ("main", "refused", "cut")}
            retry = {"max_attempts": 3, "initial_delay": 1, "max_delay": 1}
            closed_port = free_ports(1)[0]
            w = self.start([
                self.vcd_forwarder("main", queues["main"], b.url, retry=retry,
                                   backend={"url": b.url, "timeout": 1},
                                   vcd={"required_rights": [RIGHT_VIEW], "allowed_orgs": [f"urn:vcloud:org:{ORG}"]}),
                self.vcd_forwarder("refused", queues["refused"], f"http://127.0.0.1:{closed_port}", retry=retry),
                self.vcd_forwarder("cut", queues["cut"], cut.url, retry=retry)])
            cases = {  # correlation id: (queue, message, status, what the body's message names)
                "timeout": ("main", vcd10_request("GET", "/api/example1/slow"), 504, "backend timed out"),
                "backend-500": ("main", vcd10_request("POST", "/api/example1/broken", body=b"{}"), 500, None),
                "method": ("main", vcd10_request("TRACE", "/api/example1/x"), 405, "TRACE"),
                "right": ("main", vcd10_request("GET", "/api/example1/x", rights=[RIGHT_OTHER]), 403, RIGHT_VIEW),
                "org": ("main", vcd10_request("GET", "/api/example1/x", org="urn:vcloud:org:evil"), 403,
                        "urn:vcloud:org:evil"),
                "refused": ("refused", vcd10_request("GET", "/api/example1/x"), 503, "backend could not be reached"),
                "cut": ("cut", vcd10_request("GET", "/api/example1/x"), 502, "backend gave no usable answer"),
            }
            started = time.monotonic()
            for cid, (q, (_, message), *_) in cases.items():
                self.ask(queues[q], message, rx, key, cid)
            got = self.answers(replies, len(cases), w, timeout=20)
            took = time.monotonic() - started
            for cid, (q, (rid, _), status, names) in cases.items():
                with self.subTest(cid):
                    doc, payload = got[cid]
                    self.assertEqual((doc["id"], doc["statusCode"]), (rid, status), payload)
                    if names:
                        error = json.loads(payload)
                        self.assertEqual(error["majorErrorCode"], status)
                        self.assertIn(names, error["message"])
                    # vCD shows the answer to its tenant: nothing about where the backend is
                    self.assertNotIn(b"127.0.0.1", payload)
            self.assertEqual(json.loads(got["backend-500"][1]), {"trace": "KeyError"})
            self.assertEqual(len(b.received("/broken")), 1)  # not retried
            self.assertEqual(len(b.received("/slow")), 1)
            self.assertEqual(len(b.received("/x")), 0)  # refused before the backend
            self.assertLess(took, 6, "answered after retries")
            self.assertIn(f"backend failed: GET http://127.0.0.1:{closed_port}/x", w.log())
            for name in ("main", "refused", "cut"):
                f = self.stats(w)["forwarders"][name]
                self.assertEqual((f["retried"], f["dead_lettered"]), (0, 0), (name, f))

    def test_a_4xx_reply_is_the_answer_not_a_dead_letter(self):
        """The queue has its own dead-letter exchange (as vcdextproxy's users declare theirs);
        a 4xx answered to vCD, the backend's or warren's own, is acked and never dead-lettered."""
        with Backend() as b:
            b.route("/", status=404, body='{"missing": true}', content_type="application/json")
            rx, key, replies = self.vcd_reply_queue()
            dlx, dead = self.dead_letters()
            q = self.queue("example1")
            w = self.start([self.vcd_forwarder(
                "example1", q, b.url, vcd={"required_rights": [RIGHT_VIEW]},
                declare={"queue": {"durable": True, "arguments": {"x-dead-letter-exchange": dlx}}})])
            cases = {"c-404": (vcd10_request("GET", "/api/example1/nothing"), 404),
                     "c-403": (vcd10_request("GET", "/api/example1/x", rights=[]), 403),
                     "c-405": (vcd10_request("PROPFIND", "/api/example1/x"), 405)}
            for cid, ((_, message), _) in cases.items():
                self.ask(q, message, rx, key, cid)
            got = self.answers(replies, 3, w)
            self.assertEqual({cid: doc["statusCode"] for cid, (doc, _) in got.items()},
                             {cid: status for cid, (_, status) in cases.items()})
            self.assertTrue(wait_for(lambda: self.stats(w)["forwarders"]["example1"]["acked"] == 3, 5), w.log())
            self.assertIsNone(self.broker.get(dead, timeout=0.5))
            self.assertEqual(self.broker.channel.queue_declare(q, passive=True).method.message_count, 0)
            f = self.stats(w)["forwarders"]["example1"]
            self.assertEqual((f["acked"], f["replied"], f["dead_lettered"]), (3, 3, 0))
            self.assertEqual(len(b.received()), 1)


if __name__ == "__main__":
    unittest.main()
