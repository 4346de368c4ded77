"""`heron scan --jobs N`: workers never forked from this (threaded) process, never outlive a scan.

Issue 25: a forked `multiprocessing.Pool` worker stayed blocked in `SimpleQueue.get` and
`--jobs 2` never ended. These tests run the pool under busy threads many times, each run
under a generous watchdog, and check that an error or Ctrl-C leaves no worker behind.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import rules.scan as scanmod
from rules.cli import main
from rules.scan import Scanner, ScanOptions, discover, pool_context

RULE = {
    "Name": "PingIt",
    "Tags": [],
    "Condition": "$img",
    "Meta": {
        "Events": {"Microsoft-Windows-Sysmon/Operational": [1]},
        "Criticality": 5,
        "Schema": "2.0.0",
    },
    "Matches": ["$img: Image ~= '(?i)ping\\.exe$'"],
}
RUN_LIMIT = 180.0  # s per pool run: generous for a loaded 2-core box, still finite


def _event(i: int) -> dict:
    image = "C:\\Windows\\System32\\PING.EXE" if i % 3 == 0 else f"C:\\x\\tool{i}.exe"
    return {
        "Event": {
            "System": {
                "Channel": "Microsoft-Windows-Sysmon/Operational",
                "EventID": "1",
                "Computer": "WS",
                "TimeCreated": {"SystemTime": "2024-01-01T00:00:00Z"},
            },
            "EventData": {"Image": image, "CommandLine": f"run {i}"},
        }
    }


@pytest.fixture
def workload(tmp_path: Path) -> tuple[ScanOptions, list[scanmod.Unit]]:
    (tmp_path / "r.gen").write_text(json.dumps(RULE) + "\n")
    data = tmp_path / "in"
    data.mkdir()
    for f in range(6):
        with open(data / f"e{f}.jsonl", "w") as fh:
            for i in range(f * 200, f * 200 + 200):
                fh.write(json.dumps(_event(i)) + "\n")
    opts = ScanOptions(rules=(str(tmp_path / "r.gen"),))
    return opts, list(discover([str(data)]))


@pytest.fixture
def busy_threads() -> Iterator[None]:
    """Threads that keep taking locks a forked child could inherit held (logging, stderr)."""
    stop = threading.Event()
    log = logging.getLogger("tests.busy")

    def spin(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            log.debug("tick %d", i)
            logging.getLogger(f"tests.busy.{n}.{i % 50}")
            sys.stderr.write("")
            json.dumps({"i": i})

    threads = [threading.Thread(target=spin, args=(n,), daemon=True) for n in range(2)]
    for t in threads:
        t.start()
    yield
    stop.set()
    for t in threads:
        t.join()


def _run(scanner: Scanner, units: list[scanmod.Unit], progress: object = None) -> bytes:
    out: list[bytes] = []
    result: list[object] = []

    def target() -> None:
        try:
            result.append(scanner.run(units, out.append, progress))  # type: ignore[arg-type]
        except BaseException as ex:  # noqa: BLE001 - handed to the test thread
            result.append(ex)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(RUN_LIMIT)
    assert not t.is_alive(), f"scan with --jobs 2 still running after {RUN_LIMIT}s"
    if isinstance(result[0], BaseException):
        raise result[0]
    return b"".join(out)


def test_workers_start_from_a_fresh_interpreter() -> None:
    assert pool_context().get_start_method() in ("forkserver", "spawn")


def test_jobs_2_under_busy_threads_many_times(
    workload: tuple[ScanOptions, list], busy_threads: None
) -> None:
    opts, units = workload
    expected = _run(Scanner(opts, "jsonl", 1), units)
    assert expected.count(b"PingIt") == 400
    calls: list[tuple[int, int]] = []
    for _ in range(12):
        assert _run(Scanner(opts, "jsonl", 2), units, lambda b, e: calls.append((b, e))) == expected
    assert calls[-1][1] == 1200


def _workers() -> list[psutil.Process]:
    """Live scan workers: processes below us other than the forkserver itself."""
    me = psutil.Process()
    return [
        p
        for p in me.children(recursive=True)
        if p.status() != psutil.STATUS_ZOMBIE
        and "forkserver" not in " ".join(p.cmdline())
        and "resource_tracker" not in " ".join(p.cmdline())
    ]


def _wait_no_workers(before: set[int]) -> list[int]:
    deadline = time.monotonic() + RUN_LIMIT
    while time.monotonic() < deadline:
        left = [p.pid for p in _workers() if p.pid not in before]
        if not left:
            return []
        time.sleep(0.05)
    return left


def test_ctrl_c_and_errors_leave_no_worker(
    workload: tuple[ScanOptions, list], tmp_path: Path
) -> None:
    opts, units = workload
    before = {p.pid for p in _workers()}

    def interrupt(b: int, e: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(Scanner(opts, "jsonl", 2), units, interrupt)
    assert _wait_no_workers(before) == []
    broken = ScanOptions(rules=(str(tmp_path / "missing.gen"),))  # every worker fails to start
    with pytest.raises(Exception):  # noqa: B017 - BrokenProcessPool, never a hang
        _run(Scanner(broken, "jsonl", 2, engine=None), units)
    assert _wait_no_workers(before) == []


def test_cli_jobs_2_output_equals_jobs_1(
    workload: tuple[ScanOptions, list], tmp_path: Path, busy_threads: None
) -> None:
    opts, units = workload
    one, two = tmp_path / "1.jsonl", tmp_path / "2.jsonl"
    data = str(Path(units[0].path).parent)
    assert main(["scan", "-r", opts.rules[0], "-o", str(one), data]) == 0
    assert main(["scan", "-r", opts.rules[0], "-j", "2", "-o", str(two), data]) == 0
    assert one.read_bytes() == two.read_bytes() and one.read_bytes().count(b"PingIt") == 400
