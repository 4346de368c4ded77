"""The Windows MSIs: wixl builds them from a one-dir layout and msiinfo shows the right tables.

the layout here is made of small placeholder files shaped like a Windows one-dir
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
    base = 'init --if-needed --data-dir "[DATADIR]." --key-file "[DATADIR]first-admin-key.json"'
    names = " --host-names --server-name localhost --server-name 127.0.0.1"
    assert actions["ManagerInit"]["Target"] == base + names
    assert actions["ManagerInitNamed"]["Target"] == base + ' --server-name "[SERVER_NAME]"' + names
    for name in ("ManagerInit", "ManagerInitNamed"):
        init = actions[name]
        assert init["Source"] == "ManagerExe"
        assert int(init["Type"]) & 0x3F == 18 and int(init["Type"]) & 0xC00 == 0xC00
        assert int(init["Type"]) & 0x40 == 0  # Return="check": a failed init rolls back
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


def test_manager_first_admin_key_goes_to_an_administrators_only_file(
    msis: dict[str, Path],
) -> None:
    """msiexec discards init's stdout: the key is written to a file, then locked (point 4)."""
    actions = {row["Action"]: row for row in table(msis["manager"], "CustomAction")}
    seq = {row["Action"]: row for row in table(msis["manager"], "InstallExecuteSequence")}
    key_file = '"[DATADIR]first-admin-key.json"'
    assert f"--key-file {key_file}" in actions["ManagerInit"]["Target"]
    lock = actions["LockKeyFile"]
    assert lock["Source"] == "ICACLS" and int(lock["Type"]) & 0x3F == 50
    assert int(lock["Type"]) & 0xC00 == 0xC00  # deferred, as SYSTEM
    assert lock["Target"] == f"{key_file} /inheritance:r /grant:r *S-1-5-32-544:F"
    assert (
        int(seq["LockDataDir"]["Sequence"])  # the file is born in the locked data directory
        < int(seq["ManagerInitNamed"]["Sequence"])
        < int(seq["LockKeyFile"]["Sequence"])
        < int(seq["StartServices"]["Sequence"])
    )
    assert seq["LockKeyFile"]["Condition"] == "NOT Installed AND NOT WIX_UPGRADE_DETECTED"


def test_manager_reinstall_over_a_kept_data_dir_does_not_roll_back(msis: dict[str, Path]) -> None:
    """After uninstall the data directory stays: init runs again and must exit 0 (point 4)."""
    actions = {row["Action"]: row for row in table(msis["manager"], "CustomAction")}
    for name in ("ManagerInit", "ManagerInitNamed"):
        assert actions[name]["Target"].startswith("init --if-needed ")
    # nothing else that fails over an existing data directory runs with Return="check"
    assert int(actions["LockKeyFile"]["Type"]) & 0x40 == 0x40


def test_manager_opens_the_endpoint_port_in_windows_firewall(msis: dict[str, Path]) -> None:
    """Inbound 1519 is blocked by default: the MSI adds a rule and removes it (point 3)."""
    actions = {row["Action"]: row for row in table(msis["manager"], "CustomAction")}
    seq = {row["Action"]: row for row in table(msis["manager"], "InstallExecuteSequence")}
    props = {row["Property"]: row["Value"] for row in table(msis["manager"], "Property")}
    assert props["ENDPOINT_PORT"] == "1519"
    assert actions["SetNetshPath"]["Target"] == "[System64Folder]netsh.exe"
    rule = 'name="Heron EDR manager endpoint API"'
    add, delete = actions["FirewallAddRule"], actions["FirewallDeleteRule"]
    assert add["Target"] == (
        f"advfirewall firewall add rule {rule} dir=in action=allow protocol=TCP "
        'localport=[ENDPOINT_PORT] program="[INSTALLDIR]heron-manager.exe" profile=any enable=yes'
    )
    assert delete["Target"] == f"advfirewall firewall delete rule {rule}"
    for row in (add, delete):
        assert row["Source"] == "NETSH" and int(row["Type"]) & 0x3F == 50
        assert int(row["Type"]) & 0xC00 == 0xC00  # deferred, no impersonation: admin rights
    assert int(add["Type"]) & 0x40 == 0  # a rule that cannot be added fails the install
    assert int(delete["Type"]) & 0x40 == 0x40  # deleting a missing rule is fine
    # the path is set on uninstall too; delete runs always (no duplicates), add only on install
    assert seq["SetNetshPath"]["Condition"] == "1"
    assert int(seq["SetNetshPath"]["Sequence"]) < int(seq["InstallInitialize"]["Sequence"])
    assert seq["FirewallDeleteRule"]["Condition"] == "1"
    assert seq["FirewallAddRule"]["Condition"] == "NOT REMOVE"
    assert (
        int(seq["InstallInitialize"]["Sequence"])
        < int(seq["FirewallDeleteRule"]["Sequence"])
        < int(seq["FirewallAddRule"]["Sequence"])
        < int(seq["StartServices"]["Sequence"])
    )


