"""Updates pulled from the manager by sha256: rules, IoCs, agent config, Sysmon config.

For each item the agent GETs the hash route; when it differs from what is applied, it GETs the
body, checks it against the hash with the `rules.wire` helper, and hands it to the agent's hook
(`reload_rules`, `set_iocs`, `apply_config`, `apply_sysmon`). A hook that raises rejects the
update: the previous set stays in force, the rejected hash is remembered (not re-fetched until
the manager publishes another one) and the error is logged and kept in `status()`. Applied
bodies are stored under `state_dir` so `restore()` re-applies them after a restart.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rules import wire
from rules.suppress import suppressions_sha256

from .errors import LinkError
from .identity import write_atomic
from .transport import Request, Transport

logger = logging.getLogger(__name__)

Apply = Callable[[Any], object]


@dataclass(frozen=True, slots=True)
class UpdateItem:
    """One distributable item: where its hash and body live and how to check and decode it."""

    name: str
    hash_route: str
    body_route: str
    decode: Callable[[bytes], Any]
    digest: Callable[[Any, bytes], str]
    query: str = ""


def _decode_iocs(body: bytes) -> list[wire.Ioc]:
    items = json.loads(body)
    if not isinstance(items, list):
        raise ValueError("/iocs: expected a JSON list")
    return [wire.Ioc.from_dict(i) for i in items]


def _decode_config(body: bytes) -> dict[str, Any]:
    doc = json.loads(body)
    if not isinstance(doc, dict):
        raise ValueError("/config: expected a JSON object")
    return doc


def _decode_suppressions(body: bytes) -> list[dict[str, Any]]:
    items = json.loads(body)
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ValueError("/suppressions: expected a JSON list of objects")
    return items


def _sysmon_query() -> str:
    return "?os=" + ("windows" if sys.platform == "win32" else "linux")


def _decode_sysmon(body: bytes) -> str:
    """The Sysmon XML: the manager sends `{"OS", "version", "xml", "XmlSha256"}`."""
    text = body.decode("utf-8")
    if text.lstrip().startswith("<"):
        return text
    doc = json.loads(text)
    if not isinstance(doc, dict) or not isinstance(doc.get("xml"), str):
        raise ValueError("/sysmon/config: expected a JSON object with an xml string")
    return str(doc["xml"])


ITEMS: dict[str, UpdateItem] = {
    "rules": UpdateItem(
        "rules",
        wire.ROUTE_RULES_SHA256,
        wire.ROUTE_RULES,
        lambda b: b.decode("utf-8"),
        lambda v, b: wire.rules_sha256(v),
    ),
    "iocs": UpdateItem(
        "iocs",
        wire.ROUTE_IOCS_SHA256,
        wire.ROUTE_IOCS,
        _decode_iocs,
        lambda v, b: wire.iocs_sha256(i.to_dict() for i in v),
    ),
    "suppressions": UpdateItem(
        "suppressions",
        wire.ROUTE_SUPPRESSIONS_SHA256,
        wire.ROUTE_SUPPRESSIONS,
        _decode_suppressions,
        lambda v, b: suppressions_sha256(v),
    ),
    "config": UpdateItem(
        "config",
        wire.ROUTE_CONFIG_SHA256,
        wire.ROUTE_CONFIG,
        _decode_config,
        lambda v, b: wire.config_sha256(v),
    ),
    "sysmon": UpdateItem(
        "sysmon",
        wire.ROUTE_SYSMON_CONFIG_SHA256,
        wire.ROUTE_SYSMON_CONFIG,
        _decode_sysmon,
        lambda v, b: hashlib.sha256(v.encode("utf-8")).hexdigest(),
        query=_sysmon_query(),
    ),
}


@dataclass(frozen=True, slots=True)
class ItemStatus:
    """What is applied for one item, and the last rejection."""

    applied: str = ""
    rejected: str = ""
    error: str = ""


def _parse_hash(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    if text.startswith('"'):
        text = json.loads(text)
    if isinstance(text, str) and len(text) == 64 and all(c in "0123456789abcdef" for c in text):
        return text
    raise ValueError(f"not a sha256: {text[:80]!r}")


class Updater:
    """Polls and applies updates; `check()` runs one round over every item with a hook."""

    def __init__(
        self,
        transport: Transport,
        state_dir: Path,
        hooks: dict[str, Apply | None],
        *,
        offer_config: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.transport = transport
        self.state_dir = Path(state_dir)
        self.hooks: dict[str, Apply] = {
            k: v for k, v in hooks.items() if v is not None and k in ITEMS
        }
        self.offer_config = offer_config
        self._offered = False
        self.folded = True  # the manager answers GET /updates (until it says 404)
        self.remote: dict[str, str | None] = {}  # the last /updates answer (incl. "tools")
        self.poll_after = 0.0  # the manager's advice (X-Heron-Poll-After) on that answer
        self._status: dict[str, ItemStatus] = {}
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for name in self.hooks:
            sha = self._stored_path(name).with_suffix(".sha256")
            self._status[name] = ItemStatus(applied=sha.read_text().strip() if sha.exists() else "")

    def _stored_path(self, name: str) -> Path:
        return self.state_dir / f"{name}.body"

    def status(self) -> dict[str, ItemStatus]:
        return dict(self._status)

    def restore(self) -> list[str]:
        """Re-apply the bodies stored by earlier successful updates; returns the item names."""
        done = []
        for name, hook in self.hooks.items():
            path = self._stored_path(name)
            if not path.exists():
                continue
            body = path.read_bytes()
            try:
                hook(ITEMS[name].decode(body))
                done.append(name)
            except Exception as ex:
                logger.error("stored %s update no longer applies: %s", name, ex, exc_info=True)
                self._status[name] = ItemStatus(error=str(ex))
        return done

    def check(self) -> dict[str, str]:
        """Poll every item once; returns `{name: outcome}` (unchanged/updated/rejected/…).

        one `GET /updates` answers every hash (issue 24); a manager of the previous
        version answers 404/405 and the agent asks each hash route from then on.
        """
        hashes = self._folded_hashes() if self.folded else None
        if hashes is None:
            return {name: self.check_item(name) for name in self.hooks}
        return {name: self.check_item(name, hashes.get(name, "")) for name in self.hooks}

    def _folded_hashes(self) -> dict[str, str | None] | None:
        try:
            resp = self.transport.send(Request("GET", wire.ROUTE_UPDATES + _sysmon_query()))
        except LinkError:
            return None
        if resp.status in (404, 405):
            self.folded = False
            return None
        try:
            self.poll_after = max(0.0, float(resp.headers.get(wire.HEADER_POLL_AFTER.lower(), 0)))
        except ValueError:
            self.poll_after = 0.0
        try:
            doc = json.loads(resp.body) if resp.status == 200 else None
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            return None
        self.remote = {k: v for k, v in doc.items() if isinstance(v, str) or v is None}
        return self.remote

    def check_item(self, name: str, known: str | None = "") -> str:
        """One item; `known`: its hash from /updates (None: none set, "": ask its route)."""
        item = ITEMS[name]
        current = self._status.get(name, ItemStatus())
        try:
            if known == "":
                resp = self.transport.send(Request("GET", item.hash_route + item.query))
                status, body = resp.status, resp.body
            else:
                status, body = (204, b"") if known is None else (200, known.encode())
            if status == 204:
                if name == "config" and self.offer_config is not None and not self._offered:
                    return self._offer()
                return "none"
            if status != 200:
                return f"error: HTTP {status} on {item.hash_route}"
            remote = _parse_hash(body)
            if remote in (current.applied, current.rejected):
                return "unchanged" if remote == current.applied else "rejected-before"
            resp = self.transport.send(Request("GET", item.body_route + item.query))
        except (LinkError, ValueError) as ex:
            return f"error: {ex}"
        if resp.status != 200:
            return f"error: HTTP {resp.status} on {item.body_route}"
        return self._apply(item, remote, resp.body, current)

    def _offer(self) -> str:
        """WHIDS: an agent whose manager holds no config for it POSTs its own, once."""
        assert self.offer_config is not None
        doc = self.offer_config()
        resp = self.transport.send(
            Request(
                "POST",
                wire.ROUTE_CONFIG,
                json.dumps(doc).encode("utf-8"),
                {"Content-Type": wire.CONTENT_JSON},
            )
        )
        self._offered = True
        if resp.status != 200:
            return f"offer refused: HTTP {resp.status}"
        # what we run is what the manager now holds: nothing to apply next round
        self._status["config"] = ItemStatus(applied=wire.config_sha256(doc))
        logger.info("offered our configuration to the manager")
        return "offered"

    def _apply(self, item: UpdateItem, remote: str, body: bytes, current: ItemStatus) -> str:
        try:
            value = item.decode(body)
            digest = item.digest(value, body)
        except (ValueError, TypeError, KeyError) as ex:
            return self._reject(item, remote, current, f"undecodable body: {ex}")
        if digest != remote:
            # the manager may have changed between the two GETs: retry next round.
            logger.warning(
                "%s update: body hashes to %s, manager announced %s; retrying later",
                item.name,
                digest,
                remote,
            )
            return "error: hash mismatch"
        try:
            self.hooks[item.name](value)
        except Exception as ex:  # noqa: BLE001 - a bad update is rejected, the agent goes on
            return self._reject(item, remote, current, f"{type(ex).__name__}: {ex}")
        write_atomic(self._stored_path(item.name), body)
        write_atomic(self._stored_path(item.name).with_suffix(".sha256"), remote.encode())
        self._status[item.name] = ItemStatus(applied=remote)
        logger.info("%s updated to %s", item.name, remote[:12])
        return "updated"

    def _reject(self, item: UpdateItem, remote: str, current: ItemStatus, error: str) -> str:
        logger.warning(
            "%s update %s rejected, keeping %s: %s",
            item.name,
            remote[:12],
            current.applied[:12] or "the previous set",
            error,
        )
        self._status[item.name] = ItemStatus(applied=current.applied, rejected=remote, error=error)
        return "rejected"
