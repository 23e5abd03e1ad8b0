"""Hostile HTTP clients for the soak (test_hostile_soak.py): request generators for every route
(attacks), the ways to send them (modes), and Hostile, the client threads that send them.

Every random choice comes from the Random a client thread was given, so a seed replays the same
requests. Nothing here asserts: outcomes are tallied for the test to report.
"""
import base64
import collections
import json
import random
import re
import socket
import struct
import threading
import time
import traceback
import urllib.parse

from harness import ClientThreads

HOSTILE_THREADS = 10        # most of their time is spent waiting for answers
MAX_ATTACKS_PER_THREAD = 5000
ANSWER_WAIT = 4.0           # seconds a hostile client waits for anything; beyond: "silent"
BOGUS_USERS = 400           # distinct made-up user names


# --- hostile material -----------------------------------------------------------------------

NASTY = [
    b"\xff\xfe", b"\xff", b"\xfe\xff\x00", b"\x80", b"\xc3",        # invalid, truncated
    b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xed\xa0\xbd\xed\xb8\x80",     # lone surrogates (CESU)
    b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf", b"\xc1\xbf",    # overlong
    b"\xf8\x88\x80\x80\x80", b"\xf4\x90\x80\x80",                     # beyond U+10FFFF
    b"\x00", b"a\x00b", b"\x01\x1b[31m\x7f", b"\r\nFAKE: 1", b"\r", b"\n", b"\t", b" ",
    b"%", b"%zz", b"%00", b"%ff%fe", b"%ed%a0%80", b"%c0%af", b"%2f", b"%25", b"+",
    b"..", b"/", b"./", b"*", b"#", b"?", b";", b"\"", b"'", b"\\", b"{", b"}", b"[]",
    b"<script>", "\u00e9".encode(), "\U0001f600".encode(), "\ufeff".encode(), "\u202e".encode(),
    b"A" * 300, b"B" * 4000, b"-1", b"99999999999999999999", b"1e400", b"NaN",
]

NUMBERS = [b"-1", b"-5", b"0", b"3", b"256", b"99999999999999999999", b"18446744073709551616",
           b"9223372036854775808", b"4294967296", b"1e400", b"1e308", b"-0", b"+1", b" 1",
           b"1.5", b"0x10", b"nan", b"inf", b"", b"1 1", b"\xff\xfe"]

FIELDS = ["priority", "delivery_mode", "expiration", "expire", "timestamp", "message_id",
          "correlation_id", "reply_to", "type", "user_id", "app_id", "content_type",
          "content_encoding", "headers", "mandatory", "body"]
NUMERIC_FIELDS = {"priority", "delivery_mode", "expiration", "expire", "timestamp", "mandatory"}


def bogus_user(rng):
    return f"soak-user-{rng.randrange(BOGUS_USERS)}".encode()


def nasty(rng):
    """A hostile byte string: a known bad one, random bytes, or two of them joined."""
    pick = rng.random()
    if pick < 0.55:
        return rng.choice(NASTY)
    if pick < 0.8:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 24)))
    if pick < 0.9:
        return bogus_user(rng)
    return rng.choice(NASTY) + rng.choice(NASTY)


def pct(data):
    return urllib.parse.quote_from_bytes(data, safe="").encode()


def segment(rng):
    """A path segment holding hostile bytes: percent-encoded (mostly) or raw."""
    data = nasty(rng)
    return data if rng.random() < 0.25 else pct(data)


def hostile_json(rng):
    """A JSON-ish `headers` value: invalid UTF-8 inside strings, escaped lone surrogates, huge
    numbers, deep nesting, the wrong type, or plain broken."""
    key = rng.choice([b"x", b"x-http-path", b"x-match", b"\xff\xfe", b"\\ud800", b"\\r\\nFAKE",
                      b"", b"a" * 300])
    value = rng.choice([
        b'"' + nasty(rng).replace(b"\\", b"").replace(b'"', b"") + b'"',
        b'"\\ud800"', b'"\\udfff\\ud800"', b'"\\u0000"', b'"\\r\\nFAKE: 1"',
        b"1e400", b"-1e400", b"99999999999999999999999999", b"-99999999999999999999", b"1e-400",
        b"[" * 3000 + b"]" * 3000, b'{"a":' * 1000 + b"1" + b"}" * 1000,
        b'[1, "a", null, true, 1.5, {"b": []}]', b"null", b"true", b"{}",
        b'"/api/' + b"a" * rng.choice([100, 5000, 100000]) + b'"',
    ])
    return rng.choice([
        b"{\"" + key + b"\": " + value + b"}",
        b"{" + b", ".join(b'"k%d": %d' % (i, i) for i in range(rng.choice([10, 3000]))) + b"}",
        value, b"{", b"", b"[1, 2]", b'"str"', b"{\"a\": 1,}",
    ])


