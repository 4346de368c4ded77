"""Memory of a Tantivy segment merge: anonymous vs file-backed resident pages (issue 18).

The soak's RSS peak (8.8 GiB near 22M events) came during the merge of the eight largest
segments (8 × 2.56M documents: Tantivy's log merge policy merges eight segments of a level,
one level per ×8). This script merges such segments in a child process the way the manager's
index writer does (``TantivyWriter``: same heap, one indexing thread, merge threads at nice 19)
and samples the child's ``RssAnon`` / ``RssFile`` from ``/proc`` until the merge is done:
anonymous memory is what the memory budget bounds; file-backed pages are the mmapped segments
being read (page cache, reclaimed under pressure).

    nice -n 10 .venv/bin/python benchmarks/merge_memory.py --index COPY_OF_AN_INDEX \
        [--clone N] [--heap-mib 128] [--sample 0.5]

``--index`` is changed in place (use a copy: ``cp -al`` of a stopped store's ``index/`` is
enough). ``--clone N`` first adds N hard-linked copies (new segment ids) of its largest mergeable
segment, so that eight segments of that level exist and the merge starts (duplicate documents
do not matter to a merge). ``--no-trim`` leaves out the writer child's bound on mapped pages
(``index/mapped.py``), as before it existed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


_MAX_DOCS_BEFORE_MERGE = 10_000_000  # Tantivy's LogMergePolicy never merges bigger ones


def clone_largest(index: Path, copies: int) -> None:
    """Add ``copies`` hard-linked copies of the largest mergeable segment to ``meta.json``."""
    meta_path = index / "meta.json"
    meta = json.loads(meta_path.read_text())
    mergeable = [s for s in meta["segments"] if s["max_doc"] <= _MAX_DOCS_BEFORE_MERGE]
    largest = max(mergeable, key=lambda s: s["max_doc"])
    stem = largest["segment_id"].replace("-", "")
    files = [f for f in index.iterdir() if f.name.startswith(stem + ".")]
    for _ in range(copies):
        new = uuid.uuid4()
        for f in files:
            os.link(f, index / (new.hex + f.suffix))
        meta["segments"].append({**largest, "segment_id": str(new)})
    tmp = meta_path.with_suffix(".tmp")  # a new file: meta.json may be a hard link
    tmp.write_text(json.dumps(meta))
    tmp.replace(meta_path)


def status(pid: int) -> dict[str, int]:
    """``VmRSS``/``RssAnon``/``RssFile`` of ``pid`` in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
            out[name] = int(value.split()[0])
    return out


CHILD = """
import sys, time
from index.mapped import MAPPED_LIMIT, MappedTrimmer
from index.tantivy_writer import TantivyWriter, open_index
w = TantivyWriter(open_index(sys.argv[1]), heap_size=int(sys.argv[2]), num_threads=1)
if sys.argv[3] == "trim":  # as the writer child does (index/writer_child.py)
    MappedTrimmer(sys.argv[1], MAPPED_LIMIT).start()
w.commit()  # an empty commit: the merge policy runs and starts the merges
print("merging", flush=True)
w.close()  # waits for the merges
print("done", flush=True)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=Path, required=True, help="an index directory (changed)")
    ap.add_argument("--clone", type=int, default=0, help="copies of the largest segment to add")
    ap.add_argument(
        "--heap-mib", type=int, default=128, help="writer heap (the manager's: 1/32 of the budget)"
    )
    ap.add_argument(
        "--no-trim",
        action="store_true",
        help="without the writer child's bound on mapped pages (index/mapped.py)",
    )
    ap.add_argument("--sample", type=float, default=0.5, help="seconds between samples")
    args = ap.parse_args()
    if args.clone:
        clone_largest(args.index, args.clone)
    meta = json.loads((args.index / "meta.json").read_text())
    docs = sorted((s["max_doc"] for s in meta["segments"]), reverse=True)
    print(f"index {args.index}: {len(docs)} segments, {sum(docs):,} documents, largest {docs[:8]}")
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            str(args.index),
            str(args.heap_mib << 20),
            "no-trim" if args.no_trim else "trim",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    child.stdout.readline()
    start = time.monotonic()
    peak_rss = peak_anon = peak_file = 0
    last_print = 0.0
    while child.poll() is None:
        try:
            st = status(child.pid)
        except OSError:
            break
        rss, anon, file = (
            st["VmRSS"] >> 10,
            st["RssAnon"] >> 10,
            (st["RssFile"] + st["RssShmem"]) >> 10,
        )
        peak_rss, peak_anon, peak_file = (
            max(peak_rss, rss),
            max(peak_anon, anon),
            max(peak_file, file),
        )
        now = time.monotonic() - start
        if now - last_print >= 10:
            print(
                f"{now:6.0f} s  RSS {rss:6,} MiB  anon {anon:6,} MiB  file {file:6,} MiB",
                flush=True,
            )
            last_print = now
        time.sleep(args.sample)
    child.wait()
    cpu = os.times()
    meta = json.loads((args.index / "meta.json").read_text())
    after = sorted((s["max_doc"] for s in meta["segments"]), reverse=True)
    took, child_cpu = time.monotonic() - start, cpu.children_user + cpu.children_system
    print(f"merge done in {took:.0f} s (child CPU {child_cpu:.0f} s); segments after: {after[:8]}")
    print(
        f"peak RSS {peak_rss:,} MiB: anonymous peak {peak_anon:,} MiB, "
        f"file-backed peak {peak_file:,} MiB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
