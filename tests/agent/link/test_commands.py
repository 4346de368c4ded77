"""Built-in commands, allowed tools with drop/fetch, timeouts, containment command lines."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.commands import COMMANDS, CommandContext, run_command
from agent.commands.containment import iptables_commands, netsh_commands, nft_script
from rules import wire


def cmd(name: str, *args: str, **kw) -> wire.Command:
    return wire.Command(id="c1", name=name, args=list(args), **kw)


def test_registry_has_every_whids_builtin() -> None:
    assert set(COMMANDS) == {
        "hash",
        "rexhash",
        "stat",
        "ls",
        "walk",
        "find",
        "processes",
        "modules",
        "drivers",
        "report",
        "terminate",
        "osquery",
        "contain",
        "uncontain",
    }


def test_hash_stat_ls_walk_find_rexhash(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_bytes(b"hello")
    (tmp_path / "sub" / "b.exe").write_bytes(b"MZ")
    r = run_command(cmd("hash", str(tmp_path / "a.txt")))
    assert r.error == "" and r.exit_code == 0
    assert r.json["hashes"]["sha256"] == hashlib.sha256(b"hello").hexdigest()
    assert r.json["type"] == "file" and r.json["size"] == 5
    assert run_command(cmd("stat", str(tmp_path))).json["type"] == "dir"
    missing = run_command(cmd("stat", str(tmp_path / "nope"))).json
    assert "FileNotFoundError" in missing["error"]
    assert [i["name"] for i in run_command(cmd("ls", str(tmp_path))).json] == ["a.txt", "sub"]
    walk = run_command(cmd("walk", str(tmp_path))).json
    assert walk[0]["dirs"] == ["sub"] and walk[1]["files"] == ["b.exe"]
    found = run_command(cmd("find", str(tmp_path), r"\.exe$")).json
    assert [f["name"] for f in found] == ["b.exe"] and "hashes" not in found[0]
    rex = run_command(cmd("rexhash", str(tmp_path), r"\.exe$")).json
    assert rex[0]["hashes"]["md5"] == hashlib.md5(b"MZ").hexdigest()
    assert "bad regex" in run_command(cmd("find", str(tmp_path), "(")).error
    assert "usage" in run_command(cmd("hash")).error


def test_processes_modules_drivers_from_tracker() -> None:
    class Tracker:
        def snapshot(self):
            return {"{g1}": {"Image": "x"}}

        def modules(self):
            return [{"ImageLoaded": "m"}]

        def driver_list(self):
            return [{"Image": "d"}]

    ctx = CommandContext(tracker=Tracker())
    assert run_command(cmd("processes"), ctx).json == {"{g1}": {"Image": "x"}}
    assert run_command(cmd("modules"), ctx).json == [{"ImageLoaded": "m"}]
    assert run_command(cmd("drivers"), ctx).json == [{"Image": "d"}]
    live = run_command(cmd("processes")).json
    assert any(p["PID"] == os.getpid() for p in live.values())


def test_terminate_refuses_self_and_kills_a_child() -> None:
    assert "refusing" in run_command(cmd("terminate", str(os.getpid()))).error
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    r = run_command(cmd("terminate", str(child.pid)))
    assert r.error == "" and r.json["terminated"]
    child.wait(5)  # reaped: it is gone


def test_unknown_command_and_disallowed_tool() -> None:
    assert "unknown command" in run_command(cmd("rm", "-rf", "/")).error


def test_allowed_tool_with_drop_and_fetch(tmp_path: Path) -> None:
    script = b"#!/bin/sh\necho out-$1\necho err >&2\necho fetched > result.txt\n"
    c = cmd(
        "collect.sh",
        "x",
        drop=[{"name": "collect.sh", "data": base64.b64encode(script).decode()}],
        fetch=["result.txt", "missing.txt"],
    )
    r = run_command(c, CommandContext(allowed_tools=("collect.sh",)))
    assert r.error == "" and r.exit_code == 0
    assert r.stdout == "out-x\n" and r.stderr == "err\n"
    ok, missing = r.fetched
    assert base64.b64decode(ok["data"]) == b"fetched\n"
    assert ok["sha256"] == hashlib.sha256(b"fetched\n").hexdigest()
    assert "FileNotFoundError" in missing["error"]


def test_drop_name_traversal_is_refused() -> None:
    c = cmd("ls", "/", drop=[{"name": "../evil", "data": ""}])
    assert "bad drop file name" in run_command(c).error


def test_tool_timeout_and_expect_json() -> None:
    r = run_command(cmd("sleep", "5", timeout=0.3), CommandContext(allowed_tools=("sleep",)))
    assert "timeout" in r.error
    r = run_command(
        cmd("echo", '{"a": 1}', expect_json=True), CommandContext(allowed_tools=("echo",))
    )
    assert r.json == {"a": 1}


def test_builtin_timeout(tmp_path: Path) -> None:
    import time

    COMMANDS["_slow"] = lambda args, ctx: time.sleep(2)
    try:
        assert "timeout after 0.2s" in run_command(cmd("_slow", timeout=0.2)).error
    finally:
        del COMMANDS["_slow"]


def test_osquery_uses_tool_and_reports_absence(tmp_path: Path) -> None:
    tool = tmp_path / "osqueryi"
    tool.write_text('#!/bin/sh\necho \'[{"name": "init", "table": "\'$3\'"}]\'\n')
    tool.chmod(0o755)
    r = run_command(cmd("osquery", "processes"), CommandContext(tools_dir=tmp_path))
    assert r.json == [{"name": "init", "table": "processes"}]
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_command(
        cmd("report"), CommandContext(tools_dir=tmp_path, osquery_tables=("processes", "bad;rm"))
    )
    assert r.json["commands"][0]["stdout"] == [{"name": "init", "table": "processes"}]
    assert "bad osquery table" in r.json["commands"][1]["error"]
    assert "processes" in r.json and "connections" in r.json


def test_containment_command_lines() -> None:
    script = nft_script(["10.0.0.9"], 1519)
    assert "policy drop" in script and "ip daddr 10.0.0.9 tcp dport 1519 accept" in script
    assert 'oifname "lo" accept' in script
    ipt = iptables_commands(["10.0.0.9"], 1519)
    assert [
        "iptables",
        "-A",
        "HERON-OUT",
        "-d",
        "10.0.0.9",
        "-p",
        "tcp",
        "--dport",
        "1519",
        "-j",
        "ACCEPT",
    ] in ipt
    assert ["ip6tables", "-A", "HERON-OUT", "-j", "DROP"] in ipt
    ns = netsh_commands(["10.0.0.9"])
    assert "remoteip=0.0.0.0-10.0.0.8,10.0.0.10-255.255.255.255" in ns[0]


def test_contain_refuses_without_manager_and_runs_backend() -> None:
    assert "manager address unknown" in run_command(cmd("contain")).error
    calls: list[list[str]] = []

    def runner(argv, timeout, cwd=None):
        calls.append(list(argv))
        return subprocess.CompletedProcess(argv, 0, b"", b"")

    ctx = CommandContext(
        manager_host="10.0.0.9", manager_port=1519, runner=runner, containment_backend="iptables"
    )
    r = run_command(cmd("contain"), ctx)
    assert r.error == "" and r.json["contained"] and r.json["manager"] == ["10.0.0.9"]
    assert ["iptables", "-I", "OUTPUT", "1", "-j", "HERON-OUT"] in calls
    calls.clear()
    assert run_command(cmd("uncontain"), ctx).json == {"contained": False, "backend": "iptables"}
    assert ["iptables", "-X", "HERON-OUT"] in calls


LIVE = r"""
import socket, sys
from agent.commands import CommandContext, run_command
from rules import wire
ctx = CommandContext(manager_host="10.9.0.9", manager_port=1519, containment_backend=sys.argv[1])
r = run_command(wire.Command(id="1", name="contain"), ctx)
assert r.error == "", r.error
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.sendto(b"x", ("10.9.0.2", 53)); print("udp-sent")
except PermissionError:
    print("udp-blocked")
