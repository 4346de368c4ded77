"""`python -m appliance` runs the heron-manager CLI."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
