"""Noise tuning: per-rule suppressions (stored, served per host group) and the noisiest rules.

Suppressions (`rules.suppress`) live in the fleet store's documents (kind `suppression`, key =
id). An endpoint gets, at `GET /suppressions`, those of its host group plus the group-less ones;
`GET /suppressions/sha256` is `rules.suppress.suppressions_sha256` of that list, so the agent
re-fetches only on change (like rules and IoCs). `noisiest_rules` counts, per rule over the last
days, the detections received and the bytes of uploaded artifacts whose manifest names the rule.
"""

from __future__ import annotations

import json
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rules.suppress import Suppression, SuppressionError, suppressions_sha256

from ..core.errors import NotFound, ValidationError
from ..store import Store

__all__ = ["Tuning"]

KIND = "suppression"
MAX_SUPPRESSIONS = 10_000


class Tuning:
    """Suppression CRUD and the noisiest-rules view over one fleet store."""

    def __init__(self, store: Store, artifacts_root: Path, clock: Callable[[], float]) -> None:
        self.store = store
        self.artifacts_root = artifacts_root
        self.clock = clock
        self.generation = 0  # bumped on every change made through this object

    # --- suppressions ----------------------------------------------------------------------

    def all(self) -> list[dict[str, str]]:
        out = []
        for key in sorted(self.store.documents.keys(KIND)):
            found = self.store.documents.get(KIND, key)
            if found is not None:
                out.append(json.loads(found[0]))
        return out

    def add(self, doc: Any) -> dict[str, str]:
        """Validate and store one suppression; returns it with its id."""
        if not isinstance(doc, dict):
            raise ValidationError("a suppression is a JSON object")
        doc = {k: v for k, v in doc.items() if k != "id"}
        try:
            sup = Suppression.from_dict(doc)
        except SuppressionError as ex:
            raise ValidationError(str(ex)) from ex
        if len(self.store.documents.keys(KIND)) >= MAX_SUPPRESSIONS:
            raise ValidationError(f"at most {MAX_SUPPRESSIONS} suppressions")
        item = dict(sup.to_dict(), id=uuidlib.uuid4().hex[:16])
        body = json.dumps(item, sort_keys=True)
        self.store.documents.put(KIND, item["id"], body, suppressions_sha256([item]), self.clock())
        self.generation += 1
        return item

    def delete(self, sid: str) -> None:
        if not self.store.documents.delete(KIND, sid):
            raise NotFound(f"no suppression {sid!r}")
        self.generation += 1

    def for_group(self, group: str) -> tuple[list[dict[str, str]], str]:
        """(suppressions an endpoint of `group` applies, their sha256)."""
        items = [i for i in self.all() if not i.get("group") or i.get("group") == group]
        return items, suppressions_sha256(items)

    # --- noisiest rules --------------------------------------------------------------------

    def noisiest_rules(self, *, days: float = 1.0, limit: int = 50) -> list[dict[str, Any]]:
        """Rules by detections received in the last `days`, with their artifact bytes."""
        since = self.clock() - days * 86400.0
        stats: dict[str, dict[str, Any]] = {}

        def entry(rule: str) -> dict[str, Any]:
            return stats.setdefault(
                rule,
                {
                    "rule": rule,
                    "hits": 0,
                    "endpoints": set(),
                    "artifact_bytes": 0,
                    "artifact_files": 0,
                },
            )

        for endpoint, sigs in self.store.db.query(
            "SELECT endpoint, signatures FROM detections WHERE receipt >= ?", [since]
        ):
            for rule in json.loads(sigs):
                e = entry(str(rule))
                e["hits"] += 1
                e["endpoints"].add(endpoint)
        dirs: dict[tuple[str, str, str], list[int]] = {}
        for art in self.store.artifacts.list(since=since):
            dirs.setdefault((art.endpoint, art.pguid, art.ehash), []).append(art.size)
        for (endpoint, pguid, ehash), sizes in dirs.items():
            manifest = self.artifacts_root / endpoint / pguid / ehash / "manifest.json"
            try:
                rules = json.loads(manifest.read_text(encoding="utf-8")).get("rule") or ["?"]
            except (OSError, ValueError, AttributeError):
                rules = ["?"]  # manifest not uploaded (yet): bytes not attributable
            for rule in rules:
                e = entry(str(rule))
                e["artifact_bytes"] += sum(sizes)
                e["artifact_files"] += len(sizes)
        out = sorted(stats.values(), key=lambda e: (-e["hits"], -e["artifact_bytes"], e["rule"]))
        for e in out:
            e["endpoints"] = len(e["endpoints"])
            e["hits_per_day"] = round(e["hits"] / days, 1)
            e["artifact_bytes_per_day"] = round(e["artifact_bytes"] / days)
        return out[:limit]
