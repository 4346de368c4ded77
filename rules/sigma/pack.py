"""SigmaHQ rule packs: a release archive or checkout the admin brings in, read as rule entries.

Each supported rule becomes one rule-store entry `{"Name": title, "Sigma": yaml, "Pack": {...}}`
(the YAML keeps the rule's own `author`/`license`; `Pack` names the pack, its licence and the
file). The pack's LICENSE text is returned for the manager to keep next to the rules. Rules that
cannot run, or are left out by the status filter, are returned with their reason.
"""

from __future__ import annotations

import re
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine import Engine
from ..errors import RuleError
from ..loader import DEFAULT_SIGMA_STATUS, load
from .rule import SigmaRule

__all__ = ["Pack", "read_pack", "MAX_ARCHIVE_BYTES"]

MAX_ARCHIVE_BYTES = 512 * 1024 * 1024  # uncompressed; a SigmaHQ release is ~30 MB


@dataclass
class Pack:
    name: str
    license_name: str = ""
    license_text: str = ""
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    rejected: list[RuleError] = field(default_factory=list)


def _extract(archive: Path, dest: Path) -> Path:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            if sum(i.file_size for i in zf.infolist()) > MAX_ARCHIVE_BYTES:
                raise ValueError(f"{archive}: archive larger than {MAX_ARCHIVE_BYTES} bytes")
            for info in zf.infolist():
                target = (dest / info.filename).resolve()
                if not target.is_relative_to(dest.resolve()):
                    raise ValueError(f"{archive}: unsafe path {info.filename!r}")
            zf.extractall(dest)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            if sum(m.size for m in tf.getmembers()) > MAX_ARCHIVE_BYTES:
                raise ValueError(f"{archive}: archive larger than {MAX_ARCHIVE_BYTES} bytes")
            tf.extractall(dest, filter="data")
    else:
        raise ValueError(f"{archive}: not a directory, zip or tar archive")
    return dest


def _license(root: Path) -> tuple[str, str]:
    for path in sorted(root.rglob("LICENSE*"), key=lambda p: len(p.parts)):
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            drl = re.search(r"Detection Rule License \(DRL\) [\d.]+", text)
            first = next((ln.strip("# ").strip() for ln in text.splitlines() if ln.strip()), "")
            return (drl.group(0) if drl else first), text
    return "", ""


def read_pack(
    path: str | Path, *, name: str = "sigmahq", status: Iterable[str] | None = DEFAULT_SIGMA_STATUS
) -> Pack:
    """Read every Sigma rule of a checkout or archive; `status=None` keeps every status."""
    src = Path(path)
    if not src.exists():
        raise ValueError(f"{src}: no such file or directory")
    with tempfile.TemporaryDirectory(prefix="heron-pack-") as tmp:
        root = src if src.is_dir() else _extract(src, Path(tmp))
        lic_name, lic_text = _license(root)
        ruleset = load([root], collect_errors=True, sigma_status=status)
        pack = Pack(name, lic_name, lic_text)
        pack.rejected = list(ruleset.errors) + list(ruleset.unsupported)
        engine = Engine(timing=False)
        pack.rejected += engine.load(ruleset, collect_errors=True)
        loaded = {c.name for c in engine.rules}
        for rule in ruleset:
            if not isinstance(rule, SigmaRule) and not hasattr(rule, "text"):
                continue  # Gene rules inside a Sigma pack are not part of it
            if rule.name not in loaded:
                continue
            rel = Path(rule.source).resolve().relative_to(root.resolve()).as_posix()
            pack.entries[rule.name] = {
                "Name": rule.name,
                "Sigma": getattr(rule, "text", ""),
                "Pack": {
                    "name": name,
                    "license": lic_name,
                    "file": rel,
                    "id": rule.extra.get("id", ""),
                    "author": rule.extra.get("author", ""),
                },
            }
        return pack
