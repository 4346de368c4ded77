"""MISP backfill: reports pushed in slices, and settings changes while a push is on the network.

Against the loopback fake MISP (tests/fakemisp) with the real PyMISP client:

* queue N reports (the issue's case: a manager holding 316 reports when MISP is enabled), then
  push them one slice per call as the worker does; prints slices, seconds per slice, reports/s;
* hold one `objects/add` on the network and time `update_settings` + `status` meanwhile (the
  issue's `PUT /misp/settings` hung 300 s behind the whole queue).

    .venv/bin/python benchmarks/misp_backfill.py --reports 316
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.misp import MispSettings, MispStorage, MispSync
from tests.fakemisp import DEFAULT_KEY, FakeMisp

NS = "3f1b6f5e-8a53-4c0e-9d0e-6b1f0c7c2a11"


def write_report(root: Path, n: int) -> Path:
    d = root / "ep" / "{guid}" / f"{n:040x}"
    d.mkdir(parents=True)
    (d / "event.json").write_text(json.dumps({"Event": {"System": {"EventID": 1}}}))
    (d / "report.json").write_text(json.dumps({"processes": [{"pid": n}], "commands": []}))
    manifest = {"event_hash": f"{n:040x}", "endpoint": "ep", "time": "2030-01-01T00:00:00Z"}
    (d / "manifest.json").write_text(json.dumps(manifest))
    return d


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reports", type=int, default=316)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, FakeMisp() as fake:
        root = Path(tmp)
        settings = MispSettings.from_dict(
            {
                "enabled": True,
                "url": fake.url,
                "api_key": DEFAULT_KEY,
                "namespace": NS,
                "report_max_per_hour": 100_000,
                "read_timeout": 120.0,
            }
        )
        sync = MispSync(settings, MispStorage.open(root / "misp"), artifacts_root=root / "art")
        for n in range(args.reports):
            write_report(root / "art", n)
        queued = sync.scan_artifacts()
        slices, t0, longest = 0, time.perf_counter(), 0.0
        while len(sync.storage.reports):
            s0 = time.perf_counter()
            sync.push_reports()
            longest = max(longest, time.perf_counter() - s0)
            slices += 1
        total = time.perf_counter() - t0
        print(f"queued {queued} reports; pushed in {slices} slices, {total:.1f} s")
        print(f"longest slice {longest:.2f} s; {queued / total:.1f} reports/s")

        write_report(root / "art", args.reports + 1)
        sync.scan_artifacts()
        held = fake.inject("hold", "/objects/add", times=1)
        pusher = threading.Thread(target=sync.push_reports)
        pusher.start()
        held.arrived.wait(60)
        s0 = time.perf_counter()
        sync.update_settings({"pull_interval": 120.0})
        sync.status()
        waited = time.perf_counter() - s0
        held.release.set()
        pusher.join(60)
        print(f"update_settings + status during a held push: {waited * 1000:.1f} ms")
        sync.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
