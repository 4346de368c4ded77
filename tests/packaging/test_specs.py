"""The PyInstaller specs: entry points, one-dir shape, hidden imports, data files and excludes.

The specs are executed with recording stand-ins for PyInstaller's Analysis/PYZ/EXE/COLLECT, so these
tests check exactly what a build would be given, in about a second and without building.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.packaging.conftest import BUILD, ROOT

MANAGER_STACK = {"duckdb", "tantivy", "falcon", "pymisp", "waitress"}
OURS = {"rules", "index", "agent", "appliance"}


class Recorder:
    """Stands in for one PyInstaller spec class and keeps its arguments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs
        # Analysis results the spec passes on (a.pure, a.binaries, ...): empty TOCs.
        self.pure: list[tuple[str, ...]] = []
        self.binaries: list[tuple[str, ...]] = []
        self.datas: list[tuple[str, ...]] = []
        self.scripts: list[tuple[str, ...]] = []


def _exec_spec(name: str, tmp_path: Path) -> dict[str, Any]:
    spec_path = BUILD / f"{name}.spec"
    namespace: dict[str, Any] = {
        "SPECPATH": str(BUILD),
        "workpath": str(tmp_path),
        "__file__": str(spec_path),
    }
    for cls in ("Analysis", "PYZ", "EXE", "COLLECT"):
        namespace[cls] = type(cls, (Recorder,), {})
    saved_path = list(sys.path)
    try:
        exec(compile(spec_path.read_text(), str(spec_path), "exec"), namespace)
    finally:
        sys.path[:] = saved_path
        sys.modules.pop("heron_build", None)
    return namespace


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("spec")
    return {name: _exec_spec(name, tmp) for name in ("heron-manager", "heron-agent")}


@pytest.fixture(scope="module")
def hb() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "heron_build_under_test", BUILD / "heron_build.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _modules_of(package: str) -> set[str]:
    names = set()
    for path in (ROOT / package).rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.add(".".join(parts))
    return names


@pytest.mark.parametrize("name", ["heron-manager", "heron-agent"])
def test_spec_builds_a_one_dir_console_program(specs: dict[str, dict[str, Any]], name: str) -> None:
    ns = specs[name]
    exe, coll = ns["exe"], ns["coll"]
    assert exe.kwargs["name"] == name
    assert exe.kwargs["exclude_binaries"] is True, "one-file build: binaries must go to COLLECT"
    assert exe.kwargs["console"] is True
    assert exe.kwargs["upx"] is False and coll.kwargs["upx"] is False
    assert coll.kwargs["name"] == name
    assert exe.kwargs["strip"] is (sys.platform.startswith("linux"))


@pytest.mark.parametrize(
    ("name", "module"), [("heron-manager", "appliance.cli"), ("heron-agent", "agent.cli")]
)
def test_entry_script_calls_the_pyproject_main(
    specs: dict[str, dict[str, Any]], name: str, module: str
) -> None:
    scripts = specs[name]["a"].args[0]
    assert len(scripts) == 1
    entry = Path(scripts[0])
    assert entry.parent == BUILD and entry.is_file()
    tree = ast.parse(entry.read_text())
    imports = [
        (n.module, [a.name for a in n.names])
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom)
    ]
    assert (module, ["main"]) in imports
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"][name] == f"{module}:main"
    assert "freeze_support" in entry.read_text()


def test_agent_excludes_the_manager_stack(specs: dict[str, dict[str, Any]]) -> None:
    excludes = set(specs["heron-agent"]["a"].kwargs["excludes"])
    assert MANAGER_STACK | {"index", "appliance"} <= excludes
    hidden = specs["heron-agent"]["a"].kwargs["hiddenimports"]
    leaked = [m for m in hidden if m.split(".")[0] in MANAGER_STACK | {"index", "appliance"}]
    assert not leaked


def test_manager_keeps_its_stack(specs: dict[str, dict[str, Any]]) -> None:
    excludes = set(specs["heron-manager"]["a"].kwargs["excludes"])
    needed = MANAGER_STACK | {
        "cryptography",
        "rules",
        "index",
        "appliance",
        "orjson",
        "msgspec",
        "zstandard",
        "requests",
        "sqlite3",
        "ssl",
        "asyncio",
    }
    assert not needed & excludes


def test_dev_tools_are_excluded_from_both(specs: dict[str, dict[str, Any]]) -> None:
    for name in ("heron-manager", "heron-agent"):
        excludes = set(specs[name]["a"].kwargs["excludes"])
        assert {"pytest", "hypothesis", "schemathesis", "mypy", "tkinter", "numpy"} <= excludes


@pytest.mark.parametrize(
    ("name", "packages"),
    [("heron-manager", ("rules", "index", "appliance")), ("heron-agent", ("rules", "agent"))],
)
def test_every_module_of_our_packages_is_a_hidden_import(
    specs: dict[str, dict[str, Any]], name: str, packages: tuple[str, ...]
) -> None:
    # Registries import lazily in places; collecting every submodule keeps them all in the build.
    hidden = set(specs[name]["a"].kwargs["hiddenimports"])
    for package in packages:
        if not (ROOT / package / "__init__.py").exists():
            continue
        expected = _modules_of(package)
        missing = sorted(expected - hidden)
        assert not missing, f"{name} misses {missing[:10]}"


