"""What a worker sets up once, not per broker connection: the TLS context (CA file read once)."""
import os
import shutil
import tempfile
import unittest

from harness import Warrend, broker_command, wait_for

TLS_PORT = os.environ.get("WARREN_BROKER_TLS_PORT")
CA = os.environ.get("WARREN_BROKER_CA")


@unittest.skipUnless(TLS_PORT and CA, "no TLS listener (scripts/broker start --tls)")
class OnePerWorker(unittest.TestCase):
    def test_a_reconnect_does_not_read_the_ca_file_again(self):
        ca_dir = tempfile.mkdtemp(prefix="warren-ca-")
        ca = shutil.copy(CA, os.path.join(ca_dir, "ca.pem"))
        try:
            with Warrend(ports=1, extra={"broker": {"port": int(TLS_PORT),
                                                    "tls": {"enabled": True, "ca": ca, "verify": True}}}) as w:
                def publish():
                    try:
                        return w.request("POST", 0, "/%2f/amq.topic/resources.test", body={"body": "x"},
                                         auth=("guest", "guest"))[0]
                    except OSError:  # still waiting for the link
                        return None

                self.assertEqual(publish(), 204, w.log())
                os.unlink(ca)  # read once per worker: a reconnect needs it no more
                rows = broker_command("ctl", "list_connections", "pid", "client_properties").splitlines()
                pids = [r.split("\t")[0] for r in rows if "warren /:guest" in r]
                self.assertTrue(pids, rows)
                for pid in pids:
                    broker_command("ctl", "close_connection", pid, "test: link lost")
                self.assertTrue(wait_for(lambda: publish() == 204, 10), w.log())
                self.assertNotIn("cannot load CA", w.log())
        finally:
            shutil.rmtree(ca_dir, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
