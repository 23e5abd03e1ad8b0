"""Security checks: no secret in logs, stats or error bodies; CR/LF refused in properties and
headers; the control socket serves only its owner and group; workers drop privileges after the
master bound the ports; TLS verification turned off is never silent."""
import base64
import json
import os
import pwd
import stat
import subprocess
import time
import unittest
import uuid

from harness import ROOT, BrokerClient, Warrend
from test_limits import RawClient

BROKER_DIR = os.environ.get("WARREN_BROKER_DIR")
TLS_PORT = os.environ.get("WARREN_BROKER_TLS_PORT")


def broker_ctl(*args):
    return subprocess.run([os.path.join(ROOT, "scripts", "broker"), "ctl", BROKER_DIR, *args],
                          capture_output=True, text=True, timeout=60)


class Secrets(unittest.TestCase):
    @unittest.skipUnless(BROKER_DIR, "needs WARREN_BROKER_DIR (scripts/broker) to add a user")
    def test_no_password_or_authorization_anywhere(self):
        user = f"sec-{uuid.uuid4().hex[:8]}"
        password = f"pw-{uuid.uuid4().hex}"
        config_password = f"cfg-{uuid.uuid4().hex}"
        self.assertEqual(broker_ctl("add_user", user, password).returncode, 0)
        try:
            self.assertEqual(broker_ctl("set_permissions", "-p", "/", user, ".*", ".*", ".*")
                             .returncode, 0)
            queue = f"sec-{uuid.uuid4().hex[:8]}"
            with BrokerClient() as broker:
                broker.declare_queue(queue)
                extra = {"broker": {"password": config_password}}
                with Warrend(extra=extra) as w:
                    bodies = []
                    for pw in (password, password + "x"):  # accepted, then refused
                        token = base64.b64encode(f"{user}:{pw}".encode()).decode()
                        status, _, body = w.request("POST", 0, f"/%2f/amq.default/{queue}",
                                                    body={"body": "m"}, auth=(user, pw))
                        bodies.append(body.decode(errors="replace"))
                        self.assertIn(status, (200, 202, 204, 401, 403), body)
                    status, _, body = w.request("POST", 0, "/%2f/amq.default/" + queue,
                                                body={"body": "m", "app_id": "a\r\nb"},
                                                auth=(user, password))
                    self.assertEqual(status, 400)
                    bodies.append(body.decode())
                    for path in ("/stats", "/metrics", "/nowhere", "/%2f/x"):
                        _, _, body = w.request("GET", 0, path, auth=(user, password))
                        bodies.append(body.decode(errors="replace"))
                    rc, out = w.ctl("stats")
                    bodies.append(out)
                    time.sleep(0.3)  # the refused login's log line
                    log = w.log()
                    self.assertIn(user, log)  # the user is logged; its password never
                    for text in bodies + [log]:
                        for secret in (password, token, config_password,
                                       base64.b64encode(f"{user}:{password}".encode()).decode()):
                            self.assertNotIn(secret, text)
                        self.assertNotIn("authorization:", text.lower())
                broker.delete_queue(queue)
        finally:
            broker_ctl("delete_user", user)


class CrLf(unittest.TestCase):
    def test_property_and_header_values_with_cr_or_lf_are_400(self):
        with Warrend() as w:
            cases = [{"body": "m", "app_id": "a\r\nX-Evil: 1"},
                     {"body": "m", "correlation_id": "a\nb"},
                     {"body": "m", "headers": json.dumps({"h": "a\r\nX-Evil: 1"})},
                     {"body": "m", "headers": json.dumps({"h\n": "a"})}]
            for form in cases:
                status, headers, body = w.request("POST", 0, "/%2f/amq.default/q", body=form,
                                                  auth=("guest", "guest"))
                self.assertEqual(status, 400, form)
                self.assertEqual(headers["Content-Type"], "application/json")
                self.assertIn("CR or LF", json.loads(body)["detail"])
            batch = json.dumps([{"routing_key": "q", "body": "m", "type": "a\r\nb"}])
            status, _, _ = w.request("POST", 0, "/%2f/amq.default", body=batch,
                                     headers={"Content-Type": "application/json"},
                                     auth=("guest", "guest"))
            self.assertEqual(status, 400)


