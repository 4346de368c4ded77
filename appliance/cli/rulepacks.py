"""`heron-manager rules`: rule packs (list, enable/disable, versions, rollback, import)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError
from .target import running_manager, with_store

__all__ = ["cmd_rules"]


def _rules_import(args: argparse.Namespace, paths: list[str]) -> int:
    """`rules import DIR|ARCHIVE`: a gene-rules checkout or its archive (format detected)."""
    from ..services.genepack import is_gene_pack, read_gene_pack

    if len(paths) != 1:
        raise ConfigError("rules import takes one directory or archive")
    path = Path(paths[0])
    if not path.exists():
        raise ConfigError("no such file or directory", source=str(path))
    if not is_gene_pack(path):  # a SigmaHQ checkout or release archive
        if path.is_dir() and not any(path.rglob("*.yml")) and not any(path.rglob("*.yaml")):
            raise ConfigError(
                "not a rule pack: no Gene (*.gen) nor Sigma (*.yml) rules", source=str(path)
            )
        return _sigma_import(args, path)
    try:
        pack = read_gene_pack(path, version=args.version or "")
    except ValueError as ex:
        raise ConfigError(str(ex), source=str(path)) from ex
    body = {
        "name": args.name or path.name.split(".")[0],
        "rules": pack["rules"],
        "source": path.name,
        "version": pack["version"],
        "licence": pack["licence"],
    }
    api = running_manager(args)
    if api is not None:
        out = api.call("POST", "/rules/import", body)
    else:
        ctx = with_store(args)
        try:
            out = ctx.content.import_rules_pack(body.pop("name"), body.pop("rules"), **body)
        finally:
            ctx.close()
    print(json.dumps(dict(out, files=pack["files"]), indent=2))
    return 0


def _sigma_import(args: argparse.Namespace, path: Path) -> int:
    """`rules import PATH` of a SigmaHQ checkout or release archive: posted to the running
    manager's /rules/import (it owns the rule store), else stored directly."""
    from ..services.content import sigma_body, sigma_result

    status = None if not args.status else [] if args.status == ["all"] else args.status
    name = args.name or "sigmahq"
    api = running_manager(args)
    try:
        if api is None:
            ctx = with_store(args)
            try:
                result = ctx.content.import_pack(str(path), name=name, status=status)
            finally:
                ctx.close()
        else:
            pack, body = sigma_body(str(path), name=name, status=status)
            if body["rules"]:
                api.call("POST", "/rules/import", body)
            result = sigma_result(pack)
    except ValueError as ex:
        raise ConfigError(str(ex), source=str(path)) from ex
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


def cmd_rules(args: argparse.Namespace) -> int:
    """`rules packs|versions|enable|disable|rollback`: through the running manager's admin API
    when it runs, else on the store (docs/manager.md "Rule packs")."""
    names, pack = list(args.names), args.pack or ""
    if args.action == "import":
        return _rules_import(args, names)
    if args.action in ("enable", "disable") and not (names or pack):
        raise ConfigError("name the rules or give --pack")
    if args.action == "rollback" and len(names) != 1:
        raise ConfigError("rollback takes one version (see `rules versions`)")
    api = running_manager(args)
    if api is not None:
        if args.action in ("packs", "versions"):
            out: Any = api.call("GET", f"/rules/{args.action}")
        elif args.action == "rollback":
            out = api.call("POST", "/rules/rollback", {"version": names[0]})
        else:
            out = api.call(
                "POST",
                "/rules/state",
                {"enabled": args.action == "enable", "names": names, "pack": pack},
            )
    else:
        ctx = with_store(args)
        try:
            if args.action == "packs":
                out = ctx.content.packs()
            elif args.action == "versions":
                out = ctx.content.history.versions()
            elif args.action == "rollback":
                out = {"version": names[0], "rules": ctx.content.rollback(names[0])}
            else:
                out = {
                    "changed": ctx.content.set_enabled(
                        enabled=args.action == "enable", names=names, pack=pack
                    )
                }
            if isinstance(out, dict):
                out["sha256"] = ctx.content.rules_text()[1]
        finally:
            ctx.close()
    print(json.dumps(out, indent=2))
    return 0
