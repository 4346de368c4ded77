"""`python -m appliance.cli` runs the heron-manager CLI (development, benchmarks)."""

from __future__ import annotations

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
