"""`python -m appliance` runs the heron-manager CLI."""

from __future__ import annotations

import sys

from .cli import main

# NOTE(manager): guarded: a spawned child (the index writer) imports this as __mp_main__.
if __name__ == "__main__":
    sys.exit(main())
