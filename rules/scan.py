"""Offline scanning: input discovery and decoding, the scan loop, parallel jobs and summaries.

Owns what `heron scan` does below the command line: turning INPUT arguments into work units
(`.evtx`, `.json`/`.jsonl` streams, `.gz` of those, directories, stdin; every other export is
read by `rules.inputs`), decoding events with orjson, running the `Engine`, choosing which
events to print (Gene's printing rule, docs/reference/gene.md §10) and merging per-unit statistics.
The CLI
only formats and prints.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from . import inputs, triage
from .engine import Detection, Engine
from .evtx import EvtxStats, read_evtx
from .inputs.jsonstream import iter_json_stream
from .loader import RuleSet, load, read_container

__all__ = [
    "ScanOptions",
    "ScanStats",
    "Unit",
    "discover",
    "scan_unit",
    "Scanner",
    "iter_json_stream",
    "should_print",
]

logger = logging.getLogger(__name__)
JSON_EXTENSIONS = (".json", ".jsonl", ".ndjson")
EVTX_EXTENSIONS = (".evtx",)
SPLIT_SIZE = 8 * 1024 * 1024  # uncompressed JSONL files above this are split for --jobs


@dataclass(frozen=True, slots=True)
class ScanOptions:
    """Everything a worker needs to rebuild the engine and filter output."""

    rules: tuple[str, ...]
    containers: tuple[tuple[str, str], ...] = ()
    names: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None
    skip_bad_rules: bool = False
    show_attack: bool = False
    all: bool = False
    min_criticality: int = 0
    no_filter: bool = False
    keep_output: bool = True
    sigma_status: tuple[str, ...] | None = ("stable", "test")  # None: every Sigma status
    input_format: str = "auto"  # rules.inputs.FORMATS


@dataclass(slots=True)
class ScanStats:
    """Counters of a scan; `merge` adds another unit's counters."""

    events: int = 0
    positives: int = 0
    filtered: int = 0
    printed: int = 0
    parse_errors: int = 0
    bytes: int = 0
    hits: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    shapes: dict[str, int] = field(default_factory=dict)  # events per input shape

    def merge(self, other: ScanStats) -> None:
        self.events += other.events
        self.positives += other.positives
        self.filtered += other.filtered
        self.printed += other.printed
        self.parse_errors += other.parse_errors
        self.bytes += other.bytes
        for name, n in other.hits.items():
            self.hits[name] = self.hits.get(name, 0) + n
        for name, n in other.shapes.items():
            self.shapes[name] = self.shapes.get(name, 0) + n
        self.errors.extend(other.errors[: max(0, 100 - len(self.errors))])

    def parse_error(self, message: str) -> None:
        self.parse_errors += 1
        if len(self.errors) < 100:
            self.errors.append(message)


@dataclass(frozen=True, slots=True)
class Unit:
    """One piece of work: a file (or a byte range of a JSONL file), or stdin (`-`)."""

    path: str
    kind: str  # "evtx" | "json" | "input" (any other rules.inputs format, archives)
    start: int = 0
    end: int = -1
    size: int = 0


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith(EVTX_EXTENSIONS):
        return "evtx"
    if name.endswith(JSON_EXTENSIONS):
        return "json"
    return "input" if inputs.wanted(path.name) else None


def _units_for_file(path: Path, kind: str, split: bool) -> Iterator[Unit]:
    size = path.stat().st_size
    plain_jsonl = kind == "json" and path.name.lower().endswith((".jsonl", ".ndjson"))
    if not split or not plain_jsonl or size <= SPLIT_SIZE:
        yield Unit(str(path), kind, 0, -1, size)
        return
    with open(path, "rb") as fh:
        start = 0
        while start < size:
            fh.seek(min(start + SPLIT_SIZE, size))
            fh.readline()
            end = min(fh.tell(), size) if start + SPLIT_SIZE < size else size
            yield Unit(str(path), kind, start, end, end - start)
            start = end


