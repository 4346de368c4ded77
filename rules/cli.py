"""`heron`: the offline scanner and rule tools (`heron scan`, `heron rules ...`).

A thin translation layer: parses arguments, calls `rules.scan` / `rules.loader` /
`rules.validate`, prints, and turns domain errors into exit codes (0 ok, 1 test failures or
verify issues, 2 usage or rule errors).
"""

from __future__ import annotations

import argparse
import gc
import logging
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any, TextIO

import orjson

from . import inputs, triage, wire
from . import scan as scanmod
from .engine import Engine
from .errors import RuleError
from .loader import RuleSet, iter_json_objects, load
from .validate import Severity, validate

__all__ = ["main", "build_parser"]

logger = logging.getLogger("rules.cli")
EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def _container_arg(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE, got {text!r}")
    return name, path


def _add_rule_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-r",
        "--rules",
        action="append",
        required=True,
        metavar="RULES",
        help="rule file or directory (repeatable)",
    )
    p.add_argument(
        "--skip-bad-rules", action="store_true", help="report bad rules and continue without them"
    )
    p.add_argument(
        "--sigma-status",
        action="append",
        metavar="STATUS",
        help="Sigma statuses loaded from directories (repeatable; default stable and test; 'all')",
    )


def _sigma_status(args: argparse.Namespace) -> tuple[str, ...] | None:
    wanted = args.sigma_status or ["stable", "test"]
    return None if "all" in wanted else tuple(wanted)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="heron", description="Gene-compatible offline scanner")
    parser.add_argument("--version", action="version", version=f"%(prog)s {wire.HERON_VERSION}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sc = sub.add_parser("scan", help="scan EVTX/JSON events with Gene rules")
    _add_rule_args(sc)
    sc.add_argument("--blacklist", metavar="FILE", help="fill the `blacklist` container")
    sc.add_argument("--whitelist", metavar="FILE", help="fill the `whitelist` container")
    sc.add_argument(
        "--container",
        action="append",
        type=_container_arg,
        default=[],
        metavar="NAME=FILE",
        help="fill container NAME from FILE (repeatable)",
    )
    sc.add_argument("--all", action="store_true", help="print every event")
    sc.add_argument(
        "--min-criticality",
        "-c",
        type=int,
        default=0,
        metavar="N",
        help="print detections with Criticality >= N (filtered events always)",
    )
    sc.add_argument(
        "--no-filter",
        action="store_true",
        help="do not print events that matched only Filter rules",
    )
    sc.add_argument("--attack", "-a", action="store_true", help="include ATT&CK in detections")
    sc.add_argument("--name", "-n", action="append", help="load only these rule names")
    sc.add_argument("--tag", action="append", help="load only rules with one of these tags")
    sc.add_argument(
        "--jobs",
        "-j",
        type=int,
        default=1,
        metavar="N",
        help="worker processes (files and large JSONL chunks in parallel)",
    )
    sc.add_argument("--output", "-o", metavar="FILE", help="write events here (default stdout)")
    sc.add_argument(
        "--format",
        choices=tuple(scanmod.RENDERERS),
        default="jsonl",
        help="jsonl: events + Event.Detection; table: one line each; summary only; "
        "csv; timeline (hits sorted by time, TSV); sarif; navigator (ATT&CK layer)",
    )
    sc.add_argument(
        "--input-format",
        choices=inputs.FORMATS,
        default="auto",
        help="read every input as this format (default: detected per file)",
    )
    sc.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (it is shown only when stderr is a terminal)",
    )
    sc.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="event files (EVTX, JSON, XML, CSV, audit.log, syslog; .gz, .zip, "
        ".tar), directory, or - for stdin",
    )

    ru = sub.add_parser("rules", help="rule tools")
    rsub = ru.add_subparsers(dest="rules_command", required=True)
    v = rsub.add_parser("verify", help="load and compile rules; report issues")
    _add_rule_args(v)
    v.add_argument(
        "--container",
        action="append",
        default=[],
        metavar="NAME",
        help="container names that will exist",
    )
    v.add_argument("--strict", action="store_true", help="warnings also fail")
    lst = rsub.add_parser("list", help="list rules")
    _add_rule_args(lst)
    lst.add_argument("--tags", action="store_true", help="list the sorted tags instead")
    d = rsub.add_parser("dump", help="print rules (compiled.gen form) whose name matches")
    _add_rule_args(d)
    d.add_argument(
        "patterns", nargs="*", default=[".*"], metavar="REGEX", help="rule name patterns"
    )
    t = rsub.add_parser("test", help="gene-rules test mode: every event must raise an alert")
    _add_rule_args(t)
    t.add_argument(
        "--name", "-n", action="append", required=True, help="rule expected to fire (repeat)"
    )
    t.add_argument("files", nargs="+", metavar="FILE", help="event files to test")
    return parser


