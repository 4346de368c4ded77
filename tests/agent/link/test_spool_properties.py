"""Property test: whatever happens (acks, failed sends, crashes, eviction), no event is lost
silently, none is delivered twice, and each lane is delivered in order."""

from __future__ import annotations

import tempfile
from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.link.health import HEALTH_CHANNEL
from agent.link.segments import Lane
from agent.link.spool import Spool

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("submit"), st.integers(1, 30), st.booleans()),
        st.tuples(st.just("ack"), st.integers(1, 3), st.booleans()),
        st.tuples(st.just("fail"), st.integers(1, 1), st.booleans()),
        st.tuples(st.just("crash"), st.integers(0, 1), st.booleans()),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, cap=st.sampled_from([4_000, 20_000, 1 << 30]))
def test_no_silent_loss_no_duplicates_ordered(ops: list[tuple[str, int, bool]], cap: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spool = Spool(root, max_bytes=cap, segment_events=7, fsync_interval=3600)
        submitted = 0
        delivered: list[dict] = []
        for op, n, flag in ops:
            if op == "submit":
                for _ in range(n):
                    ev = {"Event": {"System": {"Channel": "c"}, "EventData": {"N": submitted}}}
                    if flag:
                        ev["Event"]["Detection"] = {"Signature": ["s"]}
                    spool.submit(ev)
                    submitted += 1
            elif op in ("ack", "fail"):
                for _ in range(n):
                    b = spool.next_batch(force=True)
                    if b is None:
                        break
                    if op == "fail":
                        spool.release(b)
                        break
                    delivered += [orjson.loads(x) for x in b.data.splitlines()]
                    spool.ack(b)
            else:  # crash: no close(); optionally tear the last line of an open segment
                if flag:
                    for p in root.glob("*/*.open"):
                        with open(p, "ab") as fh:
                            fh.write(b'{"torn')
                before = spool.stats()
                spool = Spool(root, max_bytes=cap, segment_events=7, fsync_interval=3600)
                # carry the counters across the simulated crash
                spool._evicted, spool._reports = before.evicted_events, before.health_reports
        evicted = spool.stats().evicted_events
        reports = spool.stats().health_reports
        while (b := spool.next_batch(force=True)) is not None:
            delivered += [orjson.loads(x) for x in b.data.splitlines()]
            spool.ack(b)
        spool.close()
    regular = [
        e["Event"]["EventData"]["N"]
        for e in delivered
        if e["Event"]["System"]["Channel"] != HEALTH_CHANNEL
    ]
    assert len(regular) == len(set(regular)), "an event was delivered twice"
    # evictions count every evicted line, our own health reports included
    assert len(delivered) + evicted == submitted + reports, "an event was lost uncounted"
    reported = sum(
        e["Event"]["EventData"].get("DroppedEvents", 0)
        for e in delivered
        if e["Event"]["System"]["Channel"] == HEALTH_CHANNEL
    )
    assert reported <= evicted  # reports may themselves be evicted under extreme caps
    if cap == 1 << 30:
        assert reported == evicted == 0
    det = [e["Event"]["EventData"]["N"] for e in delivered if e["Event"].get("Detection")]
    bulk = [
        e["Event"]["EventData"]["N"]
        for e in delivered
        if "N" in e["Event"]["EventData"] and not e["Event"].get("Detection")
    ]
    assert det == sorted(det) and bulk == sorted(bulk), "a lane was replayed out of order"
    assert Lane.DETECTIONS < Lane.EVENTS
