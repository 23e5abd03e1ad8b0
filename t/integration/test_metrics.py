"""GET /metrics: Prometheus text whose counters equal what was sent."""
import json
import unittest

from prometheus_client.parser import text_string_to_metric_families

from harness import BrokerClient, Warrend


def families(text):
    return {f.name: f for f in text_string_to_metric_families(text)}


def total(family, suffix=""):
    return sum(s.value for s in family.samples if s.name == family.name + suffix)


class Metrics(unittest.TestCase):
    def test_metrics_parse_and_count_what_was_sent(self):
        with Warrend(ports=2) as w, BrokerClient() as broker:
            queue = broker.declare_queue("metrics-test", auto_delete=True)
            for i in range(12):
                status, _, _ = w.request("POST", i % 2, f"/%2f/amq.default/{queue}",
                                         body={"body": f"m{i}"}, auth=("guest", "guest"))
                self.assertEqual(status, 204)
            self.assertEqual(w.request("POST", 0, "/%2f/no-such-exchange/x", body={"body": "x"},
                                       auth=("guest", "guest"))[0], 404)
            status, headers, body = w.request("GET", 1, "/metrics")
            self.assertEqual(status, 200)
            self.assertTrue(headers["Content-Type"].startswith("text/plain"))
            f = families(body.decode())
            # prometheus_client names counter families without the _total suffix
            self.assertEqual(total(f["warren_response_204"], "_total"), 12)
            self.assertEqual(total(f["warren_response_404"], "_total"), 1)
            self.assertEqual(total(f["warren_method_post"], "_total"), 13)
            self.assertEqual(total(f["warren_publish_confirmed"], "_total"), 12)
            self.assertEqual(f["warren_publish_seconds"].type, "histogram")
            self.assertEqual(total(f["warren_publish_seconds"], "_count"), 12)
            workers = {s.labels["pid"] for s in f["warren_method_post"].samples if "pid" in s.labels}
            self.assertEqual(len(workers), 2)
            self.assertEqual(total(f["warren_broker_connections_open"]), 2)
            # a level is a gauge, without _total; CPU time a counter
            memory = f["warren_process_max_rss_bytes"]
            self.assertEqual(memory.type, "gauge")
            self.assertEqual(len(memory.samples), 2)
            self.assertTrue(all(s.value > 1 << 20 for s in memory.samples), memory.samples)
            self.assertEqual(f["warren_process_cpu_user_seconds"].type, "counter")
            rc, text = w.ctl("metrics")
            self.assertEqual(rc, 0)
            self.assertEqual(total(families(text)["warren_response_204"], "_total"), 12)

    def test_admin_routes_answer_get_and_head_only(self):
        """/healthz, /stats and /metrics read: another method is a 405 naming the allowed ones,
        as every other route answers it, and HEAD is GET without the body (RFC 9110 9.3.2)."""
        with Warrend(ports=1) as w:
            for path in ("/healthz", "/stats", "/metrics"):
                for method in ("POST", "PUT", "DELETE", "PATCH"):
                    status, headers, body = w.request(method, 0, path, body={"x": 1})
                    self.assertEqual(status, 405, (method, path, body))
                    self.assertEqual(headers["Allow"], "GET, HEAD", (method, path))
                    self.assertEqual(json.loads(body)["error"], "method not allowed")
                status, headers, body = w.request("HEAD", 0, path)
                self.assertEqual((status, body), (200, b""), path)
                self.assertEqual(w.request("GET", 0, path)[0], 200, path)
            stats = json.loads(w.request("GET", 0, "/stats")[2])
            self.assertEqual(stats["requests"]["response.405"], 12)


if __name__ == "__main__":
    unittest.main()
