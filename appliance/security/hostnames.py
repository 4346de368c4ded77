"""This host's names for the server certificate (`heron-manager init --host-names`).

Agents reach a manager by whatever name their admin typed: the short name, the FQDN or an IP
address. A certificate naming only the short name (`[ComputerName]` in the MSI) fails
verification for the other two, so `--host-names` puts all of them in the SANs.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["HOST_NAMES", "expand_server_names", "host_names"]

HOST_NAMES = "\0host-names"  # placeholder argparse puts where `--host-names` was given

Resolver = Callable[..., list[tuple[Any, ...]]]


def host_names(
    *, hostname: str | None = None, fqdn: str | None = None, resolve: Resolver = socket.getaddrinfo
) -> list[str]:
    """FQDN, short name and unicast addresses of this host (loopback and link-local left out)."""
    short = hostname if hostname is not None else socket.gethostname()
    full = fqdn if fqdn is not None else socket.getfqdn(short)
    names = [n for n in (full, short) if n and n != "localhost"]
    try:
        infos = resolve(short, None, type=socket.SOCK_STREAM)
    except OSError:
        infos = []
    for info in infos:
        addr = str(info[4][0]).split("%", 1)[0]  # an IPv6 scope id is not a SAN
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            continue
        if not (ip.is_loopback or ip.is_link_local or ip.is_unspecified):
            names.append(str(ip))
    return _dedupe(names)


def expand_server_names(
    names: Iterable[str], *, expand: Callable[[], list[str]] = host_names
) -> list[str]:
    """Replace the `HOST_NAMES` placeholder by this host's names; order kept, duplicates out."""
    out: list[str] = []
    for name in names:
        out.extend(expand() if name == HOST_NAMES else [name])
    return _dedupe(n for n in out if n)


def _dedupe(names: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for n in names:
        if n.lower() not in seen:
            seen.add(n.lower())
            out.append(n)
    return out