def field_value(rng, name):
    if name == "headers":
        return hostile_json(rng)
    if name in NUMERIC_FIELDS and rng.random() < 0.7:
        return rng.choice(NUMBERS)
    return nasty(rng)


def fields(rng, names=FIELDS):
    """One to five (name, value) pairs: known fields (or hostile bytes as a name), hostile values."""
    for _ in range(rng.randrange(1, 6)):
        name = rng.choice(names).encode() if rng.random() < 0.85 else nasty(rng)
        yield name, field_value(rng, name.decode("latin-1"))


def query(rng, names=FIELDS):
    """`?a=b&...` with hostile names or values, percent-encoded or raw; sometimes broken."""
    parts = [pct(name) + b"=" + (pct(value) if rng.random() < 0.8 else value)
             for name, value in fields(rng, names)]
    return b"?" + rng.choice([b"&", b"&&", b";"]).join(parts) + rng.choice([b"", b"", b"&", b"=", b"%"])


def form_body(rng):
    return b"&".join(pct(name) + b"=" + pct(value) for name, value in fields(rng))


def json_item(rng):
    item = {}
    for name in rng.sample(FIELDS + ["routing_key"], rng.randrange(1, 5)):
        item[name] = rng.choice([
            nasty(rng).decode("utf-8", "surrogateescape"), -1, 99999999999999999999, 3,
            1e300, None, [1], {"a": "b"}, True, "x" * 300])
    try:
        text = json.dumps(item, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
    except UnicodeEncodeError:
        text = json.dumps(item).encode()
    # and sometimes a raw invalid byte inside a JSON string
    return text.replace(b"\\udcff", b"\xff") if rng.random() < 0.5 else text


def batch_body(rng):
    """(content type, body) of a batch: a JSON array or NDJSON of hostile items, or broken."""
    items = [json_item(rng) for _ in range(rng.choice([1, 3, 20, 300]))]
    return rng.choice([
        (b"application/json", b"[" + b",".join(items) + b"]"),
        (b"application/x-ndjson", b"\n".join(items) + rng.choice([b"", b"\n", b"\n\n{"])),
        (b"application/json", b"[" * 40000),
        (b"application/json", b"[" * 20000 + b"]" * 20000),
        (b"application/x-ndjson", b"\n".join(b'{"body": "%d"}' % i for i in range(2000))),
        (b"application/json", b"[]"), (b"application/json", b"{}"),
        (b"application/json; charset=\xff", b"[" + items[0] + b"]"),
        (nasty(rng), b"[" + items[0] + b"]"),
    ])


def basic_auth(credentials):
    return b"Authorization: Basic " + base64.b64encode(credentials) + b"\r\n"


GUEST = basic_auth(b"guest:guest")


def authorization(rng):
    """An Authorization header line (or none): many bogus users, hostile bytes, broken Basic."""
    pick = rng.random()
    if pick < 0.15:
        return b""
    if pick < 0.35:
        return GUEST
    if pick < 0.7:
        return basic_auth(bogus_user(rng) + b":" + rng.choice([b"x", nasty(rng)]))
    if pick < 0.9:
        return basic_auth(rng.choice([
            b"\xff\xfe:x", b"\r\nFAKE:x", b"x:\r\nFAKE", b"\xed\xa0\x80:x", b"\xc0\xaf:\xc0\xaf",
            b"guest\r\nX: y:guest", b":", b"", b"no-colon", b"\x00:\x00", b"a" * 3000 + b":x"])
            + b":" + nasty(rng))
    return b"Authorization: " + rng.choice([
        b"Basic ====", b"Basic", b"Basic !!!", b"Bearer x", b"Basic " + b"QUFB" * 3000,
        b"basic Z3Vlc3Q6Z3Vlc3Q=", b"Basic \xff\xfe", b"Basic Z3Vlc3Q6Z3Vlc3Q= extra",
        b"Basic\tZ3Vlc3Q6Z3Vlc3Q="]) + b"\r\n"


def content_length_lines(rng, body):
    """Content-Length framing: mostly right, else huge, negative, duplicated, or with a space
    before the colon (RFC 9112 says: refuse)."""
    n = str(len(body)).encode()
    if rng.random() < 0.8:
        return [b"Content-Length: " + n]
    return rng.choice([
        [b"Content-Length: 99999999999999999999"], [b"Content-Length: -1"],
        [b"Content-Length: " + n, b"Content-Length: " + n],
        [b"Content-Length: " + n, b"Content-Length: 3"],
        [b"Content-Length : " + n], [b"Content-Length: " + n + b", " + n], [b"Content-Length: +" + n],
        [b"Content-Length: 0x10"], [b"Content-Length: " + n, b"Transfer-Encoding: chunked"],
        [b"Transfer-Encoding: chunked"], [],
    ])


def extra_headers(rng):
    lines = []
    for _ in range(rng.choice([0, 0, 0, 1, 3])):
        lines.append(rng.choice([
            b"X-" + nasty(rng).replace(b"\r\n", b"") + b": " + nasty(rng),
            b"X-Soak: " + nasty(rng), b"Host: " + nasty(rng), b"FAKE",
            b" folded continuation", b": no name", b"X-Long: " + b"v" * 6000,
            b"Expect: 100-continue", b"Connection: keep-alive, \xff",
            b"Content-Type: " + nasty(rng)]))
    return lines


def request(rng, method, target, headers=(), body=b"", framing=True, close=None):
    """The bytes of one request: mostly well framed (so that the hostile parts reach the
    handlers), sometimes not; framing=False: always the right Content-Length."""
    version = b"HTTP/1.1" if rng.random() < 0.92 else \
        rng.choice([b"HTTP/1.0", b"HTTP/9.9", b"HTTP/1.1 x", b""])
    lines = [method + b" " + target + b" " + version]
    lines.append(b"Host: 127.0.0.1")
    lines += [h.rstrip(b"\r\n") for h in headers if h]
    if body or method in (b"POST", b"PUT"):
        lines += content_length_lines(rng, body) if framing else [b"Content-Length: %d" % len(body)]
    if close is None:
        close = rng.random() < 0.8
    if close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def method(rng, usual):
    return usual if rng.random() < 0.85 else rng.choice(
        [b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH", b"TRACE", b"CONNECT",
         b"post", b"G\xffT", b"", b"X" * 300])


# --- the attacks: each returns the bytes of one request (modes below decide how they are sent) ---

class Targets:
    """What the attacks aim at: the forwarder's queue (so that valid-credential attacks reach
    the forward worker), made-up names, and http.max_body (to go beyond it)."""

    def __init__(self, forward_queue, max_body):
        self.forward_queue, self.max_body = forward_queue.encode(), max_body

    def vhost(self, rng):
        return b"%2f" if rng.random() < 0.5 else segment(rng)

    def exchange(self, rng):
        return rng.choice([b"amq.default", b"amq.topic", b"amq.match", segment(rng), segment(rng)])

    def key(self, rng):
        return rng.choice([self.forward_queue, b"soak.hostile", segment(rng), segment(rng)])


def attack_publish(rng, t):
    auth = GUEST if rng.random() < 0.4 else authorization(rng)
    target = b"/" + t.vhost(rng) + b"/" + t.exchange(rng) + b"/" + t.key(rng)
    kind = rng.random()
    if kind < 0.4:  # fields in the query string, raw body
        return request(rng, method(rng, b"POST"), target + query(rng),
                       [auth, b"Content-Type: text/plain"] + extra_headers(rng), nasty(rng))
    if kind < 0.8:  # a form
        return request(rng, method(rng, b"POST"), target,
                       [auth, b"Content-Type: application/x-www-form-urlencoded"] + extra_headers(rng),
                       form_body(rng))
    boundary = rng.choice([b"b", b"\xff\xfe", b"", b"x" * 200])
    body = (b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"" + nasty(rng) +
            b"\"\r\n\r\n" + nasty(rng) + b"\r\n--" + boundary + rng.choice([b"--\r\n", b"", b"\r\n"]))
    return request(rng, b"POST", target,
                   [auth, b"Content-Type: multipart/form-data; boundary=" + boundary], body)


def attack_login(rng, t):
    """A request that is valid but for its credentials: hundreds of made-up users (and hostile
    bytes as user names and passwords) reach the broker's login."""
    user = bogus_user(rng) if rng.random() < 0.7 else nasty(rng)
    auth = basic_auth(user + b":" + rng.choice([b"x", nasty(rng)]))
    if rng.random() < 0.6:
        return request(rng, b"POST", b"/%2f/amq.default/soak.hostile?message_id=login", [auth],
                       b"hello", framing=False)
    if rng.random() < 0.5:
        return request(rng, b"POST", b"/%2f/amq.default", [auth, b"Content-Type: application/json"],
                       b'[{"routing_key": "soak.hostile", "body": "x"}]', framing=False)
    return request(rng, b"GET", b"/events/%2f/amq.topic/soak.%23", [auth], close=True)


def attack_broker_refusal(rng, t):
    """Valid credentials, a valid request, and something only the broker refuses, by closing the
    channel: a `user_id` that is not the user's (PRECONDITION_FAILED; other clients' messages
    are on that channel too) or an exchange that does not exist (NOT_FOUND)."""
    if rng.random() < 0.5:
        user_id = rng.choice([b"mallory", bogus_user(rng), pct(nasty(rng))])
        target = b"/%2f/amq.default/soak.hostile?user_id=" + user_id
    else:
        target = b"/%2f/soak-no-such-exchange-" + str(rng.randrange(10 ** 9)).encode() + b"/key"
    return request(rng, b"POST", target, [GUEST], b"refused", framing=False)


def attack_poison_forward(rng, t):
    """With valid credentials: a message for the forwarder whose x-http-path is long (rewrite's
    regex sees it) or hostile."""
    path = rng.choice([b"/api/" + b"a" * rng.choice([1000, 20000, 100000]), b"/api/" + nasty(rng),
                       b"/api/x/@evil/p", b"//evil/p", nasty(rng)])
    headers = json.dumps({"x-http-path": path.decode("latin-1"),
                          "x-http-method": rng.choice(["GET", "POST", "\xff", "X" * 300])}).encode()
    body = b"headers=" + pct(headers) + b"&body=" + pct(nasty(rng))
    return request(rng, b"POST", b"/%2f/amq.default/" + t.forward_queue,
                   [GUEST, b"Content-Type: application/x-www-form-urlencoded"], body,
                   framing=False)


def attack_batch(rng, t):
    auth = GUEST if rng.random() < 0.4 else authorization(rng)
    content_type, body = batch_body(rng)
    return request(rng, method(rng, b"POST"), b"/" + t.vhost(rng) + b"/" + t.exchange(rng),
                   [auth, b"Content-Type: " + content_type] + extra_headers(rng), body)


def attack_rpc(rng, t):
    auth = GUEST if rng.random() < 0.4 else authorization(rng)
    target = b"/rpc/" + t.vhost(rng) + b"/" + rng.choice([b"amq.topic", segment(rng)]) + b"/" + \
        segment(rng) + rng.choice([b"", b"/" + segment(rng)])
    target += rng.choice([b"", b"?cast=1", b"?fanout=1", b"?timeout=" + rng.choice(NUMBERS),
                          query(rng, ["cast", "fanout", "timeout"])])
    doc = rng.choice([
        b'{"method": "' + nasty(rng).replace(b'"', b"") + b'", "args": {}}',
        b'{"method": "ping", "args": ' + hostile_json(rng) + b', "context": ' + hostile_json(rng) + b"}",
        b'{"method": "ping", "version": 1e400, "namespace": -1}', b"[" * 30000, b"{", b"",
        b'{"method": ' + b'"m' * 2 + b"}", hostile_json(rng)])
    return request(rng, method(rng, b"POST"), target,
                   [auth, b"Content-Type: application/json"] + extra_headers(rng), doc)


def attack_events(rng, t):
    auth = GUEST if rng.random() < 0.5 else authorization(rng)
    target = b"/events/" + t.vhost(rng) + b"/" + t.exchange(rng) + b"/" + \
        rng.choice([b"%23", b"soak.%2a", segment(rng)]) + rng.choice([b"", b"/extra", query(rng)])
    return request(rng, method(rng, b"GET"), target, [auth] + extra_headers(rng), close=True)


def attack_admin(rng, t):
    path = rng.choice([b"/stats", b"/metrics", b"/healthz", b"/"])
    path += rng.choice([b"", b"", b"?" + nasty(rng), query(rng), b"/" + segment(rng), b"%00",
                        b"/..", b"#frag"])
    return request(rng, method(rng, b"GET"), path, [authorization(rng)] + extra_headers(rng),
                   rng.choice([b"", b"", nasty(rng)]))


def attack_unknown_route(rng, t):
    path = rng.choice([
        b"/" + b"/".join(segment(rng) for _ in range(rng.randrange(1, 7))),
        b"//", b"/../../etc/passwd", b"*", b"http://evil.example/x", b"", b"/" + b"p" * 3000,
        b"/%2f/%2f/%2f/%2f", b"/rpc", b"/rpc/", b"/events", b"/events/%2f", b"/a b c",
        b"/" + nasty(rng)])
    return request(rng, method(rng, b"GET"), path, [authorization(rng)] + extra_headers(rng),
                   rng.choice([b"", nasty(rng)]))


def attack_oversize(rng, t):
    """A body over http.max_body, announced or chunked."""
    body = b"x" * (t.max_body + rng.choice([1, 4096, 100000]))
    target = rng.choice([b"/%2f/amq.default/" + t.key(rng), b"/%2f/amq.default",
                         b"/rpc/%2f/amq.topic/t"])
    headers = [GUEST if rng.random() < 0.5 else authorization(rng),
               rng.choice([b"Content-Type: text/plain", b"Content-Type: application/json"])]
    if rng.random() < 0.3:
        head = [b"POST " + target + b" HTTP/1.1", b"Host: x", b"Transfer-Encoding: chunked",
                b"Connection: close"] + [h.rstrip(b"\r\n") for h in headers if h]
        return b"\r\n".join(head) + b"\r\n\r\n%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    return request(rng, b"POST", target, headers, body, framing=False, close=True)


def attack_garbage(rng, t):
    """Not HTTP at all, or broken framing."""
    return rng.choice([
        bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))),
        b"\r\n" * 50 + b"GET /healthz HTTP/1.1\r\n\r\n", b"GET\r\n\r\n", b"GET /healthz\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",       # a TLS ClientHello's start
        b"AMQP\x00\x00\x09\x01", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"POST /%2f/amq.default/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n0\r\n\r\n",
        b"POST /%2f/amq.default/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"ffffffffffffffffffff\r\nx\r\n",
        b"GET /healthz HTTP/1.1\nHost: x\n\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 2000 + b"\r\n",
    ])


