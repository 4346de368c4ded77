"""`heron-manager openapi|routes`: describe an API in process, with no socket and no data."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..runtime.context import build_context
from ..store.events import NoEventStore

__all__ = ["cmd_openapi", "cmd_routes"]


def cmd_openapi(args: argparse.Namespace) -> int:
    from ..api.app import Api, create_app

    ctx = build_context(data_dir=Path("."), events=NoEventStore())
    try:
        app = create_app(ctx, Api(args.api))
        from ..api.openapi import build_openapi

        doc = build_openapi(app, title=f"Heron {args.api} API", admin=args.api == "admin")
        print(json.dumps(doc, indent=2))
    finally:
        ctx.close()
    return 0


def cmd_routes(args: argparse.Namespace) -> int:
    from ..api.app import Api, create_app
    from ..api.openapi import iter_routes

    ctx = build_context(data_dir=Path("."), events=NoEventStore())
    try:
        for path, resource, responders in iter_routes(create_app(ctx, Api(args.api))):
            for method, fn in sorted(responders.items()):
                print(f"{method.upper():7} {path:60} {type(resource).__name__}.{fn.__name__}")
    finally:
        ctx.close()
    return 0
