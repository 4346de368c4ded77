"""Quality gates from docs/style.md §5.20: ruff (lint) and mypy --strict run as part of the
suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FORMATTED = ("rules", "index", "agent", "appliance", "tests", "benchmarks", "build", "packaging")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_is_clean() -> None:
    out = _run(str(BIN / "ruff"), "check", *FORMATTED)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_ruff_format_is_applied() -> None:
    out = _run(str(BIN / "ruff"), "format", "--check", *FORMATTED)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_python_blocks_in_docs_are_formatted() -> None:
    """ruff formats the ```python blocks of Markdown files; a block that is not Python says so
    with its own language tag (text, sh, toml, ...)."""
    out = _run(str(BIN / "ruff"), "format", "--check", "docs", "README.md")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_mypy_strict_is_clean() -> None:
    out = _run(str(BIN / "mypy"))
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_no_conflict_markers_or_team_tags() -> None:
    """Merges leave no conflict markers; comments carry no team-role tags (docs/style.md §5.22)."""
    import re

    tag = re.compile(r"\b(NOTE|PERF|SECURITY)\([a-z-]+\)")
    marker = re.compile(r"^(<{7} |>{7} |={7}$)", re.M)
    bad = []
    for top in (*FORMATTED, "docs"):
        for path in (ROOT / top).rglob("*"):
            if (
                path.suffix not in (".py", ".md", ".js", ".toml", ".sh")
                or "__pycache__" in path.parts
            ):
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            if marker.search(text):
                bad.append(f"{path.relative_to(ROOT)}: conflict marker")
            if path.suffix == ".py" and path.name != "test_gates.py" and tag.search(text):
                bad.append(f"{path.relative_to(ROOT)}: {tag.search(text).group(0)}")
    assert not bad, "\n".join(bad)


# docs/style.md §5.1: a module holds one concept; over MAX_MODULE_LINES it is split by
# responsibility. The files still over it, each with the reason it is not split yet (this list
# may only shrink: an entry that is no longer over the limit fails too).
MAX_MODULE_LINES = 600
LONG_MODULES: dict[str, str] = {}


def test_no_module_over_the_line_limit() -> None:
    sizes = {
        path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for top in ("rules", "index", "agent", "appliance")
        for path in (ROOT / top).rglob("*.py")
    }
    over = sorted(
        f"{name}: {n} lines"
        for name, n in sizes.items()
        if n > MAX_MODULE_LINES and name not in LONG_MODULES
    )
    assert not over, f"split by responsibility (over {MAX_MODULE_LINES} lines):\n" + "\n".join(over)
    stale = sorted(name for name in LONG_MODULES if sizes.get(name, 0) <= MAX_MODULE_LINES)
    assert not stale, f"no longer over {MAX_MODULE_LINES} lines, drop from LONG_MODULES: {stale}"
