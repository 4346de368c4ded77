"""Acceptance: every SigmaHQ regression case fires its rule through `heron scan -r RULE FILE`."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import yaml

from rules import cli


def _rule_files(sigma_dir: Path) -> dict[str, Path]:
    out = {}
    for path in sigma_dir.rglob("*.yml"):
        m = re.search(r"^id:\s*(\S+)", path.read_text(encoding="utf-8"), re.MULTILINE)
        if m:
            out[m.group(1)] = path
    return out


def test_every_regression_case_fires(
    sigma_dir: Path, regression_dir: Path, tmp_path: Path, capsys: object
) -> None:
    by_id = _rule_files(sigma_dir)
    cases = sorted(regression_dir.rglob("info.yml"))
    assert len(cases) == 115
    failures = []
    for case in cases:
        info = yaml.safe_load(case.read_text(encoding="utf-8"))
        meta = info["rule_metadata"][0]
        evtx = case.parent / Path(info["regression_tests_info"][0]["path"]).name
        rule = by_id.get(meta["id"])
        if rule is None:
            failures.append(f"{case.parent.name}: rule {meta['id']} not in the corpus")
            continue
        # SigmaHQ renames rules; the id is the key, the Signature is the rule's current title
        title = yaml.safe_load(rule.read_text(encoding="utf-8"))["title"]
        out = tmp_path / "out.jsonl"
        code = cli.main(["scan", "-r", str(rule), "--no-progress", "-o", str(out), str(evtx)])
        if code != 0:
            failures.append(f"{rule.name}: heron scan exited {code}")
            continue
        fired = [
            ev
            for ev in map(orjson.loads, out.read_bytes().splitlines())
            if title in ev["Event"].get("Detection", {}).get("Signature", [])
        ]
        if not fired:
            failures.append(f"{rule.name}: no event of {evtx.name} fired {title!r}")
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(failures)
