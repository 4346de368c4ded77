"""Resident pages of the mmapped index files are bounded (index/mapped.py, Linux)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from index import EndpointRef, EventStore
from index.mapped import MappedTrimmer, mapped_resident, trim_mapped

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="/proc/self/smaps is Linux's")

EP = EndpointRef("5a92baeb-9384-47d3-92b4-a0db6f9b8c01", "HOST-1", "10.0.0.1", "lab")


def _fill(store: EventStore, batches: int = 8, size: int = 500) -> None:
    """Events with random padding, so the compressed doc store spans many pages."""
    for b in range(batches):
        events = [
            {
                "Event": {
                    "System": {"Channel": "Test", "EventID": 1, "Computer": "H"},
                    "EventData": {"Image": f"C:\\b{b}\\e{i}.exe", "Pad": os.urandom(300).hex()},
                }
            }
            for i in range(size)
        ]
        store.append(events, endpoint=EP, batch_id=f"b{b}")
    store.flush()


def _read_everything(store: EventStore) -> int:
    """Touch every stored event (a retro-hunt's read), mapping the doc store's pages."""
    return sum(1 for _ in store.iter_events())


def test_trim_drops_the_mapped_index_pages_and_reads_still_work(tmp_path: Path) -> None:
    with EventStore(tmp_path / "s", fsync=False, index_process=False) as store:
        store._trimmer.stop()  # measured by hand here
        _fill(store)
        index = tmp_path / "s" / "index"
        assert _read_everything(store) == 4000
        before = mapped_resident(index)
        assert before > 1 << 20  # the stored events were read through the mmap
        assert trim_mapped(index) == before
        assert mapped_resident(index) < before // 10
        # the pages were only unmapped: every event reads back the same
        assert _read_everything(store) == 4000
        assert store.search("Image:C:\\b3\\e7.exe").total == 1


def test_trimmer_keeps_pages_under_its_limit_only(tmp_path: Path) -> None:
    with EventStore(tmp_path / "s", fsync=False, index_process=False) as store:
        store._trimmer.stop()
        _fill(store)
        index = tmp_path / "s" / "index"
        _read_everything(store)
        resident = mapped_resident(index)
        assert MappedTrimmer(index, limit=resident * 2).check() == 0  # under the limit
        assert mapped_resident(index) == resident
        assert MappedTrimmer(index, limit=0).check() == resident
        assert mapped_resident(index) < resident // 10


def test_other_mappings_are_left_alone(tmp_path: Path) -> None:
    with EventStore(tmp_path / "s", fsync=False, index_process=False) as store:
        store._trimmer.stop()
        _fill(store, batches=2)
        _read_everything(store)
        assert trim_mapped(tmp_path / "elsewhere") == 0
        assert mapped_resident(tmp_path / "s" / "index") > 0


def test_the_store_runs_a_trimmer(tmp_path: Path) -> None:
    with EventStore(tmp_path / "s", fsync=False, index_process=False) as store:
        assert store._trimmer._thread is not None and store._trimmer._thread.is_alive()
    assert store._trimmer._thread is None  # stopped by close