ATTACKS = {
    "publish": (attack_publish, 30),
    "login": (attack_login, 12),
    "broker_refusal": (attack_broker_refusal, 8),
    "batch": (attack_batch, 12),
    "rpc": (attack_rpc, 10),
    "events": (attack_events, 8),
    "admin": (attack_admin, 8),
    "unknown_route": (attack_unknown_route, 8),
    "poison_forward": (attack_poison_forward, 3),
    "oversize": (attack_oversize, 2),
    "garbage": (attack_garbage, 6),
}

# How a request is sent, with weights: whole (then read), several pipelined in one send, half
# closed mid-request, trickled (slowloris, cut by http.request_timeout), reset mid-request, or
# sent by a client that never reads.
MODES = {"whole": 55, "pipelined": 15, "half_closed": 10, "slowloris": 2, "reset": 8, "no_read": 8}

STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})")


def read_answers(sock, deadline):
    """Reads until the peer closes, or 0.1 s of quiet after a status line, or the deadline:
    (the statuses seen, how it ended: "closed", "reset", "idle" or "silent")."""
    data = b""
    while True:
        answered = STATUS_LINE.search(data)
        left = deadline - time.monotonic()
        if left <= 0:
            return STATUS_LINE.findall(data), "idle" if answered else "silent"
        sock.settimeout(min(left, 0.1) if answered else left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            if answered:
                return STATUS_LINE.findall(data), "idle"
            continue
        except OSError:
            return STATUS_LINE.findall(data), "reset"
        if not chunk:
            return STATUS_LINE.findall(data), "closed"
        data = (data + chunk)[-(1 << 20):]  # a stream or a huge body: keep the tail only


def send_attack(rng, port, mode, payloads):
    """Sends one attack (a list of request byte strings) in `mode`; returns an outcome string."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WAIT)
    try:
        data = payloads[0]
        if mode == "pipelined":
            data = b"".join(payloads)
        elif mode == "no_read":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            data = b"".join(payloads) + b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 30
        cut = rng.randrange(1, max(2, len(data)))
        if mode == "half_closed":
            sock.sendall(data[:cut])
            sock.shutdown(socket.SHUT_WR)
        elif mode == "slowloris":
            for i in range(min(cut, 4)):
                sock.sendall(data[i:i + 1])
                time.sleep(0.25)
        elif mode == "reset":
            sock.sendall(data[:cut])
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return "reset by client"
        elif mode == "no_read":
            sock.settimeout(0.5)
            try:
                sock.sendall(data)
            except OSError:
                pass  # the server stopped reading too: fine
            time.sleep(rng.choice([0.1, 0.3, 1.0]))
            return "not read"
        else:
            sock.sendall(data)
        statuses, end = read_answers(sock, time.monotonic() + ANSWER_WAIT)
        if not statuses:
            return f"no answer, {end}"
        more = "+" if len(statuses) > 4 else ""
        return ",".join(s.decode() for s in statuses[:4]) + f"{more} {end}"
    except OSError as e:
        return f"error {type(e).__name__}"
    finally:
        sock.close()


class Hostile(ClientThreads):
    """HOSTILE_THREADS clients, each with its own Random(seed, thread), sending attacks to both
    ports until the deadline or MAX_ATTACKS_PER_THREAD. Outcomes are tallied per attack; the
    attacks that saw a connection end without any answer are kept (with their bytes) as suspects
    of a crash."""

    join_timeout = ANSWER_WAIT + 10

    def __init__(self, ports, targets, seed, attacks):
        super().__init__(HOSTILE_THREADS)
        self.ports, self.targets, self.seed = ports, targets, seed
        self.names = [n for n in ATTACKS if n in attacks]
        self.weights = [ATTACKS[n][1] for n in self.names]
        self.tally = collections.defaultdict(collections.Counter)
        self.suspects = []  # (time, thread, index, attack, mode, outcome, first payload)
        self.answered_500 = []  # (attack, mode, first payload): an exception caught in warren
        self.statuses = collections.Counter()  # every status seen, over all attacks
        self.errors = []  # tracebacks of client threads that failed
        self.sent = 0
        self.lock = threading.Lock()

    def _run(self, thread):
        try:
            self._attack(thread)
        except Exception:  # a bug in the test, not in warren: the test fails with it
            with self.lock:
                self.errors.append(traceback.format_exc())

    def _attack(self, thread):
        rng = random.Random(f"{self.seed}/{thread}")
        for index in range(MAX_ATTACKS_PER_THREAD):
            if self.stopping.is_set():
                return
            name = rng.choices(self.names, self.weights)[0]
            mode = rng.choices(list(MODES), list(MODES.values()))[0]
            build = ATTACKS[name][0]
            count = rng.randrange(2, 5) if mode in ("pipelined", "no_read") else 1
            payloads = [build(rng, self.targets) for _ in range(count)]
            port = self.ports[rng.randrange(len(self.ports))]
            outcome = send_attack(rng, port, mode, payloads)
            with self.lock:
                self.sent += 1
                self.tally[name][f"{mode}: {outcome}"] += 1
                if outcome[:1].isdigit():
                    self.statuses.update(outcome.split()[0].rstrip("+").split(","))
                if "500" in outcome.split()[0] and len(self.answered_500) < 5:
                    self.answered_500.append((name, mode, payloads[0][:300]))
                # Garbage may be cut off without an answer; a request that parses may not.
                if name != "garbage" and mode in ("whole", "pipelined") and \
                        outcome.startswith(("no answer", "error")):
                    self.suspects.append((time.monotonic(), thread, index, name, mode, outcome,
                                          payloads[0][:300]))

    def report(self):
        with self.lock:
            lines = [f"{self.sent} attacks; statuses seen: " +
                     ", ".join(f"{k} x{v}" for k, v in sorted(self.statuses.items()))]
            lines += [f"  answered 500: {name}/{mode}: {payload!r}"
                      for name, mode, payload in self.answered_500]
            for name in sorted(self.tally):
                lines.append(f"  {name}: " + ", ".join(f"{k} x{v}" for k, v in
                                                       self.tally[name].most_common(12)))
            return "\n".join(lines)
