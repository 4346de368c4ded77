"""Noise tuning on the manager: suppressions (admin API, CLI, endpoint route) and noisy rules."""

from __future__ import annotations

import json
from pathlib import Path

from appliance.store import Artifact
from rules.suppress import suppressions_sha256

from .conftest import Env


def test_suppressions_admin_api_and_per_group_endpoint_route(env: Env) -> None:
    res = env.a(
        "POST",
        "/suppressions",
        json={"rule": "LinuxExecFromTempDir", "image_prefix": "/tmp/ci-", "group": "ci"},
    )
    assert res.status_code == 200, res.text
    ci = res.json["data"]
    assert len(ci["id"]) == 16 and ci["group"] == "ci"
    every = env.a("POST", "/suppressions", json={"rule": "*", "user": "builder"}).json["data"]
    bad = env.a("POST", "/suppressions", json={"rule": "R", "command_line_regex": "("})
    assert bad.status_code == 422 and "command_line_regex" in bad.text
    assert {s["id"] for s in env.a("GET", "/suppressions").json["data"]} == {ci["id"], every["id"]}
    agent_ci, agent_other = env.enroll("ci-1", group="ci"), env.enroll("ws-1", group="desk")
    got_ci = env.e("GET", "/suppressions", agent_ci).json
    assert sorted(s["id"] for s in got_ci) == sorted([ci["id"], every["id"]])
    assert env.e("GET", "/suppressions", agent_other).json == [every]
    assert env.e("GET", "/suppressions/sha256", agent_ci).text == suppressions_sha256(got_ci)
    assert env.a("DELETE", f"/suppressions/{ci['id']}").status_code == 200
    assert env.a("DELETE", f"/suppressions/{ci['id']}").status_code == 404
    assert env.e("GET", "/suppressions", agent_ci).json == [every]


def test_noisiest_rules_counts_hits_and_artifact_bytes(env: Env) -> None:
    now = env.ctx.clock()
    env.ctx.store.detections.add_many(
        [("ep1", now, now, f"{i:040x}", ["Noisy"], 6, None) for i in range(5)]
        + [
            ("ep2", now, now, "f" * 40, ["Noisy", "Rare"], 8, None),
            ("ep1", now - 3 * 86400, now - 3 * 86400, "e" * 40, ["Old"], 5, None),
        ]
    )
    d = env.ctx.data_dir / "artifacts" / "ep1" / "g1" / ("a" * 40)
    d.mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps({"rule": ["Noisy"]}))
    # synchronous writes queue behind the detection inserts: those are visible afterwards
    for name, size in (("manifest.json", 20), ("x.bin", 1000)):
        env.ctx.store.artifacts.add(Artifact("ep1", "g1", "a" * 40, name, size, "0" * 64, now))
    rows = env.ctx.tuning.noisiest_rules(days=1)
    assert [r["rule"] for r in rows] == ["Noisy", "Rare"]
    assert rows[0]["hits"] == 6 and rows[0]["endpoints"] == 2
    assert rows[0]["artifact_bytes"] == 1020 and rows[0]["artifact_files"] == 2
    api = env.a("GET", "/stats/rules?days=7").json["data"]
    assert [r["rule"] for r in api] == ["Noisy", "Old", "Rare"]


def test_cli_manages_suppressions(tmp_path: Path, capsys) -> None:
    from appliance.cli import main

    data = tmp_path / "heron"
    assert main(["init", "--data-dir", str(data)]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "suppression",
                "add",
                "LinuxExecFromTempDir",
                "--data-dir",
                str(data),
                "--parent-prefix",
                "/usr/bin/make",
            ]
        )
        == 0
    )
    added = json.loads(capsys.readouterr().out)
    assert added["parent_prefix"] == "/usr/bin/make"
    assert main(["suppression", "list", "--data-dir", str(data)]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == added["id"]
    assert main(["suppression", "add", "R", "--data-dir", str(data)]) == 1
    assert "at least one of" in capsys.readouterr().err
    assert main(["suppression", "delete", added["id"], "--data-dir", str(data)]) == 0
    capsys.readouterr()
    assert main(["suppression", "list", "--data-dir", str(data)]) == 0
    assert capsys.readouterr().out == ""
