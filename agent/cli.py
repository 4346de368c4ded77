"""``heron-agent`` command line: run, report, status, config (enroll/service/link from agent.link).

Only the command-line modules print or exit. The link's commands (``enroll``, ``service``,
``link``) live in ``agent.link.cli`` and add themselves through its ``register(subparsers)``;
neither ``agent.link.cli`` nor ``agent.link.system_service`` imports this module. The link is
part of the agent: a missing dependency of it (``cryptography``) is an error that names the
package, never a quietly smaller program (``main``).
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from agent.config import AgentConfig, dump_toml, load_config
from agent.errors import AgentError, ConfigError
from rules import RuleError, wire
from rules.service_host import run_until_stopped
from rules.settings import help_text

__all__ = ["build_parser", "main", "run_agent"]

logger = logging.getLogger("agent.cli")

# The exit codes of all three programs (docs/interfaces.md, "Command lines").
EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2

SERVICE_LOG_BYTES = 10 * 1024 * 1024
SERVICE_LOG_BACKUPS = 5


def _load(args: argparse.Namespace) -> AgentConfig:
    config = load_config(args.config)
    gen = config.general
    if getattr(args, "data_dir", None):
        gen = replace(gen, data_dir=args.data_dir)
    config = replace(config, general=gen)
    if getattr(args, "rules", None):
        config = replace(config, rules=replace(config.rules, paths=list(args.rules)))
    if getattr(args, "replay", None):
        rc = replace(
            config.sources.replay,
            paths=list(args.replay),
            speed=args.speed,
            rate=args.rate,
            loop=args.loop,
        )
        config = replace(config, sources=replace(config.sources, enabled=["replay"], replay=rc))
    return config


def run_agent(args: argparse.Namespace, stop: threading.Event) -> int:
    """Run the agent until ``stop`` is set (or a non-looping replay is done).

    The one "run until stopped" path: the foreground (`run`, SIGTERM/SIGINT set ``stop``) and
    the Windows service (`run --service`, SvcStop sets ``stop``) both call it. Installs no
    signal handlers, so it also runs on the service control manager's thread. ``stop`` is set
    when it returns. Under ``--service`` it also logs to ``<data_dir>/logs/heron-agent.log``.
    """
    config = _load(args)
    log_file = _service_log(config.data_dir) if getattr(args, "service", False) else None
    try:
        return _run_agent(args, config, stop)
    finally:
        if log_file is not None:
            logging.getLogger().removeHandler(log_file)
            log_file.close()


def _service_log(data_dir: Path) -> logging.Handler:
    """Also log to ``<data_dir>/logs/heron-agent.log`` (rotating) under ``run --service``.

    A Windows service has no stderr to read; the file keeps the log (10 MiB x 5 files).
    """
    path = data_dir / "logs" / "heron-agent.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=SERVICE_LOG_BYTES, backupCount=SERVICE_LOG_BACKUPS, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logger.info("service mode: logging to %s", path)
    return handler


def _run_agent(args: argparse.Namespace, config: AgentConfig, stop: threading.Event) -> int:
    from agent.link.attach import attach
    from agent.service import build_agent

    agent = build_agent(config)
    if not args.standalone:
        attach(agent, config)

    def stop_agent() -> None:
        stop.wait()
        agent.stop()

    threading.Thread(target=stop_agent, name="agent-stop", daemon=True).start()
    try:
        agent.run(until_sources_done=bool(args.replay) and not args.loop)
    finally:
        stop.set()
    status = agent.status()
    if args.replay:
        print(
            json.dumps(
                {k: status[k] for k in ("processed", "detections", "forwarded", "sources")},
                indent=1,
            )
        )
    return 0


def _cmd_run(args: argparse.Namespace, platform: str | None = None) -> int:
    """Foreground until SIGTERM/SIGINT; `--service` on Windows: hosted by the SCM.

    `--service` on Linux is a foreground run too: systemd collects stderr in the journal.
    """
    from agent.link.system_service import SERVICE

    return run_until_stopped(
        lambda stop: run_agent(args, stop), SERVICE, service=args.service, platform=platform
    )


def _cmd_report(args: argparse.Namespace) -> int:
    from agent.actions.report import build_report
    from agent.host import make_host
    from agent.tracking.seed import seed_from_proc
    from agent.tracking.tracker import Tracker

    config = _load(args)
    host = make_host(hostname=config.general.hostname)
    tracker = Tracker(max_tracks=config.tracking.max_tracks)
    seed_from_proc(tracker, host)
    report = build_report(tracker, host=host, reporting=config.reporting, commands=not args.brief)
    text = json.dumps(report, indent=1, default=str)
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return 0


def _rate(value: int, seconds: float) -> str:
    return f"{value / seconds:.1f}/s" if seconds > 0 else "-"


def _cmd_status(args: argparse.Namespace) -> int:
    config = _load(args)
    path = config.data_dir / "status.json"
    try:
        status: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        print(f"no status at {path}: is the agent running?", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(status, indent=1))
        return 0
    uptime = max(0.0, status.get("time", time.time()) - status.get("started", time.time()))
    age = time.time() - status.get("time", 0)
    print(f"state: {status['state']}  (status written {age:.0f}s ago, uptime {uptime:.0f}s)")
    print(
        f"host: {status['hostname']}  rules: {status['rules']}  iocs: {status['iocs']}  "
        f"tracks: {status['tracks']}"
    )
    print(
        f"queue: {status['queue']['size']}/{status['queue']['max']}  "
        f"actions queue: {status['actions']['queue']} dropped: {status['actions']['dropped']}"
    )
    print(
        f"processed: {status['processed']} ({_rate(status['processed'], uptime)})  "
        f"detections: {status['detections']}  forwarded: {status['forwarded']}"
    )
    print(
        f"cpu: {status['cpu_percent']:.1f}%  rss: {status['rss'] >> 20} MB  "
        f"throttled: {status['throttled']}"
    )
    sensor = status.get("sensor")
    if sensor:  # Linux: eBPF, or the /proc fallback and why
        losses = ", ".join(f"{k} {v}" for k, v in sensor.get("losses", {}).items()) or "none"
        print(
            f"sensor: {sensor.get('mode')}"
            + (
                f"  (fallback: {sensor['reason']})"
                if sensor.get("reason")
                else f"  kernel losses: {losses}"
            )
        )
    print(
        f"{'source':<12} {'events':>10} {'now':>10} {'average':>10} {'drops':>8} "
        f"{'lost':>6} {'shed':>6} {'degraded':>8} {'errors':>6} running"
    )
    for name, s in status["sources"].items():
        now = f"{s['rate']:.1f}/s" if s.get("rate") is not None else "-"
        print(
            f"{name:<12} {s['events']:>10} {now:>10} {_rate(s['events'], uptime):>10} "
            f"{s['drops']:>8} {s.get('lost', 0):>6} {s.get('shed', 0):>6} "
            f"{s.get('degraded', 0):>8} {s['errors']:>6} {s['running']}  {s['error']}"
        )
    acts = status["actions"]
    if acts.get("dropped_actions") or acts.get("skipped"):
        print(
            f"actions dropped: {acts.get('dropped_actions', {})}  "
            f"skipped: {acts.get('skipped', {})}"
        )
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    if args.init:
        return _init_config(Path(args.init), args.data_dir)
    config = load_config(args.config) if args.config else AgentConfig()
    if args.dump:
        print(dump_toml(config), end="")
        return 0
    print("nothing to do: use --dump or --init", file=sys.stderr)
    return 2


def _init_config(path: Path, data_dir: str | None) -> int:
    """Write the default configuration to ``path`` unless it exists (installers; edits kept)."""
    if path.exists():
        load_config(path)  # still refuse to start a service on a broken file
        print(f"{path} exists: kept")
        return 0
    config = AgentConfig()
    if data_dir:
        config = replace(config, general=replace(config.general, data_dir=data_dir))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dump_toml(config), encoding="utf-8")
    tmp.replace(path)
    print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="heron-agent", description="Heron EDR endpoint agent")
    parser.add_argument("--version", action="version", version=f"%(prog)s {wire.HERON_VERSION}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("-c", "--config", help="config.toml (default: built-in defaults)")
        p.add_argument("--data-dir", help=help_text(AgentConfig, "general.data_dir"))

    run = sub.add_parser("run", help="run the agent in the foreground")
    common(run)
    run.add_argument("--standalone", action="store_true", help="no manager link")
    run.add_argument("--rules", nargs="+", help=help_text(AgentConfig, "rules.paths"))
    run.add_argument("--replay", nargs="+", help="replay EVTX/JSONL files instead of live sources")
    run.add_argument("--speed", type=float, default=0.0, help="replay speed (1 = recorded)")
    run.add_argument("--rate", type=float, default=0.0, help="replay at a fixed events/s")
    run.add_argument("--loop", action="store_true", help="replay forever")
    run.add_argument(
        "--service",
        action="store_true",
        help="started by a service manager: also log to "
        "<data_dir>/logs/heron-agent.log (rotating); on Windows, host the "
        "service for the SCM; elsewhere a foreground run (systemd)",
    )
    run.set_defaults(func=_cmd_run)

    rep = sub.add_parser("report", help="print an IR report of this endpoint")
    common(rep)
    rep.add_argument("--brief", action="store_true", help="do not run report commands")
    rep.add_argument("-o", "--output", help="write to this file instead of stdout")
    rep.set_defaults(func=_cmd_report)

    st = sub.add_parser("status", help="per-source events/s, drops, queue sizes")
    common(st)
    st.add_argument("--json", action="store_true", help="raw status.json")
    st.set_defaults(func=_cmd_status)

    cfg = sub.add_parser("config", help="configuration helpers")
    cfg.add_argument("-c", "--config", help="config.toml to load and print")
    cfg.add_argument("--dump", action="store_true", help="print the configuration as TOML")
    cfg.add_argument(
        "--init", metavar="PATH", help="write the defaults to PATH unless it exists (installers)"
    )
    cfg.add_argument("--data-dir", help="general.data_dir written by --init")
    cfg.set_defaults(func=_cmd_config)

    from agent.link.cli import register

    register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
    except ModuleNotFoundError as ex:  # a broken install: say which package, change nothing
        print(
            f"heron-agent: missing dependency {ex.name!r} ({ex}); "
            "reinstall heron-agent with its dependencies",
            file=sys.stderr,
        )
        return EXIT_RUNTIME
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args))
    except (ConfigError, RuleError) as ex:  # bad configuration or rules: the caller's to fix
        print(f"heron-agent: {ex}", file=sys.stderr)
        return EXIT_USAGE
    except AgentError as ex:
        print(f"heron-agent: {ex}", file=sys.stderr)
        return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())
