"""Network containment: block all traffic except to the manager (`contain` / `uncontain`).

- Linux: an nftables table `inet heron_containment` (two base chains, policy drop) when `nft`
  exists, otherwise iptables/ip6tables chains `HERON-IN`/`HERON-OUT`. Loopback and the manager's
  IP:port stay open, so the agent keeps reporting and can be uncontained.
- Windows: `netsh advfirewall` block rules named "Heron containment", in and out (block rules
  beat allow rules there): TCP to every address but the manager's, in both address families
  (every manager address is left out); UDP on every remote port but DNS and DHCP(v6), so a
  manager known by name stays reachable when the DNS cache expires; ICMPv4/v6. A firewall
  profile that is off would ignore the rules: containment then fails instead of reporting
  success.
Every program runs through the injected `CommandContext.runner`, so tests can check the exact
commands, and a live test can run them in a throwaway network namespace.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .context import CommandContext, CommandError

NFT_TABLE = "heron_containment"
NETSH_RULE = "Heron containment"


def manager_ips(ctx: CommandContext) -> list[str]:
    """The manager's IP addresses (resolved now: containment may cut DNS afterwards)."""
    if not ctx.manager_host or not ctx.manager_port:
        raise CommandError("manager address unknown: refusing to contain (it would cut us off)")
    try:
        return [str(ipaddress.ip_address(ctx.manager_host))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(ctx.manager_host, ctx.manager_port, type=socket.SOCK_STREAM)
    except OSError as ex:
        raise CommandError(f"cannot resolve manager {ctx.manager_host}: {ex}") from ex
    return sorted({str(i[4][0]) for i in infos})


def nft_script(ips: list[str], port: int) -> str:
    """The nftables ruleset for containment (atomic: replaces any previous table)."""
    out_allow, in_allow = [], []
    for ip in ips:
        fam = "ip6" if ipaddress.ip_address(ip).version == 6 else "ip"
        out_allow.append(f"    {fam} daddr {ip} tcp dport {port} accept")
        in_allow.append(f"    {fam} saddr {ip} tcp sport {port} accept")
    return "\n".join(
        [
            f"table inet {NFT_TABLE} {{}}",
            f"delete table inet {NFT_TABLE}",
            f"table inet {NFT_TABLE} {{",
            "  chain output {",
            "    type filter hook output priority -10; policy drop;",
            '    oifname "lo" accept',
            *out_allow,
            "  }",
            "  chain input {",
            "    type filter hook input priority -10; policy drop;",
            '    iifname "lo" accept',
            *in_allow,
            "  }",
            "}",
            "",
        ]
    )


def iptables_commands(ips: list[str], port: int) -> list[list[str]]:
    """iptables/ip6tables argv lists that build the containment chains."""
    cmds: list[list[str]] = []
    for tool, version in (("iptables", 4), ("ip6tables", 6)):
        mine = [ip for ip in ips if ipaddress.ip_address(ip).version == version]
        for chain, hook, lo, peer, pport in (
            ("HERON-OUT", "OUTPUT", "-o", "-d", "--dport"),
            ("HERON-IN", "INPUT", "-i", "-s", "--sport"),
        ):
            cmds += [
                [tool, "-N", chain],
                [tool, "-F", chain],
                [tool, "-A", chain, lo, "lo", "-j", "ACCEPT"],
            ]
            cmds += [
                [tool, "-A", chain, peer, ip, "-p", "tcp", pport, str(port), "-j", "ACCEPT"]
                for ip in mine
            ]
            cmds += [[tool, "-A", chain, "-j", "DROP"], [tool, "-I", hook, "1", "-j", chain]]
    return cmds


_FULL = {4: (0, 2**32 - 1), 6: (0, 2**128 - 1)}
# Remote UDP ports left open: DNS (53), DHCP server (67) / client (68), DHCPv6 (546, 547).
_UDP_OPEN = (53, 67, 68, 546, 547)


def _ranges_excluding(ips: list[str], version: int) -> str:
    """netsh remoteip ranges covering the whole ``version`` space except ``ips``."""
    low, top = _FULL[version]
    skip = sorted(
        {int(ipaddress.ip_address(ip)) for ip in ips if ipaddress.ip_address(ip).version == version}
    )

    def text(n: int) -> str:
        return str(ipaddress.IPv4Address(n) if version == 4 else ipaddress.IPv6Address(n))

    parts, start = [], low
    for value in skip:
        if value > start:
            parts.append(f"{text(start)}-{text(value - 1)}")
        start = value + 1
    if start <= top:
        parts.append(f"{text(start)}-{text(top)}")
    return ",".join(parts)


def _port_ranges_excluding(ports: tuple[int, ...]) -> str:
    parts, start = [], 1
    for port in sorted(ports):
        if port > start:
            parts.append(f"{start}-{port - 1}" if port - 1 > start else str(start))
        start = port + 1
    parts.append(f"{start}-65535")
    return ",".join(parts)


def netsh_commands(ips: list[str]) -> list[list[str]]:
    """`netsh advfirewall firewall add rule` argv lists for containment (see the module doc)."""
    base = ["netsh", "advfirewall", "firewall", "add", "rule", f"name={NETSH_RULE}"]
    cmds = []
    for d in ("out", "in"):
        rule = [*base, f"dir={d}", "action=block"]
        cmds += [[*rule, "protocol=TCP", f"remoteip={_ranges_excluding(ips, v)}"] for v in (4, 6)]
        cmds.append([*rule, "protocol=UDP", f"remoteport={_port_ranges_excluding(_UDP_OPEN)}"])
        cmds += [[*rule, "protocol=icmpv4"], [*rule, "protocol=icmpv6"]]
    return cmds


# Windows Firewall profiles: registry key name → what netsh calls it.
FIREWALL_PROFILES = {
    "DomainProfile": "domain",
    "StandardProfile": "private",
    "PublicProfile": "public",
}
_POLICY_KEY = r"SOFTWARE\Policies\Microsoft\WindowsFirewall"
_LOCAL_KEY = r"SYSTEM\CurrentControlSet\Services\SharedAccess\Parameters\FirewallPolicy"


def profiles_off(read: Callable[[str, str], int | None]) -> list[str]:
    """Firewall profiles that are off; ``read(key, value)`` reads an HKLM DWORD (None: absent).

    Group policy (``SOFTWARE\\Policies``) wins over the local setting; a profile with neither
    value is on (the Windows default).
    """
    off = []
    for key, name in FIREWALL_PROFILES.items():
        value = read(_POLICY_KEY + "\\" + key, "EnableFirewall")
        if value is None:
            value = read(_LOCAL_KEY + "\\" + key, "EnableFirewall")
        if value == 0:
            off.append(name)
    return off


def firewall_profiles_off() -> list[str]:
    """The Windows Firewall profiles that are off on this host ([] elsewhere)."""
    if sys.platform != "win32":
        return []
    import winreg  # pragma: no cover - Windows only

    def read(key: str, value: str) -> int | None:
        try:
            with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, key) as handle:
                data, _ = winreg.QueryValueEx(handle, value)
        except OSError:
            return None
        return int(data)

    return profiles_off(read)