class InvalidUtf8(unittest.TestCase):
    """Bytes that are not UTF-8 in a user name or an exchange name: a JSON error for that one
    request, never a dead worker (nlohmann's dump() throws on them unless told to replace)."""

    def worker_pid(self, w):
        return [x["pid"] for x in w.worker_pids()]

    def test_user_name_of_invalid_utf8_is_401_and_the_worker_lives(self):
        with Warrend() as w:
            before = self.worker_pid(w)
            token = base64.b64encode(b"\xff\xfe:secret").decode()
            for _ in range(3):  # past a snapshot (every second) that lists the user
                status, headers, body = w.request("POST", 0, "/%2f/amq.default/q", body={"body": "m"},
                                                  headers={"Authorization": f"Basic {token}"})
                self.assertEqual(status, 401, body)
                self.assertEqual(headers["Content-Type"], "application/json")
                self.assertIn("error", json.loads(body))
                time.sleep(0.6)
            status, _, body = w.request("GET", 0, "/stats")
            self.assertEqual(status, 200)
            json.loads(body)
            self.assertEqual(w.request("GET", 0, "/healthz")[0], 200)
            self.assertEqual(self.worker_pid(w), before, "a worker was restarted")
            self.assertNotIn("terminate", w.log())

    def test_exchange_name_of_invalid_utf8_is_404_json_and_the_worker_lives(self):
        with Warrend() as w:
            before = self.worker_pid(w)
            for p in ("/%2f/%FF%FE/key", "/%2f/a%C3%28b/key"):
                status, headers, body = w.request("POST", 0, p, body={"body": "m"},
                                                  auth=("guest", "guest"))
                self.assertEqual(status, 404, body)
                self.assertEqual(headers["Content-Type"], "application/json")
                doc = json.loads(body)
                self.assertEqual(doc["error"], "not found")
                self.assertIn("\ufffd", doc["detail"])
            time.sleep(1.2)
            self.assertEqual(w.request("GET", 0, "/healthz")[0], 200)
            self.assertEqual(self.worker_pid(w), before, "a worker was restarted")


def framed(head, body=b""):
    """A publish request to the default exchange, its header lines given raw."""
    return b"POST /%2f/amq.default/{queue} HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n" + body


