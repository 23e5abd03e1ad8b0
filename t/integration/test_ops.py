"""What an operator runs: the init script, make install, logrotate and nginx in front of warrend.

Each test uses the real thing from etc/ (adapted only in its paths and ports) on a real
build/warrend under a temp directory.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import unittest

from harness import BUILD, ROOT, Warrend, alive, free_ports, http_request, wait_for

INIT_SCRIPT = os.path.join(ROOT, "etc", "init.d", "warrend")


class InitScript(unittest.TestCase):
    """etc/init.d/warrend drives a real warrend: settings come from the environment."""

    def setUp(self):
        self.w = Warrend(ports=2)
        self.w.write()
        self.pidfile = os.path.join(self.w.dir, "run", "warrend.pid")  # -p, not daemon.pidfile
        self.logfile = os.path.join(self.w.dir, "log", "warrend.log")
        self.env = dict(os.environ, DAEMON=os.path.join(BUILD, "warrend"),
                        CONFIG=self.w.config_path, PIDFILE=self.pidfile, LOGFILE=self.logfile,
                        STOP_TIMEOUT="15", START_WAIT="10", SYSTEMCTL_SKIP_REDIRECT="1",
                        WARREN_DEFAULTS=os.path.join(self.w.dir, "no-defaults"))
        self.master = None

    def tearDown(self):
        # Whatever the test did, nothing it started may outlive it: warrend -d is a session
        # leader, so its process group holds the master and its workers.
        if self.master and alive(self.master):
            self.init("stop")
        if self.master:
            try:
                os.killpg(self.master, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.w.cleanup()

    def init(self, action, timeout=40):
        proc = subprocess.run([INIT_SCRIPT, action], env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        return proc.returncode, proc.stdout + proc.stderr

    def log(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def generation(self):
        """The worker pids once every worker is serving and of one generation, else None."""
        rows = self.w.worker_pids()
        if len(rows) == 2 and len({r["generation"] for r in rows}) == 1 and \
                all(r["ready"] and not r["quitting"] for r in rows):
            return {r["pid"] for r in rows}
        return None

    def test_start_reload_status_stop(self):
        rc, out = self.init("status")
        self.assertEqual(rc, 3, out)

        rc, out = self.init("start")
        self.assertEqual(rc, 0, out + self.log())
        with open(self.pidfile) as f:
            self.master = int(f.read())
        self.assertTrue(alive(self.master))
        for i in range(2):
            self.assertEqual(self.w.request("GET", i, "/healthz")[0], 200)
        rc, out = self.init("status")
        self.assertEqual(rc, 0, out)
        self.assertIn(str(self.master), out)
        rc, out = self.init("start")  # already running: nothing to do, success
        self.assertEqual(rc, 0, out)
        with open(self.pidfile) as f:
            self.assertEqual(f.read().strip(), str(self.master))

        before = wait_for(self.generation, 5)
        self.assertTrue(before, self.w.worker_pids())
        rc, out = self.init("reload")
        self.assertEqual(rc, 0, out)
        after = wait_for(lambda: (g := self.generation()) and not g & before and g, 10)
        self.assertTrue(after, f"workers not replaced: {self.w.worker_pids()}\n{self.log()}")
        self.assertTrue(alive(self.master), "the master survives a reload")
        for i in range(2):
            self.assertEqual(self.w.request("GET", i, "/healthz")[0], 200)

        rc, out = self.init("stop")
        self.assertEqual(rc, 0, out)
        self.assertFalse(alive(self.master))
        self.assertFalse(any(alive(p) for p in before | after))
        self.assertFalse(os.path.exists(self.pidfile))
        rc, out = self.init("status")
        self.assertEqual(rc, 3, out)
        rc, out = self.init("stop")  # not running: nothing to do, success
        self.assertEqual(rc, 0, out)

    def test_upgrade_replaces_the_master_without_closing_a_port(self):
        rc, out = self.init("upgrade")
        self.assertEqual(rc, 7, out)  # not running
        self.assertEqual(self.init("start")[0], 0, self.log())
        old = int(open(self.pidfile).read())
        before = wait_for(self.generation, 5)
        self.assertTrue(before, self.w.worker_pids())
        rc, out = self.init("upgrade")
        self.assertEqual(rc, 0, out + self.log())
        self.master = int(open(self.pidfile).read())
        self.assertNotEqual(self.master, old)
        self.assertFalse(alive(old), "the old master drained and left")
        self.assertFalse(os.path.exists(self.pidfile + ".oldbin"))
        self.assertTrue(wait_for(lambda: (g := self.generation()) and not g & before, 10), self.log())
        for i in range(2):
            self.assertEqual(self.w.request("GET", i, "/healthz")[0], 200)
        rc, out = self.init("status")
        self.assertEqual(rc, 0, out)
        self.assertIn(str(self.master), out)
        # A binary that cannot start: the upgrade fails and the running master stays.
        broken = os.path.join(self.w.dir, "broken-warrend")
        with open(broken, "w") as f:
            f.write("#!/bin/sh\nexit 1\n")
        os.chmod(broken, 0o755)
        installed = os.path.join(self.w.dir, "sbin", "warrend")  # its name is what status checks
        os.makedirs(os.path.dirname(installed))
        shutil.copy2(os.path.join(BUILD, "warrend"), installed)
        self.assertEqual(self.init("stop")[0], 0)
        self.env["DAEMON"] = installed
        self.assertEqual(self.init("start")[0], 0, self.log())
        self.master = int(open(self.pidfile).read())
        shutil.copy2(broken, self.env["DAEMON"] + ".new")
        os.rename(self.env["DAEMON"] + ".new", self.env["DAEMON"])
        self.env["DAEMON"] = os.path.join(BUILD, "warrend")  # for the script's own -t check:
        # the master runs what is installed at the path it started from, as nginx does
        rc, out = self.init("upgrade")
        self.assertEqual(rc, 1, out)
        self.assertIn("still runs", out)
        self.assertEqual(int(open(self.pidfile).read()), self.master)
        self.assertTrue(alive(self.master))
        self.assertEqual(self.w.request("GET", 0, "/healthz")[0], 200)

    def test_bad_config_is_refused_before_anything_starts(self):
        with open(self.w.config_path, "a") as f:
            f.write("no_such_section: 1\n")
        rc, out = self.init("start")
        self.assertEqual(rc, 6, out)  # LSB: not configured
        self.assertIn("no_such_section", out)
        self.assertFalse(os.path.exists(self.pidfile))
        self.assertEqual(self.init("status")[0], 3)

    def test_logrotate_copies_truncates_and_signals(self):
        """etc/logrotate.d/warrend on the init script's log: USR1 reaches every worker."""
        if not shutil.which("logrotate"):
            self.skipTest("logrotate is not installed")
        rc, out = self.init("start")
        self.assertEqual(rc, 0, out + self.log())
        with open(self.pidfile) as f:
            self.master = int(f.read())
        self.assertIn("starting with", self.log())
        with open(os.path.join(ROOT, "etc", "logrotate.d", "warrend")) as f:
            conf = f.read()
        self.assertEqual(conf.count("/var/log/warren/warrend.log"), 1)
        conf = conf.replace("/var/log/warren/warrend.log", self.logfile)
        conf = conf.replace("/run/warren/warrend.pid", self.pidfile)
        conf_path = os.path.join(self.w.dir, "logrotate.conf")
        with open(conf_path, "w") as f:
            f.write(conf)
        proc = subprocess.run(["logrotate", "-f", "-s", os.path.join(self.w.dir, "state"),
                               conf_path], capture_output=True, text=True, timeout=30)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        with open(self.logfile + ".1", errors="replace") as f:
            self.assertIn("starting with", f.read())

        def signalled():
            rows = json.loads(self.w.request("GET", 0, "/stats")[2])["workers"]
            return len(rows) == 2 and all(r["signals_received"] >= 1 for r in rows)
        self.assertTrue(wait_for(signalled, 5), "USR1 did not reach the workers")
        # The file was truncated in place: warrend keeps writing to it.
        self.init("stop")
        self.assertIn("stopped", self.log())
        self.assertNotIn("starting with", self.log())


