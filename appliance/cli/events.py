"""`heron-manager search|sql|reindex|import`: stored events and offline evidence."""

from __future__ import annotations

import argparse
import json
import sys
import time

from ..core.errors import ConfigError
from ..runtime.context import AppContext
from ..runtime.datadir import open_context

__all__ = ["cmd_events", "cmd_import"]


def cmd_events(args: argparse.Namespace) -> int:
    from ..services.hunting import Hunting

    ctx = open_context(args.data_dir)
    try:
        hunting = Hunting(ctx.events)
        if args.command == "search":
            page = hunting.search(
                args.query,
                since=None,
                until=None,
                endpoint=args.endpoint,
                detections_only=args.detections,
                limit=args.limit,
                cursor=None,
            )
            for event in page["events"]:
                print(json.dumps(event))
        elif args.command == "sql":
            res = hunting.sql(args.query, timeout=30.0, max_rows=args.limit)
            print(json.dumps(res))
        else:
            started = time.monotonic()
            ctx.events.reindex()  # type: ignore[attr-defined]
            print(json.dumps({"reindexed": True, "seconds": round(time.monotonic() - started, 2)}))
    finally:
        ctx.close()
    return 0


def _import_endpoint(ctx: AppContext, ref: str) -> dict[str, str]:
    """An enrolled endpoint by uuid or hostname, else a stable one named after the host."""
    import uuid as uuidlib

    from ..services.evidence import case_endpoint

    found = ctx.store.endpoints.find(ref)
    if found is None:
        found = next(
            (ep for ep in ctx.store.endpoints.list() if ep.hostname.lower() == ref.lower()), None
        )
    if found is not None:
        return {
            "uuid": found.uuid,
            "hostname": found.hostname,
            "ip": found.ip,
            "group": found.group,
        }
    case = case_endpoint(ref)
    return dict(case, uuid=str(uuidlib.uuid5(uuidlib.UUID(case["uuid"]), "host")), group="import")


def cmd_import(args: argparse.Namespace) -> int:
    from rules.inputs import FORMATS

    from ..services.evidence import case_endpoint, import_files

    if args.input_format not in FORMATS:
        raise ConfigError(
            f"--input-format {args.input_format!r} is not one of {', '.join(FORMATS)}"
        )
    ctx = open_context(args.data_dir)
    try:
        endpoint = case_endpoint(args.case) if args.case else _import_endpoint(ctx, args.endpoint)
        result = import_files(ctx.events, args.files, endpoint, args.input_format)
        flush = getattr(ctx.events, "flush", None)  # searchable before the command returns
        if flush is not None:
            flush()
        print(json.dumps(result.to_dict()))
        warning = result.warning()
        if warning:
            print(f"heron-manager: {warning}", file=sys.stderr)
    finally:
        ctx.close()
    return 0