def test_agent_enrolls_from_msi_properties(msis: dict[str, Path]) -> None:
    actions = {row["Action"]: row for row in table(msis["agent"], "CustomAction")}
    common = 'enroll --if-needed -c "[DATADIR]config.toml"'
    # the token enrolls with the CA pinned; trust on first use only with TRUST_FIRST_USE=1
    assert actions["EnrollToken"]["Target"] == (
        common + ' --manager "[MANAGER]" --token "[ENROLL_TOKEN]" --ca-sha256 "[CA_SHA256]"'
    )
    assert actions["EnrollTokenTofu"]["Target"] == (
        common + ' --manager "[MANAGER]" --token "[ENROLL_TOKEN]" --trust-first-use'
    )
    assert actions["EnrollBundle"]["Target"] == (
        common + ' --bundle "[ENROLL_BUNDLE]" --manager "[MANAGER]"'
    )
    for name in ("EnrollToken", "EnrollTokenTofu", "EnrollBundle"):
        assert actions[name]["Source"] == "AgentExe"
        assert int(actions[name]["Type"]) & 0xC00 == 0xC00
    seq = {row["Action"]: row for row in table(msis["agent"], "InstallExecuteSequence")}
    assert "ENROLL_TOKEN" in seq["EnrollToken"]["Condition"]
    assert "MANAGER" in seq["EnrollToken"]["Condition"]
    assert "ENROLL_BUNDLE" in seq["EnrollBundle"]["Condition"]
    assert " CA_SHA256" in seq["EnrollToken"]["Condition"]
    assert "NOT CA_SHA256" in seq["EnrollTokenTofu"]["Condition"]
    assert 'TRUST_FIRST_USE="1"' in seq["EnrollTokenTofu"]["Condition"]
    for name in ("EnrollToken", "EnrollTokenTofu", "EnrollBundle"):
        assert "NOT Installed" in seq[name]["Condition"]
        assert int(seq["InstallFiles"]["Sequence"]) < int(seq[name]["Sequence"])
        assert int(seq[name]["Sequence"]) < int(seq["StartServices"]["Sequence"])
    props = {row["Property"]: row["Value"] for row in table(msis["agent"], "Property")}
    assert props["MsiHiddenProperties"] == "ENROLL_TOKEN"


def test_agent_reinstall_and_upgrade_keep_the_identity(msis: dict[str, Path]) -> None:
    """A major upgrade has Installed unset, so enrollment runs again: it must exit 0 (point 4)."""
    actions = {row["Action"]: row for row in table(msis["agent"], "CustomAction")}
    seq = {row["Action"]: row for row in table(msis["agent"], "InstallExecuteSequence")}
    for name in ("EnrollToken", "EnrollBundle"):
        assert "WIX_UPGRADE_DETECTED" not in seq[name]["Condition"]  # runs on upgrade ...
        assert actions[name]["Target"].startswith("enroll --if-needed ")  # ... and keeps it


def test_agent_service_runs_with_the_installed_config(msis: dict[str, Path]) -> None:
    """The service gets `-c <data dir>\\config.toml`, written once by `config --init` (point 6)."""
    [svc] = table(msis["agent"], "ServiceInstall")
    assert svc["Arguments"] == 'run --service -c "[DATADIR]config.toml"'
    actions = {row["Action"]: row for row in table(msis["agent"], "CustomAction")}
    seq = {row["Action"]: row for row in table(msis["agent"], "InstallExecuteSequence")}
    init = actions["AgentConfig"]
    assert init["Target"] == 'config --init "[DATADIR]config.toml" --data-dir "[DATADIR]."'
    assert init["Source"] == "AgentExe" and int(init["Type"]) & 0xC00 == 0xC00
    assert seq["AgentConfig"]["Condition"] == "NOT REMOVE"
    assert (
        int(seq["InstallFiles"]["Sequence"])
        < int(seq["AgentConfig"]["Sequence"])
        < int(seq["EnrollToken"]["Sequence"])
        < int(seq["StartServices"]["Sequence"])
    )


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
