"""Forwarder against an in-memory manager: exactly-once, backoff, rejection handling."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from agent.link.backoff import Backoff
from agent.link.errors import CertificateRejected, LinkError, TransportError
from agent.link.forwarder import Forwarder, LinkState
from agent.link.spool import Spool
from agent.link.transport import MemoryTransport, Request, Response
from rules import wire


class FakeManager:
    """Journals batches by id like the real manager; can be switched off."""

    def __init__(self) -> None:
        self.up = True
        self.status = 200
        self.batches: dict[str, list[dict]] = {}
        self.drop_after_commit = False

    def __call__(self, req: Request) -> Response:
        if not self.up:
            raise TransportError("connection refused", path=req.path)
        if self.status != 200:
            return Response(self.status, b"nope")
        assert req.path == wire.ROUTE_LOGS and req.headers["Content-Encoding"] == "gzip"
        bid = req.headers[wire.HEADER_BATCH_ID]
        dup = bid in self.batches
        if not dup:
            self.batches[bid] = [orjson.loads(x) for x in gzip.decompress(req.body).splitlines()]
        if self.drop_after_commit:
            self.drop_after_commit = False
            raise TransportError("reset after commit", path=req.path)
        return Response(200, orjson.dumps({"batch_id": bid, "accepted": 1, "duplicate": dup}))

    def events(self) -> list[int]:
        return [e["Event"]["EventData"]["N"] for b in self.batches.values() for e in b]


def ev(i: int) -> dict:
    return {"Event": {"System": {"EventID": 1}, "EventData": {"N": i}}}


@pytest.fixture
def setup(tmp_path: Path):
    mgr = FakeManager()
    spool = Spool(tmp_path, segment_events=7, max_batch_delay=0)
    sleeps: list[float] = []
    fwd = Forwarder(
        spool, MemoryTransport(mgr), backoff=Backoff(rand=lambda: 0.5), sleep=sleeps.append
    )
    yield mgr, spool, fwd, sleeps
    spool.close()


def test_manager_down_then_up_delivers_all_exactly_once(setup) -> None:
    mgr, spool, fwd, _ = setup
    mgr.up = False
    for i in range(50):
        fwd.submit(ev(i))
        fwd.step()
    assert fwd.state is LinkState.UNREACHABLE and mgr.events() == []
    mgr.up = True
    fwd.drain()
    assert mgr.events() == list(range(50))
    assert spool.stats().queued_events == 0


def test_lost_ack_resends_same_batch_id_and_manager_dedups(setup) -> None:
    mgr, spool, fwd, _ = setup
    for i in range(5):
        fwd.submit(ev(i))
    mgr.drop_after_commit = True
    with pytest.raises(TransportError):
        fwd.send_one(force=True)
    res = fwd.send_one(force=True)
    assert res is not None and res.duplicate
    assert mgr.events() == [0, 1, 2, 3, 4]


def test_backoff_grows_with_jitter_and_resets(setup) -> None:
    mgr, _, fwd, _ = setup
    mgr.up = False
    fwd.submit(ev(1))
    delays = [fwd.step() for _ in range(8)]
    # equal jitter with rand=0.5 -> 0.75 * min(cap, 2**n)
    assert delays[:4] == [0.75, 1.5, 3.0, 6.0] and delays[-1] == 45.0
    mgr.up = True
    assert fwd.step() == 0.0 and fwd.state is LinkState.CONNECTED
    assert fwd.backoff.attempts == 0
    assert fwd.step() == fwd.idle_interval


def test_backoff_bounds() -> None:
    b = Backoff(base=1, cap=10, rand=lambda: 1.0)
    assert [b.next_delay() for _ in range(6)] == [1, 2, 4, 8, 10, 10]
    b = Backoff(base=1, cap=10, rand=lambda: 0.0)
    assert b.next_delay() == 0.5


def test_revoked_certificate_is_reported_and_events_keep_buffering(setup, caplog) -> None:
    mgr, spool, fwd, _ = setup
    mgr.status = 403
    for i in range(20):
        fwd.submit(ev(i))
        fwd.step()
    assert fwd.state is LinkState.CERT_REJECTED
    assert "revoked" in caplog.text and "re-enroll" in caplog.text
    assert spool.stats().queued_events == 20
    mgr.status = 200
    fwd.drain()
    assert mgr.events() == list(range(20))


def test_tls_rejection_error_maps_to_cert_rejected_state(tmp_path: Path) -> None:
    def refuse(req: Request) -> Response:
        raise CertificateRejected("connection closed after handshake", path=req.path)

    with Spool(tmp_path, max_batch_delay=0) as spool:
        fwd = Forwarder(spool, MemoryTransport(refuse), sleep=lambda _: None)
        fwd.submit(ev(1))
        fwd.step()
        assert fwd.state is LinkState.CERT_REJECTED
        assert spool.stats().queued_events == 1


def test_malformed_batch_is_quarantined_not_retried(setup) -> None:
    mgr, spool, fwd, _ = setup
    fwd.submit(ev(1))
    mgr.status = 400
    res = fwd.send_one(force=True)
    assert res is not None and res.count == 0
    assert spool.stats().rejected_batches == 1
    mgr.status = 200
    fwd.drain()
    assert mgr.batches  # the rejection report went through


def test_run_loop_stops(setup) -> None:
    mgr, spool, fwd, sleeps = setup
    for i in range(3):
        fwd.submit(ev(i))

    def sleep(d: float) -> None:
        sleeps.append(d)
        if len(sleeps) > 3:
            fwd.stop()

    fwd.sleep = sleep
    fwd.run()
    assert mgr.events() == [0, 1, 2]


class CappedManager(FakeManager):
    """Answers 413 to batches over `max_events` and to any batch holding an event over 1 KB."""

    def __init__(self, max_events: int) -> None:
        super().__init__()
        self.max_events = max_events
        self.calls: list[str] = []

    def __call__(self, req: Request) -> Response:
        lines = gzip.decompress(req.body).splitlines()
        self.calls.append(req.headers[wire.HEADER_BATCH_ID])
        if len(lines) > self.max_events or any(len(x) > 1000 for x in lines):
            return Response(413, b'{"error": "more than 2 events per batch"}')
        return super().__call__(req)


def test_413_splits_the_batch_and_quarantines_an_event_that_never_fits(tmp_path: Path) -> None:
    mgr = CappedManager(max_events=2)
    spool = Spool(tmp_path, segment_events=7, max_batch_delay=0)
    fwd = Forwarder(spool, MemoryTransport(mgr), sleep=lambda s: None)
    for i in range(7):
        big = {"Blob": "x" * 2000} if i == 4 else {}
        fwd.submit({"Event": {"System": {"EventID": 1}, "EventData": {"N": i, **big}}})
    res = fwd.send_one(force=True)
    assert res is not None and res.count == 6
    assert sorted(mgr.events()) == [0, 1, 2, 3, 5, 6]
    assert fwd.split_batches == 1 and fwd.quarantined_events == 1
    kept = list((tmp_path / "rejected").iterdir())
    assert len(kept) == 1 and b'"N":4' in kept[0].read_bytes()
    assert all(len(bid) <= 128 for bid in mgr.calls)
    fwd.drain()  # the rejection report reaches the manager
    reports = [
        e for b in mgr.batches.values() for e in b if e["Event"]["System"].get("EventID") == 9003
    ]
    assert reports and reports[0]["Event"]["EventData"]["DroppedEvents"] == 1
    assert spool.stats().queued_events == 0


def test_split_parts_replay_deduplicated_after_a_failure(tmp_path: Path) -> None:
    mgr = CappedManager(max_events=3)
    spool = Spool(tmp_path, segment_events=8, max_batch_delay=0)
    fwd = Forwarder(spool, MemoryTransport(mgr), sleep=lambda s: None)
    for i in range(8):
        fwd.submit(ev(i))
    real = mgr.__call__
    seen: list[str] = []

    def flaky(req: Request) -> Response:
        seen.append(req.headers[wire.HEADER_BATCH_ID])
        if len(seen) == 4:  # the second half's first part fails: the batch stays queued
            raise TransportError("reset", path=req.path)
        return real(req)

    fwd.transport = MemoryTransport(flaky)
    with pytest.raises(TransportError):
        fwd.send_one(force=True)
    assert spool.stats().queued_events == 8
    fwd.drain()
    assert sorted(mgr.events()) == list(range(8))  # each event stored once
    assert spool.stats().queued_events == 0


@pytest.mark.parametrize("status", [404, 409, 410, 418])
def test_any_4xx_is_final_for_a_batch(setup, status: int) -> None:
    mgr, spool, fwd, _ = setup
    fwd.submit(ev(1))
    mgr.status = status
    res = fwd.send_one(force=True)
    assert res is not None and res.count == 0 and spool.stats().rejected_batches == 1


@pytest.mark.parametrize("status", [408, 429, 500, 503])
def test_timeouts_rate_limits_and_5xx_are_retried(setup, status: int) -> None:
    mgr, spool, fwd, _ = setup
    fwd.submit(ev(1))
    mgr.status = status
    with pytest.raises(LinkError):
        fwd.send_one(force=True)
    assert spool.stats().queued_events == 1 and spool.stats().rejected_batches == 0


def test_manager_batch_advice_stretches_the_batch_delay_within_bounds(tmp_path: Path) -> None:
    from agent.link.forwarder import batch_delay

    advice: list[str] = []
    mgr = FakeManager()

    def answer(req: Request) -> Response:
        res = mgr(req)
        headers = {wire.HEADER_BATCH_AFTER.lower(): advice[-1]} if advice else {}
        return Response(res.status, res.body, headers)

    spool = Spool(tmp_path, segment_events=7, max_batch_delay=1.0)
    fwd = Forwarder(spool, MemoryTransport(answer))
    for value, expected in (("3.5", 3.5), ("999", wire.MAX_BATCH_AFTER), ("0.2", 1.0)):
        advice.append(value)
        fwd.submit(ev(len(advice)))
        assert fwd.send_one(force=True) is not None
        assert spool.max_batch_delay == expected
    advice.clear()  # the load is gone: no header, the configured delay again
    fwd.submit(ev(9))
    fwd.send_one(force=True)
    assert spool.max_batch_delay == 1.0 and mgr.events() == [1, 2, 3, 9]
    spool.close()
    for bad in ("nan", "-5", "x", "inf"):
        assert batch_delay(1.0, {wire.HEADER_BATCH_AFTER.lower(): bad}) == (
            wire.MAX_BATCH_AFTER if bad == "inf" else 1.0
        )
