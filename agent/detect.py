"""Detection stage: the Gene engine plus built-in IoC and canary rules.

``Detector.match(event)`` runs the rules engine (which writes ``Event.Detection``), then the IoC
set (hits add ``IoC:<type>`` signatures, WHIDS built-in IoC rules) and returns a ``Verdict``.
Rules and IoCs are swapped atomically (``reload_rules``, ``set_iocs``): the pipeline thread
always sees one consistent engine.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rules
from rules import wire
from rules.iocs import IocSet, ioc_rules, merge_detection
from rules.suppress import SuppressionSet

__all__ = ["Detector", "Verdict", "load_containers", "load_ioc_file"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Outcome of detection on one event."""

    detection: dict[str, Any] | None  # the Event.Detection block, when a normal rule matched
    filtered: bool  # a Filter rule matched

    @property
    def criticality(self) -> int:
        return int(self.detection.get("Criticality", 0)) if self.detection else 0


def load_containers(directory: str | Path) -> dict[str, list[str]]:
    """Containers from ``NAME.txt`` / ``NAME.cont`` files (one value per line)."""
    out: dict[str, list[str]] = {}
    d = Path(directory)
    if not d.is_dir():
        return out
    for path in sorted(d.iterdir()):
        if path.suffix in (".txt", ".cont"):
            values = [v.strip() for v in path.read_text(encoding="utf-8").splitlines()]
            out[path.stem] = [v for v in values if v]
    return out


def load_ioc_file(path: str | Path) -> list[dict[str, str]]:
    """IoCs from a JSON list of ``{type, value}`` or from ``type:value`` lines."""
    import json

    text = Path(path).read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("["):
        data = json.loads(text)
        return [
            {"type": str(i["type"]), "value": str(i["value"])}
            for i in data
            if isinstance(i, dict) and "type" in i and "value" in i
        ]
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and ":" in line:
            t, v = line.split(":", 1)
            out.append({"type": t.strip(), "value": v.strip()})
    return out


