"""Action planning: which requested actions run for one detection (pure, unit-tested).

Rules (docs/reference/whids.md §1.5, made explicit):

* requested = the detection's ``Actions`` (rule actions + the severity band defaults added by
  the engine);
* an action not in ``actions.allowed`` is skipped (``kill``/``memdump`` are opt-in);
* every action of a job counts against ``actions.max_per_process`` per process GUID (WHIDS
  ``shouldDump`` gates kill too); untracked processes are skipped unless ``act_on_untracked``;
* ``memdump`` runs once per GUID;
* the result is ordered by ``ACTION_ORDER`` (suspend-dump-kill).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from agent.actions.registry import ACTION_NAMES, ACTION_ORDER

__all__ = ["Plan", "band_of", "plan_actions"]

BANDS = (("low", 1, 4), ("medium", 5, 7), ("high", 8, 9), ("critical", 10, 10))


def band_of(criticality: int) -> str | None:
    """Severity band of a criticality (``None`` for 0 or less)."""
    for name, low, high in BANDS:
        if low <= criticality <= high:
            return name
    return None


@dataclass(frozen=True, slots=True)
class Plan:
    """Actions to run, in order, and the skipped ones with the reason."""

    run: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.run)


def plan_actions(
    requested: Iterable[str],
    *,
    allowed: Iterable[str],
    tracked: bool,
    act_on_untracked: bool,
    done_for_process: int,
    max_per_process: int,
    memory_dumped: bool = False,
) -> Plan:
    """Decide the actions of one job."""
    wanted = list(dict.fromkeys(a for a in requested if a))
    allowed_set = set(allowed)
    skipped: list[tuple[str, str]] = []
    runnable: list[str] = []
    for name in wanted:
        if name not in ACTION_NAMES:
            skipped.append((name, "unknown action"))
        elif name not in allowed_set:
            skipped.append((name, "not allowed"))
        elif name == "memdump" and memory_dumped:
            skipped.append((name, "memory already dumped"))
        else:
            runnable.append(name)
    if runnable and not tracked and not act_on_untracked:
        return Plan((), tuple(skipped + [(n, "untracked process") for n in runnable]))
    if runnable and done_for_process >= max_per_process:
        return Plan((), tuple(skipped + [(n, "per-process limit") for n in runnable]))
    ordered = tuple(n for n in ACTION_ORDER if n in runnable)
    return Plan(ordered, tuple(skipped))
