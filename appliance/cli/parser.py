"""The `heron-manager` argument parser: every subcommand, its options and its handler."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rules import wire
from rules.settings import help_text

from ..core.config import Config
from ..security.hostnames import HOST_NAMES
from ..store import Role
from .admin import cmd_endpoint, cmd_enroll, cmd_suppression, cmd_user
from .apis import cmd_openapi, cmd_routes
from .events import cmd_events, cmd_import
from .init import cmd_cluster, cmd_init
from .rulepacks import cmd_rules
from .run import cmd_run

__all__ = ["build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="heron-manager", description="Heron EDR manager")
    parser.add_argument("--version", action="version", version=f"%(prog)s {wire.HERON_VERSION}")
    sub = parser.add_subparsers(dest="command", required=True)

    def data(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--data-dir",
            type=Path,
            default=Path(os.environ.get("HERON_DATA", ".heron")),
            help="data directory (default $HERON_DATA or ./.heron)",
        )
        return p

    p = data(sub.add_parser("init", help="create data dir, config, CA, server cert, admin user"))
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("--admin-listen", help=help_text(Config, "admin.listen"))
    p.add_argument("--endpoint-listen", help=help_text(Config, "endpoint.listen"))
    p.add_argument("--server-name", action="append", help="SAN of the server cert (repeat)")
    p.add_argument(
        "--host-names",
        dest="server_name",
        action="append_const",
        const=HOST_NAMES,
        help="add this host's FQDN, short name and addresses to the SANs (at this position)",
    )
    p.add_argument(
        "--key-file",
        type=Path,
        help="write the summary with the admin API key to this new file (mode 0600) "
        "instead of printing the key",
    )
    p.add_argument(
        "--if-needed",
        action="store_true",
        help="exit 0 without changes when the data directory is already initialized",
    )
    p.add_argument("--admin-user", default="admin", help="name of the first admin user")
    p.set_defaults(fn=cmd_init)

    p = data(sub.add_parser("run", help="serve the admin and endpoint APIs"))
    p.add_argument("--admin-listen", help=help_text(Config, "admin.listen"))
    p.add_argument("--endpoint-listen", help=help_text(Config, "endpoint.listen"))
    p.add_argument(
        "--memory-events",
        action="store_true",
        help="development: events in a temporary directory, deleted at exit (not durable)",
    )
    p.add_argument(
        "--service",
        action="store_true",
        help="started by a service manager: also log to <data_dir>/logs/heron-manager.log "
        "(rotating); on Windows, host the service for the SCM; elsewhere a foreground run "
        "(systemd)",
    )
    p.set_defaults(fn=cmd_run)

    p = data(sub.add_parser("user", help="admin API users"))
    p.add_argument(
        "action", choices=["add", "list", "delete", "rotate-key"], help="what to do with users"
    )
    p.add_argument("name", nargs="?", default="", help="identifier or uuid")
    # least privilege by default, as POST /users: an admin is asked for explicitly
    p.add_argument(
        "--role",
        default=Role.ANALYST.value,
        choices=[r.value for r in Role],
        help="user add: the new user's role (default analyst: least privilege, as POST /users "
        "without role)",
    )
    p.add_argument("--group", default="", help="add: group recorded with the user")
    p.add_argument("--description", default="", help="add: free text")
    p.set_defaults(fn=cmd_user)

    p = data(sub.add_parser("enroll", help="enrollment tokens and offline bundles"))
    p.add_argument(
        "action",
        choices=["token", "bundle"],
        help="a one-time enrollment token, or an offline bundle (certificate and key)",
    )
    p.add_argument("--group", default="", help="host group of the enrolled endpoint")
    p.add_argument("--ttl", type=float, default=None, help="token lifetime, seconds")
    p.add_argument("--hostname", default="", help="bundle: expected hostname")
    p.add_argument("--out", type=Path, default=Path("heron-bundle"), help="bundle: output dir")
    p.add_argument(
        "--json",
        action="store_true",
        help="token: print JSON (token, expiry, endpoint URL, CA sha256)",
    )
    p.set_defaults(fn=cmd_enroll)

    p = data(sub.add_parser("endpoint", help="list or revoke endpoints"))
    p.add_argument("action", choices=["list", "revoke"], help="list endpoints or revoke one")
    p.add_argument("uuid", nargs="?", default="", help="revoke: the endpoint's uuid")
    p.set_defaults(fn=cmd_endpoint)

    p = data(sub.add_parser("suppression", help="per-rule suppressions and the noisiest rules"))
    p.add_argument(
        "action",
        choices=["list", "add", "delete", "noisy"],
        help="list, add or delete suppressions, or show the noisiest rules",
    )
    p.add_argument(
        "rule",
        nargs="?",
        default="",
        help="add: rule name (* = every rule); delete: suppression id",
    )
    p.add_argument("--image-prefix", default="", help="add: Image starts with this")
    p.add_argument("--parent-prefix", default="", help="add: ParentImage starts with this")
    p.add_argument("--command-line", default="", help="regex searched in CommandLine")
    p.add_argument("--user", default="", help="add: User equals this (case-insensitive)")
    p.add_argument("--group", default="", help="only endpoints of this host group")
    p.add_argument("--comment", default="", help="add: why (shown in the list)")
    p.add_argument("--days", type=float, default=1.0, help="noisy: window in days")
    p.set_defaults(fn=cmd_suppression)

    p = data(sub.add_parser("rules", help="rule packs: list, enable/disable, versions, rollback"))
    p.add_argument(
        "action",
        choices=["packs", "versions", "enable", "disable", "rollback", "import"],
        help="list packs or versions, enable/disable rules, roll back, import a pack",
    )
    p.add_argument(
        "names",
        nargs="*",
        help="rule names (enable/disable), the version "
        "(rollback) or a gene-rules checkout/archive (import)",
    )
    p.add_argument("--pack", default="", help="enable/disable: every rule of this pack")
    p.add_argument("--name", default="", help="import: pack name (default: the path's name)")
    p.add_argument(
        "--version", default="", help="import: pack version when the checkout has no .git"
    )
    p.add_argument(
        "--status",
        action="append",
        help="import of Sigma rules: statuses to import (repeat; default stable and test; 'all')",
    )
    p.add_argument("--json", action="store_true", help="import of Sigma rules: one-line JSON")
    p.set_defaults(fn=cmd_rules)

    for name in ("openapi", "routes"):
        p = sub.add_parser(name, help=f"print the {name} of an API")
        p.add_argument(
            "--api", choices=["admin", "endpoint"], default="admin", help="which API (admin)"
        )
        p.set_defaults(fn=cmd_openapi if name == "openapi" else cmd_routes)

    p = data(sub.add_parser("search", help="search stored events"))
    p.add_argument("query", nargs="?", default="", help="search query (default: every event)")
    p.add_argument("--endpoint", default=None, help="only events of this endpoint uuid")
    p.add_argument("--detections", action="store_true", help="only events with a detection")
    p.add_argument("--limit", type=int, default=100, help="at most this many events (100)")
    p.set_defaults(fn=cmd_events)
    p = data(sub.add_parser("sql", help="read-only SQL over stored events"))
    p.add_argument("query", help="one SELECT over the `events` table")
    p.add_argument("--limit", type=int, default=10_000, help="at most this many rows (10000)")
    p.set_defaults(fn=cmd_events)
    p = data(sub.add_parser("reindex", help="rebuild the search index from the journal"))
    p.set_defaults(fn=cmd_events)
    p = data(
        sub.add_parser(
            "import", help="store offline evidence (event exports) for search and retro-hunt"
        )
    )
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument(
        "--endpoint",
        help="enrolled endpoint uuid or hostname, or the name of a host that never ran an agent",
    )
    who.add_argument("--case", help="case name the evidence belongs to")
    # rules.inputs is imported by the command only (start-up time of `run`)
    p.add_argument(
        "--input-format",
        default="auto",
        metavar="FORMAT",
        help="read every file as this format, one of `heron scan --input-format` "
        "(default: auto, detected per file)",
    )
    p.add_argument(
        "files",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="EVTX, JSON, XML, CSV, audit.log, syslog; .gz/.zip/.tar archives",
    )
    p.set_defaults(fn=cmd_import)
    p = data(sub.add_parser("cluster", help="cluster mode: create schemas, check dependencies"))
    p.add_argument(
        "action", choices=["init", "status"], help="create the schemas, or check each dependency"
    )
    p.add_argument("--admin-user", default="admin", help="first admin user (cluster init)")
    p.set_defaults(fn=cmd_cluster)
    return parser
