"""`heron-manager`: the manager's command line (a thin layer over the services).

Only this module prints, exits, or configures logging. Commands that open the fleet database
cannot run while `heron-manager run` holds it (DuckDB allows one process); use the admin API then.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import logging.handlers
import os
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from index.writer_protocol import FROZEN_ARG
from rules import wire
from rules.service_host import ServiceSpec, run_until_stopped
from rules.settings import help_text

from .core.config import Config, load_config, render_toml
from .core.errors import ApplianceError, ConfigError, StoreError
from .runtime.context import AppContext, build_context
from .security.hostnames import HOST_NAMES
from .security.pki import Pki
from .store import Role, Store
from .store.events import EventSink, NoEventStore

if TYPE_CHECKING:
    from .runtime.localadmin import LocalAdmin

__all__ = ["main", "open_context", "run_manager"]

logger = logging.getLogger(__name__)

# What the MSI registers and `run --service` hosts on Windows (rules.service_host).
SERVICE = ServiceSpec(
    "heron-manager",
    "Heron EDR manager",
    "Heron EDR manager: endpoint and admin APIs",
    "HeronManagerService",
)

SERVICE_LOG_BYTES = 10 * 1024 * 1024
SERVICE_LOG_BACKUPS = 5


def _paths(data_dir: Path) -> dict[str, Path]:
    return {
        "config": data_dir / "config.toml",
        "pki": data_dir / "pki",
        "db": data_dir / "db" / "heron.duckdb",
        "events": data_dir / "events",
        "artifacts": data_dir / "artifacts",
    }


def open_context(
    data_dir: Path,
    *,
    config: Config | None = None,
    events_dir: Path | None = None,
    with_events: bool = True,
) -> AppContext:
    """Open an initialized data directory (fleet store, PKI, event store).

    ``events_dir`` puts the event store elsewhere than ``<data>/events`` (``run --memory-events``);
    ``with_events=False`` opens no event store (commands that only touch the fleet store).
    """
    paths = _paths(data_dir)
    config = config or load_config(paths["config"])
    if config.cluster.mode == "cluster":
        return _open_cluster_context(data_dir, config, with_events=with_events)
    if not paths["db"].exists() or not (paths["pki"] / "ca.pem").exists():
        raise ConfigError(
            "data directory is not initialized (run heron-manager init)", source=str(data_dir)
        )
    try:
        store = Store(paths["db"])
    except StoreError as ex:
        if "lock" in str(ex).lower():
            raise StoreError(
                "the fleet database is open in another process (is `heron-manager run` using "
                "this data directory? use the admin API while it runs)",
                where=str(paths["db"]),
            ) from ex
        raise
    events: EventSink = NoEventStore()
    try:
        if with_events:
            from index import EventStore

            # Tantivy is written from a child process (a second core for ingest);
            # the throwaway store of --memory-events keeps it in-process
            events = EventStore(
                events_dir or paths["events"],
                index_process=events_dir is None,
                **config.store_options(),
            )
        return build_context(
            data_dir=data_dir, config=config, store=store, events=events, pki=Pki(paths["pki"])
        )
    except BaseException:
        store.close()
        raise


def _open_cluster_context(data_dir: Path, config: Config, *, with_events: bool) -> AppContext:
    """A cluster front-end: fleet in PostgreSQL, events journaled here and read from ClickHouse."""
    from .misp.service import LEADER_JOBS
    from .runtime.cluster import open_cluster, start_relay
    from .runtime.leader import PgLeadership

    paths = _paths(data_dir)
    if not (paths["pki"] / "ca.pem").exists():
        raise ConfigError(
            "no PKI in the data directory (copy pki/ from the first front-end)",
            source=str(data_dir),
        )
    if not with_events:
        from .store.postgres import ClusterStore

        store = ClusterStore(config.cluster.postgres, create=False)
        try:
            return build_context(
                data_dir=data_dir,
                config=config,
                store=store,
                events=NoEventStore(),
                pki=Pki(paths["pki"]),
            )
        except BaseException:
            store.close()
            raise
    fleet, events = open_cluster(config.cluster, paths["events"])
    try:
        ctx = build_context(
            data_dir=data_dir, config=config, store=fleet, events=events, pki=Pki(paths["pki"])
        )
        start_relay(events, config.cluster, ctx.hub)
        ctx.leadership = PgLeadership(config.cluster.postgres, LEADER_JOBS)  # lifecycle starts it
        return ctx
    except BaseException:
        events.close()
        fleet.close()
        raise


def cmd_cluster(args: argparse.Namespace) -> int:
    """`cluster init`: schemas (+ the first admin user); `cluster status`: each dependency."""
    from .runtime.cluster import cluster_status, init_cluster

    config = load_config(_paths(args.data_dir)["config"])
    if config.cluster.mode != "cluster":
        raise ConfigError(
            'set [cluster] mode = "cluster" in config.toml first',
            source=str(_paths(args.data_dir)["config"]),
        )
    if args.action == "status":
        out = cluster_status(config.cluster)
        print(json.dumps(out))
        return 0 if out["ok"] else 1
    out = init_cluster(config.cluster)
    ctx = _open_cluster_context(args.data_dir, config, with_events=False)
    try:
        if ctx.store.users.count() == 0:
            _, key = ctx.identity.add_user(
                args.admin_user, Role.ADMIN, description="created by heron-manager cluster init"
            )
            out["api_key"] = key
    finally:
        ctx.close()
    print(json.dumps(out))
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir
    paths = _paths(data_dir)
    db, ca = paths["db"].exists(), (paths["pki"] / "ca.pem").exists()
    if db and ca and args.if_needed:  # MSI reinstall over the kept data dir
        print(f"{data_dir} is already initialized: kept as it is")
        return 0
    if db or ca:
        raise ConfigError("already initialized", source=str(data_dir))
    key_file: Path | None = args.key_file
    if key_file is not None and key_file.exists():
        raise ConfigError("the key file exists already", source=str(key_file))
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    config = load_config(paths["config"]).with_listen(
        admin=args.admin_listen, endpoint=args.endpoint_listen
    )
    if args.server_name:
        from dataclasses import replace

        from .security.hostnames import expand_server_names

        names = tuple(expand_server_names(args.server_name))
        config = replace(config, tls=replace(config.tls, server_names=names))
    if not paths["config"].exists():
        paths["config"].write_text(render_toml(config), encoding="utf-8")
    pki = Pki.create(
        paths["pki"], server_names=config.tls.server_names, server_days=config.tls.server_cert_days
    )
    paths["db"].parent.mkdir(parents=True, exist_ok=True)
    for name in ("artifacts", "events"):
        paths[name].mkdir(exist_ok=True)
    with Store(paths["db"]) as store:
        ctx = build_context(
            data_dir=data_dir, config=config, store=store, events=NoEventStore(), pki=pki
        )
        user, key = ctx.identity.add_user(
            args.admin_user, Role.ADMIN, description="created by heron-manager init"
        )
    out = {
        "admin_url": config.admin_url(),
        "endpoint_url": config.endpoint_url(),
        "api_key": key,
        "ca_cert": str(pki.ca_path.resolve()),
        "ca_sha256": pki.ca_sha256,
    }
    if key_file is not None:
        _write_private(key_file, json.dumps(out, indent=1) + "\n")
        out = {k: v for k, v in out.items() if k != "api_key"} | {"api_key_file": str(key_file)}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"initialized {data_dir}")
        for k, v in out.items():
            print(f"  {k}: {v}")
        if key_file is None:
            print("keep the api_key: it is shown only once")
    return 0


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` for its owner only (0600; on Windows the ACL comes from the directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def run_manager(args: argparse.Namespace, stop: threading.Event) -> int:
    """Serve both APIs until ``stop`` is set, then shut down cleanly.

    The one "run until stopped" path: the foreground (`run`, SIGTERM/SIGINT set ``stop``) and
    the Windows service (`run --service`, SvcStop sets ``stop``) both call it. Installs no
    signal handlers, so it also runs on the service control manager's thread. Under
    ``--service`` it also logs to ``<data_dir>/logs/heron-manager.log``.
    """
    from .runtime.jsonlog import configure_logging

    config = load_config(_paths(args.data_dir)["config"]).with_listen(
        admin=args.admin_listen, endpoint=args.endpoint_listen
    )
    configure_logging(config.logging.level, json_lines=config.logging.json)
    log_file = _service_log(args.data_dir) if getattr(args, "service", False) else None
    try:
        return _serve(args, config, stop)
    finally:
        if log_file is not None:
            logging.getLogger().removeHandler(log_file)
            log_file.close()


def _service_log(data_dir: Path) -> logging.Handler:
    """Also log to ``<data_dir>/logs/heron-manager.log`` (rotating) under ``run --service``.

    A Windows service has no stderr to read; the file keeps the log (10 MiB x 5 files) in the
    same format as stderr (structured JSON lines unless ``[logging] json = false``).
    """
    path = data_dir / "logs" / "heron-manager.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=SERVICE_LOG_BYTES, backupCount=SERVICE_LOG_BACKUPS, encoding="utf-8"
    )
    root = logging.getLogger()
    if root.handlers:
        handler.setFormatter(root.handlers[0].formatter or logging.Formatter())
    root.addHandler(handler)
    logger.info("service mode: logging to %s", path)
    return handler


def _serve(args: argparse.Namespace, config: Config, stop: threading.Event) -> int:
    from .console import console_for
    from .runtime.lifecycle import Manager

    with contextlib.ExitStack() as scratch:
        events_dir = None
        if args.memory_events:  # a throwaway event store, deleted at exit
            events_dir = Path(scratch.enter_context(tempfile.TemporaryDirectory(prefix="heron-")))
        ctx = open_context(args.data_dir, config=config, events_dir=events_dir)
        ctx.content.seed_defaults()
        if args.memory_events:
            logger.warning(
                "events are kept in a temporary directory (--memory-events): NOT durable"
            )
        ctx.extensions.add(console_for(ctx))  # sessions, CSRF, user refresh, detection overview
        manager = Manager(ctx, Path(args.data_dir))
        try:
            bound = manager.start()
            print(
                json.dumps(
                    {
                        "admin": f"https://{bound.admin[0]}:{bound.admin[1]}",
                        "endpoint": f"https://{bound.endpoint[0]}:{bound.endpoint[1]}",
                    }
                ),
                flush=True,
            )
            stop.wait()
        finally:
            manager.stop()
    return 0


def cmd_run(args: argparse.Namespace, platform: str | None = None) -> int:
    """Foreground until SIGTERM/SIGINT; `--service` on Windows: hosted by the SCM.

    `--service` on Linux is a foreground run too: systemd collects stderr (JSON log lines) in
    the journal; nothing needs a TTY.
    """
    return run_until_stopped(
        lambda stop: run_manager(args, stop), SERVICE, service=args.service, platform=platform
    )


def _with_store(args: argparse.Namespace) -> AppContext:
    return open_context(args.data_dir, with_events=False)


def _running(args: argparse.Namespace) -> LocalAdmin | None:
    """The running manager's admin API (appliance/runtime/localadmin.py), or None."""
    from .runtime.localadmin import local_admin

    return local_admin(Path(args.data_dir))


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
    api = _running(args)
    if api is not None:
        return _user_via_api(api, args)
    ctx = _with_store(args)
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
    from .api.admin_enroll import bundle_files, bundle_meta

    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text, mode in bundle_files(doc):
        fd = os.open(out_dir / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
    return dict(bundle_meta(doc), dir=str(out_dir))


def cmd_enroll(args: argparse.Namespace) -> int:
    api = _running(args)
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
    ctx = _with_store(args)
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
            from .api.admin_enroll import bundle_document

            doc = bundle_document(ctx, args.group, args.hostname)
            print(json.dumps(_write_bundle(args.out, doc)))
    finally:
        ctx.close()
    return 0


def cmd_endpoint(args: argparse.Namespace) -> int:
    api = _running(args)
    if api is not None:
        if args.action == "list":
            for ep in api.call("GET", "/endpoints"):
                print(json.dumps(ep))
        else:
            api.call("POST", f"/endpoints/{args.uuid}/revoke", {})
            print(json.dumps({"uuid": args.uuid, "revoked": True}))
        return 0
    ctx = _with_store(args)
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

    ctx = _with_store(args)
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


def _rules_import(args: argparse.Namespace, paths: list[str]) -> int:
    """`rules import DIR|ARCHIVE`: a gene-rules checkout or its archive (format detected)."""
    from .services.genepack import is_gene_pack, read_gene_pack

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
    api = _running(args)
    if api is not None:
        out = api.call("POST", "/rules/import", body)
    else:
        ctx = _with_store(args)
        try:
            out = ctx.content.import_rules_pack(body.pop("name"), body.pop("rules"), **body)
        finally:
            ctx.close()
    print(json.dumps(dict(out, files=pack["files"]), indent=2))
    return 0


def _sigma_import(args: argparse.Namespace, path: Path) -> int:
    """`rules import PATH` of a SigmaHQ checkout or release archive into the rule store."""
    ctx = _with_store(args)
    try:
        status = None if not args.status else [] if args.status == ["all"] else args.status
        result = ctx.content.import_pack(str(path), name=args.name or "sigmahq", status=status)
    except ValueError as ex:
        raise ConfigError(str(ex), source=str(path)) from ex
    finally:
        ctx.close()
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
    api = _running(args)
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
        ctx = _with_store(args)
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


def cmd_openapi(args: argparse.Namespace) -> int:
    from .api.app import Api, create_app

    ctx = build_context(data_dir=Path("."), events=NoEventStore())
    try:
        app = create_app(ctx, Api(args.api))
        from .api.openapi import build_openapi

        doc = build_openapi(app, title=f"Heron {args.api} API", admin=args.api == "admin")
        print(json.dumps(doc, indent=2))
    finally:
        ctx.close()
    return 0


def cmd_routes(args: argparse.Namespace) -> int:
    from .api.app import Api, create_app
    from .api.openapi import iter_routes

    ctx = build_context(data_dir=Path("."), events=NoEventStore())
    try:
        for path, resource, responders in iter_routes(create_app(ctx, Api(args.api))):
            for method, fn in sorted(responders.items()):
                print(f"{method.upper():7} {path:60} {type(resource).__name__}.{fn.__name__}")
    finally:
        ctx.close()
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    from .services.hunting import Hunting

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

    from .services.evidence import case_endpoint

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

    from .services.evidence import case_endpoint, import_files

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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [FROZEN_ARG]:  # a frozen manager's index writer child
        from index.writer_child import main as index_writer_main

        return index_writer_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command not in ("run",):
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        return int(args.fn(args))
    except ConfigError as ex:
        print(f"heron-manager: {ex}", file=sys.stderr)
        return 2
    except ApplianceError as ex:
        print(f"heron-manager: {ex}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `heron-manager routes | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
