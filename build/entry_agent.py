"""Frozen entry point of heron-agent: calls `agent.cli:main` (pyproject scripts)."""

from __future__ import annotations

import multiprocessing
import sys

from agent.cli import main

if __name__ == "__main__":
    # a frozen program must call freeze_support before anything spawns a child.
    multiprocessing.freeze_support()
    sys.exit(main())
