"""Rule packs and rule-set versions on the manager (docs/manager.md "Rule packs").

* Packs: a named group of rules with its source, version and licence, recorded when a pack is
  loaded (Heron's default packs at first start; imported packs) as fleet-store documents of kind
  ``rule-pack``. Rules whose JSON carries a ``Pack`` key (imported Sigma entries) are grouped
  under that name too.
* Enable/disable: Gene's own ``Meta.Disable`` flag, set on single rules or on every rule of a
  pack. The served rules text changes, so its sha256 changes and agents pull the new set; a
  disabled rule is not compiled (and not counted) anywhere.
* Versions: after every change of the rule store, the whole set is kept as a version (the last
  :data:`KEEP` ones, documents of kind ``rules-version``); ``rollback(version)`` makes an older
  set current again (itself a new version, so a rollback can be rolled back).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any

from rules import wire

from ..core.errors import NotFound, ValidationError
from ..core.timefmt import rfc3339
from ..store import Store

__all__ = ["KEEP", "RuleHistory", "pack_members", "packs", "record_pack", "set_enabled"]

KEEP = 10
PACK_KIND = "rule-pack"
VERSION_KIND = "rules-version"


class RuleHistory:
    """The last :data:`KEEP` rule sets, one per change of the rule store."""

    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock
        self._lock = threading.Lock()

    def _ids(self) -> list[str]:
        return sorted(self.store.documents.keys(VERSION_KIND))

    def record(self) -> str:
        """Keep the current rule set as a new version; returns its id."""
        texts = self.store.rules.all()
        body = "".join(t + "\n" for t in texts.values())
        with self._lock:
            ids = self._ids()
            vid = f"{int(ids[-1]) + 1:08d}" if ids else "00000001"
            doc = {"time": self.clock(), "rules": texts}
            self.store.documents.put(
                VERSION_KIND, vid, json.dumps(doc), wire.rules_sha256(body), self.clock()
            )
            for old in ids[: max(0, len(ids) + 1 - KEEP)]:
                self.store.documents.delete(VERSION_KIND, old)
        return vid

    def versions(self) -> list[dict[str, Any]]:
        """Newest first: ``{version, time, rules, sha256}`` (sha256: the served /rules hash)."""
        out = []
        for vid in reversed(self._ids()):
            found = self.store.documents.get(VERSION_KIND, vid)
            if found is None:
                continue
            doc = json.loads(found[0])
            out.append(
                {
                    "version": vid,
                    "time": rfc3339(doc["time"]),
                    "rules": len(doc["rules"]),
                    "sha256": found[1],
                }
            )
        return out

    def texts(self, version: str) -> dict[str, str]:
        found = self.store.documents.get(VERSION_KIND, version)
        if found is None:
            raise NotFound(f"no rules version {version!r} (GET /rules/versions lists them)")
        return dict(json.loads(found[0])["rules"])


def record_pack(
    store: Store,
    name: str,
    rule_names: Iterable[str],
    *,
    source: str,
    version: str,
    licence: str,
    now: float,
) -> None:
    """Remember a loaded pack: its rules, where it came from, its version and licence."""
    doc = {
        "source": source,
        "version": version,
        "licence": licence,
        "rules": sorted(set(rule_names)),
    }
    store.documents.put(PACK_KIND, name, json.dumps(doc), "", now)


def pack_members(store: Store, rules: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Pack name → its record (``rules`` limited to rules that still exist)."""
    out: dict[str, dict[str, Any]] = {}
    for name in store.documents.keys(PACK_KIND):
        found = store.documents.get(PACK_KIND, name)
        if found is not None:
            doc = json.loads(found[0])
            doc["rules"] = [n for n in doc["rules"] if n in rules]
            out[name] = doc
    for rname, rule in rules.items():
        pack = rule.get("Pack")
        if isinstance(pack, str) and pack:
            doc = out.setdefault(pack, {"source": "", "version": "", "licence": "", "rules": []})
            if rname not in doc["rules"]:
                doc["rules"].append(rname)
    return out


def _disabled(rule: dict[str, Any]) -> bool:
    meta = rule.get("Meta")
    return bool(meta.get("Disable")) if isinstance(meta, dict) else bool(rule.get("Disable"))


def packs(store: Store, rules: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every pack with its rule count and how many of its rules are enabled."""
    out = []
    for name, doc in sorted(pack_members(store, rules).items()):
        members = doc["rules"]
        out.append(
            {
                "name": name,
                "source": doc["source"],
                "version": doc["version"],
                "licence": doc["licence"],
                "rules": len(members),
                "enabled": sum(1 for n in members if not _disabled(rules[n])),
            }
        )
    return out


def set_enabled(
    store: Store,
    rules: dict[str, dict[str, Any]],
    *,
    enabled: bool,
    names: Iterable[str] = (),
    pack: str = "",
) -> dict[str, str]:
    """The changed rules' new texts (name → JSON) with ``Meta.Disable`` set to ``not enabled``.

    Raises NotFound for an unknown rule or pack, ValidationError for a rule that has no Gene
    ``Meta`` (it cannot be disabled this way).
    """
    wanted = list(names)
    if pack:
        members = pack_members(store, rules).get(pack)
        if members is None:
            raise NotFound(f"no rule pack {pack!r}")
        wanted += members["rules"]
    if not wanted:
        raise ValidationError("name the rules (names) or the pack (pack) to change")
    out: dict[str, str] = {}
    for name in dict.fromkeys(wanted):
        rule = rules.get(name)
        if rule is None:
            raise NotFound(f"no rule {name!r}")
        meta = rule.get("Meta")
        if not isinstance(meta, dict):
            raise ValidationError(f"{name}: not a Gene rule (no Meta): cannot be disabled")
        if bool(meta.get("Disable")) == (not enabled):
            continue
        new = dict(rule, Meta=dict(meta, Disable=not enabled))
        out[name] = json.dumps(new, separators=(",", ":"), ensure_ascii=False)
    return out
