"""`heron-agent enroll`, `heron-agent service` and `heron-agent link` (added by `register`).

Thin layer: parse arguments, call the link functions, print results, turn errors into exit codes.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .attach import link_config_for, state_dir_for
from .enroll import enroll_bundle, enroll_online
from .errors import LinkError
from .identity import IdentityStore, ca_fingerprint
from .segments import inspect


def _state_dir(args: argparse.Namespace) -> Path:
    if getattr(args, "state_dir", None):
        return Path(args.state_dir)
    from dataclasses import replace

    from agent.config import load_config

    config = load_config(args.config)
    if getattr(args, "data_dir", None):
        config = replace(config, general=replace(config.general, data_dir=args.data_dir))
    return state_dir_for(config, link_config_for(config))


def _print(doc: dict[str, Any]) -> None:
    print(json.dumps(doc, indent=1, default=str))


def _cmd_enroll(args: argparse.Namespace) -> int:
    store = IdentityStore(_state_dir(args) / "identity")
    if store.exists() and args.if_needed and not args.force:
        # MSI reinstall/upgrade with MANAGER/ENROLL_TOKEN: keep the identity
        print(f"heron-agent: already enrolled ({store.root}): identity kept")
        return 0
    if store.exists() and not args.force:
        print(
            f"heron-agent: already enrolled ({store.root}); use --force to replace", file=sys.stderr
        )
        return 1
    try:
        if args.bundle:
            ident = enroll_bundle(Path(args.bundle), store, manager=args.manager or "")
        else:
            if not args.manager or not args.token:
                print(
                    "heron-agent: enroll needs --manager HOST:PORT and --token TOKEN "
                    "(or --bundle FILE)",
                    file=sys.stderr,
                )
                return 2
            if not (args.ca or args.ca_sha256 or args.trust_first_use):
                # Security: the first connection is what the token is sent over; without
                # a pinned CA anyone answering on that address gets it and becomes "the manager"
                print(
                    "heron-agent: pin the manager CA with --ca-sha256 SHA256 (ca_sha256 of "
                    "initial-admin.json / init --json) or --ca FILE; --trust-first-use "
                    "accepts whatever CA answers",
                    file=sys.stderr,
                )
                return 2
            ident = enroll_online(
                args.manager,
                args.token,
                store,
                ca_file=Path(args.ca) if args.ca else None,
                ca_sha256=args.ca_sha256 or "",
                hostname=args.hostname,
            )
    except LinkError as ex:
        print(f"heron-agent: enrollment failed: {ex}", file=sys.stderr)
        return 1
    _print(
        {
            "uuid": ident.uuid,
            "manager": ident.manager,
            "group": ident.group,
            "ca_sha256": ca_fingerprint(ident.ca_path.read_text()),
            "certificate_expires": datetime.fromtimestamp(ident.not_after, UTC).isoformat(),
            "identity_dir": str(store.root),
        }
    )
    return 0


def _cmd_service(args: argparse.Namespace) -> int:
    from . import system_service as svc

    try:
        if sys.platform == "win32":  # pragma: no cover - Windows only
            if args.action == "install":
                svc.install_windows(args.config, args.exe)
            elif args.action == "uninstall":
                svc.uninstall_windows()
            else:
                print(svc.SERVICE_NAME)
            return 0
        argv = svc.agent_command(args.config, args.exe)
        if args.action == "unit":
            print(svc.systemd_unit(argv), end="")
        elif args.action == "install":
            unit = svc.install_systemd(
                argv, unit_dir=Path(args.unit_dir), enable=not args.no_enable
            )
            print(f"installed {unit}")
        else:
            removed = svc.uninstall_systemd(unit_dir=Path(args.unit_dir))
            print("removed" if removed else "not installed")
    except (RuntimeError, OSError) as ex:
        print(f"heron-agent: service {args.action} failed: {ex}", file=sys.stderr)
        return 1
    return 0


def _cmd_link_status(args: argparse.Namespace) -> int:
    state = _state_dir(args)
    store = IdentityStore(state / "identity")
    out: dict[str, Any] = {"state_dir": str(state), "enrolled": store.exists()}
    if store.exists():
        ident = store.load()
        out.update(
            uuid=ident.uuid,
            manager=ident.manager,
            certificate_expires=datetime.fromtimestamp(ident.not_after, UTC).isoformat(),
        )
    live = state / "status.json"
    if live.exists():  # written every few seconds by a running agent
        doc = json.loads(live.read_text(encoding="utf-8"))
        out["running_agent"] = {
            k: doc.get(k)
            for k in (
                "state",
                "last_error",
                "sent",
                "queue",
                "commands_executed",
                "updates",
                "threads",
            )
        }
        out["running_agent"]["as_of"] = datetime.fromtimestamp(
            live.stat().st_mtime, UTC
        ).isoformat()
    if (state / "queue").exists():  # read-only: never open a Spool on a live agent's queue
        out["queue"] = inspect(state / "queue")
    _print(out)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `enroll`, `service` and `link` to the `heron-agent` subparsers."""

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("-c", "--config", help="agent config.toml (for data_dir / [link])")
        p.add_argument("--data-dir", help="override general.data_dir")
        p.add_argument("--state-dir", help="link state directory (default <data_dir>/link)")

    en = sub.add_parser("enroll", help="enroll with a manager (token) or a bundle (offline)")
    common(en)
    en.add_argument("--manager", help="HOST:PORT of the manager's endpoint API")
    en.add_argument("--token", help="one-time enrollment token")
    en.add_argument("--bundle", help="offline enrollment bundle (JSON) for air-gapped hosts")
    en.add_argument("--ca", help="manager CA certificate to verify the first connection")
    en.add_argument("--ca-sha256", help="pin the manager CA by its sha256 fingerprint")
    en.add_argument(
        "--trust-first-use",
        action="store_true",
        help="token without --ca/--ca-sha256: accept the CA the manager presents",
    )
    en.add_argument("--hostname", help="hostname to enroll as (default: this host's)")
    en.add_argument("--force", action="store_true", help="replace an existing identity")
    en.add_argument(
        "--if-needed",
        action="store_true",
        help="exit 0 without changes when already enrolled (installers)",
    )
    en.set_defaults(func=_cmd_enroll)

    sv = sub.add_parser("service", help="install or remove the system service")
    sv.add_argument(
        "action",
        choices=["install", "uninstall", "unit"],
        help="register and start, stop and remove, or print the systemd unit",
    )
    sv.add_argument("-c", "--config", help="config.toml the service runs with")
    sv.add_argument("--exe", help="agent executable (default: this one)")
    sv.add_argument("--unit-dir", default="/etc/systemd/system", help="systemd unit directory")
    sv.add_argument("--no-enable", action="store_true", help="install without enabling")
    sv.set_defaults(func=_cmd_service)

    lk = sub.add_parser("link", help="manager link status (identity, queued events)")
    common(lk)
    lk.add_argument("action", choices=["status"], help="identity, queue and running link state")
    lk.set_defaults(func=_cmd_link_status)


__all__ = ["register"]
