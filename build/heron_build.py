"""What goes into Heron's two frozen programs: the data both PyInstaller specs share.

`build/heron-manager.spec` and `build/heron-agent.spec` import this module (PyInstaller puts the
spec directory on `sys.path` through `SPECPATH`); `tests/packaging/` loads it from its path to check
the lists. `build/` is not a Python package: nothing else imports this file.

Rules this module encodes:

- one-dir builds only (docs/reference/deps.md §6: one-file costs 3-5 s per start and unpacks DLLs
into %TEMP%);
- no UPX (antivirus false positives), strip debug info on Linux;
- the agent never carries the manager's stack: `AGENT_FORBIDDEN` is excluded from its analysis and
  `assert_agent_clean` fails the build if any of it shows up anyway;
- our own packages are collected with all their submodules, so modules that a registry dict
  imports lazily are never missing; data files (bundled rules, console assets, PyMISP templates)
  are collected explicitly because PyInstaller only follows `import` statements.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path

BUILD_DIR = Path(__file__).resolve().parent
ROOT = BUILD_DIR.parent

WINDOWS = sys.platform == "win32"
# stripping Windows PE files with binutils breaks signatures; strip on Linux only.
STRIP = sys.platform.startswith("linux")
UPX = False

MANAGER_NAME = "heron-manager"
AGENT_NAME = "heron-agent"

# Never in either program: development and test tooling that happens to be in the venv, GUI
# toolkits, and the scientific stack (docs/reference/deps.md §6: pandas/pyarrow/numpy added 250
# MiB).
COMMON_EXCLUDES: tuple[str, ...] = (
    "tkinter",
    "_tkinter",
    "turtle",
    "idlelib",
    "pydoc_data",
    "lib2to3",
    "pytest",
    "_pytest",
    "pluggy",
    "hypothesis",
    "schemathesis",
    "hypothesis_graphql",
    "mypy",
    "mypyc",
    "ruff",
    "IPython",
    "jedi",
    "numpy",
    "pandas",
    "pyarrow",
    "matplotlib",
    "PIL",
    "pip",
    "werkzeug",
    "rich",
    "pygments",
)

# The agent must not contain the manager's storage, search, web and MISP stack
# (docs/architecture.md:
# size, antivirus noise, attack surface), nor our manager-side packages.
AGENT_FORBIDDEN: tuple[str, ...] = (
    "duckdb",
    "tantivy",
    "falcon",
    "pymisp",
    "waitress",
    "wsproto",
    "requests",
    "index",
    "appliance",
)

# Windows service support (pywin32) and the time-zone database that zoneinfo needs on Windows.
WINDOWS_HIDDEN: tuple[str, ...] = (
    "win32timezone",
    "win32serviceutil",
    "win32service",
    "win32event",
    "servicemanager",
    "pywintypes",
)

# Which of our packages (and their data) each program carries.
MANAGER_PACKAGES: tuple[str, ...] = ("rules", "index", "appliance")
AGENT_PACKAGES: tuple[str, ...] = ("rules", "agent")

# Third-party packages whose non-Python files must ship: PyMISP reads describeTypes.json and the
# misp-objects templates at import time (docs/reference/deps.md §6); tzdata backs zoneinfo where
# there is no
# system database (Windows).
MANAGER_DATA_PACKAGES: tuple[str, ...] = ("pymisp", "tzdata")
AGENT_DATA_PACKAGES: tuple[str, ...] = ("tzdata",)

_DATA_EXCLUDES = ["**/__pycache__/**", "**/*.pyc", "**/*.pyi", "**/py.typed"]


def version() -> str:
    """Return the project version from pyproject.toml."""
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return str(tomllib.load(fh)["project"]["version"])


def _submodules(packages: Iterable[str]) -> list[str]:
    """Every module of our `packages`, found on disk (no import: half-written or Windows-only
    modules must not make the list depend on what imports cleanly on the build host)."""
    found: list[str] = []
    for package in packages:
        pkg_dir = ROOT / package
        if not (pkg_dir / "__init__.py").is_file():
            continue
        for path in sorted(pkg_dir.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found.append(".".join(parts))
    return found


def _our_data(packages: Iterable[str]) -> list[tuple[str, str]]:
    """Non-Python files inside our packages (rules, console assets, templates), as (src, dest)."""
    datas: list[tuple[str, str]] = []
    for package in packages:
        pkg_dir = ROOT / package
        for path in sorted(pkg_dir.rglob("*")):
            if not path.is_file() or path.suffix in {".py", ".pyc", ".pyi"}:
                continue
            if "__pycache__" in path.parts:
                continue
            datas.append((str(path), str(path.parent.relative_to(ROOT))))
    return datas


def _third_party_data(packages: Iterable[str]) -> list[tuple[str, str]]:
    from PyInstaller.utils.hooks import collect_data_files

    datas: list[tuple[str, str]] = []
    for package in packages:
        datas += collect_data_files(package, excludes=_DATA_EXCLUDES)
    return datas


def hiddenimports(program: str) -> list[str]:
    """Modules PyInstaller cannot see from `import` statements for `program`."""
    packages = MANAGER_PACKAGES if program == MANAGER_NAME else AGENT_PACKAGES
    found = _submodules(packages)
    if program == MANAGER_NAME:
        found.append("tzdata")
    if WINDOWS:
        found += ["tzdata", *WINDOWS_HIDDEN]
    return sorted(set(found))


def datas(program: str) -> list[tuple[str, str]]:
    """Data files for `program`: our packages' resources plus third-party templates."""
    if program == MANAGER_NAME:
        return _our_data(MANAGER_PACKAGES) + _third_party_data(MANAGER_DATA_PACKAGES)
    extra = AGENT_DATA_PACKAGES if WINDOWS else ()
    return _our_data(AGENT_PACKAGES) + _third_party_data(extra)


