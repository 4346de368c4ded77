"""Importing a Gene rule pack the admin brings in (a gene-rules checkout or its archive).

Third-party packs are never vendored: `heron-manager rules import DIR|ARCHIVE` reads what the
admin copied onto the manager (offline-friendly). A gene-rules checkout holds `compiled.gen`
(the release build of `rules/`, what the Gene oracle ran) and `rules/**/*.gen`; the compiled
file is taken when present, so the imported set is exactly what Gene runs. Every rule is compiled
by the real loader before anything is stored; the pack is recorded with its source, version and
licence (services/rulepacks.py).
"""

from __future__ import annotations

import json
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

__all__ = ["MAX_ARCHIVE_BYTES", "is_gene_pack", "read_gene_pack"]

MAX_ARCHIVE_BYTES = 256 << 20  # uncompressed bytes read from an archive


def _root(directory: Path) -> Path:
    """The checkout inside an extracted archive (GitHub archives wrap it in one directory)."""
    entries = [p for p in directory.iterdir() if not p.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else directory


def _extract(archive: Path, into: Path) -> Path:
    total = 0
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                total += info.file_size
                target = (into / info.filename).resolve()
                if not target.is_relative_to(into.resolve()):
                    raise ValueError(f"{archive}: member {info.filename!r} escapes the archive")
            if total > MAX_ARCHIVE_BYTES:
                raise ValueError(f"{archive}: more than {MAX_ARCHIVE_BYTES} bytes unpacked")
            zf.extractall(into)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            if sum(m.size for m in members) > MAX_ARCHIVE_BYTES:
                raise ValueError(f"{archive}: more than {MAX_ARCHIVE_BYTES} bytes unpacked")
            tf.extractall(into, filter="data")  # SECURITY: no links out, no absolute paths
    else:
        raise ValueError(f"{archive}: not a directory, .zip or .tar(.gz) archive")
    return _root(into)


def is_gene_pack(path: Path) -> bool:
    """A directory or archive holding Gene rule files (`*.gen`); False for anything else."""
    if path.is_dir():
        return any(path.rglob("*.gen"))
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                return any(n.endswith(".gen") for n in zf.namelist())
        if tarfile.is_tarfile(path):
            with tarfile.open(path) as tf:
                return any(n.endswith(".gen") for n in tf.getnames())
    except (OSError, tarfile.TarError, zipfile.BadZipFile):
        return False
    return False


def _version(root: Path, fallback: str) -> str:
    """The checkout's commit (from .git without running git), else ``fallback``."""
    head = root / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            return (root / ".git" / ref[5:]).read_text().strip()[:40]
        return ref[:40]
    except OSError:
        return fallback


def _licence(root: Path) -> str:
    for name in ("LICENSE", "LICENSE.md", "LICENSE.txt", "COPYING"):
        path = root / name
        if path.is_file():
            lines = [
                ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()
            ]
            text = " ".join(lines[:2])
            if "GNU GENERAL PUBLIC LICENSE" in text.upper() and "Version 3" in text:
                return "GPL-3.0"
            return lines[0][:120] if lines else name
    return ""


def read_gene_pack(path: Path, *, version: str = "") -> dict[str, Any]:
    """``{rules: [rule dicts], version, licence, files}`` of a Gene pack directory or archive.

    Raises ValueError (a rule that does not compile, no rule file, a bad archive).
    """
    import rules as rules_pkg

    with tempfile.TemporaryDirectory(prefix="heron-pack-") as tmp:
        root = path if path.is_dir() else _extract(path, Path(tmp))
        compiled = root / "compiled.gen"
        files = (
            [compiled]
            if compiled.is_file()
            else sorted(
                p for p in (root / "rules" if (root / "rules").is_dir() else root).rglob("*.gen")
            )
        )
        if not files:
            raise ValueError(f"{path}: no Gene rule file (*.gen)")
        loaded = rules_pkg.load(files)  # RuleError (a ValueError) names file, line and rule
        rules_pkg.Engine(loaded)  # and every rule compiles
        ruleset = list(loaded)
        # one JSON object per line (compiled.gen): stored as written; else the loader's form
        try:
            out = [
                json.loads(line)
                for f in files
                for line in f.read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.lstrip().startswith(("#", "//"))
            ]
        except ValueError:
            out = []
        if len(out) != len(ruleset) or not all(isinstance(r, dict) for r in out):
            out = [r.to_dict() for r in ruleset]
        return {
            "rules": out,
            "version": _version(root, version),
            "licence": _licence(root),
            "files": [str(f.relative_to(root)) for f in files],
        }
