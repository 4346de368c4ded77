"""Child process of the shipper crash test: ship a journal in small rounds until killed."""

from __future__ import annotations

import sys
from pathlib import Path

from index import chship
from index.clickhouse import ClickHouse
from index.journal import Journal


def main() -> None:
    root, frontend, *urls = sys.argv[1:]
    chship._ROUND_ROWS = 300  # many rounds, so the kill lands between or inside inserts
    journal = Journal(Path(root) / "journal", fsync=False)
    shipper = chship.Shipper(
        journal,
        [ClickHouse(u) for u in urls],
        frontend=frontend,
        state_path=Path(root) / "ship.json",
    )
    while shipper.lag() > 0:
        shipper.ship_once()
    print("done", flush=True)


if __name__ == "__main__":
    main()
