"""What the agent MSI runs: `config --init` and `enroll --if-needed` (issue 26, points 4 and 6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import main
from agent.config import load_config
from agent.link.identity import IdentityStore


def _fake_enrolled(state: Path) -> IdentityStore:
    store = IdentityStore(state / "identity")
    store.root.mkdir(parents=True)
    for p in (store.key_path, store.cert_path, store.ca_path, store.meta_path):
        p.write_text("kept")
    return store


def test_enroll_if_needed_keeps_an_existing_identity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = _fake_enrolled(tmp_path)
    argv = ["enroll", "--state-dir", str(tmp_path), "--manager", "127.0.0.1:9", "--token", "t"]
    assert main(argv) == 1  # the documented command line alone: refused (MSI rollback)
    assert main([*argv, "--if-needed"]) == 0  # what the MSI runs: reinstall/upgrade succeeds
    assert "identity kept" in capsys.readouterr().out
    assert store.cert_path.read_text() == "kept"


def test_enroll_if_needed_still_enrolls_a_new_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "enroll",
        "--state-dir",
        str(tmp_path),
        "--manager",
        "127.0.0.1:9",
        "--token",
        "t",
        "--if-needed",
    ]
    assert main(argv) == 2  # a token needs the CA pinned, or trust on first use asked for
    assert "pin the manager CA" in capsys.readouterr().err
    assert main([*argv, "--trust-first-use"]) == 1  # nothing listens on port 9: attempted
    assert "enrollment failed" in capsys.readouterr().err


def test_config_init_writes_defaults_once(tmp_path: Path) -> None:
    path = tmp_path / "Agent" / "config.toml"
    data = str(tmp_path / "Agent" / ".")
    assert main(["config", "--init", str(path), "--data-dir", data]) == 0
    assert load_config(path).general.data_dir == data
    path.write_text(path.read_text().replace("log_all = false", "log_all = true"))
    assert main(["config", "--init", str(path), "--data-dir", "elsewhere"]) == 0
    config = load_config(path)
    assert config.general.log_all and config.general.data_dir == data  # the admin's edit kept


def test_config_init_refuses_a_broken_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[general\n")
    assert main(["config", "--init", str(path)]) == 2
