"""Every document the code cites lives in docs/, and every cited section (§N.M) exists there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE = ("rules", "index", "agent", "appliance", "tests", "benchmarks", "build", "packaging")
CITE = re.compile(r"(docs/[\w/.-]+\.md)((?:[ ,–-]*§\s?[\d.]+)*)")
SECTION = re.compile(r"§\s?(\d+(?:\.\d+)*)")
FOREIGN = re.compile(r"(?<![/\w.-])(?:gene|whids|deps|STYLE|ARCHITECTURE)\.md|\bWHIDS §")


def _sources() -> list[Path]:
    out: list[Path] = []
    for top in CODE:
        out += [p for p in (ROOT / top).rglob("*.py") if "__pycache__" not in p.parts]
    return out


def _headings(doc: Path) -> set[str]:
    """Numbered headings ("## 5.", "### 5.4") and numbered points under them ("5.8")."""
    found = set()
    section = ""
    for line in doc.read_text(encoding="utf-8").splitlines():
        m = re.match(r"#+\s+(\d+(?:\.\d+)*)\.?\s", line)
        if m:
            found.add(m.group(1))
            section = m.group(1)
        point = re.match(r"(\d+)\. \*\*", line)
        if point and section:
            found.add(f"{section}.{point.group(1)}")
    return found


def test_cited_documents_and_sections_exist() -> None:
    missing: list[str] = []
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        for m in CITE.finditer(text):
            doc = ROOT / m.group(1)
            where = f"{path.relative_to(ROOT)}: {m.group(0)}"
            if not doc.is_file():
                missing.append(where + " (no such document)")
                continue
            heads = _headings(doc)
            for sec in SECTION.findall(m.group(2)):
                if sec.rstrip(".") not in heads:
                    missing.append(where + f" (no section {sec})")
    assert not missing, "\n".join(missing)


def test_no_citation_of_documents_outside_the_repository() -> None:
    bad = [
        f"{p.relative_to(ROOT)}: {m.group(0)}"
        for p in _sources()
        if p.name != "test_doc_citations.py"
        for m in FOREIGN.finditer(p.read_text(encoding="utf-8"))
    ]
    assert not bad, "\n".join(bad)