def excludes(program: str) -> list[str]:
    """Modules kept out of `program`."""
    if program == AGENT_NAME:
        return sorted({*COMMON_EXCLUDES, *AGENT_FORBIDDEN})
    return sorted(COMMON_EXCLUDES)


def _is_forbidden(name: str) -> bool:
    top = name.replace("\\", "/").split("/")[0].split(".")[0]
    return top in AGENT_FORBIDDEN or top.startswith("duckdb") or top.startswith("tantivy")


def assert_agent_clean(*tocs: Iterable[tuple[str, ...]]) -> None:
    """Fail the agent build if any module or file of the manager's stack got into it."""
    leaked = sorted({entry[0] for toc in tocs for entry in toc if _is_forbidden(entry[0])})
    if leaked:
        raise SystemExit("heron-agent must not contain: " + ", ".join(leaked[:20]))


def windows_version_file(program: str, workdir: str) -> str | None:
    """Write a Windows VERSIONINFO resource for `program` and return its path (None off Windows)."""
    if not WINDOWS:
        return None
    parts = [int(p) for p in version().split(".")[:3] if p.isdigit()]
    while len(parts) < 4:
        parts.append(0)
    numbers = tuple(parts[:4])
    text = f"""VSVersionInfo(
  ffi=FixedFileInfo(filevers={numbers}, prodvers={numbers}, mask=0x3f, flags=0x0, OS=0x40004,
                    fileType=0x1, subtype=0x0, date=(0, 0)),
  kids=[
    StringFileInfo([StringTable('040904B0', [
      StringStruct('CompanyName', 'Heron project'),
      StringStruct('FileDescription', '{program}'),
      StringStruct('FileVersion', '{version()}'),
      StringStruct('InternalName', '{program}'),
      StringStruct('OriginalFilename', '{program}.exe'),
      StringStruct('ProductName', 'Heron EDR'),
      StringStruct('ProductVersion', '{version()}')])]),
    VarFileInfo([VarStruct('Translation', [1033, 1200])])
  ]
)
"""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, f"{program}-version.txt")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path
