"""Admin API, rules: the Gene rule set (list, add, delete), rule packs, enable/disable, pack
import, and the rule-set versions with rollback."""

from __future__ import annotations

import re
from typing import Any

import falcon

from ..core.errors import InvalidParam, ValidationError
from ..runtime.context import AppContext
from .common import envelope, q_bool, q_str
from .middleware import JsonBody

__all__ = ["RULE_ROUTES"]


def _rule_list(data: Any) -> list[Any]:
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data:
        raise ValidationError("expected a non-empty JSON array of Gene rules")
    return data


class Rules:
    """GET /rules (name regex), POST /rules (compile-checked; update=true to replace),
    DELETE /rules?name= (exact)."""

    QUERY = {"get": {"name": "string"}, "post": {"update": "boolean"}, "delete": {"name": "string"}}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.BODY = {"post": JsonBody(_rule_list, {"type": "array", "items": {"type": "object"}})}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """List rules whose name matches the regex `name`."""
        pattern = q_str(req, "name", "", 256)
        try:
            regex = re.compile(pattern) if pattern else None
        except re.error as ex:
            raise InvalidParam(f"name is not a valid regex: {ex}") from ex
        rules = self.ctx.content.rules()
        envelope(resp, [r for n, r in rules.items() if regex is None or regex.search(n)])

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Add rules (each compiled first); the agents pick them up by hash."""
        names = self.ctx.content.put_rules(req.context.body, update=q_bool(req, "update"))
        envelope(resp, {"saved": names, "sha256": self.ctx.content.rules_text()[1]})

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Delete the rule called `name`."""
        name = q_str(req, "name", "", 256)
        if not name:
            raise InvalidParam("name is required")
        self.ctx.content.delete_rule(name)
        envelope(resp, {"deleted": name})


class RulePacks:
    """GET /rules/packs: every rule pack with source, version, licence and enabled rules."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """List rule packs."""
        envelope(resp, self.ctx.content.packs())


class RuleState:
    """POST /rules/state {enabled, names?, pack?}: enable or disable rules or a whole pack."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.BODY = {
            "post": JsonBody(
                self._body,
                {
                    "type": "object",
                    "required": ["enabled"],
                    "properties": {
                        "enabled": {"type": "boolean"},
                        "pack": {"type": "string"},
                        "names": {"type": "array", "items": {"type": "string"}},
                    },
                },
            )
        }

    @staticmethod
    def _body(data: Any) -> dict[str, Any]:
        if not isinstance(data, dict) or not isinstance(data.get("enabled"), bool):
            raise ValidationError("expected {enabled: true|false, names: [...], pack: NAME}")
        names, pack = data.get("names", []), data.get("pack", "")
        if (
            not isinstance(names, list)
            or not all(isinstance(n, str) for n in names)
            or len(names) > 100_000
        ):
            raise ValidationError("names must be a list of rule names")
        if not isinstance(pack, str) or len(pack) > 256:
            raise ValidationError("pack must be a pack name")
        return {"enabled": data["enabled"], "names": names, "pack": pack}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Set Gene's Meta.Disable; agents pull the changed set by its hash."""
        changed = self.ctx.content.set_enabled(**req.context.body)
        envelope(resp, {"changed": changed, "sha256": self.ctx.content.rules_text()[1]})


_LICENCE_TEXT = 256 * 1024  # characters of a pack's licence text


class RuleImport:
    """POST /rules/import {name, source, version, licence, licence_text, rules}: a third-party
    pack as JSON (`heron-manager rules import DIR|ARCHIVE` reads a gene-rules or SigmaHQ
    checkout and posts it here while the manager runs)."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.BODY = {
            "post": JsonBody(
                self._body,
                {
                    "type": "object",
                    "required": ["name", "rules"],
                    "properties": {
                        "name": {"type": "string"},
                        "source": {"type": "string"},
                        "version": {"type": "string"},
                        "licence": {"type": "string"},
                        "licence_text": {"type": "string"},
                        "rules": {"type": "array", "items": {"type": "object"}},
                    },
                },
            )
        }

    @staticmethod
    def _body(data: Any) -> dict[str, Any]:
        if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
            raise ValidationError("expected {name, source, version, licence, rules: [...]}")
        out: dict[str, Any] = {"rules": data["rules"]}
        for key in ("name", "source", "version", "licence"):
            value = data.get(key, "")
            if not isinstance(value, str) or len(value) > 512:
                raise ValidationError(f"{key} must be a string")
            out[key] = value
        text = data.get("licence_text", "")
        if not isinstance(text, str) or len(text) > _LICENCE_TEXT:
            raise ValidationError(f"licence_text must be a string of at most {_LICENCE_TEXT}")
        out["licence_text"] = text
        return out

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Import a rule pack (every rule compiled first; same names replaced)."""
        body = dict(req.context.body)
        envelope(
            resp, self.ctx.content.import_rules_pack(body.pop("name"), body.pop("rules"), **body)
        )


class RuleVersions:
    """GET /rules/versions: the last rule sets (one per change), newest first."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """List rule-set versions."""
        envelope(resp, self.ctx.content.history.versions())


class RuleRollback:
    """POST /rules/rollback {version}: make an earlier rule set current (a new version)."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.BODY = {
            "post": JsonBody(
                self._body,
                {
                    "type": "object",
                    "required": ["version"],
                    "properties": {"version": {"type": "string"}},
                },
            )
        }

    @staticmethod
    def _body(data: Any) -> str:
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("version"), str)
            or not data["version"].isdigit()
        ):
            raise ValidationError("expected {version: ID} (GET /rules/versions)")
        return str(data["version"])

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Restore a rule-set version."""
        count = self.ctx.content.rollback(req.context.body)
        envelope(
            resp,
            {
                "version": req.context.body,
                "rules": count,
                "sha256": self.ctx.content.rules_text()[1],
            },
        )


RULE_ROUTES: list[tuple[str, Any, str | None]] = [
    ("/rules", Rules, None),
    ("/rules/packs", RulePacks, None),
    ("/rules/state", RuleState, None),
    ("/rules/versions", RuleVersions, None),
    ("/rules/import", RuleImport, None),
    ("/rules/rollback", RuleRollback, None),
]
