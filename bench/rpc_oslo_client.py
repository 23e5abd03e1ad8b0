#!/usr/bin/python3
"""The reference for bench/rpc_run: oslo.messaging's own RPC client calling "echo" in a loop
for DURATION seconds from THREADS threads. Prints one line: calls/s, p50 and p99 in ms."""
import sys
import threading
import time

import oslo_messaging
from oslo_config import cfg


def main():
    port, topic, duration, threads = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    cfg.CONF([], project="warren-bench")
    transport = oslo_messaging.get_rpc_transport(cfg.CONF, url=f"rabbit://guest:guest@127.0.0.1:{port}/")
    client = oslo_messaging.get_rpc_client(transport, oslo_messaging.Target(topic=topic), timeout=10)
    client.call({}, "echo", x="warm-up")
    latencies, lock = [], threading.Lock()
    end = time.monotonic() + duration

    def run():
        mine = []
        while time.monotonic() < end:
            t = time.monotonic()
            client.call({}, "echo", x="hello")
            mine.append(time.monotonic() - t)
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(duration + 30)
    latencies.sort()
    n = len(latencies)
    print(f"{n / duration:.0f} {latencies[n // 2] * 1000:.2f} {latencies[min(n - 1, n * 99 // 100)] * 1000:.2f}")
    transport.cleanup()


if __name__ == "__main__":
    main()
