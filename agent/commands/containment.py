"""Network containment: block all traffic except to the manager (`contain` / `uncontain`).

- Linux: an nftables table `inet heron_containment` (two base chains, policy drop) when `nft`
  exists, otherwise iptables/ip6tables chains `HERON-IN`/`HERON-OUT`. Loopback and the manager's
  IP:port stay open, so the agent keeps reporting and can be uncontained.
- Windows: `netsh advfirewall` block rules named "Heron containment" whose remote ranges leave
  out the manager's address (the WHIDS approach), in and out.
Every program runs through the injected `CommandContext.runner`, so tests can check the exact
commands, and a live test can run them in a throwaway network namespace.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import sys
import tempfile
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
    return "\n".join([
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
    ])


def iptables_commands(ips: list[str], port: int) -> list[list[str]]:
    """iptables/ip6tables argv lists that build the containment chains."""
    cmds: list[list[str]] = []
    for tool, version in (("iptables", 4), ("ip6tables", 6)):
        mine = [ip for ip in ips if ipaddress.ip_address(ip).version == version]
        for chain, hook, lo, peer, pport in (("HERON-OUT", "OUTPUT", "-o", "-d", "--dport"),
                                             ("HERON-IN", "INPUT", "-i", "-s", "--sport")):
            cmds += [[tool, "-N", chain], [tool, "-F", chain],
                     [tool, "-A", chain, lo, "lo", "-j", "ACCEPT"]]
            cmds += [[tool, "-A", chain, peer, ip, "-p", "tcp", pport, str(port), "-j", "ACCEPT"]
                     for ip in mine]
            cmds += [[tool, "-A", chain, "-j", "DROP"], [tool, "-I", hook, "1", "-j", chain]]
    return cmds


def _ranges_excluding(ip: str) -> str:
    addr = ipaddress.ip_address(ip)
    top = 2**32 - 1 if addr.version == 4 else 2**128 - 1
    value = int(addr)

    def text(n: int) -> str:
        return str(ipaddress.ip_address(n) if addr.version == 4 else ipaddress.IPv6Address(n))

    parts = []
    if value > 0:
        parts.append(f"{text(0)}-{text(value - 1)}")
    if value < top:
        parts.append(f"{text(value + 1)}-{text(top)}")
    return ",".join(parts)


def netsh_commands(ips: list[str]) -> list[list[str]]:
    ip = ips[0]
    remote = _ranges_excluding(ip)
    return [["netsh", "advfirewall", "firewall", "add", "rule", f"name={NETSH_RULE}",
             f"dir={d}", f"remoteip={remote}", "action=block"] for d in ("out", "in")]


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
        _run(ctx, ["netsh", "advfirewall", "firewall", "delete", "rule", f"name={NETSH_RULE}"],
             check=False)
        for argv in netsh_commands(ips):
            _run(ctx, argv)
    else:
        raise CommandError(f"unknown containment backend {backend!r}")
    return {"contained": True, "backend": backend, "manager": ips, "port": ctx.manager_port}


def _uncontain_iptables(ctx: CommandContext) -> None:
    for tool in ("iptables", "ip6tables"):
        for chain, hook in (("HERON-OUT", "OUTPUT"), ("HERON-IN", "INPUT")):
            for argv in ([tool, "-D", hook, "-j", chain], [tool, "-F", chain],
                         [tool, "-X", chain]):
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
        _run(ctx, ["netsh", "advfirewall", "firewall", "delete", "rule", f"name={NETSH_RULE}"],
             check=False)
    else:
        raise CommandError(f"unknown containment backend {backend!r}")
    return {"contained": False, "backend": backend}