t = socket.socket(); t.settimeout(0.3)
try:
    t.connect(("10.9.0.9", 1519))
except PermissionError:
    print("mgr-blocked")
except OSError:
    print("mgr-open")
r = run_command(wire.Command(id="2", name="uncontain"), ctx)
assert r.error == "", r.error
try:
    u.sendto(b"x", ("10.9.0.2", 53)); print("udp-sent")
except PermissionError:
    print("udp-blocked")
"""


@pytest.mark.live
@pytest.mark.parametrize("backend", ["nft", "iptables"])
def test_containment_live_in_network_namespace(backend: str, tmp_path: Path) -> None:
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("needs root on Linux")
    import shutil

    if not shutil.which("unshare") or not shutil.which(backend):
        pytest.skip(f"needs unshare and {backend}")
    script = tmp_path / "live.py"
    script.write_text(LIVE)
    setup = (
        "ip link set lo up && ip link add d0 type veth peer name d1 "
        "&& ip addr add 10.9.0.1/24 dev d0 "
        f"&& ip link set d0 up && ip link set d1 up && {sys.executable} {script} {backend}"
    )
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.run(
        ["unshare", "-n", "sh", "-c", setup],
        capture_output=True,
        timeout=60,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    if proc.returncode != 0 and b"Operation not permitted" in proc.stderr[:200]:
        pytest.skip(f"cannot create a network namespace: {proc.stderr[:200]!r}")
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().split() == ["udp-blocked", "mgr-open", "udp-sent"]


def test_windows_containment_blocks_both_families_but_keeps_every_manager_address() -> None:
    """Issue 26 point 8: every manager address exempted, IPv6 blocked too, DNS/DHCP open."""
    ns = [" ".join(c[5:]) for c in netsh_commands(["10.0.0.9", "2001:db8::5", "10.0.0.10"])]
    for d in ("out", "in"):
        rule = f"name=Heron containment dir={d} action=block"
        assert f"{rule} protocol=TCP remoteip=0.0.0.0-10.0.0.8,10.0.0.11-255.255.255.255" in ns
        assert (
            f"{rule} protocol=TCP remoteip=::-2001:db8::4,"
            "2001:db8::6-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        ) in ns
        assert f"{rule} protocol=UDP remoteport=1-52,54-66,69-545,548-65535" in ns
        assert f"{rule} protocol=icmpv4" in ns and f"{rule} protocol=icmpv6" in ns
    assert len(ns) == 10 and not any("protocol=any" in c or "protocol" not in c for c in ns)
    # an IPv4-only manager: the whole IPv6 space is blocked (it stayed open before)
    v6 = [c for c in netsh_commands(["10.0.0.9"]) if "protocol=TCP" in c and "::" in c[-1]]
    assert v6[0][-1] == "remoteip=::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"


# HKLM DWORDs as read on a host whose domain profile is off by group policy, public off locally.
RECORDED_FIREWALL_REGISTRY = {
    (r"SOFTWARE\Policies\Microsoft\WindowsFirewall\DomainProfile", "EnableFirewall"): 0,
    (
        r"SYSTEM\CurrentControlSet\Services\SharedAccess\Parameters\FirewallPolicy\DomainProfile",
        "EnableFirewall",
    ): 1,
    (
        r"SYSTEM\CurrentControlSet\Services\SharedAccess\Parameters\FirewallPolicy\StandardProfile",
        "EnableFirewall",
    ): 1,
    (r"SOFTWARE\Policies\Microsoft\WindowsFirewall\PublicProfile", "EnableFirewall"): 1,
    (
        r"SYSTEM\CurrentControlSet\Services\SharedAccess\Parameters\FirewallPolicy\PublicProfile",
        "EnableFirewall",
    ): 0,
}


def test_firewall_profile_state_policy_wins_over_local() -> None:
    from agent.commands.containment import profiles_off

    reg = RECORDED_FIREWALL_REGISTRY
    assert profiles_off(lambda key, value: reg.get((key, value))) == ["domain"]
    assert profiles_off(lambda key, value: None) == []  # nothing set: Windows default, on


def test_netsh_contain_fails_when_a_firewall_profile_is_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agent.commands import containment

    calls: list[list[str]] = []

    def runner(argv, timeout, cwd=None):
        calls.append(list(argv))
        return subprocess.CompletedProcess(argv, 0, b"", b"")

    ctx = CommandContext(
        manager_host="10.0.0.9", manager_port=1519, runner=runner, containment_backend="netsh"
    )
    monkeypatch.setattr(containment, "firewall_profiles_off", lambda: ["domain"])
    r = run_command(cmd("contain"), ctx)
    assert "Firewall is off for profile(s) domain" in r.error and not r.json
    assert not any("add" in c for c in calls)
    monkeypatch.setattr(containment, "firewall_profiles_off", lambda: [])
    r = run_command(cmd("contain"), ctx)
    assert r.error == "" and r.json["contained"]
    assert sum("add" in c for c in calls) == 10