def _backend(ctx: CommandContext) -> str:
    if ctx.containment_backend:
        return ctx.containment_backend
    if sys.platform == "win32":
        return "netsh"
    return "nft" if shutil.which("nft") else "iptables"


def _run(ctx: CommandContext, argv: list[str], *, check: bool = True) -> None:
    proc = ctx.runner(argv, 30.0)
    if check and proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise CommandError(f"{' '.join(argv[:4])} failed ({proc.returncode}): {err[:300]}")


def cmd_contain(args: list[str], ctx: CommandContext) -> dict[str, Any]:
    ips = manager_ips(ctx)
    backend = _backend(ctx)
    if backend == "nft":
        with tempfile.NamedTemporaryFile("w", suffix=".nft", delete=False) as fh:
            fh.write(nft_script(ips, ctx.manager_port))
        try:
            _run(ctx, ["nft", "-f", fh.name])
        finally:
            Path(fh.name).unlink(missing_ok=True)
    elif backend == "iptables":
        _uncontain_iptables(ctx)
        for argv in iptables_commands(ips, ctx.manager_port):
            _run(ctx, argv, check=argv[1] != "-N")
    elif backend == "netsh":
        _run(
            ctx,
            ["netsh", "advfirewall", "firewall", "delete", "rule", f"name={NETSH_RULE}"],
            check=False,
        )
        off = firewall_profiles_off()
        if off:  # rules of a profile that is off are ignored: not contained
            raise CommandError(
                f"Windows Firewall is off for profile(s) {', '.join(off)}: "
                "cannot contain (turn it on, or fix the group policy)"
            )
        for argv in netsh_commands(ips):
            _run(ctx, argv)
    else:
        raise CommandError(f"unknown containment backend {backend!r}")
    return {"contained": True, "backend": backend, "manager": ips, "port": ctx.manager_port}


def _uncontain_iptables(ctx: CommandContext) -> None:
    for tool in ("iptables", "ip6tables"):
        for chain, hook in (("HERON-OUT", "OUTPUT"), ("HERON-IN", "INPUT")):
            for argv in ([tool, "-D", hook, "-j", chain], [tool, "-F", chain], [tool, "-X", chain]):
                _run(ctx, argv, check=False)


def cmd_uncontain(args: list[str], ctx: CommandContext) -> dict[str, Any]:
    backend = _backend(ctx)
    if backend == "nft":
        with tempfile.NamedTemporaryFile("w", suffix=".nft", delete=False) as fh:
            fh.write(f"table inet {NFT_TABLE} {{}}\ndelete table inet {NFT_TABLE}\n")
        try:
            _run(ctx, ["nft", "-f", fh.name])
        finally:
            Path(fh.name).unlink(missing_ok=True)
    elif backend == "iptables":
        _uncontain_iptables(ctx)
    elif backend == "netsh":
        _run(
            ctx,
            ["netsh", "advfirewall", "firewall", "delete", "rule", f"name={NETSH_RULE}"],
            check=False,
        )
    else:
        raise CommandError(f"unknown containment backend {backend!r}")
    return {"contained": False, "backend": backend}
