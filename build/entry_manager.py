"""Frozen entry point of heron-manager: calls `appliance.cli:main` (pyproject scripts)."""

from __future__ import annotations

import multiprocessing
import sys

if __name__ == "__main__":
    # a frozen program must call freeze_support before anything spawns a child.
    multiprocessing.freeze_support()
    from index.writer_protocol import FROZEN_ARG

    if sys.argv[1:2] == [FROZEN_ARG]:
        from index.writer_child import main as index_writer_main  # only Tantivy, not the app

        sys.exit(index_writer_main(sys.argv[2:]))
    from appliance.cli import main

    sys.exit(main())
