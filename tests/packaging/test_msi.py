"""The Windows MSIs: wixl builds them from a one-dir layout and msiinfo shows the right tables.

NOTE(packaging): the layout here is made of small placeholder files shaped like a Windows one-dir
(`heron-agent.exe` + `_internal/`). That is only good enough to check the MSI tables: real Windows
builds come from the Windows runner (.github/workflows/windows.yml). The slow tier also builds the
MSIs from the real Linux one-dirs (staged with --allow-linux-layout).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from tests.packaging.conftest import PACKAGING, ROLES, make_fake_onedirs, need, run

WINDOWS = PACKAGING / "windows"


def table(msi: Path, name: str) -> list[dict[str, str]]:
    """Rows of one MSI table, via `msiinfo export` (tab separated; 3 header lines)."""
    lines = run(["msiinfo", "export", str(msi), name]).stdout.splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=False)) for line in lines[3:] if line]


@pytest.fixture(scope="module")
def msis(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    need("wixl", "msiinfo")
    src = make_fake_onedirs(tmp_path_factory.mktemp("win-dist"), windows=True)
    out = tmp_path_factory.mktemp("msi")
    run(
        [
            "bash",
            str(WINDOWS / "build-msi.sh"),
            "--src",
            str(src),
            "--out",
            str(out),
            "--version",
            "1.2.3",
        ]
    )
    return {role: out / f"heron-{role}-1.2.3-x64.msi" for role in ROLES} | {"src": src}


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_components", WINDOWS / "gen-components.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("role", ROLES)
def test_every_file_of_the_one_dir_is_installed(msis: dict[str, Path], role: str) -> None:
    onedir = msis["src"] / f"heron-{role}"
    expected = sorted(p.name for p in onedir.rglob("*") if p.is_file())
    files = table(msis[role], "File")
    assert sorted(row["FileName"] for row in files) == expected
    main = [row for row in files if row["FileName"] == f"heron-{role}.exe"]
    assert main and main[0]["File"] == ("ManagerExe" if role == "manager" else "AgentExe")
    # Each file is in a component of its own directory, under INSTALLDIR.
    dirs = {row["Directory"]: row for row in table(msis[role], "Directory")}
    assert dirs["INSTALLDIR"]["DefaultDir"] == role.capitalize()
    assert dirs["INSTALLDIR"]["Directory_Parent"] == "HeronProgramDir"
    assert dirs["HeronProgramDir"]["Directory_Parent"] == "ProgramFiles64Folder"
    assert dirs["DATADIR"]["Directory_Parent"] == "HeronDataRoot"
    assert dirs["HeronDataRoot"]["Directory_Parent"] == "CommonAppDataFolder"
    internal = [d for d, row in dirs.items() if row["DefaultDir"] == "_internal"]
    assert len(internal) == 1 and dirs[internal[0]]["Directory_Parent"] == "INSTALLDIR"


@pytest.mark.parametrize(
    ("role", "service"), [("manager", "heron-manager"), ("agent", "heron-agent")]
)
def test_service_is_installed_started_and_removed(
    msis: dict[str, Path], role: str, service: str
) -> None:
    [svc] = table(msis[role], "ServiceInstall")
    assert svc["Name"] == service
    assert svc["StartName"] == "LocalSystem"
    assert svc["ServiceType"] == "16"  # SERVICE_WIN32_OWN_PROCESS
    assert svc["StartType"] == "2"  # SERVICE_AUTO_START
    assert svc["Arguments"].startswith("run --service")
    assert svc["Component_"] == ("ManagerExe" if role == "manager" else "AgentExe")
    [ctl] = table(msis[role], "ServiceControl")
    # msidbServiceControlEvent: Start on install (1) | Stop on install (2) | Stop on uninstall (32)
    # | Delete on uninstall (128)
    assert int(ctl["Event"]) == 1 | 2 | 32 | 128
    assert ctl["Name"] == service


@pytest.mark.parametrize("role", ROLES)
def test_data_dir_is_created_and_locked_down(msis: dict[str, Path], role: str) -> None:
    folders = table(msis[role], "CreateFolder")
    assert {"Directory_": "DATADIR", "Component_": f"{role.capitalize()}DataDir"} in folders
    actions = {row["Action"]: row for row in table(msis[role], "CustomAction")}
    lock = actions["LockDataDir"]
    assert lock["Source"] == "ICACLS"
    assert "/inheritance:r" in lock["Target"]
    assert "*S-1-5-18:(OI)(CI)F" in lock["Target"] and "*S-1-5-32-544:(OI)(CI)F" in lock["Target"]
    assert "Users" not in lock["Target"] and "S-1-1-0" not in lock["Target"]
    # 0x400 in-script (deferred) | 0x800 no impersonation: runs as SYSTEM; 50 = exe in a property.
    assert int(lock["Type"]) & 0x3F == 50 and int(lock["Type"]) & 0xC00 == 0xC00
    assert actions["SetIcaclsPath"]["Target"] == "[System64Folder]icacls.exe"
    seq = {row["Action"]: row for row in table(msis[role], "InstallExecuteSequence")}
    assert int(seq["SetIcaclsPath"]["Sequence"]) < int(seq["InstallInitialize"]["Sequence"])
    assert (
        int(seq["CreateFolders"]["Sequence"])
        < int(seq["LockDataDir"]["Sequence"])
        < int(seq["InstallFiles"]["Sequence"])
    )


def test_manager_runs_init_once_before_the_service_starts(msis: dict[str, Path]) -> None:
    actions = {row["Action"]: row for row in table(msis["manager"], "CustomAction")}
    seq = {row["Action"]: row for row in table(msis["manager"], "InstallExecuteSequence")}
    base = 'init --data-dir "[DATADIR]."'
    loopback = ' --server-name "[ComputerName]" --server-name localhost --server-name 127.0.0.1'
    assert actions["ManagerInit"]["Target"] == base + loopback
    assert (
        actions["ManagerInitNamed"]["Target"] == base + ' --server-name "[SERVER_NAME]"' + loopback
    )
    for name in ("ManagerInit", "ManagerInitNamed"):
        init = actions[name]
        assert init["Source"] == "ManagerExe"
        assert int(init["Type"]) & 0x3F == 18 and int(init["Type"]) & 0xC00 == 0xC00
        assert (
            int(seq["InstallFiles"]["Sequence"])
            < int(seq[name]["Sequence"])
            < int(seq["StartServices"]["Sequence"])
        )
        assert "NOT Installed" in seq[name]["Condition"]
        assert "NOT WIX_UPGRADE_DETECTED" in seq[name]["Condition"]
    # Exactly one of the two runs: they are told apart by SERVER_NAME.
    assert seq["ManagerInit"]["Condition"].endswith("AND NOT SERVER_NAME")
    assert seq["ManagerInitNamed"]["Condition"].endswith("AND SERVER_NAME")


def test_agent_enrolls_from_msi_properties(msis: dict[str, Path]) -> None:
    actions = {row["Action"]: row for row in table(msis["agent"], "CustomAction")}
    assert actions["EnrollToken"]["Target"] == (
        'enroll --manager "[MANAGER]" --token "[ENROLL_TOKEN]"'
    )
    assert actions["EnrollBundle"]["Target"] == 'enroll --bundle "[ENROLL_BUNDLE]"'
    for name in ("EnrollToken", "EnrollBundle"):
        assert actions[name]["Source"] == "AgentExe"
        assert int(actions[name]["Type"]) & 0xC00 == 0xC00
    seq = {row["Action"]: row for row in table(msis["agent"], "InstallExecuteSequence")}
    assert "ENROLL_TOKEN" in seq["EnrollToken"]["Condition"]
    assert "MANAGER" in seq["EnrollToken"]["Condition"]
    assert "ENROLL_BUNDLE" in seq["EnrollBundle"]["Condition"]
    for name in ("EnrollToken", "EnrollBundle"):
        assert "NOT Installed" in seq[name]["Condition"]
        assert int(seq["InstallFiles"]["Sequence"]) < int(seq[name]["Sequence"])
        assert int(seq[name]["Sequence"]) < int(seq["StartServices"]["Sequence"])
    props = {row["Property"]: row["Value"] for row in table(msis["agent"], "Property")}
    assert props["MsiHiddenProperties"] == "ENROLL_TOKEN"


@pytest.mark.parametrize("role", ROLES)
def test_product_properties(msis: dict[str, Path], role: str) -> None:
    props = {row["Property"]: row["Value"] for row in table(msis[role], "Property")}
    assert props["ProductVersion"] == "1.2.3"
    assert props["ALLUSERS"] == "1"
    assert props["UpgradeCode"].startswith("{")
    assert "WIX_UPGRADE_DETECTED" in props["SecureCustomProperties"]
    media = table(msis[role], "Media")
    assert media[0]["Cabinet"].startswith("#"), "the cabinet must be embedded"


def test_manager_and_agent_have_distinct_identities(msis: dict[str, Path]) -> None:
    codes = [
        {row["Property"]: row["Value"] for row in table(msis[role], "Property")}["UpgradeCode"]
        for role in ROLES
    ]
    assert codes[0] != codes[1]
    guids = [{row["ComponentId"] for row in table(msis[role], "Component")} for role in ROLES]
    assert not guids[0] & guids[1]


def test_component_ids_are_stable_and_valid(gen: ModuleType, tmp_path: Path) -> None:
    src = make_fake_onedirs(tmp_path / "a", windows=True) / "heron-agent"
    first = gen.render(
        src,
        product="heron-agent",
        main="heron-agent.exe",
        group="G",
        directory="INSTALLDIR",
        win64=True,
    )
    copy = make_fake_onedirs(tmp_path / "b", windows=True) / "heron-agent"
    assert (
        gen.render(
            copy,
            product="heron-agent",
            main="heron-agent.exe",
            group="G",
            directory="INSTALLDIR",
            win64=True,
        )
        == first
    )
    other = gen.render(
        src,
        product="heron-manager",
        main="heron-agent.exe",
        group="G",
        directory="INSTALLDIR",
        win64=True,
    )
    assert other != first
    assert "heron-agent.exe" not in first
    ids = [part.split('"')[1] for part in first.split(" Id=")[1:]]
    assert all(len(i) <= 72 and (i[0].isalpha() or i[0] == "_") for i in ids)


def test_linux_layout_needs_an_explicit_flag(tmp_path: Path) -> None:
    need("wixl")
    src = make_fake_onedirs(tmp_path / "linux")
    proc = run(
        [
            "bash",
            str(WINDOWS / "build-msi.sh"),
            "--src",
            str(src),
            "--out",
            str(tmp_path / "out"),
            "agent",
        ],
        check=False,
    )
    assert proc.returncode != 0 and "heron-agent.exe" in proc.stderr
    proc = run(
        [
            "bash",
            str(WINDOWS / "build-msi.sh"),
            "--src",
            str(src),
            "--out",
            str(tmp_path / "out"),
            "--allow-linux-layout",
            "agent",
        ]
    )
    assert "fake Windows layout" in proc.stderr
    assert (tmp_path / "out" / "heron-agent-0.1.0-x64.msi").is_file() or list(
        (tmp_path / "out").glob("heron-agent-*-x64.msi")
    )
