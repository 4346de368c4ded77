"""The Tantivy writer's merge threads run at the lowest CPU priority (Linux)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from index.schema import project
from index.tantivy_writer import TantivyWriter, open_index
from tests.support.waiting import wait_for


def _merge_threads() -> dict[int, int]:
    """This process's Tantivy merge threads and their nice values."""
    found = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            comm = Path(f"/proc/self/task/{tid}/comm").read_text()
        except FileNotFoundError:
            continue
        if comm.startswith("merge_thread"):
            found[int(tid)] = os.getpriority(os.PRIO_PROCESS, int(tid))
    return found


def lowered_at_commit(writer: TantivyWriter) -> Callable[[], bool]:
    """Commit, then: are there merge threads, all at nice 19? (Tantivy's pool names its
    threads a moment after it starts, and the writer lowers them at its commits.)"""

    def check() -> bool:
        writer.commit()
        threads = _merge_threads()
        return bool(threads) and set(threads.values()) == {19}

    return check


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice values are Linux's")
def test_merge_threads_of_a_new_writer_yield_the_cpu(tmp_path: Path) -> None:
    writer = TantivyWriter(open_index(tmp_path), heap_size=50_000_000, num_threads=1)
    try:
        wait_for(lowered_at_commit(writer), what="merge threads at nice 19 after a commit")
        writer.merge()  # a reopened writer has a new merge pool: lowered as well
        wait_for(lowered_at_commit(writer), what="the new pool's threads at nice 19")
    finally:
        writer.close()


def test_merge_without_waiting_keeps_the_writer_and_commits(tmp_path: Path) -> None:
    """The periodic pass's merge must not wait for merges in flight (``wait_merging_threads``
    consumes the writer, so a kept writer is one that did not wait)."""
    index = open_index(tmp_path)
    writer = TantivyWriter(index, heap_size=50_000_000, num_threads=1)
    try:
        rt = datetime(2026, 12, 6, tzinfo=UTC)
        event = {"Event": {"System": {"Channel": "T", "EventID": 1}, "EventData": {}}}
        docs = [
            project(event, seq=i + 1, rt=rt, endpoint="e", hostname="h", raw=b"{}")
            for i in range(20)
        ]
        inner = writer._writer
        writer.add((p.doc_json, p.raw) for p in docs)
        writer.merge(wait=False)
        assert writer._writer is inner
        index.reload()
        assert index.searcher().num_docs == 20  # committed
        writer.merge()  # waits: a new writer
        assert writer._writer is not inner
    finally:
        writer.close()
