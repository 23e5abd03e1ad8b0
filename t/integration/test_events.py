"""Events over HTTP (seed 003): what flows through an exchange, streamed as Server-Sent Events."""
import base64
import json
import os
import socket
import subprocess
import threading
import time
import unittest

from harness import RSS_TELLS, BrokerClient, Warrend, rss_kib, wait_for

AUTH = "Basic " + base64.b64encode(b"guest:guest").decode()


class SseClient:
    """A raw-socket SSE reader: reads what arrives, parses whole events."""

    def __init__(self, port, path, rcvbuf=None, pipelined=b""):
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\n\r\n".encode() + pipelined)
        self.buf = b""

    def read_until(self, marker, timeout=5):
        self.sock.settimeout(0.2)
        deadline = time.monotonic() + timeout
        while marker not in self.buf and time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                break
            self.buf += chunk
        return marker in self.buf

    def events(self):
        """Events in order, each a dict of field -> value (data lines joined with newlines)."""
        body = self.buf.split(b"\r\n\r\n", 1)[1].decode(errors="replace")
        # Undo HTTP/1.1 chunking: keep only the chunk payloads.
        text, rest = "", body
        while rest:
            size_line, _, rest = rest.partition("\r\n")
            size = int(size_line or "0", 16)
            if size == 0:
                break
            text, rest = text + rest[:size], rest[size + 2:]
        out = []
        for block in text.split("\n\n"):
            fields = {}
            for line in block.splitlines():
                if line.startswith(":") or not line:
                    continue
                key, _, value = line.partition(": ")
                fields[key] = fields[key] + "\n" + value if key in fields else value
            if fields:
                out.append(fields)
        return out

    def close(self):
        self.sock.close()


def queue_names(broker_dir):
    out = subprocess.run([os.path.join(os.environ["WARREN_ROOT"], "scripts/broker"), "ctl", broker_dir,
                          "-q", "list_queues", "name"], capture_output=True, text=True).stdout
    return set(out.split()[1:])