# Each is framed differently by parsers that follow RFC 9112 to the letter and by lenient ones
# (a proxy in front of warren): a request smuggled in its body must never be served.
HOSTILE_FRAMING = {
    "two different Content-Length": framed(b"Content-Length: 3\r\nContent-Length: 5\r\n", b"abcde"),
    "two equal Content-Length": framed(b"Content-Length: 3\r\nContent-Length: 3\r\n", b"abc"),
    "Content-Length list": framed(b"Content-Length: 3, 3\r\n", b"abc"),
    "space before the colon": framed(b"Content-Length : 3\r\n", b"abc"),
    "tab before the colon": framed(b"Content-Length\t: 3\r\n", b"abc"),
    "space in another name": framed(b"X Evil: 1\r\nContent-Length: 3\r\n", b"abc"),
    "control byte in a name": framed(b"X\x01Evil: 1\r\nContent-Length: 3\r\n", b"abc"),
    "Transfer-Encoding and Content-Length": framed(
        b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n", b"3\r\nabc\r\n0\r\n\r\n"),
    "Transfer-Encoding not chunked": framed(b"Transfer-Encoding: gzip, chunked\r\n",
                                            b"3\r\nabc\r\n0\r\n\r\n"),
    "Transfer-Encoding in two lines": framed(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                                             b"3\r\nabc\r\n0\r\n\r\n"),
    "Content-Length not digits": framed(b"Content-Length: 3x\r\n", b"abc"),
    "Content-Length hex": framed(b"Content-Length: 0x3\r\n", b"abc"),
    "Content-Length negative": framed(b"Content-Length: -3\r\n", b"abc"),
    "Content-Length with a plus": framed(b"Content-Length: +3\r\n", b"abc"),
    "Content-Length empty": framed(b"Content-Length: \r\n", b"abc"),
    "Content-Length huge": framed(b"Content-Length: 99999999999999999999999\r\n", b"abc"),
    # an obs-fold (RFC 9112 section 5.2) makes these framing headers invalid
    "obs-fold of Content-Length": framed(b"Content-Length: 3\r\n 0\r\n", b"abc"),
    "obs-fold of Transfer-Encoding": framed(b"Transfer-Encoding:\r\n chunked\r\n",
                                            b"3\r\nabc\r\n0\r\n\r\n"),
}


@unittest.skipUnless(BROKER_DIR, "needs t/run-tests' broker")
class Framing(unittest.TestCase):
    """RFC 9112 section 6.3: a request whose framing a proxy could read otherwise is answered
    with one 400 and the connection closed; nothing is published, nothing else is served."""

    def test_hostile_framing_is_one_400_and_a_close_and_publishes_nothing(self):
        auth = base64.b64encode(b"guest:guest")
        with BrokerClient() as broker, Warrend() as w:
            queue = broker.declare_queue(f"framing-{uuid.uuid4().hex[:8]}")
            failures = []
            for name, raw in HOSTILE_FRAMING.items():
                c = RawClient(w.ports[0])
                try:
                    # then a request that must not be served: the smuggled one
                    c.send(raw.replace(b"{queue}", queue.encode())
                           .replace(b"Host: x\r\n", b"Host: x\r\nAuthorization: Basic " + auth + b"\r\n") +
                           b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    status, headers, body = c.response()
                    if status != 400 or headers.get("connection") != "close" \
                            or not c.closed_by_peer() or c.buf:
                        failures.append(f"{name}: {status} {headers} {body!r} then {c.buf!r}")
                except (ConnectionError, OSError) as e:
                    failures.append(f"{name}: {e!r}")
                finally:
                    c.close()
            got = broker.get(queue, timeout=0.5)
            self.assertEqual(failures, [], "\n".join(failures))
            self.assertIsNone(got, "a hostile request published a message")
            stats = json.loads(w.request("GET", 0, "/stats")[2])
            self.assertGreaterEqual(stats["limits"]["bad_framing"], len(HOSTILE_FRAMING))
            # a plain request on a plain connection still works
            self.assertEqual(w.request("POST", 0, f"/%2f/amq.default/{queue}", body={"body": "ok"},
                                       auth=("guest", "guest"))[0], 204)
            broker.delete_queue(queue)


class ControlSocket(unittest.TestCase):
    def test_mode_owner_and_peer_credentials(self):
        with Warrend() as w:
            st = os.stat(w.socket_path)
            self.assertTrue(stat.S_ISSOCK(st.st_mode))
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)
            self.assertEqual(st.st_uid, os.geteuid())
            if os.geteuid() != 0:
                self.skipTest("peer-credential check needs root to act as another user")
            # Loosen the file's mode as a careless admin would: the peer check still refuses.
            os.chmod(w.dir, 0o755)
            os.chmod(w.socket_path, 0o666)
            nobody = pwd.getpwnam("nobody")
            proc = subprocess.run([os.path.join(os.environ.get("WARREN_BUILD", ""), "warrenctl"),
                                   "-s", w.socket_path, "stats"], user=nobody.pw_uid,
                                  group=nobody.pw_gid, capture_output=True, text=True, timeout=15)
            self.assertNotEqual(proc.returncode, 0, proc.stdout)
            self.assertNotIn("workers", proc.stdout)
            self.assertIn(f"refused a client with uid {nobody.pw_uid}", w.log())
            self.assertEqual(w.ctl("stats")[0], 0)  # its owner still gets in


@unittest.skipUnless(os.geteuid() == 0, "privilege drop needs root")
class Privileges(unittest.TestCase):
    def test_workers_run_as_daemon_user(self):
        try:
            user = pwd.getpwnam("warren")
        except KeyError:
            self.skipTest("no user warren (scripts/install-deps creates it)")
        with Warrend(extra={"daemon": {"user": "warren", "group": "warren"}}) as w:
            os.chmod(w.dir, 0o755)
            self.assertEqual(w.request("GET", 0, "/healthz")[0], 200)
            workers = w.worker_pids()
            self.assertTrue(workers)
            for worker in workers:
                with open(f"/proc/{worker['pid']}/status") as f:
                    ids = {l.split(":")[0]: l.split()[1:] for l in f if l[:4] in ("Uid:", "Gid:")}
                self.assertEqual({int(x) for x in ids["Uid"]}, {user.pw_uid}, worker)
                self.assertEqual({int(x) for x in ids["Gid"]}, {user.pw_gid}, worker)
            with open(f"/proc/{w.pid}/status") as f:  # the master keeps root to bind and respawn
                self.assertIn("Uid:\t0\t", f.read())


class TlsVerify(unittest.TestCase):
    @unittest.skipUnless(TLS_PORT, "no TLS listener")
    def test_broker_verify_off_warns_at_start(self):
        extra = {"broker": {"port": int(TLS_PORT), "tls": {"enabled": True, "verify": False}}}
        with Warrend(extra=extra) as w:
            self.assertIn("broker.tls.verify is false", w.log())

    def test_backend_verify_off_warns_at_start(self):
        extra = {"forwarders": [{"name": "insecure", "queue_set": "s", "vhost": "/",
                                 "queue": f"sec-{uuid.uuid4().hex[:8]}",
                                 "declare": {"queue": {"durable": False}},
                                 "backend": {"url": "https://127.0.0.1:9/", "verify": False}}]}
        with Warrend(extra=extra) as w:
            self.assertIn("forwarder insecure: backend.verify is false", w.log())

    def test_verify_on_is_quiet(self):
        with Warrend() as w:
            self.assertNotIn("verify is false", w.log())


if __name__ == "__main__":
    unittest.main()
