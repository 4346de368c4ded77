"""Exponential backoff with jitter for retrying the manager.

`Backoff.next_delay()` grows `base * factor**n` up to `cap`, then applies "equal jitter" (half the
delay is fixed, half random) so a fleet reconnecting after an outage does not stampede.
The random source is injected; nothing here sleeps.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    """Mutable retry state: call `next_delay()` after a failure, `reset()` after a success."""

    base: float = 1.0
    cap: float = 60.0
    factor: float = 2.0
    rand: Callable[[], float] = field(default=_random.random, repr=False)
    attempts: int = 0

    def next_delay(self) -> float:
        raw = min(self.cap, self.base * self.factor ** min(self.attempts, 64))
        self.attempts += 1
        return raw / 2 + raw / 2 * self.rand()

    def reset(self) -> None:
        self.attempts = 0
