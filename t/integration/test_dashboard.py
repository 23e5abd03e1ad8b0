"""GET /: the live dashboard, as a person sees it in a browser (headless Chromium)."""
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

from harness import Warrend

CHROMIUM = shutil.which("chromium")


@unittest.skipUnless(CHROMIUM, "chromium not installed (scripts/install-deps --test installs it)")
class Dashboard(unittest.TestCase):
    def test_dashboard_shows_live_rates_after_traffic(self):
        with Warrend(ports=2) as w:
            status, headers, body = w.request("GET", 0, "/")
            self.assertEqual(status, 200)
            self.assertIn("text/html", headers["Content-Type"])
            self.assertNotIn(b"http://", body.replace(b'http://www.w3.org', b''))  # no outside assets

            stop = threading.Event()

            def traffic():
                deadline = time.monotonic() + 20
                n = 0
                while not stop.is_set() and time.monotonic() < deadline:
                    w.request("POST", n % 2, "/%2f/amq.default/dashboard-test", body={"body": "x"},
                              auth=("guest", "guest"))
                    n += 1

            thread = threading.Thread(target=traffic)
            thread.start()
            time.sleep(3)  # the master's rates cover the last seconds
            profile = tempfile.mkdtemp(prefix="warren-chromium-")
            shot = os.path.join(os.environ.get("WARREN_BUILD", "build"), "dashboard.png")
            flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", f"--user-data-dir={profile}", "--window-size=1200,900",
                     "--virtual-time-budget=3000"]
            try:
                dom = subprocess.run(flags + ["--dump-dom", w.url(0, "/")], capture_output=True,
                                     text=True, timeout=60).stdout
                subprocess.run(flags + [f"--screenshot={shot}", w.url(1, "/")], capture_output=True,
                               timeout=60)
            finally:
                stop.set()
                thread.join()
                shutil.rmtree(profile, ignore_errors=True)
            rate = re.search(r'id="rate-requests">([^<]*)<', dom)
            self.assertTrue(rate, dom[:2000])
            self.assertGreater(float(rate.group(1)), 0, "requests/s should be above zero")
            confirmed = re.search(r'id="rate-confirmed">([^<]*)<', dom)
            self.assertGreater(float(confirmed.group(1)), 0)
            self.assertIn("/:guest", dom)
            self.assertRegex(dom, r"<td>204</td>")
            self.assertTrue(os.path.getsize(shot) > 10000, "a screenshot of the page")


if __name__ == "__main__":
    unittest.main()
