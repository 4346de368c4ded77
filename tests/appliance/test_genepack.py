"""`heron-manager rules import`: a gene-rules checkout (or its archive) the admin brings in is
stored as a pack with source, version and licence, and the served set detects exactly what Gene
detects on the corpus (the Gene oracle)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

import rules
from appliance.services.content import Content
from appliance.services.genepack import is_gene_pack, read_gene_pack
from appliance.store import Store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def content() -> Iterator[Content]:
    with Store(":memory:") as store:
        yield Content(store, lambda: 1_780_000_000.0)


@pytest.fixture(scope="module")
def checkout(shared_dir: Path) -> Path:
    return shared_dir / "corpus" / "gene-rules"


def test_gene_rules_checkout_imported_with_gene_parity(
    content: Content, checkout: Path, shared_dir: Path
) -> None:
    assert is_gene_pack(checkout)
    pack = read_gene_pack(checkout, version="f0a34357bb42")
    assert pack["files"] == ["compiled.gen"] and pack["licence"] == "GPL-3.0"
    out = content.import_rules_pack(
        "gene-rules",
        pack["rules"],
        source="gene-rules",
        version=pack["version"],
        licence=pack["licence"],
    )
    assert out["rules"] == 134 and out["sha256"] == content.rules_text()[1]
    listed = {p["name"]: p for p in content.packs()}["gene-rules"]
    assert listed["version"] == "f0a34357bb42" and listed["rules"] == 134
    # the served set, as an agent compiles it, detects what Gene detects
    engine = rules.Engine(rules.loads(content.rules_text()[0], source="<served>"))
    detected = 0
    with gzip.open(shared_dir / "gene-oracle" / "corpus-events.jsonl.gz") as fh:
        for line in fh:
            det = engine.evaluate(orjson.loads(line)["event"])
            detected += bool(det is not None and det.signatures)
    oracle = (shared_dir / "gene-oracle" / "gene-detections-corpus.jsonl").read_text()
    assert detected == len(oracle.splitlines()) == 1046


def test_archives_are_read_and_hostile_ones_refused(checkout: Path, tmp_path: Path) -> None:
    tgz = tmp_path / "gene-rules-master.tar.gz"
    with tarfile.open(tgz, "w:gz") as tf:
        tf.add(checkout, arcname="gene-rules-master")
    assert is_gene_pack(tgz)
    assert len(read_gene_pack(tgz)["rules"]) == 134
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../escape.gen", "{}")
    with pytest.raises(ValueError, match="escapes"):
        read_gene_pack(evil)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.gen").write_text(
        '{"Name": "Bad", "Meta": {"Schema": "2.0.0"}, '
        '"Matches": ["$a: Image ~= \'(\'"], "Condition": "$a"}\n'
    )
    with pytest.raises(ValueError):
        read_gene_pack(broken)
    assert not is_gene_pack(tmp_path / "missing.zip")


def test_cli_import_on_a_stopped_manager(checkout: Path, tmp_path: Path) -> None:
    data = tmp_path / "heron"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "appliance", *args, "--data-dir", str(data)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )

    assert cli("init", "--json").returncode == 0
    done = cli("rules", "import", str(checkout), "--version", "f0a34357bb42")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["pack"] == "gene-rules" and out["rules"] == 134 and out["licence"] == "GPL-3.0"
    packs = {p["name"]: p for p in json.loads(cli("rules", "packs").stdout)}
    assert packs["gene-rules"]["enabled"] == 134
    bad = cli("rules", "import", str(tmp_path))
    assert bad.returncode == 2 and "not a rule pack" in bad.stderr
