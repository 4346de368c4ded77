"""What the manager distributes: rules (compile-checked), IoCs, agent and Sysmon configs.

Each item has a body and a sha256 (rules/wire.py defines the hashes) cached until it changes, so
agents polling `/rules/sha256` or `/iocs/sha256` cost a dictionary lookup.

Caches are filled outside the lock (reading the store can be slow) but stored under it, and only
if nothing changed meanwhile: rules carry a generation bumped on every write, IoCs the store's
version. A poll that read the old rules while an admin replaced them cannot put them back.
The `/updates` hashes (Sysmon config, tools, an endpoint's config) are cached under the store's
change counters, read before the value, so a value is never older than its key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from rules import wire

from ..core.errors import Conflict, ValidationError
from ..store import Store
from . import rulepacks

__all__ = ["DEFAULTS_DIR", "Content", "check_rules"]

logger = logging.getLogger(__name__)
DEFAULTS_DIR = Path(__file__).resolve().parent.parent / "defaults"
DEFAULTS_SEEDED = "rules.defaults_seeded"
OS_NAMES = ("windows", "linux", "darwin")
ITEM_KEYS = 256  # /updates hashes cached per (item, os, version): client text, so bounded
CONFIG_KEYS = 1 << 17  # and per endpoint
K = TypeVar("K")


def check_rules(rules: Iterable[Any]) -> dict[str, str]:
    """Validate Gene rules (dicts) with the real loader; returns name → canonical JSON text.

    Raises ValidationError listing every rule that does not compile.
    """
    import rules as rules_pkg

    out: dict[str, str] = {}
    problems: list[str] = []
    for index, rule in enumerate(rules):
        if not isinstance(rule, dict) or not isinstance(rule.get("Name"), str) or not rule["Name"]:
            problems.append(f"rule #{index}: a JSON object with a non-empty Name is required")
            continue
        text = json.dumps(rule, separators=(",", ":"), ensure_ascii=False)
        try:
            rules_pkg.Engine(rules_pkg.loads(text, source=f"<upload:{rule['Name']}>"))
        except ValueError as ex:  # rules.RuleError subclasses ValueError
            problems.append(f"{rule['Name']}: {ex}")
            continue
        if rule["Name"] in out:
            problems.append(f"{rule['Name']}: duplicate name in upload")
        out[rule["Name"]] = text
    if problems:
        raise ValidationError("rules rejected: " + "; ".join(problems[:20]))
    return out


def sigma_body(path: str, *, name: str, status: list[str] | None) -> tuple[Any, dict[str, Any]]:
    """(the read pack, the `/rules/import` body) of a SigmaHQ checkout or release archive;
    `status`: statuses to keep (None: stable and test, []: every status)."""
    from rules.loader import DEFAULT_SIGMA_STATUS
    from rules.sigma.pack import read_pack

    pack = read_pack(
        path, name=name, status=DEFAULT_SIGMA_STATUS if status is None else status or None
    )
    body = {
        "name": name,
        "rules": list(pack.entries.values()),
        "source": Path(path).name,
        "version": "",
        "licence": pack.license_name,
        "licence_text": pack.license_text,
    }
    return pack, body


def sigma_result(pack: Any) -> dict[str, Any]:
    """What a Sigma pack import reports: imported rules and the rejected ones with reasons."""
    return {
        "pack": pack.name,
        "license": pack.license_name,
        "imported": len(pack.entries),
        "rejected": [
            {"rule": e.rule or "", "source": e.source or "", "reason": e.reason}
            for e in pack.rejected
        ],
    }


class Content:
    """Cached bodies and hashes of distributed content."""

    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock
        self._lock = threading.Lock()  # guards the caches and _rules_generation
        self._rules: tuple[str, str] | None = None
        self._rules_generation = 0  # bumped after every rules write
        self._iocs: tuple[int, list[dict[str, Any]], str] | None = None
        self._config_hashes: dict[str, tuple[int, str | None]] = {}  # endpoint uuid → hash
        self._item_hashes: dict[tuple[str, str, str], tuple[int, str | None]] = {}
        self.history = rulepacks.RuleHistory(store, clock)  # a version per rules change
        store.changes.subscribe("rules", self._drop_rules)  # cluster: another front-end's write

    # --- rules ----------------------------------------------------------------------------

    def rules_text(self) -> tuple[str, str]:
        """(body of /rules, its sha256)."""
        with self._lock:
            cached, generation = self._rules, self._rules_generation
        if cached is not None:
            return cached
        text = "".join(t + "\n" for t in self.store.rules.all().values())
        cached = (text, wire.rules_sha256(text))
        with self._lock:
            if self._rules_generation == generation:  # else rules changed while we read them
                self._rules = cached
        return cached

    def _drop_rules(self) -> None:
        with self._lock:
            self._rules_generation += 1
            self._rules = None

    def _rules_changed(self) -> None:
        """Drop the cached rules and keep the new set as a version; call after the store write
        has completed."""
        self._drop_rules()
        try:
            self.history.record()
        except Exception:
            logger.exception("could not record the rules version")

    # --- packs, enable/disable, versions (services/rulepacks.py) ----------------------------

    def packs(self) -> list[dict[str, Any]]:
        return rulepacks.packs(self.store, self.rules())

    def set_enabled(self, *, enabled: bool, names: Iterable[str] = (), pack: str = "") -> list[str]:
        """Enable or disable rules (Gene ``Meta.Disable``); returns the rules that changed."""
        texts = rulepacks.set_enabled(
            self.store, self.rules(), enabled=enabled, names=names, pack=pack
        )
        if texts:
            self.store.rules.upsert(texts, self.clock())
            self._rules_changed()
        return sorted(texts)

    def import_rules_pack(
        self,
        name: str,
        rules: list[Any],
        *,
        source: str,
        version: str,
        licence: str,
        licence_text: str = "",
    ) -> dict[str, Any]:
        """Store a third-party pack's rules (compile-checked, replacing same names) and record
        the pack (services/genepack.py reads a Gene one from a checkout or archive, `import_pack`
        a SigmaHQ one); `licence_text` is kept as document ("rule-pack-license", name)."""
        if not name or len(name) > 128:
            raise ValidationError("a pack name (at most 128 characters) is required")
        if not rules:
            raise ValidationError(f"pack {name!r} holds no rule")
        saved = self.put_rules(rules, update=True)
        rulepacks.record_pack(
            self.store,
            name,
            saved,
            source=source,
            version=version,
            licence=licence,
            now=self.clock(),
        )
        if licence_text:
            self.store.documents.put(
                "rule-pack-license",
                name,
                licence_text,
                hashlib.sha256(licence_text.encode()).hexdigest(),
                self.clock(),
            )
        return {
            "pack": name,
            "rules": len(saved),
            "source": source,
            "version": version,
            "licence": licence,
            "sha256": self.rules_text()[1],
        }

    def rollback(self, version: str) -> int:
        """Make rules version ``version`` the current set; returns its rule count."""
        texts = self.history.texts(version)
        for name in set(self.store.rules.all()) - set(texts):
            self.store.rules.delete(name)
        self.store.rules.upsert(texts, self.clock())
        self._rules_changed()
        return len(texts)

    def put_rules(self, rules: list[Any], *, update: bool) -> list[str]:
        checked = check_rules(rules)
        existing = self.store.rules.all()
        clash = sorted(n for n in checked if n in existing)
        if clash and not update:
            raise Conflict(f"rules already exist (use update=true): {', '.join(clash[:10])}")
        self.store.rules.upsert(checked, self.clock())
        self._rules_changed()
        return sorted(checked)

    def import_pack(
        self, path: str, *, name: str = "sigmahq", status: list[str] | None = None
    ) -> dict[str, Any]:
        """Import a SigmaHQ checkout or release archive as rules (docs/rules.md "Sigma").

        Every supported rule is stored (replacing one of the same title) through
        `import_rules_pack`, as when the CLI posts the pack to a running manager (`sigma_body`);
        rejected rules come back with reasons.
        """
        pack, body = sigma_body(path, name=name, status=status)
        if body["rules"]:
            self.import_rules_pack(body.pop("name"), body.pop("rules"), **body)
        return sigma_result(pack)

    def seed_defaults(self, packs: Iterable[Path] | None = None) -> int:
        """Load Heron's bundled default rule packs on the manager's first start.

        Every install path (.deb, offline bundle, MSI, `init` + `run` by hand) then serves rules
        from the start. Each pack is loaded once per data directory: rules an admin deleted
        later stay deleted, and a store that already held rules at the first start is left as
        it is. A data directory that took the defaults also gets the packs a later version adds
        (an upgrade brings, say, the forwarding pack). Returns the rules added.
        """
        files = sorted(packs if packs is not None else DEFAULTS_DIR.glob("*.gen"))
        record = self.store.settings.get(DEFAULTS_SEEDED)
        if record is None:
            seeded: list[str] | None = [] if not self.store.rules.all() else None
        elif not isinstance(record, dict) or not record.get("rules"):
            seeded = None  # the first start found the admin's own rules: never seed
        else:  # before packs were recorded only linux.gen existed
            seeded = list(record.get("packs", ["linux.gen"]))
        new = [p for p in files if seeded is not None and p.name not in seeded]
        if record is not None and not new:
            return 0
        added: list[str] = []
        if new:
            existing = self.store.rules.all()
            rules = [
                rule
                for path in new
                for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()
                if (rule := json.loads(line)).get("Name") not in existing
            ]
            added = self.put_rules(rules, update=False) if rules else []
            for path in new:
                rulepacks.record_pack(
                    self.store,
                    path.stem,
                    [
                        json.loads(line)["Name"]
                        for line in path.read_text(encoding="utf-8").splitlines()
                        if line.strip()
                    ],
                    source=f"heron default pack {path.name}",
                    version=wire.HERON_VERSION,
                    licence="GPL-3.0-or-later",
                    now=self.clock(),
                )
            logger.info(
                "default rules loaded: %d rules from %s", len(added), ", ".join(p.name for p in new)
            )
        total = (record or {}).get("rules", 0) if isinstance(record, dict) else 0
        self.store.settings.put(
            DEFAULTS_SEEDED,
            {
                "rules": int(total) + len(added),
                "packs": sorted({*(seeded or []), *(p.name for p in new)})
                if seeded is not None
                else [p.name for p in files],
            },
            self.clock(),
        )
        return len(added)

    def delete_rule(self, name: str) -> None:
        self.store.rules.delete(name)
        self._rules_changed()

    def rules(self) -> dict[str, dict[str, Any]]:
        return {n: json.loads(t) for n, t in self.store.rules.all().items()}

    # --- IoCs -----------------------------------------------------------------------------

    def iocs(self) -> tuple[list[dict[str, Any]], str]:
        """(IoCs as distributed, sha256 per wire.iocs_sha256)."""
        # The store bumps its version after each write, so reading the version first means the
        # items are at least that new; a fill never replaces a cache of a later version.
        version = self.store.iocs.version
        with self._lock:
            cached = self._iocs
        if cached is None or cached[0] != version:
            items = [i.to_dict() for i in self.store.iocs.list()]
            cached = (version, items, wire.iocs_sha256(items))
            with self._lock:
                if self._iocs is None or self._iocs[0] <= version:
                    self._iocs = cached
        return cached[1], cached[2]

    # --- GET /updates ----------------------------------------------------------------------

    def update_hashes(self, uuid: str, os_name: str, version: str = "") -> dict[str, str | None]:
        """The `/updates` answer: the hash of every item an endpoint may fetch (None: none set).

        Performance: every agent asks once a poll interval (10,000 agents: ~170/s); while
        nothing changed each part is a cache hit (no query, no Sysmon XML or tool binary read).
        """
        documents, tools = self.store.documents, self.store.tools
        return {
            "rules": self.rules_text()[1],
            "iocs": self.iocs()[1],
            "config": _cached(
                self._lock,
                self._config_hashes,
                uuid,
                self.store.endpoints.config_version,
                lambda: self._config_hash(uuid),
                CONFIG_KEYS,
            ),
            "sysmon": _cached(
                self._lock,
                self._item_hashes,
                ("sysmon", os_name, version),
                documents.version("sysmon"),
                lambda: self._sysmon_hash(os_name, version),
                ITEM_KEYS,
            ),
            "tools": _cached(
                self._lock,
                self._item_hashes,
                ("tools", os_name, ""),
                tools.version,
                lambda: self._tools_hash(os_name),
                ITEM_KEYS,
            ),
        }

    def _config_hash(self, uuid: str) -> str | None:
        config = self.store.endpoints.get(uuid).config
        return None if config is None else wire.config_sha256(config)

    def _sysmon_hash(self, os_name: str, version: str) -> str | None:
        doc = self.sysmon(os_name, version)
        return None if doc is None else str(doc["XmlSha256"])

    def _tools_hash(self, os_name: str) -> str:
        tools = self.store.tools.list(os_name=os_name)
        return wire.tools_sha256({t["name"]: t for t in tools})

    # --- agent configs --------------------------------------------------------------------

    # --- Sysmon configs -------------------------------------------------------------------

    def put_sysmon(self, os_name: str, version: str, xml: str) -> dict[str, Any]:
        if os_name not in OS_NAMES:
            raise ValidationError(f"os must be one of {', '.join(OS_NAMES)}")
        if not xml.strip().startswith("<"):
            raise ValidationError("a Sysmon configuration is an XML document")
        doc = {
            "OS": os_name,
            "version": version,
            "xml": xml,
            "XmlSha256": hashlib.sha256(xml.encode("utf-8")).hexdigest(),
        }
        self.store.documents.put(
            f"sysmon:{os_name}", version, json.dumps(doc), doc["XmlSha256"], self.clock()
        )
        return doc

    def sysmon(self, os_name: str, version: str = "") -> dict[str, Any] | None:
        kind = f"sysmon:{os_name}"
        if not version:
            versions = sorted(self.store.documents.keys(kind), key=_version_key)
            if not versions:
                return None
            version = versions[-1]
        found = self.store.documents.get(kind, version)
        return json.loads(found[0]) if found else None


def _cached(
    lock: threading.Lock,
    cache: dict[K, tuple[int, str | None]],
    key: K,
    version: int,
    build: Callable[[], str | None],
    limit: int,
) -> str | None:
    """``cache[key]`` while it was built at ``version`` (read before ``build``, so the value is
    at least that new), else ``build()`` kept; the cache is emptied when it reaches ``limit``."""
    with lock:
        hit = cache.get(key)
    if hit is not None and hit[0] == version:
        return hit[1]
    value = build()
    with lock:
        if len(cache) >= limit and key not in cache:
            cache.clear()
        cache[key] = (version, value)
    return value


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in text.split("."))
