"""`heron-manager`: the manager's command line (a thin layer over the services).

Only this package prints, exits, or configures logging. One module per group of commands
(`init`, `run`, `admin`, `rulepacks`, `events`, `apis`), the parser in `parser.py`, and `main`
here, the entry point of pyproject's `heron-manager` script and of the frozen program. Commands
that open the fleet database cannot run while `heron-manager run` holds it (DuckDB allows one
process); they use its admin API then (`target.py`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from index.writer_protocol import FROZEN_ARG

from ..core.errors import ApplianceError, ConfigError
from ..runtime.datadir import open_context
from .parser import build_parser

# open_context: benchmarks/fleet.py and docs/interfaces.md open a data directory through the CLI
__all__ = ["build_parser", "main", "open_context"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; exit code 0, 1 (runtime error) or 2 (usage or configuration)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [FROZEN_ARG]:  # a frozen manager's index writer child
        from index.writer_child import main as index_writer_main

        return index_writer_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command not in ("run",):
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        return int(args.fn(args))
    except ConfigError as ex:
        print(f"heron-manager: {ex}", file=sys.stderr)
        return 2
    except ApplianceError as ex:
        print(f"heron-manager: {ex}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `heron-manager routes | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
