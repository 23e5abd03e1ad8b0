"""Every broker connection warren opens can be amqps: publishing and forwarding over TLS.

Needs the broker's TLS listener (scripts/broker start --tls: WARREN_BROKER_TLS_PORT and
WARREN_BROKER_CA); skipped without it."""
import json
import os
import subprocess
import unittest


from backend import Backend
from harness import BrokerClient, Warrend, wait_for

TLS_PORT = os.environ.get("WARREN_BROKER_TLS_PORT")
CA = os.environ.get("WARREN_BROKER_CA")


@unittest.skipUnless(TLS_PORT and CA, "no TLS listener (scripts/broker start --tls)")
class Amqps(unittest.TestCase):
    def test_publish_and_forward_over_tls(self):
        suffix = os.urandom(4).hex()
        published, forwarded = f"amqps-pub-{suffix}", f"amqps-fwd-{suffix}"
        with BrokerClient() as broker, Backend() as backend:
            broker.declare_queue(published)
            try:
                w = Warrend(ports=1, extra={
                    "broker": {"hosts": ["127.0.0.1"], "port": int(TLS_PORT),
                               "tls": {"enabled": True, "ca": CA, "verify": True}},
                    "forwarders": [{"name": "tls_fwd", "queue_set": "tls", "vhost": "/", "queue": forwarded,
                                    "declare": {"queue": {"durable": True}}, "format": "raw",
                                    "backend": {"url": backend.url, "timeout": 2}}]})
                with w:
                    status, _, body = w.request("POST", 0, f"/%2f/amq.default/{published}",
                                                body={"body": "over tls"}, auth=("guest", "guest"))
                    self.assertEqual(status, 204, body)
                    m = broker.get(published)
                    self.assertIsNotNone(m)
                    self.assertEqual(m[2], b"over tls")

                    self.assertTrue(wait_for(lambda: broker.consumer_count(forwarded) >= 1, 15), w.log())
                    broker.publish("", forwarded, b"forwarded over tls")
                    self.assertEqual([r.body for r in backend.wait_for(1)], [b"forwarded over tls"], w.log())
                    self.assertTrue(wait_for(lambda: json.loads(w.request("GET", 0, "/stats")[2])
                                             ["forwarders"]["tls_fwd"]["acked"] == 1, 5), w.log())
                    # both connections really are TLS: the broker lists them as ssl
                    rows = broker_connections()
                    if rows is not None:
                        mine = [r for r in rows if r["name"].startswith("warren")]
                        names = sorted(r["name"] for r in mine)
                        self.assertTrue(any("forwarder tls_fwd" in n for n in names), rows)
                        self.assertTrue(any("guest" in n for n in names), rows)
                        self.assertTrue(all(r["ssl"] for r in mine), rows)
            finally:
                broker.delete_queue(published)
                broker.delete_queue(forwarded)


def broker_connections():
    """rabbitmqctl list_connections on the test broker (None when its dir is unknown)."""
    d = os.environ.get("WARREN_BROKER_DIR")
    if not d:
        return None
    root = os.environ.get("WARREN_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
    out = subprocess.run([os.path.join(root, "scripts", "broker"), "ctl", d, "--formatter", "json",
                          "list_connections", "ssl", "client_properties"],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        return None
    rows = []
    for r in json.loads(out.stdout):
        props = {k: v for k, _, v in r["client_properties"]}
        rows.append({"name": str(props.get("connection_name", "")), "ssl": r["ssl"]})
    return rows


if __name__ == "__main__":
    unittest.main()