class Install(unittest.TestCase):
    """make install / uninstall with DESTDIR, from the repository's own build."""

    LAYOUT = {  # installed path -> mode, for ./configure --prefix=/usr --sysconfdir=/etc
        "usr/sbin/warrend": 0o755,
        "usr/bin/warrenctl": 0o755,
        "usr/share/man/man8/warrend.8": 0o644,
        "usr/share/man/man1/warrenctl.1": 0o644,
        "usr/share/man/man5/warren.yml.5": 0o644,
        "usr/share/man/man7/warren-rpc.7": 0o644,
        "etc/warren/warren.yml": 0o644,
        "etc/default/warrend": 0o644,
        "etc/init.d/warrend": 0o755,
        "etc/logrotate.d/warrend": 0o644,
        "usr/lib/systemd/system/warrend.service": 0o644,
        "usr/share/doc/warren/examples/nginx-warren.conf": 0o644,
        "usr/share/doc/warren/examples/warren.yml": 0o644,
    }

    def setUp(self):
        if os.path.realpath(BUILD) != os.path.realpath(os.path.join(ROOT, "build")):
            self.skipTest("make install installs ROOT/build, not WARREN_BUILD")
        if not os.path.exists(os.path.join(ROOT, "config.mk")):
            self.skipTest("not configured")
        # A sub-make of `make check` must not inherit its jobserver: this make is no child.
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
        if self.make("-q", "all").returncode != 0:
            self.skipTest("the build is not up to date: run make first")
        self.dest = tempfile.mkdtemp(prefix="warren-install-")

    def tearDown(self):
        shutil.rmtree(self.dest, ignore_errors=True)

    def make(self, *args):
        return subprocess.run(["make", "-s", "-C", ROOT, *args], env=self.env,
                              capture_output=True, text=True, timeout=120)

    def installed(self):
        found = {}
        for top, _, files in os.walk(self.dest):
            for name in files:
                path = os.path.join(top, name)
                found[os.path.relpath(path, self.dest)] = os.stat(path).st_mode & 0o7777
        return found

    def build_mtimes(self):
        out = {}
        for top, dirs, files in os.walk(BUILD):
            dirs[:] = [d for d in dirs if d != "distcheck"]
            for name in files:
                path = os.path.join(top, name)
                out[path] = os.stat(path).st_mtime_ns
        return out

    def test_install_and_uninstall(self):
        layout = ["DESTDIR=" + self.dest, "prefix=/usr", "sysconfdir=/etc"]
        before = self.build_mtimes()
        proc = self.make("install", *layout)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertEqual(proc.stdout + proc.stderr, "")
        self.assertEqual(self.build_mtimes(), before, "make install rebuilt something")
        self.assertEqual(self.installed(), self.LAYOUT)

        with open(os.path.join(self.dest, "etc/init.d/warrend")) as f:
            script = f.read()
        self.assertIn("\nDAEMON=/usr/sbin/warrend\n", script)
        self.assertIn("\nCONFIG=/etc/warren/warren.yml\n", script)
        with open(os.path.join(self.dest, "usr/sbin/warrend"), "rb") as a, \
                open(os.path.join(BUILD, "warrend"), "rb") as b:
            self.assertTrue(a.read() == b.read())

        # An operator's config survives a reinstall and an uninstall.
        config = os.path.join(self.dest, "etc/warren/warren.yml")
        with open(config, "a") as f:
            f.write("# edited\n")
        self.assertEqual(self.make("install", *layout).returncode, 0)
        with open(config) as f:
            self.assertTrue(f.read().endswith("# edited\n"))
        proc = self.make("uninstall", *layout)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertEqual(list(self.installed()), ["etc/warren/warren.yml"])
        os.unlink(config)

    def test_paths_follow_the_prefix(self):
        proc = self.make("install", "DESTDIR=" + self.dest, "prefix=/opt/warren")
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        files = self.installed()
        self.assertIn("opt/warren/etc/init.d/warrend", files)
        self.assertIn("opt/warren/lib/systemd/system/warrend.service", files)
        with open(os.path.join(self.dest, "opt/warren/lib/systemd/system/warrend.service")) as f:
            unit = f.read()
        self.assertIn("ExecStart=/opt/warren/sbin/warrend -f -c ${CONFIG}", unit)
        self.assertIn("Environment=CONFIG=/opt/warren/etc/warren/warren.yml", unit)
        self.assertIn("EnvironmentFile=-/opt/warren/etc/default/warrend", unit)
        proc = self.make("uninstall", "DESTDIR=" + self.dest, "prefix=/opt/warren")
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertEqual(self.installed(), {})