def test_manager_ships_pymisp_data_and_our_resources(specs: dict[str, dict[str, Any]]) -> None:
    datas = specs["heron-manager"]["a"].kwargs["datas"]
    dests = {(Path(src).name, dest) for src, dest in datas}
    # read at import (docs/reference/deps.md §6)
    assert ("describeTypes.json", "pymisp/data") in dests
    assert any(dest.startswith("pymisp/data/misp-objects/objects") for _, dest in dests)
    # Every non-Python file in our packages (bundled rules, console assets) is collected.
    ours = [
        p
        for pkg in ("rules", "index", "appliance")
        for p in (ROOT / pkg).rglob("*")
        if p.is_file() and p.suffix not in {".py", ".pyc"} and "__pycache__" not in p.parts
    ]
    collected = {Path(src).resolve() for src, _ in datas}
    missing = [str(p.relative_to(ROOT)) for p in ours if p.resolve() not in collected]
    assert not missing, missing[:10]
    for src, dest in datas:
        path = Path(src).resolve()
        if path.is_relative_to(ROOT) and path.relative_to(ROOT).parts[0] in OURS:
            assert path.parent.relative_to(ROOT).as_posix() == dest


def test_agent_data_has_no_manager_files(specs: dict[str, dict[str, Any]]) -> None:
    datas = specs["heron-agent"]["a"].kwargs["datas"]
    tops = {Path(dest).parts[0] for _, dest in datas}
    assert not tops & (MANAGER_STACK | {"index", "appliance"})


def test_assert_agent_clean_rejects_leaks(hb: ModuleType) -> None:
    hb.assert_agent_clean([("rules.engine", "x", "PYMODULE")], [("psutil/_psutil_linux.so", "x")])
    for leak in (
        "duckdb",
        "tantivy.tantivy",
        "falcon.app",
        "pymisp.api",
        "appliance.cli",
        "duckdb.cpython-311-x86_64-linux-gnu.so",
        "tantivy/tantivy.abi3.so",
    ):
        with pytest.raises(SystemExit, match="must not contain"):
            hb.assert_agent_clean([(leak, "x", "PYMODULE")])


def test_agent_spec_runs_the_leak_check() -> None:
    text = (BUILD / "heron-agent.spec").read_text()
    check = text.index("hb.assert_agent_clean(a.pure, a.binaries, a.datas)")
    assert check < text.index("PYZ(")


def test_build_script_keeps_pyinstaller_out_of_build_dir() -> None:
    script = (BUILD / "build.sh").read_text()
    assert "--workpath" in script and "--distpath" in script
    assert '"${WORKPATH:-$ROOT/.pyi-work}"' in script and '"${DISTPATH:-$ROOT/dist}"' in script
    assert "nice" in script
    gitignore = (ROOT / ".gitignore").read_text().split()
    assert not [line for line in gitignore if line.strip("/") == "build"]
    assert "/.pyi-work/" in gitignore and "/dist/" in gitignore


def test_build_and_packaging_are_not_python_packages() -> None:
    for folder in ("build", "packaging"):
        assert not list((ROOT / folder).rglob("__init__.py")), folder


def test_version_comes_from_pyproject(hb: ModuleType) -> None:
    assert (
        hb.version() == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    )


def test_windows_version_resource(hb: ModuleType, tmp_path: Path) -> None:
    # PyInstaller evaluates this file as a Python expression on Windows (VSVersionInfo(...)).
    saved = hb.WINDOWS
    hb.WINDOWS = True
    try:
        path = hb.windows_version_file("heron-agent", str(tmp_path))
    finally:
        hb.WINDOWS = saved
    assert path is not None
    text = Path(path).read_text()
    tree = ast.parse(text, mode="eval")
    assert isinstance(tree.body, ast.Call) and ast.unparse(tree.body.func) == "VSVersionInfo"
    version = hb.version()
    assert f"StringStruct('ProductVersion', '{version}')" in text
    assert "StringStruct('OriginalFilename', 'heron-agent.exe')" in text
    numbers = tuple(int(p) for p in version.split(".")[:3]) + (0,)
    assert f"filevers={numbers}" in text
    assert hb.windows_version_file("heron-agent", str(tmp_path / "x")) is None or hb.WINDOWS


def test_agent_ships_the_ebpf_sensor(specs: dict[str, dict[str, Any]]) -> None:
    """heron.bpf.o (built by `make ebpf`) goes into the one-dir and the wheel, next to its code."""
    obj = ROOT / "agent" / "sources" / "ebpf" / "heron.bpf.o"
    pkg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "heron.bpf.o" in pkg["package-data"]["agent.sources.ebpf"]
    if not obj.is_file():
        pytest.skip("heron.bpf.o not built (clang/bpftool missing)")
    datas = specs["heron-agent"]["a"].kwargs["datas"]
    assert (str(obj), "agent/sources/ebpf") in {(str(Path(s).resolve()), d) for s, d in datas}