def _load(args: argparse.Namespace) -> RuleSet:
    ruleset = load(args.rules, collect_errors=args.skip_bad_rules, sigma_status=_sigma_status(args))
    for err in ruleset.errors:
        print(f"heron: bad rule skipped: {err}", file=sys.stderr)
    return ruleset


class _Progress:
    """A one-line progress bar on a terminal stderr."""

    def __init__(self, total_bytes: int, stream: TextIO) -> None:
        self.total = max(1, total_bytes)
        self.stream = stream
        self.started = time.perf_counter()
        self.last = 0.0

    def __call__(self, done_bytes: int, events: int) -> None:
        now = time.perf_counter()
        if now - self.last < 0.2:
            return
        self.last = now
        frac = min(1.0, done_bytes / self.total)
        bar = "#" * int(frac * 30)
        rate = events / max(now - self.started, 1e-9)
        self.stream.write(f"\r[{bar:<30}] {frac:6.1%} {events:>10,} events {rate:>9,.0f}/s")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\r" + " " * 78 + "\r")
        self.stream.flush()


def _summary(stats: scanmod.ScanStats, elapsed: float, cpu: float, rules: int, out: TextIO) -> None:
    rate = stats.events / elapsed if elapsed > 0 else 0.0
    out.write(f"Rules loaded:   {rules}\n")
    out.write(f"Events scanned: {stats.events}\n")
    out.write(f"Positives:      {stats.positives}\n")
    out.write(f"Filtered only:  {stats.filtered}\n")
    out.write(f"Printed:        {stats.printed}\n")
    out.write(f"Parse errors:   {stats.parse_errors}\n")
    out.write(f"Elapsed:        {elapsed:.3f}s ({rate:,.0f} events/s)\n")
    out.write(f"Scan CPU:       {cpu:.3f}s (this process, without --jobs workers)\n")
    if stats.hits:
        out.write("Hits per rule:\n")
        for name, n in sorted(stats.hits.items(), key=lambda kv: (-kv[1], kv[0])):
            out.write(f"  {n:>8}  {name}\n")
    for message in stats.errors[:10]:
        out.write(f"  error: {message}\n")
    lines, warning = inputs.summary_lines(stats.shapes, stats.events)
    out.write("Input shapes:\n" + "".join(line + "\n" for line in lines))
    if warning:
        out.write(warning + "\n")


def cmd_scan(args: argparse.Namespace) -> int:
    containers = list(args.container)
    for name in ("blacklist", "whitelist"):
        if getattr(args, name):
            containers.append((name, getattr(args, name)))
    opts = scanmod.ScanOptions(
        rules=tuple(args.rules),
        containers=tuple(containers),
        names=tuple(args.name) if args.name else None,
        tags=tuple(args.tag) if args.tag else None,
        skip_bad_rules=args.skip_bad_rules,
        show_attack=args.attack,
        all=args.all,
        min_criticality=args.min_criticality,
        no_filter=args.no_filter,
        keep_output=args.format != "summary",
        sigma_status=_sigma_status(args),
        input_format=args.input_format,
    )
    engine, problems = scanmod.build_engine(opts)  # fail fast on bad rules, in this process
    for err in problems:
        print(f"heron: bad rule skipped: {err}", file=sys.stderr)
    # Performance: events are acyclic trees freed by refcounting; keep the cyclic GC from
    # rescanning the compiled rules on every generation-2 pass.
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        return _run_scan(args, opts, engine)
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _run_scan(args: argparse.Namespace, opts: scanmod.ScanOptions, engine: Engine) -> int:
    # JSONL byte ranges only for the JSON readers (another --input-format reads whole files)
    split = args.jobs > 1 and args.input_format in ("auto", "json", "winlogbeat", "flat")
    units = list(scanmod.discover(args.inputs, split=split))
    out = open(args.output, "wb") if args.output else sys.stdout.buffer
    progress = None
    if not args.no_progress and sys.stderr.isatty() and "-" not in args.inputs:
        progress = _Progress(sum(u.size for u in units), sys.stderr)
    if args.format == "table":
        out.write(scanmod.TABLE_HEADER.encode())
    out.write(triage.HEADERS.get(args.format, b""))
    spool = tempfile.TemporaryFile() if args.format in triage.SPOOLED else None
    sink = spool if spool is not None else out
    started = time.perf_counter()
    cpu_started = time.process_time()
    try:
        scanner = scanmod.Scanner(opts, args.format, args.jobs, engine)

        def write(data: bytes) -> None:
            sink.write(data)

        stats = scanner.run(units, write, progress)
        if spool is not None:
            triage.finish(args.format, spool, out)
    finally:
        if progress is not None:
            progress.close()
        if spool is not None:
            spool.close()
        out.flush()
        if args.output:
            out.close()
    elapsed = time.perf_counter() - started
    target = sys.stdout if args.format == "summary" else sys.stderr
    cpu = time.process_time() - cpu_started
    _summary(stats, elapsed, cpu, engine.rule_count, target)
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    ruleset = load(args.rules, collect_errors=True, sigma_status=_sigma_status(args))
    issues = validate(ruleset, args.container)
    for issue in issues:
        print(str(issue))
    engine = Engine(None, containers={c: ["x"] for c in args.container})
    engine.load(ruleset, collect_errors=True)
    errors = sum(1 for i in issues if i.severity >= Severity.ERROR)
    warnings = sum(1 for i in issues if i.severity == Severity.WARNING)
    print(f"{engine.rule_count} rules loaded, {errors} errors, {warnings} warnings")
    if errors and not args.skip_bad_rules:
        return EXIT_FAIL
    return EXIT_FAIL if args.strict and warnings else EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    ruleset = _load(args)
    if args.tags:
        for tag in sorted({t for r in ruleset for t in r.tags}):
            print(tag)
        return EXIT_OK
    for rule in ruleset:
        flags = "".join(("D" if rule.meta.disable else "-", "F" if rule.meta.filter else "-"))
        tags = ",".join(t for t in rule.tags if t)
        print(f"{flags} {rule.criticality:>3} {rule.name:<40} {tags}")
    return EXIT_OK


