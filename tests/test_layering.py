"""Enforces the dependency direction between Heron's top-level packages (docs/architecture.md)."""

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
    # sigma, yaml: pySigma parses Sigma rules (rules/sigma, issue 19), imported only when used;
    # ahocorasick: the Sigma literal index (rules/sigma/block.py)
    # win32*/servicemanager: rules/service_host.py, the Windows service host of both programs
    # (imported inside functions, on Windows only)
    "rules": {
        "evtx",
        "orjson",
        "msgspec",
        "sigma",
        "yaml",
        "ahocorasick",
        "win32serviceutil",
        "win32service",
        "servicemanager",
    },
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


# Inside appliance/ (docs/manager.md "Layout"): the lower layers never import the HTTP API, the
# transport, the running process, the extensions or the CLI. Imports under TYPE_CHECKING count
# too: a lower layer that needs an upper type takes a Protocol instead.
APPLIANCE_LOWER = {
    "core": {"core"},
    "security": {"core", "security"},
    "store": {"core", "store"},
    "services": {"core", "security", "store", "services"},
}
# config.py holds the [misp] section's dataclass until the one settings system (issue 14 point 1)
APPLIANCE_EXCEPTIONS = {("appliance/core/config.py", "misp")}


def _appliance_targets(path: Path) -> list[tuple[str, int]]:
    """The appliance subpackage (or top-level module) each import of `path` reaches."""
    package = list(path.relative_to(ROOT).parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package[: len(package) - node.level + 1]
            target = base + (node.module.split(".") if node.module else [])
        elif node.module and node.module.split(".")[0] == "appliance":
            target = node.module.split(".")
        else:
            continue
        if len(target) > 1:
            found.append((target[1], node.lineno))
        else:  # `from appliance import x` / `from .. import x`
            found += [(alias.name, node.lineno) for alias in node.names]
    return found


@pytest.mark.parametrize("layer", sorted(APPLIANCE_LOWER))
def test_appliance_lower_layers_do_not_import_upper_ones(layer: str) -> None:
    bad = []
    for path in sorted((ROOT / "appliance" / layer).rglob("*.py")):
        where = path.relative_to(ROOT).as_posix()
        for target, line in _appliance_targets(path):
            if target not in APPLIANCE_LOWER[layer] and (where, target) not in APPLIANCE_EXCEPTIONS:
                bad.append(f"{where}:{line} imports appliance.{target}")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_appliance_top_level_holds_only_the_entry_points() -> None:
    top = sorted(p.name for p in (ROOT / "appliance").glob("*.py"))
    assert top == ["__init__.py", "__main__.py"], top
    assert (ROOT / "appliance" / "cli" / "__init__.py").is_file()  # the CLI package


def test_manager_imports_without_the_cluster_extra() -> None:
    """psycopg is the `cluster` extra: the embedded manager (and its frozen build) lacks it."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "import appliance.cli, appliance.runtime.context, appliance.runtime.lifecycle\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
