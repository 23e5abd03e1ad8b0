"""A small HTTP(S) backend for forwarding tests: records every request, answers per path.

    with Backend() as b:                       # http on a free port, in a thread
        b.route("/slow", status=200, delay=2)  # longest matching prefix wins
        b.route("/fail", status=503)
        ... b.url ... b.requests ...           # Request(method, path, headers, body)
    Backend(tls=make_cert(dir))                # https with a certificate from openssl

Also runs alone: `/usr/bin/python3 backend.py PORT` (answers 200 to everything).
"""
import collections
import http.server
import os
import socket
import ssl
import subprocess
import sys
import threading
import time

Request = collections.namedtuple("Request", "method path headers body")


def make_cert(directory, name="backend"):
    """A CA and a server certificate for 127.0.0.1/localhost signed by it (openssl CLI).
    Returns dict(ca=..., cert=..., key=...) paths."""
    os.makedirs(directory, exist_ok=True)
    p = lambda f: os.path.join(directory, f"{name}-{f}")
    run = lambda *a: subprocess.run(a, check=True, capture_output=True, timeout=60)
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", f"/CN={name} test CA", "-keyout", p("ca.key"), "-out", p("ca.pem"))
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", p("key.pem"), "-out", p("csr.pem"))
    with open(p("ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("openssl", "x509", "-req", "-in", p("csr.pem"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"),
        "-CAcreateserial", "-days", "2", "-extfile", p("ext.cnf"), "-out", p("cert.pem"))
    return {"ca": p("ca.pem"), "cert": p("cert.pem"), "key": p("key.pem")}


class Route:
    def __init__(self, status=200, delay=0.0, body=b"ok", content_type="text/plain", location=None):
        self.status, self.delay, self.content_type = status, delay, content_type
        self.location = location  # a redirect's Location
        self.body = body.encode() if isinstance(body, str) else body


class Backend:
    def __init__(self, port=0, tls=None, client_ca=None):
        self.port = port
        self.tls = tls
        self.client_ca = client_ca  # https: require a client certificate signed by this CA
        self.requests = []
        self.routes = {"": Route()}
        self.lock = threading.Lock()
        self.connections = set()  # open client connections, cut on stop(): "down" means down
        self.server = None
        self.thread = None

    @property
    def url(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def route(self, prefix, **kw):
        with self.lock:
            self.routes[prefix] = Route(**kw)

    def received(self, path_prefix=""):
        with self.lock:
            return [r for r in self.requests if r.path.startswith(path_prefix)]

    def wait_for(self, count, path_prefix="", timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.received(path_prefix)
            if len(got) >= count:
                return got
            time.sleep(0.02)
        return self.received(path_prefix)

    def serve(self, handler):
        """Answers one request (a subclass may answer otherwise: fake_vcd.FakeVcd)."""
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self.lock:
            self.requests.append(Request(handler.command, handler.path, dict(handler.headers), body))
            route = max(((k, v) for k, v in self.routes.items()
                         if handler.path.startswith(k)), key=lambda kv: len(kv[0]))[1]
        if route.delay:
            time.sleep(route.delay)
        handler.send_response(route.status)
        handler.send_header("Content-Type", route.content_type)
        handler.send_header("Content-Length", str(len(route.body)))
        if route.location:
            handler.send_header("Location", route.location)
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(route.body)

    def _handler(self):
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like a real backend

            def log_message(self, *args):
                pass

            def setup(self):
                super().setup()
                with backend.lock:
                    backend.connections.add(self.connection)

            def finish(self):
                super().finish()
                with backend.lock:
                    backend.connections.discard(self.connection)

            def _serve(self):
                backend.serve(self)

            def handle(self):
                # A client that gave up (a killed worker, a timeout) is not the backend's error.
                try:
                    super().handle()
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

        return Handler

    def start(self):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        server.daemon_threads = True
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.tls["cert"], self.tls["key"])
            if self.client_ca:
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(self.client_ca)
            server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self.server = server
        self.port = server.server_address[1]
        self.thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self):
        """Stops listening (the port is kept for start() again); open connections are closed."""
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            with self.lock:
                for c in list(self.connections):
                    try:
                        c.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            self.thread.join(5)
            self.server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


if __name__ == "__main__":
    b = Backend(int(sys.argv[1]) if len(sys.argv) > 1 else 0).start()
    print(b.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        b.stop()
