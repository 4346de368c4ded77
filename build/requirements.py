"""Print what the build venv installs: Heron's runtime dependencies and the `build` extra.

    python3 build/requirements.py > requirements.txt

The frozen programs need exactly these (our own packages come from the source tree: the specs put
it on PyInstaller's path), never the `dev` extra (pytest, ruff, mypy, chdb, …). `make wheelhouse`
turns the list into wheels on a connected box; `make build` installs it from there offline.
Runs on the system interpreter (stdlib only, Python >= 3.11 for tomllib).
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def requirements(pyproject: Path = PYPROJECT) -> list[str]:
    """Runtime dependencies plus the `build` extra, as pip requirement lines (markers kept)."""
    with open(pyproject, "rb") as fh:
        project = tomllib.load(fh)["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["build"]]


if __name__ == "__main__":
    sys.stdout.write("".join(line + "\n" for line in requirements()))