def _go_json(obj: Any) -> bytes:
    """JSON as Go's json.Marshal writes it (`<`, `>`, `&` escaped), like `gene -dump`."""
    return (
        orjson.dumps(obj)
        .replace(b"<", b"\\u003c")
        .replace(b">", b"\\u003e")
        .replace(b"&", b"\\u0026")
    )


def cmd_dump(args: argparse.Namespace) -> int:
    ruleset = _load(args)
    enabled = sorted((r for r in ruleset if not r.meta.disable), key=lambda r: r.name)
    for pattern in args.patterns:
        try:
            regex = re.compile(pattern)
        except re.error as ex:
            print(f"heron: invalid regex {pattern!r}: {ex}", file=sys.stderr)
            return EXIT_USAGE
        for rule in enabled:
            if regex.search(rule.name):
                sys.stdout.buffer.write(_go_json(rule.to_dict()) + b"\n")
    return EXIT_OK


def cmd_test(args: argparse.Namespace) -> int:
    ruleset = _load(args).select(names=args.name)
    engine = Engine(None)
    for err in engine.load(ruleset, collect_errors=args.skip_bad_rules):
        print(f"heron: bad rule skipped: {err}", file=sys.stderr)
    if engine.rule_count == 0:
        print(f"heron: no rule named {', '.join(args.name)}", file=sys.stderr)
        return EXIT_USAGE
    total = failed = 0
    for path in args.files:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        try:
            events = [event for _, event in iter_json_objects(text, path)]
        except RuleError as ex:  # the decoder is shared with rule files
            print(f"heron: invalid JSON event file {path}:{ex.line}: {ex.reason}", file=sys.stderr)
            return EXIT_USAGE
        for event in events:
            total += 1
            det = engine.match(event) if isinstance(event, dict) else None
            if det is None or not det.signatures:
                failed += 1
                sys.stdout.buffer.write(orjson.dumps(event) + b"\n")
    print(f"{total - failed}/{total} events matched", file=sys.stderr)
    return EXIT_FAIL if failed or total == 0 else EXIT_OK


COMMANDS: dict[str, Any] = {
    "verify": cmd_verify,
    "list": cmd_list,
    "dump": cmd_dump,
    "test": cmd_test,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="heron: %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "scan":
            return cmd_scan(args)
        return int(COMMANDS[args.rules_command](args))
    except RuleError as ex:
        print(f"heron: bad rule: {ex}", file=sys.stderr)
        print("heron: fix the rule or use --skip-bad-rules", file=sys.stderr)
        return EXIT_USAGE
    except (FileNotFoundError, IsADirectoryError, PermissionError) as ex:
        print(f"heron: {ex}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `heron scan ... | head`
        return EXIT_OK
    except KeyboardInterrupt:
        print("heron: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
