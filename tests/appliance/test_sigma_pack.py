"""SigmaHQ rule packs in the manager: import, distribution to agents, retro-hunt engine."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import rules
from appliance.services.content import Content
from appliance.store import Store

from .conftest import Env, event

SIGMA = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "sigma"


@pytest.fixture
def content() -> Iterator[Content]:
    with Store(":memory:") as store:
        yield Content(store, lambda: 1_780_000_000.0)


@pytest.fixture
def small_pack(tmp_path: Path) -> Path:
    if not SIGMA.is_dir():
        pytest.skip("../shared/corpus/sigma is not present")
    root = tmp_path / "sigma-r2026"
    (root / "rules").mkdir(parents=True)
    (root / "LICENSE").write_text((SIGMA / "LICENSE").read_text())
    for sub in ("rules/windows/process_creation", "rules/linux/auditd"):
        for path in sorted((SIGMA / sub).rglob("*.yml"))[:15]:
            (root / "rules" / path.name).write_text(path.read_text())
    archive = tmp_path / "sigma_core.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(root, arcname="sigma")
    return archive


def test_import_pack_stores_rules_with_attribution_and_lists_rejects(
    content: Content, small_pack: Path
) -> None:
    result = content.import_pack(str(small_pack))
    assert result["imported"] > 0
    assert result["license"].startswith("Detection Rule License")
    reasons = {r["reason"] for r in result["rejected"]}
    assert any(r.startswith("logsource not collected: linux/auditd") for r in reasons)
    stored = content.rules()
    entry = next(iter(stored.values()))
    assert entry["Pack"]["name"] == "sigmahq" and entry["Pack"]["file"].startswith("sigma/")
    assert "author:" in entry["Sigma"] and entry["Pack"]["license"] == result["license"]
    lic = content.store.documents.get("rule-pack-license", "sigmahq")
    assert lic is not None and "Detection Rule License" in lic[0]
    # what agents download (/rules) loads back into an engine with the same rules
    text, _ = content.rules_text()
    engine = rules.Engine(rules.loads(text))
    assert engine.rule_count == result["imported"]
    # and the engine's own dump (rules_text) round-trips too
    assert rules.Engine(rules.loads(engine.rules_text())).rule_count == engine.rule_count


def test_upload_api_accepts_a_sigma_entry(content: Content) -> None:
    yaml_text = (
        "title: Evil tool\nstatus: test\nlevel: high\n"
        "logsource: {product: windows, category: process_creation}\n"
        "detection:\n  sel: {Image|endswith: '\\\\evil.exe'}\n  condition: sel\n"
    )
    assert content.put_rules([{"Name": "Evil tool", "Sigma": yaml_text}], update=False) == [
        "Evil tool"
    ]
    bad = {"Name": "Bad", "Sigma": yaml_text.replace("process_creation", "nope")}
    with pytest.raises(Exception, match="unknown logsource"):
        content.put_rules([bad], update=False)
    text, _ = content.rules_text()
    engine = rules.Engine(rules.loads(text))
    event = {
        "Event": {
            "System": {
                "Channel": "Microsoft-Windows-Sysmon/Operational",
                "EventID": "1",
                "TimeCreated": {"SystemTime": "2024-01-01T00:00:00Z"},
            },
            "EventData": {"Image": "C:\\x\\EVIL.exe"},
        }
    }
    det = engine.match(event)
    assert det is not None and det.signatures == ("Evil tool",)
    assert json.loads(json.dumps(event))["Event"]["Detection"]["Criticality"] == 8


def test_retro_hunt_runs_sigma_rules(env: Env) -> None:
    agent = env.enroll()
    env.post_logs(agent, [event(i) for i in range(4)])
    env.ctx.events.flush()
    sigma = {
        "Sigma": "title: Cmd3 Sigma\nstatus: test\nlevel: medium\n"
        "logsource: {product: windows, category: process_creation}\n"
        "detection:\n  sel: {Image|endswith: '\\\\CMD3.exe'}\n  condition: sel\n"
    }
    res = env.a("POST", "/hunt/rules", key=env.analyst_key, json={"rules": [sigma]})
    assert res.status_code == 200, res.text
    data = res.json["data"]
    assert data["scanned"] == 4 and len(data["matches"]) == 1
    assert data["matches"][0]["Event"]["Detection"]["Signature"] == ["Cmd3 Sigma"]
