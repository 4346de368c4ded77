"""`heron-manager init` as the MSI runs it: key file, reinstall over a kept data dir, host names."""

from __future__ import annotations

import json
import socket
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from appliance.cli import main
from appliance.security.hostnames import HOST_NAMES, expand_server_names, host_names

# getaddrinfo(gethostname()) as recorded on a Windows Server 2022 host with two adapters.
RECORDED_ADDRINFO: list[tuple[Any, ...]] = [
    (socket.AF_INET6, socket.SOCK_STREAM, 0, "", ("fe80::5d3a:1c2b:9e4f:77a1%6", 0, 0, 6)),
    (socket.AF_INET6, socket.SOCK_STREAM, 0, "", ("2001:db8:10::25", 0, 0, 0)),
    (socket.AF_INET, socket.SOCK_STREAM, 0, "", ("10.20.0.25",)),
    (socket.AF_INET, socket.SOCK_STREAM, 0, "", ("192.168.56.10",)),
    (socket.AF_INET, socket.SOCK_STREAM, 0, "", ("127.0.0.1",)),
]


def _resolve(host: str, port: Any, **kw: Any) -> list[tuple[Any, ...]]:
    assert host == "HERON-MGR"
    return RECORDED_ADDRINFO


def test_host_names_are_fqdn_short_name_and_unicast_addresses() -> None:
    assert host_names(hostname="HERON-MGR", fqdn="heron-mgr.corp.example", resolve=_resolve) == [
        "heron-mgr.corp.example",
        "HERON-MGR",
        "2001:db8:10::25",
        "10.20.0.25",
        "192.168.56.10",
    ]


def test_host_names_survive_a_resolver_failure() -> None:
    def fail(*a: Any, **kw: Any) -> list[tuple[Any, ...]]:
        raise socket.gaierror(11001, "host not found")

    assert host_names(hostname="H", fqdn="H", resolve=fail) == ["H"]


def test_host_names_placeholder_keeps_its_position() -> None:
    names = ["mgr.example", HOST_NAMES, "localhost", "127.0.0.1"]
    assert expand_server_names(names, expand=lambda: ["MGR.example", "10.0.0.1"]) == [
        "mgr.example",
        "10.0.0.1",
        "localhost",
        "127.0.0.1",
    ]


def test_init_writes_the_key_to_a_private_file_and_not_to_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, key_file = tmp_path / "data", tmp_path / "data" / "first-admin-key.json"
    assert (
        main(
            [
                "init",
                "--data-dir",
                str(data),
                "--key-file",
                str(key_file),
                "--host-names",
                "--server-name",
                "localhost",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    doc = json.loads(key_file.read_text())
    assert doc["api_key"] and doc["api_key"] not in out
    assert str(key_file) in out
    if sys.platform != "win32":  # Windows: the data directory's ACL (the MSI sets it)
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    config = (data / "config.toml").read_text()
    assert socket.getfqdn() in config and "localhost" in config


def test_init_if_needed_keeps_an_initialized_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    assert main(["init", "--data-dir", str(data), "--json"]) == 0
    ca = (data / "pki" / "ca.pem").read_bytes()
    capsys.readouterr()
    assert main(["init", "--data-dir", str(data)]) == 2  # without the flag: still an error
    assert (
        main(["init", "--data-dir", str(data), "--if-needed", "--key-file", str(data / "k.json")])
        == 0
    )
    assert "already initialized" in capsys.readouterr().out
    assert (data / "pki" / "ca.pem").read_bytes() == ca and not (data / "k.json").exists()


def test_init_refuses_to_overwrite_a_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "k.json"
    key_file.write_text("old")
    assert main(["init", "--data-dir", str(tmp_path / "d"), "--key-file", str(key_file)]) == 2
    assert key_file.read_text() == "old" and not (tmp_path / "d" / "pki").exists()
