"""`python -m appliance` runs the heron-manager CLI."""

from __future__ import annotations

import sys

from .cli import main

# guarded, so that importing the module (multiprocessing, tools) runs nothing.
if __name__ == "__main__":
    sys.exit(main())
