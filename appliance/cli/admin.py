"""`heron-manager user|enroll|endpoint|suppression`: fleet administration from the shell.

Each command goes through the running manager's admin API when it runs, else on the store
(`target.py`); suppressions always act on the store.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import ConfigError
from ..store import Role
from .target import running_manager, with_store

if TYPE_CHECKING:
    from ..runtime.localadmin import LocalAdmin

__all__ = ["cmd_endpoint", "cmd_enroll", "cmd_suppression", "cmd_user"]


def _api_user(api: LocalAdmin, name: str) -> dict[str, Any]:
    for user in api.call("GET", "/users"):
        if name in (user.get("uuid"), user.get("identifier")):
            return dict(user)
    raise ConfigError(f"no user {name!r}")


def _user_via_api(api: LocalAdmin, args: argparse.Namespace) -> int:
    if args.action == "add":
        print(
            json.dumps(
                api.call(
                    "POST",
                    "/users",
                    {
                        "identifier": args.name,
                        "role": args.role,
                        "group": args.group,
                        "description": args.description,
                    },
                )
            )
        )
    elif args.action == "list":
        for user in api.call("GET", "/users"):
            print(json.dumps(user))
    elif args.action == "delete":
        print(json.dumps(api.call("DELETE", f"/users/{_api_user(api, args.name)['uuid']}")))
    else:
        uuid = _api_user(api, args.name)["uuid"]
        print(json.dumps(api.call("POST", f"/users/{uuid}?newkey=true", {})))
    return 0


def cmd_user(args: argparse.Namespace) -> int:
    api = running_manager(args)
    if api is not None:
        return _user_via_api(api, args)
    ctx = with_store(args)
    try:
        if args.action == "add":
            user, key = ctx.identity.add_user(
                args.name, Role(args.role), group=args.group, description=args.description
            )
            print(json.dumps(dict(user.to_dict(), key=key)))
        elif args.action == "list":
            for user in ctx.store.users.list():
                print(json.dumps(user.to_dict()))
        elif args.action == "delete":
            user = ctx.store.users.get(args.name)
            ctx.store.users.delete(user.uuid)
            print(json.dumps(user.to_dict()))
        else:
            user, key = ctx.identity.rotate_key(args.name)
            print(json.dumps(dict(user.to_dict(), key=key)))
    finally:
        ctx.close()
    return 0


def _write_bundle(out_dir: Path, doc: dict[str, Any]) -> dict[str, Any]:
    """The bundle files an agent installs (`heron-agent enroll --bundle DIR`)."""
    from ..api.admin_enroll import bundle_files, bundle_meta

    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text, mode in bundle_files(doc):
        fd = os.open(out_dir / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
    return dict(bundle_meta(doc), dir=str(out_dir))


def cmd_enroll(args: argparse.Namespace) -> int:
    api = running_manager(args)
    if api is not None:  # the manager runs: mint through its admin API
        if args.action == "token":
            body: dict[str, Any] = {"group": args.group}
            if args.ttl:
                body["ttl"] = args.ttl
            out = api.call("POST", "/enroll/tokens", body)
            print(json.dumps(out) if args.json else out["token"])
        else:
            doc = api.call(
                "POST", "/enroll/bundle", {"group": args.group, "hostname": args.hostname}
            )
            print(json.dumps(_write_bundle(args.out, doc)))
        return 0
    ctx = with_store(args)
    try:
        if args.action == "token":
            token, expires = ctx.identity.create_token(group=args.group, ttl=args.ttl)
            out = {
                "token": token,
                "expires": expires,
                "group": args.group,
                "endpoint_url": ctx.config.endpoint_url(),
                "ca_sha256": ctx.pki.ca_sha256 if ctx.pki else None,
            }
            print(json.dumps(out) if args.json else token)
        else:
            from ..api.admin_enroll import bundle_document

            doc = bundle_document(ctx, args.group, args.hostname)
            print(json.dumps(_write_bundle(args.out, doc)))
    finally:
        ctx.close()
    return 0


def cmd_endpoint(args: argparse.Namespace) -> int:
    api = running_manager(args)
    if api is not None:
        if args.action == "list":
            for ep in api.call("GET", "/endpoints"):
                print(json.dumps(ep))
        else:
            api.call("POST", f"/endpoints/{args.uuid}/revoke", {})
            print(json.dumps({"uuid": args.uuid, "revoked": True}))
        return 0
    ctx = with_store(args)
    try:
        if args.action == "list":
            for ep in ctx.store.endpoints.list():
                print(json.dumps(ep.to_dict(score=ctx.reducer.bounded(ep.uuid))))
        else:
            print(json.dumps({"uuid": args.uuid, "revoked": ctx.identity.revoke(args.uuid)}))
    finally:
        ctx.close()
    return 0


def cmd_suppression(args: argparse.Namespace) -> int:
    """`heron-manager suppression list|add|delete|noisy`: noise tuning (docs/manager.md)."""

    ctx = with_store(args)
    try:
        tuning = ctx.tuning
        if args.action == "list":
            for item in tuning.all():
                print(json.dumps(item))
        elif args.action == "add":
            print(
                json.dumps(
                    tuning.add(
                        {
                            k: v
                            for k, v in {
                                "rule": args.rule,
                                "image_prefix": args.image_prefix,
                                "parent_prefix": args.parent_prefix,
                                "command_line_regex": args.command_line,
                                "user": args.user,
                                "group": args.group,
                                "comment": args.comment,
                            }.items()
                            if v
                        }
                    )
                )
            )
        elif args.action == "delete":
            tuning.delete(args.rule)
            print(json.dumps({"deleted": args.rule}))
        else:
            for row in tuning.noisiest_rules(days=args.days):
                print(json.dumps(row))
    finally:
        ctx.close()
    return 0