def discover(inputs: Iterable[str], *, split: bool = False) -> Iterator[Unit]:
    """Work units for INPUT arguments; directories are walked recursively (sorted).

    An explicitly named file is read whatever its extension (JSON unless it looks like EVTX).
    """
    for item in inputs:
        if item == "-":
            yield Unit("-", "json")
            continue
        path = Path(item)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    child = Path(root) / name
                    kind = _kind(child)
                    if kind is not None:
                        yield from _units_for_file(child, kind, split)
        elif path.exists():
            yield from _units_for_file(path, _kind(path) or _sniff(path), split)
        else:
            raise FileNotFoundError(f"no such file or directory: {item}")


def _sniff(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(64 * 1024)
    kind = inputs.sniff(head)
    return kind if kind in ("evtx", "json") else "input"


def _open_unit(unit: Unit) -> BinaryIO:
    if unit.path == "-":
        return sys.stdin.buffer
    fh: BinaryIO = open(unit.path, "rb")
    if unit.path.lower().endswith(".gz"):
        return gzip.GzipFile(fileobj=fh)  # type: ignore[return-value]
    if unit.start or unit.end >= 0:
        fh.seek(unit.start)
        data = fh.read(unit.end - unit.start if unit.end >= 0 else -1)
        fh.close()
        return io.BytesIO(data)
    return fh


def _iter_events(
    unit: Unit,
    stats: ScanStats,
    tell: list[Callable[[], int]] | None = None,
    keep: Callable[[str, int], bool] | None = None,
    fmt: str = "auto",
) -> Iterator[Any]:
    """Events of a unit; `tell` receives a function giving the bytes consumed so far.

    EVTX records refused by `keep(channel, event_id)` are counted as scanned events
    without being rendered (Performance: no rule could match them). Formats other than
    EVTX and JSON files, stdin and `--input-format` overrides are read by `rules.inputs`.
    """
    json_fmt = "json" if fmt == "auto" else fmt
    if unit.path == "-" or not (
        unit.kind == "evtx"
        and fmt in ("auto", "evtx")
        or unit.kind == "json"
        and json_fmt in ("json", "winlogbeat", "flat")
    ):
        if unit.path == "-":
            yield from inputs.read_stream("-", sys.stdin.buffer, fmt, stats, keep)
        else:
            yield from inputs.read_path(unit.path, fmt, stats, keep)
        return
    if unit.kind == "evtx":
        evtx_stats = EvtxStats()
        if unit.path.lower().endswith(".gz"):
            import tempfile

            with (
                gzip.open(unit.path, "rb") as src,
                tempfile.NamedTemporaryFile(suffix=".evtx") as tmp,
            ):
                tmp.write(src.read())
                tmp.flush()
                yield from read_evtx(tmp.name, evtx_stats, keep=keep)
        else:
            yield from read_evtx(unit.path, evtx_stats, keep=keep)
        stats.events += evtx_stats.skipped
        stats.parse_errors += evtx_stats.errors
        stats.shapes["evtx"] = stats.shapes.get("evtx", 0) + evtx_stats.records
        stats.errors.extend(evtx_stats.messages[: max(0, 100 - len(stats.errors))])
        return
    try:
        fh = _open_unit(unit)
    except OSError as ex:  # unreadable file: count it, go on with the other inputs
        stats.parse_error(f"{unit.path}: {ex}")
        return
    if tell is not None:
        raw = getattr(fh, "fileobj", None) or fh  # gzip: position in the compressed file
        if raw is not sys.stdin.buffer:
            tell.append(raw.tell)
    try:
        yield from inputs.normalize(iter_json_stream(fh, stats, unit.path), stats, json_fmt)
    except (OSError, EOFError, gzip.BadGzipFile) as ex:
        stats.parse_error(f"{unit.path}: {ex}")
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()


def should_print(det: Detection | None, opts: ScanOptions) -> bool:
    """GENE printing rule: (signature and Criticality >= N) or filtered (unless no-filter)."""
    if opts.all:
        return True
    if det is None:
        return False
    if det.signatures and det.criticality >= opts.min_criticality:
        return True
    return det.filtered and not (opts.no_filter and not det.signatures)


def build_engine(opts: ScanOptions) -> tuple[Engine, list[Exception]]:
    """Load rules and containers as `heron scan` does; bad rules raise unless skipped."""
    containers: dict[str, list[str]] = {}
    for name, path in opts.containers:
        containers.setdefault(name, []).extend(read_container(path))
    ruleset: RuleSet = load(
        opts.rules, collect_errors=opts.skip_bad_rules, sigma_status=opts.sigma_status
    )
    problems: list[Exception] = list(ruleset.errors)
    if opts.names is not None or opts.tags is not None:
        ruleset = ruleset.select(names=opts.names, tags=opts.tags)
    engine = Engine(None, containers=containers, show_attack=opts.show_attack, timing=False)
    problems.extend(engine.load(ruleset, collect_errors=opts.skip_bad_rules))
    return engine, problems


Emit = Callable[[Any, Detection | None], None]


def scan_events(
    engine: Engine,
    events: Iterable[Any],
    opts: ScanOptions,
    stats: ScanStats,
    emit: Emit,
    progress: Callable[[int], None] | None = None,
) -> None:
    """The scan loop: match each event, count, and hand printable ones to `emit`."""
    match = engine.match
    n = 0
    for event in events:
        n += 1
        if event.__class__ is not dict:
            stats.parse_error(f"event #{n} is not a JSON object")
            continue
        det = match(event)
        if det is not None:
            if det.signatures:
                stats.positives += 1
            elif det.filtered:
                stats.filtered += 1
        if should_print(det, opts):
            stats.printed += 1
            emit(event, det)
        if progress is not None and not n & 1023:
            progress(n)
    stats.events += n
    if progress is not None:
        progress(n)


# --- worker side (also used in-process for --jobs 1) ----------------------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(opts: ScanOptions, fmt: str) -> None:
    if _WORKER.get("opts") != opts or "engine" not in _WORKER:
        engine, _ = build_engine(opts)
        _WORKER.update(engine=engine)
    _WORKER.update(opts=opts, fmt=fmt)


def _init_pool_worker(opts: ScanOptions, fmt: str) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _init_worker(opts, fmt)


def pool_context() -> Any:
    """The multiprocessing context of scan workers: never `fork` (see `Scanner._run_pool`)."""
    import multiprocessing

    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(["rules.scan"])  # Performance: workers start imported
    return ctx


def _kill_pool(pool: Any) -> None:
    """Stop a ProcessPoolExecutor now: cancel queued work, kill and reap its workers."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.kill()
    for proc in procs:
        proc.join()


def scan_unit(
    unit: Unit,
    write: Callable[[bytes], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Unit, bytes, ScanStats]:
    """Scan one unit with the worker's engine; output goes to `write` or is returned.

    `progress(events, bytes)` reports what this unit has consumed so far.
    """
    engine: Engine = _WORKER["engine"]
    opts: ScanOptions = _WORKER["opts"]
    render = RENDERERS[_WORKER["fmt"]]
    before = {c.name: c.hits for c in engine.rules}
    stats = ScanStats(bytes=unit.size)
    chunks: list[bytes] = []
    sink = write if write is not None else chunks.append
    if opts.keep_output:

        def emit(ev: Any, det: Detection | None) -> None:
            sink(render(ev, det))
    else:

        def emit(ev: Any, det: Detection | None) -> None:
            return None

    tell: list[Callable[[], int]] = []
    tick = None
    if progress is not None:
        report = progress

        def tick(n: int) -> None:
            done = 0
            if tell:
                try:
                    done = min(tell[0](), unit.size)
                except (OSError, ValueError):  # closed file at the end of the unit
                    done = unit.size
            report(n, done)

    keep = None if opts.all else engine.has_candidates
    scan_events(
        engine, _iter_events(unit, stats, tell, keep, opts.input_format), opts, stats, emit, tick
    )
    stats.hits = {
        c.name: c.hits - before.get(c.name, 0)
        for c in engine.rules
        if c.hits != before.get(c.name, 0) and not c.is_filter
    }
    return unit, b"".join(chunks), stats


def render_jsonl(event: Any, det: Detection | None) -> bytes:
    return orjson.dumps(event) + b"\n"


def render_table(event: Any, det: Detection | None) -> bytes:
    from .event import Event

    ev = Event(event)
    ts = ev.timestamp
    when = ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if ts else "-"
    crit = det.criticality if det is not None else 0
    sigs = (
        ",".join(det.signatures)
        if det is not None and det.signatures
        else ("(filtered)" if det is not None and det.filtered else "-")
    )
    row = (
        f"{when:<27} {ev.computer[:24]:<24} {ev.channel[:40]:<40} {ev.event_id:>6} "
        f"{crit:>3} {sigs}\n"
    )
    return row.encode("utf-8", errors="replace")


def render_none(event: Any, det: Detection | None) -> bytes:
    return b""


RENDERERS: dict[str, Callable[[Any, Detection | None], bytes]] = {
    "jsonl": render_jsonl,
    "table": render_table,
    "summary": render_none,
    **triage.RENDERERS,
}
TABLE_HEADER = f"{'TIME':<27} {'COMPUTER':<24} {'CHANNEL':<40} {'EID':>6} {'CRT':>3} SIGNATURES\n"


class Scanner:
    """Runs units in this process or in a `multiprocessing` pool, in input order."""

    def __init__(
        self, opts: ScanOptions, fmt: str = "jsonl", jobs: int = 1, engine: Engine | None = None
    ) -> None:
        if fmt not in RENDERERS:
            raise ValueError(f"unknown format {fmt!r}")
        if engine is not None:
            _WORKER.update(engine=engine, opts=opts)
        self.opts = opts
        self.fmt = fmt
        self.jobs = max(1, jobs)

    def run(
        self,
        units: list[Unit],
        write: Callable[[bytes], None],
        progress: Callable[[int, int], None] | None = None,
    ) -> ScanStats:
        """Scan `units`, passing rendered output to `write`; return merged statistics.

        `progress(bytes_done, events_done)` is called as work completes.
        """
        total = ScanStats()
        started = time.perf_counter()
        if self.jobs == 1 or len(units) < 2:
            _init_worker(self.opts, self.fmt)
            for unit in units:
                done_bytes, done_events = total.bytes, total.events

                def tick(
                    n: int, b: int, done_b: int = done_bytes, done_e: int = done_events
                ) -> None:
                    if progress is not None:
                        progress(done_b + b, done_e + n)

                _, _, stats = scan_unit(unit, write, tick)
                total.merge(stats)
                if progress is not None:
                    progress(total.bytes, total.events)
        else:
            self._run_pool(units, total, write, progress)
        logger.debug("scan took %.3fs", time.perf_counter() - started)
        return total

    def _run_pool(
        self,
        units: list[Unit],
        total: ScanStats,
        write: Callable[[bytes], None],
        progress: Callable[[int, int], None] | None,
    ) -> None:
        """Scan in worker processes, in input order; workers never outlive this call.

        Workers start from a fresh interpreter (forkserver, or spawn where there is none),
        never from a fork of this process: a fork of a process with threads (a progress bar,
        the caller's own) could inherit a lock held by another thread and block for good
        (issue 25: a worker stuck in SimpleQueue.get, and `--jobs 2` never ended). A dead
        worker raises BrokenProcessPool instead of hanging; on any error or Ctrl-C the
        workers are killed and reaped before the exception goes on.
        """
        from concurrent.futures import ProcessPoolExecutor

        ctx = pool_context()
        pool = ProcessPoolExecutor(
            min(self.jobs, len(units)),
            mp_context=ctx,
            initializer=_init_pool_worker,
            initargs=(self.opts, self.fmt),
        )
        try:
            # Performance: batch many small files per round trip, keep input order
            chunksize = max(1, min(16, len(units) // (self.jobs * 8)))
            self._drain(pool.map(scan_unit, units, chunksize=chunksize), total, write, progress)
        except BaseException:
            _kill_pool(pool)
            raise
        pool.shutdown(wait=True)

    @staticmethod
    def _drain(
        results: Iterator[tuple[Unit, bytes, ScanStats]],
        total: ScanStats,
        write: Callable[[bytes], None],
        progress: Callable[[int, int], None] | None,
    ) -> None:
        for _unit, output, stats in results:
            if output:
                write(output)
            total.merge(stats)
            if progress is not None:
                progress(total.bytes, total.events)
