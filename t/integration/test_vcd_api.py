"""vCloud Director's own checks and the extension's lifecycle, against a fake vCD API over TLS
(fake_vcd.py): warrenctl vcd deploy/redeploy/status, vcd.deploy auto, rights by name, org
membership with the user's own token, session expiry, and an API that is down."""
import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

from backend import Backend, make_cert
from fake_vcd import FakeVcd
from harness import BUILD, Warrend, wait_for
from test_forward import ForwardTest, forwarder, uid, vcd_message

RIGHT = "UI Plugins: View"


class VcdApiTest(ForwardTest):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="warren-vcd-")
        cls.cert = make_cert(cls.tmp, "vcd")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        super().setUp()
        self.vcd = FakeVcd(tls=self.cert).start()
        self.addCleanup(self.vcd.stop)
        self.exchange = f"vcdx-{uid()}"

    def vcd_forwarder(self, name, queue, backend_url, **vcd):
        api = {"url": self.vcd.url, "username": "administrator", "password": "s3cret", "ca": self.cert["ca"],
               "timeout": 2}
        api.update(vcd.pop("api", {}))
        return forwarder(name, queue, backend_url, format="vcd",
                         declare={"exchange": {"name": self.exchange, "type": "direct"},
                                  "queue": {"durable": True}, "bindings": [f"rk-{name}"]},
                         rewrite={"from": "^/api/example1", "to": ""},
                         retry={"max_attempts": 3, "initial_delay": 0.05, "max_delay": 0.1},
                         vcd={"extension": "example1", "api": api, **vcd})

    # --- warrenctl vcd ---
    def vcdctl(self, w, *args):
        proc = subprocess.run([os.path.join(BUILD, "warrenctl"), "vcd", "-c", w.config_path, "--json", *args],
                              capture_output=True, text=True, timeout=30)
        return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else None, proc.stderr

    def config_only(self, *forwarders):
        w = Warrend(ports=1, extra={"forwarders": list(forwarders)})
        self.addCleanup(w.cleanup)
        w.write()
        return w

    def service(self):
        (sid, s), = self.vcd.services.items()
        patterns = sorted(p for (owner, p) in self.vcd.filters.values() if owner == sid)
        return sid, s, patterns

    def test_deploy_registers_the_service_its_filter_and_enables_it_once(self):
        w = self.config_only(self.vcd_forwarder("v", "vq", "http://127.0.0.1:9"))
        rc, report, err = self.vcdctl(w, "deploy", "v")
        self.assertEqual(rc, 0, (report, err))
        _, s, patterns = self.service()
        self.assertEqual((s["name"], s["namespace"], s["exchange"], s["routingKey"], s["enabled"], s["priority"]),
                         ("example1", "example1", self.exchange, "rk-v", True, 0))
        self.assertEqual(patterns, ["/api/example1/.*"])
        created = [c for c in self.vcd.made("POST", "/api/admin/extension/service") if c.status == 201]
        self.assertEqual(len(created), 2)  # the service, then its filter
        self.assertTrue(created[0].headers["Content-Type"].startswith("application/vnd.vmware.admin.service+json"))
        self.assertTrue(all(c.status < 400 for c in self.vcd.calls), self.vcd.calls)
        (login,) = self.vcd.made("POST", "/api/sessions")
        self.assertEqual(base64.b64decode(login.headers["Authorization"][6:]), b"administrator@System:s3cret")
        self.assertTrue(all(c.headers["Authorization"].startswith("Bearer eyJ") for c in self.vcd.writes()))
        self.assertTrue(all(c.headers["Accept"] == "application/*+json;version=33.0" for c in self.vcd.calls))
        # Again: nothing to write.
        self.vcd.clear_calls()
        rc, report, err = self.vcdctl(w, "deploy", "v")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.vcd.writes(), [])
        self.assertEqual(report["actions"], [])
        self.assertEqual(len(self.vcd.services), 1)

    def test_redeploy_updates_the_service_and_replaces_its_filters(self):
        w = self.config_only(self.vcd_forwarder("v", "vq", "http://127.0.0.1:9"))
        self.assertEqual(self.vcdctl(w, "deploy", "v")[0], 0)
        sid, s, _ = self.service()
        # Someone changed it in vCD: another exchange, disabled, a stale filter.
        s.update(exchange="old-exchange", enabled=False)
        self.vcd.filters["stale"] = (sid, "/api/old/.*")
        rc, report, _ = self.vcdctl(w, "status")
        self.assertEqual(rc, 0)
        self.assertFalse(report["in_sync"])
        self.assertEqual(report["vcd"]["exchange"], "old-exchange")
        self.assertEqual(report["config"]["exchange"], self.exchange)
        self.assertTrue(any("API filter /api/old/.*" in d for d in report["differences"]), report)
        # deploy enables it but leaves the rest, and says so.
        self.vcd.clear_calls()
        rc, report, _ = self.vcdctl(w, "deploy", "v")
        _, s, patterns = self.service()
        self.assertEqual((s["enabled"], s["exchange"]), (True, "old-exchange"))
        self.assertEqual(patterns, ["/api/example1/.*", "/api/old/.*"])
        self.assertTrue(any("redeploy" in d for d in report["differences"]), report)
        # redeploy makes it what the config says.
        rc, report, err = self.vcdctl(w, "redeploy", "v")
        self.assertEqual(rc, 0, err)
        _, s, patterns = self.service()
        self.assertEqual((s["exchange"], s["enabled"], s["routingKey"]), (self.exchange, True, "rk-v"))
        self.assertEqual(patterns, ["/api/example1/.*"])
        self.assertEqual(len(self.vcd.made("DELETE", "/api/admin/extension/service/apifilter/stale")), 1)
        self.vcd.clear_calls()
        rc, report, _ = self.vcdctl(w, "redeploy", "v")
        self.assertEqual((rc, self.vcd.writes()), (0, []))
        rc, report, _ = self.vcdctl(w, "status")
        self.assertEqual((rc, report["in_sync"], report["differences"]), (0, True, []))

    def test_an_older_vcd_without_access_tokens(self):
        self.vcd.access_tokens = False
        w = self.config_only(self.vcd_forwarder("v", "vq", "http://127.0.0.1:9", api={"api_version": "31.0"}))
        rc, _, err = self.vcdctl(w, "deploy", "v")
        self.assertEqual(rc, 0, err)
        writes = self.vcd.writes()
        self.assertEqual(len(writes), 2)
        for c in writes:
            self.assertNotIn("Authorization", c.headers)
            self.assertIn("x-vcloud-authorization", c.headers)
            self.assertEqual(c.headers["Accept"], "application/*+json;version=31.0")

    def test_status_of_an_unregistered_extension_and_errors(self):
        w = self.config_only(self.vcd_forwarder("v", "vq", "http://127.0.0.1:9"))
        rc, report, _ = self.vcdctl(w, "status")
        self.assertEqual((rc, report["vcd"], report["in_sync"]), (0, None, False))
        self.assertEqual(self.vcd.writes(), [])
        rc, _, err = self.vcdctl(w, "deploy", "nosuch")
        self.assertEqual(rc, 1)
        self.assertIn("no vcd forwarder named nosuch", err)
        # Without an API: nothing to ask, and the answer says so.
        bare = forwarder("bare", "bq", "http://127.0.0.1:9", format="vcd", vcd={"extension": "bare"})
        w = self.config_only(bare)
        self.assertEqual(self.vcdctl(w, "status")[0], 1)
        rc, _, err = self.vcdctl(w, "deploy", "bare")
        self.assertEqual(rc, 1)
        self.assertIn("vcd.api.url is not set", err)
        # A wrong password: the login fails, and the report says so.
        w = self.config_only(self.vcd_forwarder("v", "vq", "http://127.0.0.1:9", api={"password": "wrong"}))
        rc, report, _ = self.vcdctl(w, "deploy", "v")
        self.assertEqual(rc, 2)
        self.assertIn("401", report["error"])
        self.assertEqual(self.vcd.services, {})

    def test_deploy_auto_at_start_and_again_until_vcd_answers(self):
        q = self.queue("vauto")
        self.vcd.stop()  # down when the worker starts
        w = self.start([self.vcd_forwarder("vauto", q, "http://127.0.0.1:9", deploy="auto")])
        self.assertTrue(wait_for(lambda: "vcd.deploy auto failed" in w.log(), 5), w.log())
        self.vcd.start()
        self.assertTrue(wait_for(lambda: self.vcd.services and self.vcd.filters, 10), w.log())
        _, s, patterns = self.service()
        self.assertEqual((s["exchange"], s["routingKey"], s["enabled"]), (self.exchange, f"rk-vauto", True))
        self.assertEqual(patterns, ["/api/example1/.*"])

    # --- the checks ---
    def reply_queue(self):
        replies = self.queue("vreplies")
        self.broker.declare_queue(replies)
        return replies

    def ask(self, q, replies, rights, org, headers=None, name="c"):
        rid, body = vcd_message("/api/example1/vms", rights, org)
        doc = json.loads(body)
        doc[0]["headers"].update(headers or {})
        self.publish(q, json.dumps(doc), reply_to=replies, correlation_id=name)
        got = self.drain(replies, 1, timeout=10)
        self.assertEqual(len(got), 1, f"no reply for {name}")
        answer = json.loads(got[0][2])
        self.assertEqual(answer["id"], rid)
        payload = base64.b64decode(answer["body"])
        return answer["statusCode"], json.loads(payload) if answer["statusCode"] >= 400 else payload

    def forwarder_stats(self, w, name):
        return self.stats(w)["forwarders"][name]

    def test_rights_by_name_and_org_membership(self):
        urn = self.vcd.add_right(RIGHT)
        for i in range(300):  # four pages of the rights list: vCD pages them by 100 here
            self.vcd.add_right(f"Right {i:03}")
        self.vcd.max_page_size = 100
        acme, other = self.vcd.add_org("acme"), self.vcd.add_org("other")
        self.vcd.add_user_token("alice-token", [acme])
        self.vcd.add_user_token("bob-token", [other])
        with Backend() as b:
            b.route("/vms", status=200, body='{"vms": []}', content_type="application/json")
            q, replies = self.queue("vchk"), self.reply_queue()
            w = self.start([self.vcd_forwarder("vchk", q, b.url, required_rights=[RIGHT],
                                               check_org_membership=True)])
            org = f"urn:vcloud:org:{acme}"
            alice = {"x-vcloud-authorization": "alice-token"}
            self.assertEqual(self.ask(q, replies, [urn], org, alice, "ok")[0], 200)
            # The same right as vCD 10 lists it, and the user's token as a Bearer.
            status, _ = self.ask(q, replies, ["urn:vcloud:right:" + urn.split(":")[-1]], org,
                                 {"Authorization": "Bearer alice-token"}, "bearer")
            self.assertEqual(status, 200)
            status, err = self.ask(q, replies, ["urn:vcloud:right:other"], org, alice, "noright")
            self.assertEqual(status, 403)
            self.assertIn(RIGHT, err["message"])
            status, err = self.ask(q, replies, [urn], org, {"x-vcloud-authorization": "bob-token"}, "notmember")
            self.assertEqual(status, 403)
            self.assertIn(acme, err["message"])
            status, err = self.ask(q, replies, [urn], org, {}, "notoken")
            self.assertEqual(status, 403)
            self.assertIn("token", err["message"])
            status, err = self.ask(q, replies, [urn], org, {"x-vcloud-authorization": "made-up"}, "badtoken")
            self.assertEqual(status, 403)
            self.assertEqual(len(b.received("/vms")), 2)  # only the two allowed ones
            # One session, one read of the rights list (4 pages), the orgs once per token.
            self.assertEqual(len(self.vcd.made("POST", "/api/sessions")), 1)
            self.assertEqual(len(self.vcd.made("GET", "/api/query?type=right")), 4)
            org_calls = self.vcd.made("GET", "/api/org")
            self.assertEqual(sorted(c.headers.get("x-vcloud-authorization") or c.headers.get("Authorization")
                                    for c in org_calls),
                             ["Bearer alice-token", "alice-token", "bob-token", "made-up"])
            self.assertTrue(wait_for(lambda: self.forwarder_stats(w, "vchk").get("vcd_refused") == 4, 5),
                            self.forwarder_stats(w, "vchk"))
            self.assertEqual(self.consumers(q), 1)
            self.assertIsNone(self.broker.get(q, timeout=0.2))  # every message acked

    def test_an_expired_session_is_renewed(self):
        urn = self.vcd.add_right(RIGHT)
        with Backend() as b:
            q, replies = self.queue("vexp"), self.reply_queue()
            # cache_ttl 0: each message asks vCD again, on the session it has.
            self.start([self.vcd_forwarder("vexp", q, b.url, required_rights=[RIGHT], api={"cache_ttl": 0})])
            self.assertEqual(self.ask(q, replies, [urn], "urn:vcloud:org:x", name="first")[0], 200)
            self.vcd.expire_sessions()
            self.assertEqual(self.ask(q, replies, [urn], "urn:vcloud:org:x", name="second")[0], 200)
            self.assertEqual(len(self.vcd.made("POST", "/api/sessions")), 2)
            refused = [c for c in self.vcd.made("GET", "/api/query") if c.status == 401]
            self.assertEqual(len(refused), 1)
            self.assertEqual(len(b.received()), 2)

    def test_an_api_that_is_down_is_answered_503_and_counted(self):
        urn = self.vcd.add_right(RIGHT)
        with Backend() as b:
            q, replies = self.queue("vdown"), self.reply_queue()
            w = self.start([self.vcd_forwarder("vdown", q, b.url, required_rights=[RIGHT])])
            self.vcd.stop()
            started = time.monotonic()
            status, err = self.ask(q, replies, [urn], "urn:vcloud:org:x", name="down")
            self.assertEqual(status, 503)
            self.assertIn("vCD API", err["message"])
            self.assertLess(time.monotonic() - started, 5)
            self.assertEqual(b.received(), [])
            self.assertIsNone(self.broker.get(q, timeout=0.2))
            self.assertEqual(self.ask(q, replies, [urn], "urn:vcloud:org:x", name="down again")[0], 503)
            self.assertTrue(wait_for(lambda: self.forwarder_stats(w, "vdown").get("vcd_api_unavailable") == 2, 5))
            # Back on its port: the next request passes.
            self.vcd.start()
            self.assertEqual(self.ask(q, replies, [urn], "urn:vcloud:org:x", name="back")[0], 200)
            # The outage was logged once, and its end.
            self.assertEqual(w.log().count("vcd requests are answered 503 until it answers"), 1, w.log())
            self.assertIn("answers again", w.log())

    def test_a_slow_api_holds_up_nothing_else_and_times_out_as_503(self):
        urn = self.vcd.add_right(RIGHT)
        self.vcd.delay = 3
        with Backend() as b:
            q, q_raw, replies = self.queue("vslow"), self.queue("raw"), self.reply_queue()
            w = self.start([self.vcd_forwarder("vslow", q, b.url, required_rights=[RIGHT], api={"timeout": 1.5}),
                            forwarder("raw", q_raw, b.url)])
            rid, body = vcd_message("/api/example1/vms", [urn], "urn:vcloud:org:x")
            started = time.monotonic()
            self.publish(q, body, reply_to=replies, correlation_id="slow")
            time.sleep(0.2)  # the check is under way, waiting for vCD
            self.publish(q_raw, "raw body", {"x-http-path": "/raw"})
            self.assertEqual(len(b.wait_for(1, "/raw", timeout=1)), 1, w.log())
            self.assertLess(time.monotonic() - started, 1.4)  # before vCD could have answered
            (_, _, reply), = self.drain(replies, 1)
            answer = json.loads(reply)
            self.assertEqual((answer["id"], answer["statusCode"]), (rid, 503))
            self.assertEqual(b.received("/vms"), [])

    def test_answers_of_the_wrong_types_are_refusals_not_crashes(self):
        self.vcd.garbled = True
        with Backend() as b:
            q, replies = self.queue("vgarbled"), self.reply_queue()
            w = self.start([self.vcd_forwarder("vgarbled", q, b.url, required_rights=[RIGHT])])
            status, err = self.ask(q, replies, ["urn:vcloud:right:x"], "urn:vcloud:org:x", name="garbled")
            self.assertEqual(status, 403)
            self.assertIn("does not exist", err["message"])
            self.assertEqual(self.stats(w)["respawns"], 0, w.log())
            rc, report, _ = self.vcdctl(w, "status")
            self.assertEqual((rc, report["vcd"]), (0, None))

    def test_config_errors_name_the_key(self):
        cases = [({"check_org_membership": True}, "vcd.check_org_membership", "needs vcd.api.url"),
                 ({"required_rights": [RIGHT]}, "vcd.required_rights[0]", "is a right name"),
                 ({"deploy": "auto"}, "vcd.deploy", "needs vcd.api.url"),
                 ({"deploy": "sometimes"}, "vcd.deploy", "must be one of")]
        for vcd, key, problem in cases:
            w = Warrend(ports=1, extra={"forwarders": [forwarder("v", "q", "http://127.0.0.1:9", format="vcd",
                                                                 vcd={"extension": "example1", **vcd})]})
            self.addCleanup(w.cleanup)
            w.write()
            proc = subprocess.run([os.path.join(BUILD, "warrend"), "-t", "-c", w.config_path],
                                  capture_output=True, text=True, timeout=10)
            self.assertNotEqual(proc.returncode, 0)
            self.assertRegex(proc.stderr, re.escape(w.config_path) + r":\d+: " + re.escape(f"forwarders[0].{key}"))
            self.assertIn(problem, proc.stderr)
