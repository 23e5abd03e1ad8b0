#!/usr/bin/python3
"""A minimal RPC server speaking oslo.messaging's wire format with pika alone (no oslo), for
bench/rpc_run: oslo's own server is slow enough to hide warren's cost; this one is not.

    rpc_echo_server.py --port P --topic T [--exchange openstack]

Answers every request whose method is "echo" with its args["x"]; prints "ready" once consuming.
Declares what an oslo server declares for the topic (exchange, <topic> queue and binding).
"""
import argparse
import json
import signal
import sys
import uuid

import pika


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--exchange", default="openstack")
    args = p.parse_args()
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", args.port))
    ch = conn.channel()
    ch.exchange_declare(args.exchange, "topic", durable=False, auto_delete=False)
    ch.queue_declare(args.topic, durable=False, auto_delete=False)
    ch.queue_bind(args.topic, args.exchange, args.topic)
    ch.basic_qos(prefetch_count=256)
    props = pika.BasicProperties(content_type="application/json", content_encoding="utf-8",
                                 delivery_mode=2, priority=0, headers={})

    def on_request(channel, method, _props, body):
        msg = json.loads(json.loads(body)["oslo.message"])
        if msg.get("_msg_id"):
            reply = {"result": msg.get("args", {}).get("x"), "failure": None, "ending": True,
                     "_msg_id": msg["_msg_id"], "_unique_id": uuid.uuid4().hex}
            channel.basic_publish("", msg["_reply_q"], json.dumps(
                {"oslo.version": "2.0", "oslo.message": json.dumps(reply)}), props)
        channel.basic_ack(method.delivery_tag)

    ch.basic_consume(args.topic, on_request)
    signal.signal(signal.SIGTERM, lambda *_: ch.stop_consuming())
    print("ready", flush=True)
    try:
        ch.start_consuming()
    finally:
        if conn.is_open:
            conn.close()


if __name__ == "__main__":
    sys.exit(main())
