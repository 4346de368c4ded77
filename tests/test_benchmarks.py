"""The benchmark scripts still run (tiny sizes; the figures themselves are not checked here)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from index.schema import project
from index.tantivy_writer import TantivyWriter, open_index
from tests.support.procs import run_benchmark

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.e2e


def _run(*args: str) -> str:
    return run_benchmark(*args, timeout=240)


def test_search_benchmark_runs(tmp_path: Path) -> None:
    out = _run("benchmarks/search.py", "--events", "3000", "--runs", "2", "--dir", str(tmp_path))
    assert "ingest: 3,000 events" in out and "bytes/event" in out
    assert "term sha256" in out and "sql per-hour count 1d" in out


def test_ingest_benchmark_runs() -> None:
    out = _run(
        "benchmarks/ingest.py",
        "--agents",
        "2",
        "--batch",
        "200",
        "--seconds",
        "2",
        "--client-procs",
        "1",
    )
    assert "0 errors" in out and "durable events/s:" in out


def test_ingest_fleet_benchmark_runs(tmp_path: Path) -> None:
    out = _run(
        "benchmarks/ingest_fleet.py",
        "--agents",
        "12",
        "--seconds",
        "3",
        "--settle",
        "1",
        "--cache",
        str(tmp_path / "cache"),
    )
    assert "stored" in out and "errors {}" in out and "fsyncs/s" in out
    store = _run("benchmarks/ingest_fleet.py", "--store", "4", "--seconds", "1")
    assert "store alone, 4 threads" in store and '"fsyncs_s": ' in store


def test_sigma_loop_benchmark_runs() -> None:
    corpus = ROOT.parent / "shared" / "corpus"
    out = _run(
        "benchmarks/sigma_loop.py",
        "--passes",
        "1",
        "--limit",
        "300",
        "--rules",
        str(corpus / "gene-rules" / "compiled.gen"),
        str(corpus / "sigma" / "rules" / "windows" / "process_creation"),
    )
    assert "events per pass: 300" in out and "first pass (compiles the blocks)" in out
    assert "warm: median" in out and "no memo: median" in out and "peak RSS" in out


def test_startup_benchmark_runs() -> None:
    out = _run("benchmarks/startup.py", "--runs", "1")
    assert "start-up to first answer" in out and "run 1:" in out


def test_misp_backfill_benchmark_runs() -> None:
    out = _run("benchmarks/misp_backfill.py", "--reports", "12")
    assert "pushed in 2 slices" in out and "during a held push" in out


@pytest.mark.skipif(
    shutil.which("clickhouse-server") is None,
    reason="clickhouse-server is not installed (bash .ci/sysdeps.sh)",
)
def test_cluster_benchmark_runs(tmp_path: Path) -> None:
    out = _run(
        "benchmarks/cluster.py",
        "--events",
        "4000",
        "--window",
        "1000",
        "--batch",
        "100",
        "--runs",
        "2",
        "--dir",
        str(tmp_path / "bench"),
    )
    assert "ingest 1 front-end(s), batches 0-9 " in out and "1,000 events in" in out
    assert "ingest 2 front-end(s), batches 10-19 " in out
    assert "bulk path into ClickHouse: 2,000 events" in out and "ClickHouse: 4,000 rows" in out
    assert "ClickHouse page 2" in out and "range+sort EventID" in out
    assert "FIRST PAGES DIFFER" not in out


def test_soak_benchmark_runs() -> None:
    out = _run(
        "benchmarks/soak.py",
        "--minutes",
        "0.1",
        "--agents",
        "1",
        "--batch",
        "100",
        "--sample",
        "2",
        "--budget-mib",
        "512",
    )
    assert "errors=0" in out and "RSS peak" in out and "events per manager CPU-second" in out
    assert "indexed (sustained)" in out and "CPU-second, last" in out and ") indexed" in out
    assert "Tantivy merges: first" in out and "writer child" in out
    # anonymous vs file-backed pages per process, and the box speedometer
    assert "MiB anon/file" in out and "manager " in out and " ms" in out
    assert "box speed: reference work first" in out and "at the first window's box speed" in out


def test_store_growth_benchmark_resumes(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    args = ("--dir", store, "--batch", "200", "--threads", "2", "--budget-mib", "512")
    out = _run("benchmarks/store_growth.py", *args, "--until", "4000", "--window", "2000")
    assert "store " + store + ": 0 events" in out and "of which merges" in out
    again = _run("benchmarks/store_growth.py", *args, "--measure", "1")
    first = int(again.split(": ", 1)[1].split(" events", 1)[0].replace(",", ""))
    assert first >= 4000  # the second run reopened the store the first one filled


def test_merge_memory_benchmark_merges_cloned_segments(tmp_path: Path) -> None:
    index = tmp_path / "index"
    index.mkdir()
    writer = TantivyWriter(open_index(index), heap_size=50_000_000, num_threads=1)
    rt = datetime(2026, 12, 6, tzinfo=UTC)
    event = {"Event": {"System": {"Channel": "T", "EventID": 1}, "EventData": {"Image": "a"}}}
    docs = [
        project(event, seq=i + 1, rt=rt, endpoint="e", hostname="h", raw=b"{}") for i in range(50)
    ]
    writer.add((p.doc_json, p.raw) for p in docs)
    writer.commit()
    writer.close()
    out = _run("benchmarks/merge_memory.py", "--index", str(index), "--clone", "7")
    assert "8 segments, 400 documents" in out and "segments after: [400]" in out
    assert "anonymous peak" in out and "file-backed peak" in out


def test_build_sizes_benchmark_measures_a_dist(tmp_path: Path) -> None:
    # placeholder one-dirs packaged by the real scripts (a real build is the slow tier's job)
    from tests.packaging.conftest import make_fake_onedirs

    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb missing: make sysdeps")
    dist = tmp_path / "dist"
    make_fake_onedirs(dist)
    env = dict(os.environ, DEB_COMPRESSION="gzip")
    for script in ("packaging/deb/build-deb.sh", "packaging/offline/make-bundle.sh"):
        subprocess.run(
            ["bash", script, "--src", str(dist), "--out", str(dist / "packages")]
            if "deb" in script
            else ["bash", script, "--src", str(dist), "--out", str(dist)],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
    out = _run("benchmarks/build_sizes.py", "--measure", str(dist))
    assert "one-dir  heron-manager" in out and "package  heron-agent_" in out
    assert "bundle   heron-offline-" in out and "old layout's programs/ copy" in out


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0, reason="needs root on Linux"
)
def test_detection_latency_benchmark_runs() -> None:
    from agent.sources.procconn import proc_connector_available

    if not proc_connector_available():
        pytest.skip("proc connector unavailable")
    out = _run("benchmarks/detection_latency.py", "--commands", "2")
    assert "detection latency over 2 commands: p50" in out
