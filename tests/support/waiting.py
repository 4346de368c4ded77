"""Wait on a condition, never on a fixed sleep: the suite must pass on a busy 2-core box."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["WAIT_LIMIT", "wait_for"]

WAIT_LIMIT = 120.0  # s: generous, a condition that holds returns at once


def wait_for(
    pred: Callable[[], Any],
    timeout: float = WAIT_LIMIT,
    what: str | Callable[[], str] = "condition",
    *,
    interval: float = 0.02,
) -> Any:
    """`pred()`'s first truthy value; AssertionError naming `what` after `timeout` seconds.

    Polls every `interval` seconds (sleeping, so a polled thread or process gets the GIL/CPU).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        time.sleep(interval)
