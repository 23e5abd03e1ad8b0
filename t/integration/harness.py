"""Helpers for warren's integration tests (stdlib + pika; run under /usr/bin/python3).

t/run-tests provides the environment: WARREN_ROOT, WARREN_BUILD and the test broker's
WARREN_BROKER_PORT (and WARREN_BROKER_MGMT_PORT / WARREN_BROKER_DIR).

    with Warrend(ports=2, extra={"http": {"confirm_timeout": 1}}) as w:
        status, headers, body = w.request("POST", 0, "/%2f/amq.default/q", body="hi",
                                          auth=("guest", "guest"))
"""
import atexit
import base64
import copy
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import weakref

import pika

ROOT = os.environ.get("WARREN_ROOT") or os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BUILD = os.environ.get("WARREN_BUILD") or os.path.join(ROOT, "build")
DELETE = object()  # in Warrend(extra=...): remove this key from the generated config


BROKER_DIR = os.environ.get("WARREN_BROKER_DIR")
# Under `make check-sanitizers` freed memory waits in ASan's quarantine (up to 256 MB), so a
# process's RSS says nothing about what it keeps; LeakSanitizer checks that there instead.
RSS_TELLS = not os.environ.get("WARREN_SANITIZER_LOGS")  # t/run-tests' broker (scripts/broker)


def broker_port():
    return int(os.environ.get("WARREN_BROKER_PORT", "5672"))


def broker_command(command, *args, timeout=150):
    """scripts/broker COMMAND $WARREN_BROKER_DIR ARGS... (kill, restart, pause, resume, ctl ...)
    on t/run-tests' broker; its stdout. Raises with its stderr when it fails."""
    proc = subprocess.run([os.path.join(ROOT, "scripts", "broker"), command,
                           BROKER_DIR, *args],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/broker {command} {' '.join(args)}: {proc.stdout}{proc.stderr}")
    return proc.stdout


def broker_ready(timeout=60):
    """Until pika can connect (the AMQP port answers and the node accepts logins)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            BrokerClient().close()
            return
        except pika.exceptions.AMQPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def delete_queue_when_back(queue):
    """A fault test's tearDown: waits for the broker to be back, then deletes the test's queue."""
    try:
        broker_ready(60)
        with BrokerClient() as b:
            b.delete_queue(queue)
    except pika.exceptions.AMQPError:
        pass


def broker_eval(*expressions):
    """Runs Erlang expressions on the test broker in ONE rabbitmqctl call (each call starts an
    Erlang VM: about 1 s, several on a loaded machine). `A` is the acting user for the audit
    log. These are RabbitMQ 3.10's functions behind add_user, set_permissions, add_vhost ..."""
    code = ", ".join(('A = <<"warren-it">>',) + expressions + ("ok.",))
    return broker_command("ctl", "eval", code, timeout=120)


def erl(text):
    """An Erlang binary literal."""
    return '<<"' + text.replace("\\", "\\\\").replace('"', '\\"') + '">>'


def alive(pid):
    """The process exists and is not a zombie (PID 1 may reap orphans late)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def rss_kib(pid):
    """A process's resident memory (VmRSS), in KiB."""
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS:")).split()[1])


def wait_for(predicate, timeout, interval=0.05):
    """Polls predicate until it returns something true or timeout seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1 (all sockets held open until every port is known)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def deep_merge(base, extra):
    """Returns base updated with extra: dicts merge recursively, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in (extra or {}).items():
        if value is DELETE:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def _yaml_lines(value, indent):
    # Block style like a hand-written config (so warrend's file:line diagnostics are realistic);
    # scalars and scalar lists go through json.dumps: JSON is valid YAML flow style.
    pad = " " * indent
    if isinstance(value, dict):
        for k, v in value.items():
            key = k if _PLAIN_KEY.match(str(k)) else json.dumps(str(k))
            if isinstance(v, dict) and v or _is_block_list(v):
                yield f"{pad}{key}:"
                yield from _yaml_lines(v, indent + 2)
            else:
                yield f"{pad}{key}: {json.dumps(v)}"
    else:  # a list holding dicts or lists: block sequence
        for item in value:
            if isinstance(item, dict) and item or _is_block_list(item):
                sub = list(_yaml_lines(item, indent + 2))
                yield f"{pad}- {sub[0][indent + 2:]}"
                yield from sub[1:]
            else:
                yield f"{pad}- {json.dumps(item)}"


def _is_block_list(v):
    return isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v)


def write_config(path, config):
    """Writes config (a dict) as YAML to path; usable alone, e.g. for tests of bad configs."""
    with open(path, "w") as f:
        f.write("# written by t/integration/harness.py\n")
        f.write("\n".join(_yaml_lines(config, 0)) + "\n")
    return path