class Detector:
    """Engine + IoCs + generated rules, replaceable at run time."""

    def __init__(
        self,
        *,
        rules_text: str = "",
        rule_paths: Iterable[str | Path] = (),
        extra_rules: str = "",
        containers: Mapping[str, Iterable[str]] | None = None,
        default_actions: Mapping[str, list[str]] | None = None,
        iocs: Iterable[Any] = (),
        ioc_criticality: int = 10,
        timing: bool = False,
    ) -> None:
        self.timing = timing  # per-rule time accounting (Engine.stats); costs ~5 % per event
        self._lock = threading.Lock()
        self._containers = {k: list(v) for k, v in (containers or {}).items()}
        self._default_actions = dict(default_actions or {})
        self._extra = extra_rules
        self._paths = [Path(p) for p in rule_paths]
        self._text = rules_text
        self.ioc_criticality = ioc_criticality
        self.iocs = IocSet.from_iocs(iocs)
        self.suppressions = SuppressionSet()
        self.suppressed: dict[str, int] = {}  # rule -> detections silenced by a suppression
        self._builtin_count = self._count_builtin()
        self.engine = self._build(rules_text)
        # what the manager shows per endpoint (rule count, hash, last update): see rules_state
        self._rules_source = "manager" if rules_text.strip() else "local"
        self._rules_sha256 = self._user_sha256()
        self._rules_updated = time.time()

    def _build(self, text: str) -> rules.Engine:
        # ATT&CK on: the stored detection carries the rules' techniques and tactics (WHIDS
        # had it off; `heron scan` without -a stays Gene-exact, it does not use this class).
        engine = rules.Engine(
            containers=self._containers,
            show_attack=True,
            default_actions=self._default_actions,
            timing=self.timing,
        )
        if self._paths:
            engine.load(rules.load(self._paths))
        if text.strip():
            engine.load(rules.loads(text, source="<reload>"))
        if self._extra.strip():
            engine.load(rules.loads(self._extra, source="<builtin>"))
        return engine

    def _count_builtin(self) -> int:
        if not self._extra.strip():
            return 0
        return int(rules.Engine(rules.loads(self._extra, source="<builtin>")).rule_count)

    def _user_sha256(self) -> str:
        """The hash the manager serves for pushed rules (``wire.rules_sha256`` of /rules); for
        local rule files, the same hash of their canonical text."""
        if self._text.strip():
            return wire.rules_sha256(self._text)
        if not self._paths:
            return ""
        return wire.rules_sha256(str(rules.Engine(rules.load(self._paths)).rules_text()))

    def rules_state(self) -> dict[str, str]:
        """Rule count, rules hash, last update and source, as the agent reports them
        (``Heron-Agent`` health event 9011, shown on the manager's ``GET /endpoints``)."""
        from datetime import UTC, datetime

        updated = datetime.fromtimestamp(self._rules_updated, UTC)
        return {
            "RuleCount": str(self.user_rule_count),
            "RulesSha256": self._rules_sha256,
            "RulesUpdated": updated.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "RulesSource": self._rules_source,
        }

    @property
    def user_rule_count(self) -> int:
        """Rules from files or the manager, without the generated (canary) rules."""
        return max(0, int(self.engine.rule_count) - self._builtin_count)

    def reload_rules(self, text: str) -> int:
        """Replace the rules with ``text`` (manager /rules body); returns the rule count.

        Pushed rules supersede the local ``rules.paths`` files (as WHIDS's rules-db); the
        generated canary rules stay.
        """
        saved = self._paths
        self._paths = []
        try:
            engine = self._build(text)
        except Exception:
            self._paths = saved
            raise
        if engine.rule_count <= self._builtin_count:
            # An empty or rule-less push would silently end detection: keep the working set.
            self._paths = saved
            raise ValueError("pushed rule set holds no rules; the current rules stay in force")
        with self._lock:
            self.engine = engine
            self._text = text
        self._rules_source, self._rules_sha256 = "manager", wire.rules_sha256(text)
        self._rules_updated = time.time()
        logger.info("rules reloaded: %d rules", engine.rule_count)
        return int(engine.rule_count)

    def configure(
        self,
        *,
        rule_paths: Iterable[str | Path],
        containers: Mapping[str, Iterable[str]],
        default_actions: Mapping[str, list[str]],
        ioc_criticality: int,
    ) -> int:
        """Rebuild the engine with new settings (live config update); returns the rule count."""
        old = (self._paths, self._containers, self._default_actions)
        self._paths = [Path(p) for p in rule_paths]
        self._containers = {k: list(v) for k, v in containers.items()}
        self._default_actions = dict(default_actions)
        try:
            engine = self._build(self._text)
        except Exception:
            self._paths, self._containers, self._default_actions = old
            raise
        with self._lock:
            self.engine = engine
            self.ioc_criticality = ioc_criticality
        if not self._text.strip() and old[0] != self._paths:
            self._rules_sha256, self._rules_updated = self._user_sha256(), time.time()
        return int(engine.rule_count)

    def set_extra_rules(self, text: str) -> int:
        """Replace the generated (canary) rules; the other rules stay. Rule count."""
        saved = self._extra
        self._extra = text
        try:
            engine = self._build(self._text)
        except Exception:
            self._extra = saved
            raise
        with self._lock:
            self.engine = engine
        self._builtin_count = self._count_builtin()
        return int(engine.rule_count)

    def set_iocs(self, iocs: Iterable[Any]) -> int:
        ioc_set = IocSet.from_iocs(iocs)
        with self._lock:
            self.iocs = ioc_set
        logger.info("IoCs loaded: %d indicators", len(ioc_set))
        return len(ioc_set)

    def set_suppressions(self, items: Iterable[Any]) -> int:
        """Replace the suppressions (``rules.suppress`` dicts from the manager); their count."""
        sset = SuppressionSet.from_dicts(items)  # SuppressionError rejects the whole update
        with self._lock:
            self.suppressions = sset
        logger.info("suppressions loaded: %d", len(sset))
        return len(sset)

    def _suppress(
        self, engine: rules.Engine, event: dict[str, Any], det: rules.Detection
    ) -> rules.Detection | None:
        """Remove suppressed signatures from the detection (and the event's block)."""
        ev = event.get("Event")
        data = ev.get("EventData") if isinstance(ev, dict) else None
        gone = self.suppressions.suppressed(det.signatures, data if isinstance(data, dict) else {})
        if not gone:
            return det
        for sig in gone:
            self.suppressed[sig] = self.suppressed.get(sig, 0) + 1
        left = [s for s in det.signatures if s not in gone]
        new = engine.detection_of(left, filtered=det.filtered) if left else None
        if isinstance(ev, dict):
            if new is None:
                ev.pop("Detection", None)
            else:
                ev["Detection"] = new.to_dict(show_attack=engine.show_attack)
        if new is None and det.filtered:
            return rules.Detection(filtered=True)
        return new

    def match(self, event: dict[str, Any]) -> Verdict:
        engine, iocs = self.engine, self.iocs
        det = engine.match(event)
        if det is not None and det.signatures and len(self.suppressions):
            det = self._suppress(engine, event, det)
        filtered = bool(det is not None and det.filtered)
        block: dict[str, Any] | None = None
        if det is not None and det.signatures:
            block = (
                event["Event"].get("Detection") if isinstance(event.get("Event"), dict) else None
            )
            if block is None:
                block = det.to_dict(show_attack=True)
        hits = iocs.match(event) if len(iocs) else []
        if hits:
            extra = ioc_rules(
                hits,
                criticality=self.ioc_criticality,
                actions=self._band_actions(self.ioc_criticality),
            )
            if extra is not None and isinstance(event.get("Event"), dict):
                block = merge_detection(event, extra)
        return Verdict(block, filtered)

    def _band_actions(self, crit: int) -> list[str]:
        for band, (low, high) in {
            "low": (1, 4),
            "medium": (5, 7),
            "high": (8, 9),
            "critical": (10, 10),
        }.items():
            if low <= crit <= high:
                return list(self._default_actions.get(band, []))
        return []

    @property
    def rule_count(self) -> int:
        return int(self.engine.rule_count)

    def rules_text(self) -> str:
        return str(self.engine.rules_text())
