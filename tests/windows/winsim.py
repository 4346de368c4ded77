"""Windows simulation on Linux, in a fresh interpreter: ``python tests/windows/winsim.py MODE``.

``enter_windows()`` first imports, with the real platform, every stdlib and third-party module
our packages import (so their own platform branches are settled), then removes and blocks the
POSIX-only stdlib modules (importing one raises ``ModuleNotFoundError`` as on Windows), stubs the
Windows-only ones (any attribute use raises) and sets ``sys.platform = "win32"``. Our modules
are imported only after that. ``fakes/`` (the fake ``etw`` package and minimal pywin32 modules)
goes first on ``sys.path``.

Modes print one JSON line on stdout:

* ``import-all`` — import every module of rules, index, appliance and agent: ``{"failed": {...}}``;
* ``report FILE`` — ``heron-agent report --brief -o FILE``: ``{"rc": exit status}``;
* ``agent DIR`` — build and start the agent with the ETW source (fake pywintrace replaying
  recorded events) and canaries, wait for the events, stop it: a summary of what happened.
"""

from __future__ import annotations

import ast
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import pkgutil
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("rules", "index", "appliance", "agent")
# Stdlib modules that do not exist on Windows (CPython's Windows build).
POSIX_ONLY = frozenset(
    {
        "pwd",
        "grp",
        "fcntl",
        "termios",
        "resource",
        "posix",
        "pty",
        "tty",
        "syslog",
        "crypt",
        "_crypt",
        "spwd",
        "nis",
        "readline",
        "ossaudiodev",
        "_posixsubprocess",
        "_posixshmem",
        "curses",
        "_curses",
        "_curses_panel",
        "_dbm",
        "_gdbm",
    }
)
# Windows-only stdlib modules: importable, but every attribute use raises.
WINDOWS_ONLY = ("winreg", "msvcrt", "_winapi", "winsound", "_overlapped", "nt")


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name.split(".")[0] in POSIX_ONLY:
            raise ModuleNotFoundError(
                f"No module named {name!r} (blocked: not on Windows)", name=name
            )
        return None


class _WindowsStub(types.ModuleType):
    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise AttributeError(f"winsim: {self.__name__}.{attr} is not simulated")


def _imported_names() -> set[str]:
    names: set[str] = set()
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names.update(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module)
    return {n for n in names if n.split(".")[0] not in PACKAGES}


def enter_windows() -> None:
    """Settle third-party/stdlib imports, then block POSIX modules and claim to be win32."""
    for name in sorted(_imported_names()):
        if name.split(".")[0] in POSIX_ONLY or name.split(".")[0] in WINDOWS_ONLY:
            continue
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # Windows-only third-party (pywin32, pywintrace): faked or absent
    for name in list(sys.modules):
        if name.split(".")[0] in POSIX_ONLY:
            del sys.modules[name]
    sys.meta_path.insert(0, _Blocker())
    for name in WINDOWS_ONLY:
        if name not in sys.modules and importlib.util.find_spec(name) is None:  # not on Windows
            sys.modules[name] = _WindowsStub(name)
    sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes"))
    sys.platform = "win32"


def import_all() -> dict[str, str]:
    failed: dict[str, str] = {}
    for pkg in PACKAGES:
        mod = importlib.import_module(pkg)
        for info in pkgutil.walk_packages(mod.__path__, pkg + "."):
            try:
                importlib.import_module(info.name)
            except Exception as ex:  # noqa: BLE001 - reported to the test
                failed[info.name] = f"{type(ex).__name__}: {ex}"
    return failed


def main(argv: list[str]) -> int:
    enter_windows()
    if argv[0] == "import-all":
        print(json.dumps({"failed": import_all(), "platform": sys.platform}))
        return 0
    if argv[0] == "report":  # `heron-agent report --brief -o FILE` (what `run` shares with it)
        from agent.cli import main as agent_main

        print(json.dumps({"rc": agent_main(["report", "--brief", "-o", argv[1]])}))
        return 0
    if argv[0] == "agent":
        from tests.windows.agent_run import run_agent

        print(json.dumps(run_agent(Path(argv[1]))))
        return 0
    raise SystemExit(f"unknown mode {argv[0]!r}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))