class Headers(dict):
    """Response headers; lookups ignore case ("content-type" == "Content-Type")."""

    def __init__(self, pairs):
        super().__init__()
        for k, v in pairs:
            k = k.lower()
            self[k] = f"{self[k]}, {v}" if k in self else v

    def __getitem__(self, k):
        return super().__getitem__(k.lower())

    def __contains__(self, k):
        return super().__contains__(k.lower())

    def get(self, k, default=None):
        return super().get(k.lower(), default)


def http_request(host, port, method, path, body=None, headers=None, auth=None, timeout=5):
    """One request on a NEW connection: (status, Headers, body bytes)."""
    headers = dict(headers or {})
    if isinstance(body, dict):  # a form, like statelessd clients send
        body = urllib.parse.urlencode(body)
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    if isinstance(body, str):
        body = body.encode()
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, Headers(resp.getheaders()), resp.read()
    finally:
        conn.close()


_live = weakref.WeakSet()


@atexit.register
def _cleanup_all():
    for w in list(_live):
        w.cleanup()


class Warrend:
    """One warrend master (plus workers) on free ports with a generated config in a temp dir."""

    START_TIMEOUT = 10

    def __init__(self, ports=1, extra=None):
        self.dir = tempfile.mkdtemp(prefix="warren-it-")
        self.ports = free_ports(ports)
        self.config_path = os.path.join(self.dir, "warren.yml")
        self.log_path = os.path.join(self.dir, "warrend.log")
        self.socket_path = os.path.join(self.dir, "warrend.sock")
        base = {
            # user/group "": no privilege drop, the tests run as whoever runs make check.
            "daemon": {"pidfile": os.path.join(self.dir, "warrend.pid"), "user": "", "group": "",
                       "control_socket": self.socket_path},
            "broker": {"hosts": ["127.0.0.1"], "port": broker_port()},
            # One worker per port unless a test says otherwise (the default, auto, is one per core).
            "http": {"listen": "127.0.0.1", "ports": self.ports, "workers_per_port": 1},
            "logging": {"level": "debug"},
        }
        self.config = deep_merge(base, extra)
        self.proc = None
        self.binary = os.path.join(BUILD, "warrend")  # a copy, for a test that installs over it
        self.seen_pids = set()  # every worker PID ever listed, killed on cleanup
        _live.add(self)

    @property
    def pidfile(self):
        return self.config["daemon"]["pidfile"]

    def write(self):
        """Writes the config file without starting anything (for -t and refusal tests)."""
        write_config(self.config_path, self.config)

    def wait(self, timeout=15):
        """The master's exit code once it exits by itself (after `warrenctl stop`, say)."""
        return self.proc.wait(timeout)

    # --- lifecycle ---
    def start(self, wait=True):
        self.write()
        log = open(self.log_path, "ab")
        # Own session: Ctrl-C on the test run does not reach it, and cleanup can kill the whole
        # process group (master and workers) even if the master died first.
        self.proc = subprocess.Popen(
            [self.binary, "-f", "-c", self.config_path],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout=START_TIMEOUT):
        """Until every port answers GET /healthz 200; raises with the log if it does not."""
        deadline = time.monotonic() + timeout
        pending = list(range(len(self.ports)))
        while pending and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"warrend exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if self.request("GET", pending[0], "/healthz", timeout=1)[0] == 200:
                    pending.pop(0)
                    continue
            except OSError:
                pass
            time.sleep(0.05)
        if pending:
            self.cleanup(remove_dir=False)
            raise RuntimeError(f"warrend not healthy on ports {[self.ports[i] for i in pending]} "
                               f"after {timeout} s:\n{self.log()}")

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Signals the master and returns its exit code (negative: killed by a signal)."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill_group()
            raise TimeoutError(f"warrend did not exit within {timeout} s of {sig!r}:\n{self.log()}")

    def reload(self):
        self.proc.send_signal(signal.SIGHUP)

    @property
    def pid(self):
        return self.proc.pid

    def leftover_pids(self):
        """Live (non-zombie) processes still in warrend's process group, master included."""
        pgid, alive = self.proc.pid, []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[2]) == pgid:  # fields: state, ppid, pgrp, ...
                alive.append(int(entry))
        return alive

    def _kill_group(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in self.seen_pids:  # a worker that left the group (it should not)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def cleanup(self, remove_dir=True):
        """Always safe: kills whatever is left and removes the temp dir (unless WARREN_KEEP_TMP)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    self.stop(timeout=5)
                except TimeoutError:
                    pass
            self._kill_group()
        if remove_dir and not os.environ.get("WARREN_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)
        _live.discard(self)

    def __enter__(self):
        return self.start() if self.proc is None else self

    def __exit__(self, *exc):
        self.cleanup()
        return False

    # --- control socket ---
    def ctl(self, *args, timeout=15):
        """warrenctl -s SOCK ARGS...: (exit code, stdout); stderr is kept in self.ctl_stderr."""
        proc = subprocess.run([os.path.join(BUILD, "warrenctl"), "-s", self.socket_path,
                               *map(str, args)], capture_output=True, text=True, timeout=timeout)
        self.ctl_stderr = proc.stderr
        return proc.returncode, proc.stdout

    def worker_pids(self):
        """The workers as `warrenctl workers --json` lists them: dicts with pid, slot, kind, port."""
        rc, out = self.ctl("workers", "--json")
        if rc != 0:
            raise RuntimeError(f"warrenctl workers --json exited {rc}: {self.ctl_stderr}")
        workers = json.loads(out)
        self.seen_pids.update(w["pid"] for w in workers)
        return workers

    # --- HTTP ---
    @property
    def host(self):
        """The address the workers listen on (http.listen)."""
        return self.config["http"]["listen"]

    def url(self, i, path="/"):
        return f"http://{self.host}:{self.ports[i]}{path}"

    def request(self, method, port_index_or_url, path="/", body=None, headers=None, auth=None,
                timeout=5):
        """HTTP on a new connection to port index i (or a base URL): (status, Headers, bytes)."""
        if isinstance(port_index_or_url, int):
            host, port, prefix = self.host, self.ports[port_index_or_url], ""
        else:
            u = urllib.parse.urlsplit(port_index_or_url)
            host, port, prefix = u.hostname, u.port or 80, u.path.rstrip("/")
        return http_request(host, port, method, prefix + path, body, headers, auth, timeout)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""


class BrokerClient:
    """A pika BlockingConnection to the test broker, for setting up and inspecting queues."""

    def __init__(self, vhost="/", username="guest", password="guest", port=None):
        params = pika.ConnectionParameters(
            "127.0.0.1", port or broker_port(), vhost, pika.PlainCredentials(username, password),
            socket_timeout=5, blocked_connection_timeout=10, connection_attempts=1)
        self.conn = pika.BlockingConnection(params)
        self._channel = None

    @property
    def channel(self):
        # A channel error (404, 406 ...) closes the channel; the next call gets a fresh one.
        if self._channel is None or self._channel.is_closed:
            self._channel = self.conn.channel()
        return self._channel

    def consumer_count(self, queue):
        """Consumers on queue; 0 while it does not exist yet (the passive declare's 404 closes
        only that channel, and `channel` opens the next)."""
        try:
            return self.channel.queue_declare(queue, passive=True).method.consumer_count
        except pika.exceptions.ChannelClosedByBroker:
            return 0

    def declare_queue(self, name="", **kw):
        """queue_declare; returns the queue name (useful for server-named queues)."""
        return self.channel.queue_declare(queue=name, **kw).method.queue

    def declare_exchange(self, name, exchange_type="direct", **kw):
        self.channel.exchange_declare(exchange=name, exchange_type=exchange_type, **kw)

    def bind(self, queue, exchange, routing_key="", arguments=None):
        self.channel.queue_bind(queue=queue, exchange=exchange, routing_key=routing_key,
                                arguments=arguments)

    def publish(self, exchange, routing_key, body, properties=None):
        self.channel.basic_publish(exchange, routing_key, body, properties)

    def get(self, queue, timeout=5):
        """Polls basic.get (auto-ack) until a message arrives: (method, properties, body) or None."""
        deadline = time.monotonic() + timeout
        while True:
            method, props, body = self.channel.basic_get(queue, auto_ack=True)
            if method is not None:
                return method, props, body
            if time.monotonic() >= deadline:
                return None
            self.conn.sleep(0.05)

    def messages(self, queue, count=None, timeout=2):
        """Consumes (auto-ack) until `count` messages or `timeout` s without one:
        [(method, properties, body)] in order."""
        out = []
        for method, props, body in self.channel.consume(queue, auto_ack=True, inactivity_timeout=timeout):
            if method is None:
                break
            out.append((method, props, body))
            if count is not None and len(out) >= count:
                break
        self.channel.cancel()
        return out

    def purge(self, queue):
        return self.channel.queue_purge(queue).method.message_count

    def delete_queue(self, queue):
        self.channel.queue_delete(queue)

    def close(self):
        if self.conn.is_open:
            self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class ClientThreads:
    """Daemon threads that each run self._run(index) until stop() (they check self.stopping);
    for load generators. stop() waits join_timeout seconds for each and says whether all ended."""

    join_timeout = 15

    def __init__(self, count):
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(count)]

    def _run(self, index):
        raise NotImplementedError

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        """False if a thread is still running (stuck in a request: a hang)."""
        self.stopping.set()
        for t in self.threads:
            t.join(self.join_timeout)
        return not any(t.is_alive() for t in self.threads)
