"""A settable clock: tests pass it where code takes `clock: Callable[[], float]`."""

from __future__ import annotations

__all__ = ["Clock"]


class Clock:
    """Epoch seconds that move only when the test moves them."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now
        self.reads = 0  # how often the code under test looked: a test waits on it, not on sleeps

    def __call__(self) -> float:
        self.reads += 1
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
