"""Attacks from issue 18 against a live manager while a well-behaved agent keeps sending.

Starts a real manager (`python -m appliance run`), enrolls a good agent that posts a batch of
`--batch` real Sysmon events every `--interval` s from 127.0.0.2 (a source address of its own:
the attacks come from 127.0.0.1), retrying a failed batch under the same batch id as the real
agent does. Then runs each attack in turn and prints, per attack: its outcome, the manager's
RSS growth (peak during the attack minus the baseline just before it), the data directory's
and the temp directory's growth, and the good agent's /logs latency p50/p95 during the attack.
What the manager spools to its TMPDIR (a private one) is sampled too. At the end it checks
that every event the manager acknowledged to the good agent is stored.
Targets (issue 18): RSS growth ≤ 1 GiB per attack, good agent p95 ≤ 2 s, nothing acked lost.

    .venv/bin/python benchmarks/abuse.py [--attacks flood,big_batch,...] [--json]
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import os
import shutil
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import requests
from requests.adapters import HTTPAdapter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.ingest import load_events  # noqa: E402
from benchmarks.localmanager import admin_session, start_manager, stop_manager  # noqa: E402
from benchmarks.streams import enroll  # noqa: E402
from rules import wire  # noqa: E402

GiB = 1 << 30


class SourceAdapter(HTTPAdapter):
    """Connections from a given local address (the good agent is not the attacker's IP)."""

    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


class GoodAgent(threading.Thread):
    """Posts one batch every `interval` s; records (time, latency) of each acknowledged batch."""

    def __init__(self, session: requests.Session, url: str, batch: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.session, self.url, self.batch, self.interval = session, url, batch, interval
        self.lines = [json.dumps(e).encode() for e in load_events(2000)]
        self.acked = 0
        self.samples: list[tuple[float, float]] = []
        self.errors: dict[str, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        k = 0
        while not self.stop.is_set():
            start = (k * self.batch) % (len(self.lines) - self.batch)
            body = gzip.compress(b"\n".join(self.lines[start : start + self.batch]) + b"\n", 1)
            bid = str(uuid.uuid4())
            t0 = time.monotonic()
            while not self.stop.is_set():
                try:
                    res = self.session.post(
                        self.url + "/logs",
                        data=body,
                        timeout=30,
                        headers={"Content-Encoding": "gzip", wire.HEADER_BATCH_ID: bid},
                    )
                    if res.status_code == 200:
                        if not res.json().get("duplicate"):
                            self.acked += self.batch
                        break
                    key = f"HTTP {res.status_code}"
                except requests.RequestException as ex:
                    key = type(ex).__name__
                self.errors[key] = self.errors.get(key, 0) + 1
                time.sleep(0.2)
            self.samples.append((time.monotonic(), time.monotonic() - t0))
            k += 1
            self.stop.wait(max(0.0, self.interval - (time.monotonic() - t0)))

    def latencies(self, since: float, until: float) -> list[float]:
        return [lat for t, lat in self.samples if since <= t <= until + lat]


def _du(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _tls(port: int, cert: tuple[str, str] | None, ca: str) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=ca)
    if cert:
        ctx.load_cert_chain(*cert)
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


# ------------------------------------------------------------------------------ attacks


def attack_big_batch(env: dict[str, Any]) -> str:
    body = gzip.compress(b'{"Event":{}}\n' * 500_000)
    res = env["attacker"].post(
        env["ep"] + "/logs", data=body, timeout=120, headers={"Content-Encoding": "gzip"}
    )
    return f'500k x {{"Event":{{}}}} ({len(body)} B gzip) -> {res.status_code}'


def attack_flood(env: dict[str, Any]) -> str:
    socks: list[socket.socket] = []
    for port in (_port(env["ep"]), _port(env["admin"])):
        for _ in range(2_100):
            s = socket.socket()
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", port))
                socks.append(s)
            except OSError:
                s.close()
    t0 = time.monotonic()
    key_ok = 0
    while time.monotonic() - t0 < 12:  # held for 12 s while enrolled agents ask GET /key
        key_ok += env["good_session"].get(env["ep"] + "/key", timeout=10).status_code == 200
        time.sleep(0.5)
    for s in socks:
        s.close()
    return f"{len(socks)} TCP connections held 12 s; good agent GET /key 200 x{key_ok}"


def attack_enroll_body(env: dict[str, Any]) -> str:
    sent = 0
    chunk = b"100000\r\n" + b"a" * 0x100000 + b"\r\n"
    try:
        with _tls(_port(env["ep"]), None, env["ca"]) as conn:
            conn.sendall(
                b"POST /enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                b"\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            for _ in range(2_000):
                conn.sendall(chunk)
                sent += len(chunk)
    except OSError:
        pass
    return f"unauthenticated chunked /enroll: connection closed after {sent >> 20} MiB sent"


def attack_sql(env: dict[str, Any]) -> str:
    def one() -> str:
        res = env["admin_session"].post(
            env["admin"] + "/hunt/sql",
            timeout=120,
            json={"query": "SELECT list(range(1000)) FROM range(40000)", "max_rows": 100_000},
        )
        return str(res.status_code)

    with ThreadPoolExecutor(3) as pool:
        codes = list(pool.map(lambda _: one(), range(3)))
    return "3 parallel SELECT list(range(1000)) FROM range(40000) -> " + ",".join(codes)


def attack_gunzip(env: dict[str, Any]) -> str:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    data = b"".join(comp.compress(block) for _ in range(1024)) + comp.flush()  # 1 GiB zeros
    size = 3 * 1024 * 1024
    parts = [data[i : i + size] for i in range(0, len(data), size)]
    for k, part in enumerate(parts, start=1):
        chunk = wire.UploadChunk(
            filename="zeros.gz",
            guid="{AAAAAAAA-2222-3333-4444-555555555555}",
            event_hash="f" * 40,
            content=base64.b64encode(part).decode(),
            chunk=k,
            total=len(parts),
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
        )
        env["attacker"].post(env["ep"] + "/upload/dumps", json=chunk.to_dict(), timeout=60)
    arts = (
        env["admin_session"]
        .get(f"{env['admin']}/endpoints/{env['bad_uuid']}/artifacts", timeout=30)
        .json()["data"]
    )
    url = env["admin"] + arts[0]["base-url"] + "zeros.gz"
    got = 0
    with env["admin_session"].get(url + "?raw=true&gunzip=true", stream=True, timeout=300) as r:
        status = r.status_code
        for piece in r.iter_content(1 << 20):
            got += len(piece)
    return f"1 GiB of zeros in {len(data) >> 10} KiB, gunzip=true -> {status}, {got >> 20} MiB"


def attack_deep_json(env: dict[str, Any]) -> str:
    deep = b'{"Event":{"EventData":{"X":' + b"[" * 5000 + b"]" * 5000 + b"}}}\n"
    res = env["attacker"].post(
        env["ep"] + "/logs",
        data=gzip.compress(deep),
        timeout=60,
        headers={"Content-Encoding": "gzip"},
    )
    return f"JSON nested 5,000 deep -> {res.status_code}"


def attack_huge_events(env: dict[str, Any]) -> str:
    blob = "B" * 3_900_000
    codes = []
    for i in range(8):  # 120 events of 3.9 MB, 15 per batch (58 MB, under limits.logs_body)
        lines = [
            json.dumps(
                {
                    "Event": {
                        "System": {"EventID": 1, "Channel": "x"},
                        "EventData": {"Blob": blob, "N": i * 15 + j},
                    }
                }
            ).encode()
            for j in range(15)
        ]
        codes.append(
            env["attacker"]
            .post(
                env["ep"] + "/logs",
                timeout=120,
                data=gzip.compress(b"\n".join(lines) + b"\n", 1),
                headers={"Content-Encoding": "gzip"},
            )
            .status_code
        )
    deadline = time.monotonic() + 60
    while True:  # until the index committed them all
        res = env["admin_session"].get(
            f"{env['admin']}/search",
            timeout=120,
            params={"endpoint": env["bad_uuid"], "limit": "10000"},
        )
        if (
            res.status_code != 200
            or res.json()["data"]["total"] >= 120
            or time.monotonic() > deadline
        ):
            break
        time.sleep(1)
    return (
        f"120 events of 3.9 MB posted ({','.join(map(str, sorted(set(codes))))}), search "
        f"page -> {res.status_code}, {len(res.content) >> 10} KiB"
    )


HUNT_EVENTS = 200_000


def setup_retro_hunt(env: dict[str, Any]) -> None:
    """Store HUNT_EVENTS real Sysmon events from the attacker endpoint (not timed)."""
    events = load_events()
    for lo in range(0, HUNT_EVENTS, 5000):
        lines = [json.dumps(events[(lo + i) % len(events)]).encode() for i in range(5000)]
        env["attacker"].post(
            env["ep"] + "/logs",
            timeout=120,
            data=gzip.compress(b"\n".join(lines) + b"\n", 1),
            headers={"Content-Encoding": "gzip", "X-Heron-Batch-Id": str(uuid.uuid4())},
        ).raise_for_status()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # until the index committed them all
        res = env["admin_session"].get(
            f"{env['admin']}/search",
            timeout=120,
            params={"endpoint": env["bad_uuid"], "limit": "1"},
        )
        if res.json()["data"]["total"] >= HUNT_EVENTS:
            break
        time.sleep(1)


def attack_retro_hunt(env: dict[str, Any]) -> str:
    """A CPU-heavy retro-hunt job (40 regexes per event) over HUNT_EVENTS events, 60 s at most."""
    rule = {
        "Name": "Heavy",
        "Meta": {"Events": {"Microsoft-Windows-Sysmon/Operational": [1, 3, 11]}, "Schema": "2.0.0"},
        "Matches": [f"$m{i}: CommandLine ~= '(a|b|c)*{i}x$'" for i in range(40)],
        "Condition": " or ".join(f"$m{i}" for i in range(40)),
    }
    admin, url = env["admin_session"], env["admin"]
    job = admin.post(url + "/hunt/jobs", timeout=60, json={"rules": [rule]}).json()["data"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        info = admin.get(f"{url}/hunt/jobs/{job['id']}", timeout=60).json()["data"]
        if info["state"] not in ("queued", "running"):
            break
        time.sleep(1)
    t = time.monotonic()
    admin.delete(f"{url}/hunt/jobs/{job['id']}", timeout=60)
    while info["state"] in ("queued", "running"):
        info = admin.get(f"{url}/hunt/jobs/{job['id']}", timeout=60).json()["data"]
        time.sleep(0.1)
    return (
        f"job {info['state']} after scanning {info['scanned']:,} of ~{info['total']:,} events "
        f"({info['detections']} detections); cancel took {time.monotonic() - t:.1f} s"
    )


SETUP: dict[str, Callable[[dict[str, Any]], None]] = {"retro_hunt": setup_retro_hunt}

ATTACKS: dict[str, Callable[[dict[str, Any]], str]] = {
    "big_batch": attack_big_batch,
    "flood": attack_flood,
    "enroll_body": attack_enroll_body,
    "sql": attack_sql,
    "gunzip": attack_gunzip,
    "deep_json": attack_deep_json,
    "huge_events": attack_huge_events,
    "retro_hunt": attack_retro_hunt,
}


# ------------------------------------------------------------------------------ runner


def _peak_rss(
    pid: int, stop: threading.Event, out: list[int], tmpdir: Path, tmp_out: list[int]
) -> None:
    proc = psutil.Process(pid)
    while not stop.is_set():
        try:
            out[0] = max(out[0], proc.memory_info().rss)
        except psutil.Error:
            return
        tmp_out[0] = max(tmp_out[0], _du(tmpdir))
        stop.wait(0.1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="heron-bench-abuse-"))
    (tmp / "tmp").mkdir()  # the manager's own TMPDIR, so what it spools is measured alone
    server, init, urls = start_manager(tmp / "data", env={**os.environ, "TMPDIR": str(tmp / "tmp")})
    mproc = psutil.Process(server.pid)
    results: list[dict[str, Any]] = []
    try:
        good_session = enroll(tmp, urls, init)
        good_session.mount("https://", SourceAdapter("127.0.0.2"))
        bad_dir = tmp / "bad"
        bad_dir.mkdir()
        attacker = enroll(bad_dir, urls, init)
        bad_uuid = attacker.get(urls["endpoint"] + "/key", timeout=10).text
        env = {
            "ep": urls["endpoint"],
            "admin": urls["admin"],
            "ca": init["ca_cert"],
            "attacker": attacker,
            "good_session": good_session,
            "bad_uuid": bad_uuid,
            "admin_session": admin_session(init),
        }
        good = GoodAgent(good_session, urls["endpoint"], args.batch, args.interval)
        good.start()
        time.sleep(3)
        for name in args.attacks.split(","):
            if name in SETUP:
                SETUP[name](env)
            time.sleep(1)
            base = mproc.memory_info().rss
            disk0, tmp0 = _du(tmp / "data"), _du(tmp / "tmp")
            peak_tmp = [tmp0]
            peak, stop = [base], threading.Event()
            sampler = threading.Thread(
                target=_peak_rss, args=(server.pid, stop, peak, tmp / "tmp", peak_tmp)
            )
            sampler.start()
            t0 = time.monotonic()
            try:
                outcome = ATTACKS[name](env)
            except Exception as ex:  # noqa: BLE001 - a benchmark reports, it does not stop
                outcome = f"attack failed: {type(ex).__name__}: {ex}"
            t1 = time.monotonic()
            time.sleep(1)
            stop.set()
            sampler.join()
            lats = sorted(good.latencies(t0, t1))
            p95 = lats[min(len(lats) - 1, int(len(lats) * 0.95))] if lats else float("nan")
            row = {
                "attack": name,
                "outcome": outcome,
                "seconds": round(t1 - t0, 1),
                "rss_base_mb": base >> 20,
                "rss_growth_mb": (peak[0] - base) >> 20,
                "data_growth_mb": (_du(tmp / "data") - disk0) >> 20,
                "tmp_peak_mb": (peak_tmp[0] - tmp0) >> 20,
                "good_batches": len(lats),
                "good_p50_s": round(statistics.median(lats), 3) if lats else None,
                "good_p95_s": round(p95, 3) if lats else None,
            }
            results.append(row)
            if not args.json:
                print(
                    f"{name:12} {row['seconds']:6}s  RSS {row['rss_base_mb']} MB "
                    f"+{row['rss_growth_mb']} MB  data +{row['data_growth_mb']} MB  "
                    f"spooled +{row['tmp_peak_mb']} MB  good p50 {row['good_p50_s']} s "
                    f"p95 {row['good_p95_s']} s ({row['good_batches']} batches)\n"
                    f"{'':12} {outcome}",
                    flush=True,
                )
        good.stop.set()
        good.join(60)
        good_uuid = good_session.get(urls["endpoint"] + "/key", timeout=10).text
        stored = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            res = env["admin_session"].post(
                urls["admin"] + "/hunt/sql",
                timeout=60,
                json={"query": f"SELECT count(*) FROM events WHERE endpoint = '{good_uuid}'"},
            )
            stored = res.json()["data"]["rows"][0][0]
            if stored >= good.acked:
                break
            time.sleep(1)
        summary = {
            "attacks": results,
            "good_acked": good.acked,
            "good_stored": stored,
            "good_errors": good.errors,
            "lost": good.acked - stored,
        }
        if not args.json:
            print(
                f"good agent: {good.acked} events acknowledged, {stored} stored "
                f"(lost {good.acked - stored}); retries: {good.errors}"
            )
        return summary
    finally:
        stop_manager(server, 60)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--attacks", default=",".join(ATTACKS))
    ap.add_argument("--batch", type=int, default=200, help="events per good-agent batch")
    ap.add_argument("--interval", type=float, default=0.25, help="seconds between its batches")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 8192)), hard))
    summary = run(args)
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
