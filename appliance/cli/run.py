"""`heron-manager run`: serve both APIs until stopped (foreground, systemd or Windows service)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import logging.handlers
import tempfile
import threading
from pathlib import Path

from rules.service_host import ServiceSpec, run_until_stopped

from ..core.config import Config, load_config
from ..runtime.datadir import data_paths, open_context

__all__ = ["SERVICE", "cmd_run", "run_manager"]

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


def run_manager(args: argparse.Namespace, stop: threading.Event) -> int:
    """Serve both APIs until ``stop`` is set, then shut down cleanly.

    The one "run until stopped" path: the foreground (`run`, SIGTERM/SIGINT set ``stop``) and
    the Windows service (`run --service`, SvcStop sets ``stop``) both call it. Installs no
    signal handlers, so it also runs on the service control manager's thread. Under
    ``--service`` it also logs to ``<data_dir>/logs/heron-manager.log``.
    """
    from ..runtime.jsonlog import configure_logging

    config = load_config(data_paths(args.data_dir)["config"]).with_listen(
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
    from ..console import console_for
    from ..runtime.lifecycle import Manager

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
