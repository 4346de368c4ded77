"""The .deb packages: contents, maintainer scripts, and a full install/upgrade/remove/purge cycle.

Packages are built by packaging/deb/build-deb.sh from placeholder one-dirs and installed with
`dpkg --root=DIR --force-script-chrootless` into a throwaway root: the maintainer scripts honour
DPKG_ROOT, so the real system is never touched (no systemctl start, no host user).
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.packaging.conftest import PACKAGING, DpkgRoot, need, run


def contents(deb: Path) -> dict[str, str]:
    """Path → `ls -l`-style line for every member of the data archive."""
    out = run(["dpkg-deb", "--contents", str(deb)]).stdout.splitlines()
    members = {}
    for line in out:
        path = line.split()[5].removeprefix(".")
        members[path.rstrip("/") or "/"] = line
    return members


def field(deb: Path, name: str) -> str:
    return run(["dpkg-deb", "--field", str(deb), name]).stdout.strip()


@pytest.mark.parametrize("role", ["manager", "agent"])
def test_package_layout(fake_debs: dict[str, Path], role: str) -> None:
    deb = fake_debs[role]
    name = f"heron-{role}"
    members = contents(deb)
    assert f"/opt/heron/{role}/{name}" in members
    assert members[f"/opt/heron/{role}/{name}"].startswith("-rwxr-xr-x root/root")
    assert f"/opt/heron/{role}/_internal/base_library.zip" in members
    assert f"-> /opt/heron/{role}/{name}" in members[f"/usr/bin/{name}"]
    assert f"/lib/systemd/system/{name}.service" in members
    assert f"/usr/lib/tmpfiles.d/{name}.conf" in members
    # --root-owner-group: nothing in the archive belongs to the builder's uid.
    assert all(" root/root " in line for line in members.values())
    assert field(deb, "Package") == name
    assert field(deb, "Depends").startswith("libc6 (>= ")
    assert int(field(deb, "Installed-Size")) > 0


def test_only_the_manager_creates_the_heron_user(fake_debs: dict[str, Path]) -> None:
    assert "/usr/lib/sysusers.d/heron-manager.conf" in contents(fake_debs["manager"])
    assert not [p for p in contents(fake_debs["agent"]) if "sysusers" in p]
    text = (PACKAGING / "deb/manager/heron-manager.sysusers").read_text()
    assert "u heron - " in text and "/usr/sbin/nologin" in text


def test_agent_config_is_a_conffile(fake_debs: dict[str, Path], tmp_path: Path) -> None:
    run(["dpkg-deb", "--control", str(fake_debs["agent"]), str(tmp_path / "ctl")])
    conffiles = (tmp_path / "ctl/conffiles").read_text().split()
    assert conffiles == ["/etc/default/heron-agent", "/etc/heron/agent.toml"]
    md5sums = (tmp_path / "ctl/md5sums").read_text()
    assert "  opt/heron/agent/heron-agent\n" in md5sums


@pytest.mark.parametrize("script", ["postinst", "prerm", "postrm"])
@pytest.mark.parametrize("role", ["manager", "agent"])
def test_maintainer_scripts_are_valid_posix_sh(role: str, script: str) -> None:
    path = PACKAGING / "deb" / role / script
    assert path.read_text().startswith("#!/bin/sh\n")
    assert path.stat().st_mode & stat.S_IXUSR
    run(["sh", "-n", str(path)])
    if shutil.which("dash"):
        run(["dash", "-n", str(path)])
    text = path.read_text()
    assert "set -e" in text and 'ROOT="${DPKG_ROOT:-}"' in text
    # A live start/stop is only ever attempted on a running systemd and never under DPKG_ROOT.
    for line in text.splitlines():
        if "systemctl" in line and any(verb in line for verb in (" start ", " restart ", " stop ")):
            assert "--root" not in line


def test_units_run_the_installed_programs() -> None:
    manager = (PACKAGING / "deb/manager/heron-manager.service").read_text()
    assert "User=heron" in manager
    assert (
        "ExecStart=/opt/heron/manager/heron-manager run --data-dir /var/lib/heron/manager"
        in manager
    )
    assert "ReadWritePaths=/var/lib/heron/manager /var/log/heron/manager" in manager
    assert "NoNewPrivileges=yes" in manager and "ProtectSystem=strict" in manager
    agent = (PACKAGING / "deb/agent/heron-agent.service").read_text()
    assert "ExecStart=/opt/heron/agent/heron-agent run" in agent
    assert "User=" not in agent  # root: proc connector, fanotify, kill/isolate responses
    if shutil.which("systemd-analyze"):
        for unit in ("manager/heron-manager.service", "agent/heron-agent.service"):
            proc = subprocess.run(
                ["systemd-analyze", "verify", "--man=no", str(PACKAGING / "deb" / unit)],
                capture_output=True,
                text=True,
                check=False,
            )
            # Only complaints about this unit's syntax count (the program is not installed here).
            bad = [
                line
                for line in proc.stderr.splitlines()
                if "Unknown key" in line or "Unknown section" in line or "bad-setting" in line
            ]
            assert not bad, bad


def test_manager_install_upgrade_remove_purge(
    fake_debs: dict[str, Path], dpkg_root: Callable[[], DpkgRoot]
) -> None:
    root = dpkg_root()
    deb = str(fake_debs["manager"])
    root.dpkg("-i", deb, env={"HERON_SERVER_NAMES": "mgr.example.org 10.0.0.5"})

    user = root.user("heron")
    assert user is not None, "postinst must create the heron account"
    uid, gid, home, shell = int(user[2]), int(user[3]), user[5], user[6]
    assert uid < 1000 and home == "/var/lib/heron/manager" and shell == "/usr/sbin/nologin"
    data = root.path / "var/lib/heron/manager"
    logs = root.path / "var/log/heron/manager"
    for folder, mode in ((data, 0o700), (logs, 0o750)):
        st = folder.stat()
        assert (st.st_uid, st.st_gid) == (uid, gid)
        assert stat.S_IMODE(st.st_mode) == mode
    # First-time init ran once, on the data directory, and its output belongs to heron.
    # ... with the names agents reach it by in its server certificate.
    assert root.calls() == [
        "heron-manager init --json --server-name mgr.example.org --server-name 10.0.0.5 "
        f"--data-dir {data}"
    ]
    assert (data / "config.toml").stat().st_uid == uid
    assert (data / "pki").stat().st_uid == uid
    # The first admin API key is kept for the administrator, readable by its owner only.
    summary = data / "initial-admin.json"
    assert json.loads(summary.read_text()) == {"api_key": "fake-key"}
    assert stat.S_IMODE(summary.stat().st_mode) == 0o600 and summary.stat().st_uid == uid
    wants = root.path / "etc/systemd/system/multi-user.target.wants/heron-manager.service"
    assert (
        wants.is_symlink() and str(wants.readlink()) == "/lib/systemd/system/heron-manager.service"
    )
    assert (root.path / "usr/bin/heron-manager").is_symlink()

    # Reinstall (upgrade path): the existing config is kept, init is not run again.
    (data / "config.toml").write_text("# edited by the admin\n")
    root.dpkg("-i", deb)
    assert len(root.calls()) == 1
    assert (data / "config.toml").read_text() == "# edited by the admin\n"

    # remove: program and unit gone, service disabled, data and logs kept.
    root.dpkg("-r", "heron-manager")
    files = root.files()
    assert not [f for f in files if f.startswith(("/opt/heron", "/usr/bin/heron", "/lib/systemd"))]
    assert not wants.exists() and not wants.is_symlink()
    assert (data / "config.toml").exists() and logs.is_dir()

    # purge: data, logs and the account are gone; nothing of ours is left.
    root.dpkg("-P", "heron-manager")
    assert root.user("heron") is None
    assert "heron:" not in (root.path / "etc/group").read_text()
    leftovers = [f for f in root.files() if "heron" in f]
    assert not leftovers, leftovers
    status = run(
        [
            "dpkg-query",
            f"--admindir={root.path}/var/lib/dpkg",
            "-W",
            "-f",
            "${db:Status-Status}",
            "heron-manager",
        ],
        check=False,
    )
    assert status.stdout in ("", "not-installed")


def test_agent_install_enroll_and_purge(
    fake_debs: dict[str, Path], dpkg_root: Callable[[], DpkgRoot]
) -> None:
    root = dpkg_root()
    root.dpkg(
        "-i",
        str(fake_debs["agent"]),
        env={
            "HERON_MANAGER": "mgr.example:1519",
            "HERON_ENROLL_TOKEN": "tok-123",
            "HERON_CA_SHA256": "cd" * 32,
        },
    )
    assert root.calls() == [
        f"heron-agent enroll --config {root.path}/etc/heron/agent.toml "
        f"--data-dir {root.path}/var/lib/heron/agent --manager mgr.example:1519 --token tok-123 "
        f"--ca-sha256 {'cd' * 32}"
    ]
    data = root.path / "var/lib/heron/agent"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700 and data.stat().st_uid == 0
    assert root.user("heron") is None, "the agent runs as root and needs no account"
    config = (root.path / "etc/heron/agent.toml").read_text()
    assert 'data_dir = "/var/lib/heron/agent"' in config
    assert (
        root.path / "etc/systemd/system/multi-user.target.wants/heron-agent.service"
    ).is_symlink()

    root.dpkg("-P", "heron-agent")
    leftovers = [f for f in root.files() if "heron" in f]
    assert not leftovers, leftovers


def test_agent_install_without_enrollment_data_does_not_enroll(
    fake_debs: dict[str, Path], dpkg_root: Callable[[], DpkgRoot]
) -> None:
    root = dpkg_root()
    root.dpkg(
        "-i",
        str(fake_debs["agent"]),
        env={"HERON_MANAGER": "", "HERON_ENROLL_TOKEN": "", "HERON_ENROLL_BUNDLE": ""},
    )
    assert root.calls() == []
    root.dpkg("-i", str(fake_debs["agent"]), env={"HERON_ENROLL_BUNDLE": "/media/e.json"})
    assert root.calls() == []  # upgrade/reinstall: already configured, enrollment is first install
    root.dpkg("-P", "heron-agent")


def test_both_packages_share_the_heron_directories(
    fake_debs: dict[str, Path], dpkg_root: Callable[[], DpkgRoot]
) -> None:
    root = dpkg_root()
    root.dpkg("-i", str(fake_debs["manager"]), str(fake_debs["agent"]))
    root.dpkg("-P", "heron-manager")
    # The agent's state survives the manager's purge.
    assert (root.path / "var/lib/heron/agent").is_dir()
    assert (root.path / "opt/heron/agent/heron-agent").is_file()
    root.dpkg("-P", "heron-agent")
    assert not [f for f in root.files() if "heron" in f]


def test_build_fails_without_a_one_dir(tmp_path: Path) -> None:
    need("dpkg-deb")
    proc = run(
        [
            "bash",
            str(PACKAGING / "deb/build-deb.sh"),
            "--src",
            str(tmp_path),
            "--out",
            str(tmp_path / "out"),
            "manager",
        ],
        check=False,
    )
    assert proc.returncode != 0 and "make build" in proc.stderr


def test_manager_postinst_never_writes_through_a_planted_symlink(
    fake_debs: dict[str, Path], dpkg_root: Callable[[], DpkgRoot], tmp_path: Path
) -> None:
    root = dpkg_root()
    data = root.path / "var/lib/heron/manager"
    data.mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (data / "initial-admin.json.new").symlink_to(victim)
    root.dpkg("-i", str(fake_debs["manager"]))
    assert victim.read_text() == "precious\n"
    summary = data / "initial-admin.json"
    assert not summary.is_symlink() and json.loads(summary.read_text()) == {"api_key": "fake-key"}
    root.dpkg("-P", "heron-manager")


def test_manager_install_chooses_the_admin_address_and_never_queries_dns(
    fake_debs: dict[str, Path], dpkg_root: Callable[[], DpkgRoot], tmp_path: Path
) -> None:
    """In a network namespace with no network, as an air-gapped host: no DNS attempt (no
    `hostname -f`, no connect to port 53 or a resolver socket); the admin address is chosen at
    install and the banner shows where the console is."""
    need("unshare", "strace")
    root = dpkg_root()
    trace = tmp_path / "connect.trace"
    out = run(
        [
            "unshare",
            "-n",
            "strace",
            "-f",
            "-qq",
            "-e",
            "trace=connect,open,openat",
            "-e",
            "signal=none",
            "-o",
            str(trace),
            "dpkg",
            f"--root={root.path}",
            "--force-script-chrootless",
            "--force-depends",
            "--force-unsafe-io",
            "--log=/dev/null",
            "-i",
            str(fake_debs["manager"]),
        ],
        env={"HERON_FAKE_LOG": str(root.log), "HERON_ADMIN_LISTEN": "0.0.0.0:1520"},
    )
    connects = trace.read_text()
    # a host-name lookup reads /etc/hosts and resolv.conf and asks a DNS server or resolved
    # (nscd connects are user/group lookups of dpkg and useradd: not DNS)
    lookups = [
        line
        for line in connects.splitlines()
        if any(
            s in line for s in ("htons(53)", "io.systemd.Resolve", "resolv.conf", '"/etc/hosts"')
        )
    ]
    assert lookups == []
    (call,) = root.calls()
    assert "--admin-listen 0.0.0.0:1520" in call and "--server-name 127.0.0.1" in call
    assert "console at https://" in out.stdout and ":1520/console/" in out.stdout
    assert "0.0.0.0" not in out.stdout.split("console at", 1)[1].splitlines()[0]


def test_agent_token_enrollment_pins_the_ca_or_is_explicitly_tofu(
    fake_debs: dict[str, Path], dpkg_root: Callable[[], DpkgRoot]
) -> None:
    deb = str(fake_debs["agent"])
    base = {"HERON_MANAGER": "10.0.0.5:1519", "HERON_ENROLL_TOKEN": "tok"}
    root = dpkg_root()
    root.dpkg("-i", deb, env={**base, "HERON_CA_SHA256": "ab" * 32})
    assert root.calls()[-1].endswith(f"--token tok --ca-sha256 {'ab' * 32}")
    root = dpkg_root()
    out = root.dpkg("-i", deb, env=base)  # no pin, no explicit trust on first use
    assert root.calls() == [] and "NOT enrolled" in out.stderr
    root = dpkg_root()
    root.dpkg("-i", deb, env={**base, "HERON_TRUST_FIRST_USE": "1"})
    assert root.calls()[-1].endswith("--manager 10.0.0.5:1519 --token tok --trust-first-use")
    root = dpkg_root()  # a bundle, with the address the admin gives (install.sh --manager)
    root.dpkg("-i", deb, env={"HERON_ENROLL_BUNDLE": "/media/b", "HERON_MANAGER": "10.0.0.5:1519"})
    assert root.calls()[-1].endswith("--bundle /media/b --manager 10.0.0.5:1519")