def established(port):
    """Server-side ESTABLISHED TCP connections on 127.0.0.1:port (from /proc/net/tcp)."""
    n = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            if state == "01" and int(local.split(":")[1], 16) == port:
                n += 1
    return n


class Nginx(unittest.TestCase):
    """etc/nginx-warren.conf, hosts and ports adapted: two warrend "hosts" (127.0.0.1 and
    127.0.0.2), requests spread over every port of both."""

    def setUp(self):
        self.nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access(
            "/usr/sbin/nginx", os.X_OK) else None)
        if not self.nginx:
            self.skipTest("nginx is not installed")
        self.dir = tempfile.mkdtemp(prefix="warren-nginx-")
        os.chmod(self.dir, 0o755)  # nginx's workers run as nobody when started as root
        self.proc = None

    def tearDown(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)

    def write_conf(self, backend_ports, front_port):
        """backend_ports: {host: [port, port]} for the example's two hosts."""
        with open(os.path.join(ROOT, "etc", "nginx-warren.conf")) as f:
            site = f.read()
        for host, ports in backend_ports.items():
            for default, port in zip((8000, 8001), ports):
                self.assertEqual(site.count(f"{host}:{default};"), 1)
                site = site.replace(f"{host}:{default};", f"{host}:{port};")
        site, n = re.subn(r"\blisten\s+80;", f"listen 127.0.0.1:{front_port};", site)
        self.assertEqual(n, 1)
        d = self.dir
        temp_paths = "\n".join(f"    {kind}_temp_path {d}/{name};" for kind, name in (
            ("client_body", "body"), ("proxy", "proxy"), ("fastcgi", "fastcgi"),
            ("uwsgi", "uwsgi"), ("scgi", "scgi")))
        path = os.path.join(d, "nginx.conf")
        with open(path, "w") as f:
            f.write(f"daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\n"
                    f"error_log {d}/error.log;\nevents {{ worker_connections 256; }}\n"
                    f"http {{\n    access_log off;\n{temp_paths}\n{site}\n}}\n")
        return path

    def nginx_cmd(self, conf, *extra):
        return [self.nginx, "-p", self.dir, "-c", conf, "-e", os.path.join(self.dir, "error.log"),
                *extra]

    def error_log(self):
        try:
            with open(os.path.join(self.dir, "error.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def test_requests_spread_over_two_hosts_and_every_port(self):
        with Warrend(ports=2) as w, Warrend(ports=2, extra={"http": {"listen": "127.0.0.2"}}) as w2:
            front = free_ports(1)[0]
            conf = self.write_conf({"127.0.0.1": w.ports, "127.0.0.2": w2.ports}, front)
            check = subprocess.run(self.nginx_cmd(conf, "-t"), capture_output=True, text=True,
                                   timeout=30)
            self.assertEqual(check.returncode, 0, check.stderr)
            self.proc = subprocess.Popen(self.nginx_cmd(conf), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         start_new_session=True)

            def up():
                if self.proc.poll() is not None:
                    raise AssertionError(f"nginx exited {self.proc.returncode}:\n"
                                         f"{self.error_log()}")
                try:
                    return http_request("127.0.0.1", front, "GET", "/healthz", timeout=1)[0] == 200
                except OSError:
                    return False
            self.assertTrue(wait_for(up, 10), self.error_log())

            pids = set()
            for _ in range(200):
                status, _, body = http_request("127.0.0.1", front, "GET", "/healthz")
                self.assertEqual(status, 200, body)
                pids.add(json.loads(body)["pid"])
            self.assertEqual(pids, {r["pid"] for r in w.worker_pids() + w2.worker_pids()})

            # Each worker counted its share; a worker answering /stats counts that GET too,
            # so each must show well over one.
            for instance in (w, w2):
                rows = json.loads(instance.request("GET", 0, "/stats")[2])["workers"]
                self.assertEqual({r["pid"] for r in rows}, {r["pid"] for r in instance.worker_pids()})
                for row in rows:
                    self.assertGreater(row["requests"]["method.GET"], 10, row["requests"])
            # keepalive: nginx holds a few upstream connections open, not one per request.
            for port in w.ports + w2.ports:
                self.assertGreaterEqual(established(port), 1, f"no kept connection to {port}")
                self.assertLessEqual(established(port), 4)


if __name__ == "__main__":
    unittest.main()
