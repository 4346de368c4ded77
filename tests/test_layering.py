"""Enforces the dependency direction between Heron's top-level packages (ARCHITECTURE.md)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"rules", "index", "agent", "appliance"}
ALLOWED_OURS = {
    "rules": set(),
    "index": {"rules"},
    "agent": {"rules"},
    "appliance": {"rules", "index"},
}
# Third-party modules each package may import (stdlib is always allowed).
THIRD_PARTY = {
    # sigma, yaml: pySigma parses Sigma rules (rules/sigma, issue 19), imported only when used
    "rules": {"evtx", "orjson", "msgspec", "sigma", "yaml"},
    "index": {"evtx", "orjson", "msgspec", "tantivy", "duckdb", "zstandard"},
    "agent": {
        "evtx",
        "orjson",
        "msgspec",
        "psutil",
        "pefile",
        "etw",
        "win32serviceutil",
        "win32service",
        "win32event",
        "servicemanager",
        "pywintypes",
        "win32api",
        "win32security",
        "ntsecuritycon",
        "zstandard",
        "cryptography",
    },
    "appliance": {
        "evtx",
        "orjson",
        "msgspec",
        "falcon",
        "waitress",
        "duckdb",
        "pymisp",
        "cryptography",
        "zstandard",
        "requests",
        "tantivy",
        "pyzipper",
        "wsproto",
        "h11",  # appliance/transport/websocket.py: WebSocket streams on the TLS front
        # appliance/runtime/winservice.py: `heron-manager run --service` on Windows (imported
        # inside functions only; pywin32 is a Windows-only dependency)
        "win32serviceutil",
        "win32service",
        "win32event",
        "servicemanager",
        # appliance/store/postgres.py: cluster mode only (the `cluster` extra)
        "psycopg",
    },
}


def _imports(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.split(".")[0], node.lineno))
    return found


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(OURS))
def test_package_imports_respect_layering(package: str) -> None:
    stdlib = set(sys.stdlib_module_names)
    bad = []
    for path in _modules(package):
        for name, line in _imports(path):
            if name in stdlib or name == package:
                continue
            if name in OURS:
                if name not in ALLOWED_OURS[package]:
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
            elif name not in THIRD_PARTY[package]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports third-party {name}")
    assert not bad, "forbidden imports:\n" + "\n".join(bad)
