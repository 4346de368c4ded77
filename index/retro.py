"""Retro-hunt matching: the rule engine over stored events, inline or in worker processes.

Used by the appliance's hunting service whatever the event store; cluster mode adds the
``(channel, EventID)`` prefilter (:func:`prefilter_of`) that ``ClusterEvents.iter_events``
pushes into ClickHouse SQL, and worker processes (:func:`match_events` with ``workers > 0``):
one interpreter matches ~20–50k events/s, a ClickHouse cluster serves rows faster than that.

Bounds: the caller stops the iterator (rows, deadline); at most ``2 × workers`` batches of
``batch`` events are in flight, so memory stays bounded whatever the hunt's size.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import rules as rules_pkg

if TYPE_CHECKING:
    from concurrent.futures import Future
from rules.iocs import IocSet, ioc_rules, merge_detection

__all__ = ["HuntSpec", "Outcome", "match_events", "prefilter_of"]

Pair = tuple[str, int | None]


@dataclass(frozen=True, slots=True)
class HuntSpec:
    """What a hunt matches with (picklable: each worker builds its own engine from it)."""

    rules_text: str
    containers: dict[str, list[str]] = field(default_factory=dict)
    iocs: list[dict[str, object]] = field(default_factory=list)
    ioc_criticality: int = 10

    def engine(self) -> rules_pkg.Engine:
        """The engine (raises ``ValueError``, a ``rules.RuleError``, on bad rules)."""
        return rules_pkg.Engine(
            rules_pkg.loads(self.rules_text, source="<hunt>"),
            containers=self.containers,
            timing=False,
            show_attack=True,
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """One event's result: ``event`` is the matched copy (with its ``EdrData``) when ``hit``."""

    hit: bool
    filtered: bool
    event: dict[str, object] | None


def prefilter_of(engine: rules_pkg.Engine, *, iocs: bool = False) -> list[Pair] | None:
    """The ``(channel, EventID)`` pairs some enabled rule admits (EventID ``None``: any ID).

    ``None`` when an event of any channel can match: a rule without an Events filter, IoCs
    (they match any event) or correlation rules (their state needs every member event).
    """
    if iocs or engine._correlations:  # engine internals: no public accessor
        return None
    pairs: dict[Pair, None] = {}
    for rule in engine.rules:
        if rule.disabled is not None:
            continue
        if rule.events is None:
            return None
        for channel, ids in rule.events.items():
            if not ids:
                pairs[(channel, None)] = None
            for eid in ids:
                pairs[(channel, eid)] = None
    return list(pairs)


class _Matcher:
    def __init__(self, spec: HuntSpec) -> None:
        self.engine = spec.engine()
        self.iocs = IocSet.from_iocs(spec.iocs)
        self.crit = spec.ioc_criticality

    def one(self, event: dict[str, Any]) -> Outcome:
        """As ``heron scan``: the event as received (agent ``Detection`` and ``EdrData`` out)."""
        candidate = copy.deepcopy(event)
        inner = candidate.get("Event")
        edr = inner.pop("EdrData", None) if isinstance(inner, dict) else None
        if isinstance(inner, dict):
            inner.pop("Detection", None)
        det = self.engine.match(candidate)
        hit = det is not None and bool(det.signatures)
        if len(self.iocs) and isinstance(inner, dict):
            extra = ioc_rules(self.iocs.match(candidate), criticality=self.crit)
            if extra is not None:
                merge_detection(candidate, extra)
                hit = True
        if not hit:
            return Outcome(False, bool(det is not None and det.filtered), None)
        if edr is not None and isinstance(inner, dict):
            inner["EdrData"] = edr
        return Outcome(True, False, candidate)


_WORKER: _Matcher | None = None


def _init_worker(spec: HuntSpec) -> None:
    global _WORKER  # one engine per worker process
    _WORKER = _Matcher(spec)


def _match_batch(events: list[dict[str, Any]]) -> list[tuple[bool, bool, dict[str, Any] | None]]:
    assert _WORKER is not None
    return [(o.hit, o.filtered, o.event) for o in map(_WORKER.one, events)]


def match_events(
    events: Iterable[dict[str, object]],
    spec: HuntSpec,
    *,
    workers: int = 0,
    batch: int = 500,
) -> Generator[Outcome, None, None]:
    """One ``Outcome`` per event of ``events``, in order.

    ``workers == 0`` matches inline; otherwise ``workers`` processes (spawned: no fork of a
    threaded manager) each with the engine of ``spec``. Closing the iterator early (rows or
    time bound reached) cancels what is queued and stops the workers.

    Raises:
        ValueError: the rules do not compile (before any event is read).
    """
    matcher = _Matcher(spec)  # compiles once here: bad rules fail before workers start
    if workers <= 0:
        yield from map(matcher.one, events)
        return
    # imported here: process pools pull in platform modules a Windows import check must not need
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(spec,),
    )
    pending: deque[Future[list[tuple[bool, bool, dict[str, Any] | None]]]] = deque()
    try:
        chunk: list[dict[str, Any]] = []
        for event in events:
            chunk.append(event)
            if len(chunk) >= batch:
                pending.append(pool.submit(_match_batch, chunk))
                chunk = []
                while len(pending) >= 2 * workers:
                    yield from (Outcome(*r) for r in pending.popleft().result())
        if chunk:
            pending.append(pool.submit(_match_batch, chunk))
        while pending:
            yield from (Outcome(*r) for r in pending.popleft().result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
