"""Where a command acts: the running manager's admin API, else the data directory's stores.

DuckDB allows one process: while `heron-manager run` holds the fleet database, commands go
through its admin API (appliance/runtime/localadmin.py); otherwise they open the store.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..runtime.context import AppContext
from ..runtime.datadir import open_context

if TYPE_CHECKING:
    from ..runtime.localadmin import LocalAdmin

__all__ = ["running_manager", "with_store"]


def with_store(args: argparse.Namespace) -> AppContext:
    """The data directory opened without an event store (fleet-store commands)."""
    return open_context(args.data_dir, with_events=False)


def running_manager(args: argparse.Namespace) -> LocalAdmin | None:
    """The running manager's admin API (appliance/runtime/localadmin.py), or None."""
    from ..runtime.localadmin import local_admin

    return local_admin(Path(args.data_dir))
