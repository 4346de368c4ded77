"""The spool's index of sealed segments: per lane, oldest first, with their sizes and which ones
are in flight; rebuilt from the directory at start.

Not thread-safe: the spool's lock guards every call. Which segments to evict, and when, is the
spool's policy (`agent.link.spool`); this module finds and deletes them.
"""

from __future__ import annotations

from pathlib import Path

from .segments import LANE_DIRS, Lane, repair_open, segment_path


class SealedSegments:
    """Sealed segments under `root`: `seqs[lane]` oldest first, `sizes[seq]` = (lane, bytes,
    events), `inflight` = handed out as a batch and not yet acknowledged or released."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.seqs: dict[Lane, list[int]] = {lane: [] for lane in Lane}
        self.sizes: dict[int, tuple[Lane, int, int]] = {}
        self.inflight: set[int] = set()

    def recover(self) -> int:
        """Index the sealed segments on disk (an `.open` one left by a crash is repaired and
        sealed first); returns the highest sequence number found, rejected batches included."""
        top = 0
        for lane, name in LANE_DIRS.items():
            d = self.root / name
            d.mkdir(exist_ok=True)
            for p in sorted(d.iterdir()):
                parts = p.name.split(".")
                if not parts[0].isdigit():
                    continue
                seq = int(parts[0])
                top = max(top, seq)
                if p.suffix == ".open":
                    repaired = repair_open(p, seq)
                    if repaired is None:
                        continue
                    count = repaired
                elif p.suffix == ".seg" and len(parts) == 3 and parts[1].isdigit():
                    count = int(parts[1])
                else:
                    continue
                size = segment_path(self.root, lane, seq, count).stat().st_size
                self.add(lane, seq, size, count)
            self.seqs[lane].sort()
        for p in (self.root / "rejected").glob("*.seg"):
            if p.name.split(".")[0].isdigit():
                top = max(top, int(p.name.split(".")[0]))
        return top

    def add(self, lane: Lane, seq: int, size: int, count: int) -> None:
        self.seqs[lane].append(seq)
        self.sizes[seq] = (lane, size, count)

    def forget(self, lane: Lane, seq: int) -> int:
        """Drop `seq` from the index (not from disk); returns its size in bytes."""
        self.seqs[lane].remove(seq)
        _, size, _ = self.sizes.pop(seq)
        self.inflight.discard(seq)
        return size

    def count(self, seq: int) -> int:
        return self.sizes[seq][2]

    def path(self, lane: Lane, seq: int) -> Path:
        return segment_path(self.root, lane, seq, self.count(seq))

    def ready(self, lane: Lane) -> list[int]:
        """The lane's sealed segments not in flight, oldest first."""
        return [s for s in self.seqs[lane] if s not in self.inflight]

    def evict(self, lane: Lane, need: int) -> tuple[int, int, int]:
        """Delete the lane's oldest segments not in flight until `need` bytes are freed;
        returns (bytes, events, segments) evicted."""
        freed = events = segs = 0
        for seq in list(self.seqs[lane]):
            if freed >= need:
                break
            if seq in self.inflight:
                continue
            count = self.count(seq)
            self.path(lane, seq).unlink(missing_ok=True)
            freed += self.forget(lane, seq)
            events += count
            segs += 1
        return freed, events, segs

    def queued_events(self) -> int:
        return sum(count for _, _, count in self.sizes.values())

    def __len__(self) -> int:
        return sum(len(v) for v in self.seqs.values())
