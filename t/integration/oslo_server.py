#!/usr/bin/python3
"""A real oslo.messaging RPC server (Debian's python3-oslo.messaging, rabbit driver) for warren's
RPC tests: warren must interoperate with the real thing, not with our idea of it.

    oslo_server.py --port P --topic T --server S [--exchange openstack] [--record FILE]

Prints "ready" on stdout once it consumes; stops on SIGTERM, SIGINT or when stdin (a pipe)
closes.
Endpoint methods: echo(x), add(a, b), context() (the request context it got), fail(message)
raises OsloTestError, slow(seconds) sleeps then answers, record(value) appends
{"server", "value"} as a JSON line to FILE (the cast recorder), whoami() the server name.
"""
import argparse
import json
import os
import signal
import stat
import sys
import threading
import time

import oslo_messaging
from oslo_config import cfg


class OsloTestError(Exception):
    """The custom exception a test expects warren to name in its 500 answer."""


class Endpoint:
    def __init__(self, server, record):
        self.server = server
        self.record_path = record
        self.lock = threading.Lock()

    def echo(self, ctxt, x=None):
        return x

    def add(self, ctxt, a, b):
        return a + b

    def context(self, ctxt):
        return {k: v for k, v in ctxt.items() if k != "client_timeout"}

    def fail(self, ctxt, message="it failed"):
        raise OsloTestError(message)

    def slow(self, ctxt, seconds=1.0):
        time.sleep(min(float(seconds), 30))
        return {"slept": seconds, "server": self.server}

    def whoami(self, ctxt):
        return self.server

    def record(self, ctxt, value=None):
        if self.record_path:
            with self.lock, open(self.record_path, "a") as f:
                f.write(json.dumps({"server": self.server, "value": value}) + "\n")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--server", required=True)
    p.add_argument("--exchange", default="openstack")
    p.add_argument("--vhost", default="")
    p.add_argument("--record", default="")
    args = p.parse_args()

    conf = cfg.CONF
    conf([], project="warren-test")
    url = f"rabbit://guest:guest@127.0.0.1:{args.port}/{args.vhost}"
    transport = oslo_messaging.get_rpc_transport(conf, url=url)
    target = oslo_messaging.Target(exchange=args.exchange, topic=args.topic, server=args.server)
    server = oslo_messaging.get_rpc_server(
        transport, target, [Endpoint(args.server, args.record)], executor="threading")
    server.start()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if stat.S_ISFIFO(os.fstat(0).st_mode):  # a test's pipe: its closing stops us
        threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    # The consumers are declared by start(): the queues exist once it returns.
    print("ready", flush=True)
    stop.wait(600)  # bounded: a test never needs a server longer
    server.stop()
    server.wait()
    transport.cleanup()
    os._exit(0)  # oslo's threads may linger; the test waits on this process


if __name__ == "__main__":
    main()