class Events(unittest.TestCase):
    def test_client_receives_published_messages_in_order_with_fields(self):
        with Warrend(ports=1) as w:
            client = SseClient(w.ports[0], "/events/%2f/amq.topic/stock.%23")
            self.assertTrue(client.read_until(b": subscribed"), client.buf)
            self.assertIn(b"200 OK", client.buf)
            self.assertIn(b"text/event-stream", client.buf)
            for i in range(20):
                status, _, _ = w.request("POST", 0, f"/%2f/amq.topic/stock.{i % 3}",
                                         body={"body": f"price {i}\nsecond line", "message_id": f"m{i}",
                                               "type": "tick"}, auth=("guest", "guest"))
                self.assertEqual(status, 204)
            w.request("POST", 0, "/%2f/amq.topic/other.key", body={"body": "not for us"}, auth=("guest", "guest"))
            self.assertTrue(client.read_until(b"id: m19"))
            events = client.events()
            client.close()
            self.assertEqual([e["id"] for e in events], [f"m{i}" for i in range(20)])
            self.assertEqual(events[3], {"id": "m3", "event": "tick", "data": "price 3\nsecond line"})

    def test_a_lost_broker_connection_is_made_again_and_the_client_told(self):
        """The stream survives its broker connection (a node that died, a connection an
        operator closed): warren subscribes again and says so with a `reconnected` event."""
        broker_dir = os.environ["WARREN_BROKER_DIR"]
        with Warrend(ports=1) as w:
            client = SseClient(w.ports[0], "/events/%2f/amq.topic/resume.%23")
            self.assertTrue(client.read_until(b": subscribed"), client.buf)
            self.assertEqual(w.request("POST", 0, "/%2f/amq.topic/resume.1", body={"body": "before"},
                                       auth=("guest", "guest"))[0], 204)
            self.assertTrue(client.read_until(b"data: before"))
            ctl = [os.path.join(os.environ["WARREN_ROOT"], "scripts/broker"), "ctl", broker_dir]
            rows = subprocess.run(ctl + ["-q", "list_connections", "pid", "client_properties"],
                                  capture_output=True, text=True).stdout.splitlines()
            pids = [r.split("\t")[0] for r in rows if "warren events" in r]
            self.assertEqual(len(pids), 1, rows)
            subprocess.run(ctl + ["close_connection", pids[0], "test: events link lost"],
                           capture_output=True, timeout=60)
            self.assertTrue(client.read_until(b"event: reconnected", 10), client.buf + w.log().encode())

            def published_after():
                w.request("POST", 0, "/%2f/amq.topic/resume.2", body={"body": "after"},
                          auth=("guest", "guest"))
                return client.read_until(b"data: after", 0.5)
            self.assertTrue(wait_for(published_after, 10), client.buf)
            events = client.events()
            client.close()
            self.assertEqual([e.get("event") for e in events][:2], [None, "reconnected"])
            self.assertIn("missing", events[1]["data"])
            self.assertEqual(events[-1]["data"], "after")

    def test_queue_goes_away_with_the_client(self):
        with Warrend(ports=1) as w:
            client = SseClient(w.ports[0], "/events/%2f/amq.topic/x")
            self.assertTrue(client.read_until(b": subscribed"))
            broker_dir = os.environ["WARREN_BROKER_DIR"]
            named = {q for q in queue_names(broker_dir) if q.startswith("amq.gen-")}
            self.assertTrue(named, "a server-named queue while subscribed")
            client.close()
            self.assertTrue(wait_for(lambda: not (named & queue_names(broker_dir)), 5),
                            "the subscription queue should be deleted")
            stats = json.loads(w.request("GET", 0, "/stats")[2])
            self.assertTrue(wait_for(lambda: json.loads(w.request("GET", 0, "/stats")[2])["events"]["streams_closed"] == 1, 5))
            self.assertEqual(stats["events"]["streams_opened"], 1)

    def test_a_client_gone_before_its_subscription_holds_nothing(self):
        with Warrend(ports=1) as w:
            broker_dir = os.environ["WARREN_BROKER_DIR"]
            for _ in range(5):
                s = socket.create_connection(("127.0.0.1", w.ports[0]))
                s.sendall(f"GET /events/%2f/amq.topic/x HTTP/1.1\r\nHost: x\r\n"
                          f"Authorization: {AUTH}\r\n\r\n".encode())
                s.close()  # before the subscription is made

            def settled():
                events = json.loads(w.request("GET", 0, "/stats")[2])["events"]
                named = [q for q in queue_names(broker_dir) if q.startswith("amq.gen-")]
                return events["streams_opened"] == events["streams_closed"] and not named

            self.assertTrue(wait_for(settled, 5), "a stream or its queue outlived its client")

    def test_errors_answer_before_streaming(self):
        with Warrend(ports=1) as w:
            status, headers, _ = w.request("GET", 0, "/events/%2f/amq.topic/x")
            self.assertEqual(status, 401)
            self.assertIn("WWW-Authenticate", headers)
            status, _, body = w.request("GET", 0, "/events/%2f/no-such-exchange/x", auth=("guest", "guest"))
            self.assertEqual(status, 404)
            self.assertIn("no-such-exchange", json.loads(body)["detail"])
            # The same answers as a publish to the same place (one table: http/outcome.h).
            self.assertEqual(json.loads(body)["error"], "not found")
            status, _, body = w.request("GET", 0, "/events/%2f/amq.topic/x", auth=("guest", "wrong"))
            self.assertEqual(status, 401)
            self.assertEqual(json.loads(body)["error"], "unauthorized")
            status, _, _ = w.request("POST", 0, "/events/%2f/amq.topic/x", auth=("guest", "guest"))
            self.assertEqual(status, 405)

    def test_stalled_client_is_cut_off_and_memory_stays_bounded(self):
        extra = {"http": {"sse_max_buffer": 262144}}
        with Warrend(ports=1, extra=extra) as w:
            client = SseClient(w.ports[0], "/events/%2f/amq.topic/flood", rcvbuf=4096)
            self.assertTrue(client.read_until(b": subscribed"))
            worker = w.worker_pids()[0]["pid"]
            big = "x" * 65536
            with BrokerClient() as broker:
                for _ in range(400):  # 25 MiB offered to a client that reads nothing
                    broker.publish("amq.topic", "flood", big)
            cut = wait_for(lambda: json.loads(w.request("GET", 0, "/stats")[2])["events"]["slow_clients_cut"] == 1, 15)
            self.assertTrue(cut, "the stalled client should be cut off")
            if RSS_TELLS:  # under ASan, RSS is its quarantine (LeakSanitizer checks leaks)
                self.assertLess(rss_kib(worker), 64 * 1024, "the worker must not hold the flood")
            self.assertEqual(w.request("GET", 0, "/healthz")[0], 200)
            client.close()

    def test_stalled_streams_are_cut_once_together_they_fill_the_workers_output_buffer(self):
        # Each stream alone stays under http.sse_max_buffer, so only the worker-wide bound can
        # stop them: 8 clients that read nothing would otherwise hold 8 x 16 MiB. Once all of
        # the worker's clients fill http.max_output_buffer, a stream holding more than a
        # connection may hold of answers (256 KiB) is cut. A client that reads keeps its stream.
        extra = {"http": {"sse_max_buffer": 16 << 20, "max_output_buffer": 2 << 20}}
        events = 128  # 8 MiB to each client: more than the kernel buffers of a stalled one
        with Warrend(ports=1, extra=extra) as w:
            path = "/events/%2f/amq.topic/flood"
            stalled = [SseClient(w.ports[0], path, rcvbuf=4096) for _ in range(8)]
            reader = SseClient(w.ports[0], path)
            try:
                for client in stalled + [reader]:
                    self.assertTrue(client.read_until(b": subscribed"))
                worker = w.worker_pids()[0]["pid"]
                rss_before = rss_kib(worker)
                last = f"data: {events - 1:04d}".encode()
                got_all = []
                thread = threading.Thread(target=lambda: got_all.append(reader.read_until(last, 60)))
                thread.start()
                with BrokerClient() as broker:
                    for i in range(events):
                        broker.publish("amq.topic", "flood", f"{i:04d}" + "x" * 65532)
                thread.join(90)
                self.assertEqual(got_all, [True], "the client that reads must get every event")
                self.assertEqual([e["data"][:4] for e in reader.events()], [f"{i:04d}" for i in range(events)])
                def stats():
                    return json.loads(w.request("GET", 0, "/stats")[2])["events"]
                self.assertTrue(wait_for(lambda: stats()["slow_clients_cut"] == 8, 15),
                                f"the 8 stalled streams should be cut: {stats()}")
                if RSS_TELLS:  # what the worker keeps of the 8 x 8 MiB offered: nothing
                    self.assertLess(rss_kib(worker) - rss_before, 16 * 1024)
                self.assertEqual(w.request("GET", 0, "/healthz")[0], 200)
            finally:
                for client in stalled + [reader]:
                    client.close()

    def test_a_publish_pipelined_behind_a_stream_is_not_read_while_it_streams(self):
        # A stream too slow a client is cut, with its connection. A publish pipelined behind it
        # and read meanwhile would be in the queue with no answer ever given, and the client's
        # retry would publish it twice.
        with Warrend(ports=1, extra={"http": {"sse_max_buffer": 65536}}) as w, BrokerClient() as broker:
            q = broker.declare_queue(f"it-events-behind-{os.getpid()}")
            publish = (f"POST /%2f/amq.default/{q} HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\n"
                       "Content-Length: 6\r\n\r\nbehind").encode()
            client = SseClient(w.ports[0], "/events/%2f/amq.topic/flood", rcvbuf=4096, pipelined=publish)
            try:
                self.assertTrue(client.read_until(b": subscribed"))
                for _ in range(100):  # 6.4 MiB offered to a client that reads no more
                    broker.publish("amq.topic", "flood", "x" * 65536)
                cut = wait_for(lambda: json.loads(w.request("GET", 0, "/stats")[2])["events"]["slow_clients_cut"] == 1, 15)
                self.assertTrue(cut, "the stalled client should be cut off")
                self.assertIsNone(broker.get(q, timeout=1), "published behind the stream, and never answered")
            finally:
                client.close()
                broker.delete_queue(q)

    def test_stopping_warrend_ends_streams(self):
        w = Warrend(ports=1)
        w.start()
        try:
            client = SseClient(w.ports[0], "/events/%2f/amq.topic/x")
            self.assertTrue(client.read_until(b": subscribed"))
            self.assertEqual(w.stop(), 0)
            self.assertTrue(client.read_until(b"0\r\n\r\n", timeout=5), "the stream should end cleanly")
            client.close()
        finally:
            w.cleanup()


if __name__ == "__main__":
    unittest.main()
