"""`heron-manager` admin commands while the manager runs (appliance/runtime/localadmin.py): users,
tokens, offline bundles and endpoints go through the running manager's admin API, and the
bundle minted that way enrolls an agent that the manager accepts."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import PY, ROOT, ManagerProc, agent_env

pytestmark = pytest.mark.e2e


def cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "appliance", *args, "--data-dir", str(data)],
        capture_output=True,
        text=True,
        env=agent_env(),
        cwd=ROOT,
        timeout=60,
    )


@pytest.fixture()
def manager(tmp_path: Path) -> Iterator[ManagerProc]:
    mgr = ManagerProc(tmp_path / "manager")
    mgr.start()
    yield mgr
    mgr.stop()


_EXPERIMENTAL = "proc_creation_lnx_auditctl_clear_rules.yml"


def _sigma_checkout(corpus: Path, dest: Path) -> Path:
    """A SigmaHQ-shaped checkout: the licence, one test-status rule, one experimental rule."""
    linux = dest / "rules" / "linux" / "process_creation"
    linux.mkdir(parents=True)
    shutil.copy(corpus / "LICENSE", dest / "LICENSE")
    for name in ("proc_creation_lnx_base64_decode.yml", _EXPERIMENTAL):
        shutil.copy(corpus / "rules" / "linux" / "process_creation" / name, linux / name)
    return dest


def test_admin_commands_work_against_the_running_manager(
    manager: ManagerProc, tmp_path: Path, shared_dir: Path
) -> None:
    data = manager.data
    local = data / "run" / "local-admin.json"
    assert stat.S_IMODE(local.stat().st_mode) == 0o600
    assert stat.S_IMODE(local.parent.stat().st_mode) == 0o700

    added = cli(data, "user", "add", "ops")  # no --role: analyst, as POST /users
    assert added.returncode == 0, added.stderr
    first_key = json.loads(added.stdout)["key"]
    assert json.loads(added.stdout)["role"] == "analyst"
    rotated = cli(data, "user", "rotate-key", "ops")
    assert rotated.returncode == 0, rotated.stderr
    assert json.loads(rotated.stdout)["key"] not in ("", first_key)
    names = [
        json.loads(line)["identifier"] for line in cli(data, "user", "list").stdout.splitlines()
    ]
    assert "ops" in names and "heron-local-cli" in names

    token = cli(data, "enroll", "token", "--json")
    assert token.returncode == 0, token.stderr
    assert json.loads(token.stdout)["ca_sha256"] == manager.ca_sha256

    out = tmp_path / "bundle"
    made = cli(
        data, "enroll", "bundle", "--group", "air-gapped", "--hostname", "ws-9", "--out", str(out)
    )
    assert made.returncode == 0, made.stderr
    meta = json.loads(made.stdout)
    assert meta["manager"] == manager.address and meta["group"] == "air-gapped"
    assert stat.S_IMODE((out / "client.key").stat().st_mode) == 0o600
    # the bundle enrolls an agent offline and the running manager knows the endpoint
    state = tmp_path / "agent-state"
    enrolled = subprocess.run(
        [PY, "-m", "agent.cli", "enroll", "--bundle", str(out), "--state-dir", str(state)],
        capture_output=True,
        text=True,
        env=agent_env(),
        cwd=ROOT,
        timeout=60,
    )
    assert enrolled.returncode == 0, enrolled.stderr
    listed = [json.loads(line) for line in cli(data, "endpoint", "list").stdout.splitlines()]
    assert any(e["uuid"] == meta["uuid"] and e["group"] == "air-gapped" for e in listed)
    revoked = cli(data, "endpoint", "revoke", meta["uuid"])
    assert revoked.returncode == 0, revoked.stderr
    assert manager.admin("GET", f"/endpoints/{meta['uuid']}")["status"] == "revoked"
    audit = manager.admin("GET", "/audit")
    assert any("heron-local-cli" in json.dumps(a) for a in audit)

    # the API route itself (console and scripts)
    doc = manager.admin("POST", "/enroll/bundle", {"group": "g2"})
    assert doc["key_pem"].startswith("-----BEGIN") and doc["ca_sha256"] == manager.ca_sha256
    assert doc["manager"] == doc["addresses"][0] and doc["manager"].startswith("127.0.0.1:")

    # rule packs while it runs: a pack off changes the served hash, a rollback restores it
    packs = {p["name"]: p for p in json.loads(cli(data, "rules", "packs").stdout)}
    assert packs["windows"]["enabled"] == packs["windows"]["rules"] > 0
    sha = manager.admin("GET", "/rules/versions")[0]["sha256"]
    version = json.loads(cli(data, "rules", "versions").stdout)[0]["version"]
    off = cli(data, "rules", "disable", "--pack", "windows")
    assert off.returncode == 0, off.stderr
    assert json.loads(off.stdout)["sha256"] != sha
    assert cli(data, "rules", "disable", "NoSuchRule").returncode == 1
    back = cli(data, "rules", "rollback", version)
    assert back.returncode == 0 and json.loads(back.stdout)["sha256"] == sha

    # a gene-rules checkout imported while it runs (read by the CLI, posted to /rules/import)
    imported = cli(data, "rules", "import", str(shared_dir / "corpus" / "gene-rules"))
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["rules"] == 134
    assert {p["name"] for p in manager.admin("GET", "/rules/packs")} >= {"gene-rules", "windows"}

    # a SigmaHQ checkout imported while it runs (read by the CLI, posted to /rules/import):
    # it opened the manager's database itself and failed while the manager held it
    sigma = _sigma_checkout(shared_dir / "corpus" / "sigma", tmp_path / "sigma")
    imported = cli(data, "rules", "import", str(sigma))
    assert imported.returncode == 0, imported.stderr
    report = json.loads(imported.stdout)
    assert report["imported"] == 1 and report["license"].startswith("Detection Rule License")
    assert [r["reason"] for r in report["rejected"]] == [
        "status 'experimental' is filtered out (loaded: stable, test)"
    ]
    packs = {p["name"]: p for p in manager.admin("GET", "/rules/packs")}
    assert packs["sigmahq"]["rules"] == 1 and packs["sigmahq"]["source"] == "sigma"
    served = manager.admin("GET", "/rules?name=%5EDecode%20Base64")
    assert [r["Name"] for r in served] == ["Decode Base64 Encoded Text"]
    assert served[0]["Pack"]["license"].startswith("Detection Rule License")

    manager.stop()
    assert not local.exists()
    # stopped: the commands open the store directly again
    assert cli(data, "user", "list").returncode == 0
    off = cli(data, "rules", "disable", "WinDCSync")
    assert off.returncode == 0 and json.loads(off.stdout)["changed"] == ["WinDCSync"]
    assert json.loads(cli(data, "rules", "packs").stdout)
    assert os.path.exists(data)
