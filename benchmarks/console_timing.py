"""Console timing in headless Chromium (targets: each < 1 s).

* the detections (alert) queue over 10,000 stored detections: hash navigation → first page of 100
  rows rendered and counted ("100 of 10000"), in both orders;
* an IR report of --report-mb MB: click "Open report" → dialog with its first section's rows
  (download over TLS + JSON.parse + summary + 200 rows).

Starts a real manager (tests/appliance/console/harness.py: waitress behind the TLS front, real
index) and Debian's chromium; prints per-run and median milliseconds.

    python benchmarks/console_timing.py --runs 5 --report-mb 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.appliance.console.browser import Browser, available  # noqa: E402
from tests.appliance.console.harness import start_manager  # noqa: E402
from tests.appliance.console.test_browser_e2e import (  # noqa: E402
    _big_report,
    _upload_chunked,
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--report-mb", type=float, default=5.0)
    args = ap.parse_args()
    if not available():
        print("Debian chromium/chromedriver not installed", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        m = start_manager(Path(tmp))
        b = Browser(spki_hash=m.spki_sha256_b64)
        try:
            b.driver.get(m.admin_url + "/console/")
            key = b.wait_css("input[name=api_key]")
            key.send_keys(m.admin_key)
            key.submit()
            b.wait_text("main h1", "Dashboard")
            now = time.time()
            rows = [
                (m.endpoint_uuid, now - i, now, f"{i:08x}", ["Bench"], i % 11)
                for i in range(args.rows)
            ]
            for start in range(0, len(rows), 1000):
                m.ctx.store.detections.add_many(rows[start : start + 1000])
            m.ctx.store.db.write(lambda cur: None)
            for sort in ("newest", "critical"):
                times = []
                for _ in range(args.runs):
                    b.go("#/dashboard")
                    t0 = time.perf_counter()
                    b.go(f"#/detections?sort={sort}")
                    b.wait_text("#alerts-summary", f"100 of {args.rows}", timeout=60)
                    times.append((time.perf_counter() - t0) * 1000)
                print(
                    f"alert queue, {args.rows} detections, {sort} first: "
                    + ", ".join(f"{t:.0f}" for t in times)
                    + f" ms (median {statistics.median(times):.0f})"
                )
            body = json.dumps(_big_report(int(args.report_mb * 1e6))).encode()
            _upload_chunked(
                m, "{6d24c251-d7fe-40cf-8723-cea8ee2b33f9}", "ef" * 20, "report.json", body
            )
            b.go(f"#/endpoints/{m.endpoint_uuid}")
            arts = b.wait_text("section[aria-labelledby=ep-arts]", "Open report")
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                b.button("Open report", arts).click()
                b.wait_css("dialog[open] details[data-section=processes][open] tbody tr", 60)
                times.append((time.perf_counter() - t0) * 1000)
                b.button("Close", b.css("dialog[open]")).click()
                b.wait(lambda d: not b.all("dialog[open]"))
            print(
                f"IR report {len(body) / 1e6:.1f} MB: "
                + ", ".join(f"{t:.0f}" for t in times)
                + f" ms (median {statistics.median(times):.0f})"
            )
        finally:
            b.close()
            m.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
