"""Frozen entry point of heron-manager: calls `appliance.cli:main` (pyproject scripts)."""

from __future__ import annotations

import multiprocessing
import sys

from appliance.cli import main

if __name__ == "__main__":
    # NOTE(packaging): a frozen program must call freeze_support before anything spawns a child.
    multiprocessing.freeze_support()
    sys.exit(main())
