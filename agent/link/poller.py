"""The command channel: poll `GET /commands`, run, `POST` the `CommandResult` back.

The manager hands a command out once (docs/reference/whids.md §2.5), so a result is written to
`<state>/results/<id>.json` before it is posted and deleted only after the manager's 200: a
result survives a network drop or an agent restart. Polling runs every `interval` seconds, and
every `burst_interval` for `burst_window` seconds after a command arrived (or after
`notify_activity()`).

With `wait` > 0 the poll is a long-poll (`GET /commands?wait=N`): the manager holds it until a
command is queued, and the poller asks again at once (with a little jitter). A manager of the
previous version answers at once; the poller notices (the answer came in under half the wait)
and keeps its interval. Every answer's `X-Heron-Poll-After` is kept in `poll_after`. While the
worker thread runs commands the poller polls without `wait`, so their results (posted over the
same transport) never wait behind a held long-poll.

Response first: in the polling loop (`run`), ordinary commands run one at a time on a worker
thread while polling goes on, and the response commands (`URGENT_COMMANDS`: contain, uncontain,
terminate) run at once on the polling thread, so containment never waits behind a slow report
or osquery run. `poll_once()` called directly runs every command inline (tests, tools).
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

from agent.commands import CommandContext, run_command
from rules import wire

from .errors import CertificateRejected, LinkError
from .identity import write_atomic
from .transport import Request, Response, Transport

logger = logging.getLogger(__name__)

URGENT_COMMANDS = frozenset({"contain", "uncontain", "terminate"})


class CommandPoller:
    """Fetches and runs manager commands one at a time."""

    def __init__(
        self,
        transport: Transport,
        state_dir: Path,
        *,
        context: Callable[[], CommandContext] = CommandContext,
        interval: float = 5.0,
        burst_interval: float = 0.5,
        burst_window: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
        runner: Callable[[wire.Command, CommandContext], wire.CommandResult] = run_command,
        wait: float = 0.0,
        timeout: float = 30.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.transport = transport
        self.results_dir = Path(state_dir) / "results"
        self.results_dir.mkdir(parents=True, exist_ok=True)
        self.context = context
        self.interval = interval
        self.burst_interval = burst_interval
        self.burst_window = burst_window
        self.clock = clock
        self._stop = threading.Event()
        self.sleep = sleep or self._stop.wait
        self.runner = runner
        self._last_activity = -1e18
        self.executed = 0
        self.wait = wait
        self.timeout = timeout
        self.rand = rand
        self.held = False  # the last poll was held by the manager (it long-polls)
        self.poll_after = 0.0  # the manager's advice for update checks (0: none)
        self._io = threading.Lock()  # one keep-alive transport shared with the worker thread
        self._backlog: list[wire.Command] = []
        self._worker: threading.Thread | None = None
        self._backlog_lock = threading.Lock()

    def notify_activity(self) -> None:
        """Poll faster for a while (called when a command arrives or the agent gets busy)."""
        self._last_activity = self.clock()

    def next_interval(self) -> float:
        if self.held:
            return self.rand() * 0.5  # spreads a fleet woken by a manager restart
        bursting = self.clock() - self._last_activity < self.burst_window
        return self.burst_interval if bursting else self.interval

    def _get(self) -> Response:
        if self.wait <= 0 or self._worker is not None:
            self.held = False
            return self._send(Request("GET", wire.ROUTE_COMMANDS))
        started = self.clock()
        resp = self._send(
            Request(
                "GET",
                f"{wire.ROUTE_COMMANDS}?{wire.QUERY_WAIT}={self.wait:g}",
                timeout=self.wait + self.timeout,
            )
        )
        self.held = resp.status == 200 or self.clock() - started >= self.wait / 2
        advice = resp.headers.get(wire.HEADER_POLL_AFTER.lower(), "")
        try:
            self.poll_after = max(0.0, float(advice)) if advice else 0.0
        except ValueError:
            self.poll_after = 0.0
        return resp

    def flush_results(self) -> int:
        """Post results kept on disk; returns how many the manager accepted."""
        done = 0
        for path in sorted(self.results_dir.glob("*.json")):
            resp = self._send(
                Request(
                    "POST",
                    wire.ROUTE_COMMANDS,
                    path.read_bytes(),
                    {"Content-Type": wire.CONTENT_JSON},
                )
            )
            cert_refused = resp.status == 403 and any(
                w in resp.body for w in (b"revoked", b"certificate")
            )
            if resp.status in (401, 495, 496) or cert_refused:
                raise CertificateRejected(
                    f"manager answered {resp.status} to a command result: "
                    "certificate probably rejected/revoked",
                    path=wire.ROUTE_COMMANDS,
                )
            if resp.status == 413 and self._shrink(path):
                continue  # retried next round with the slimmed result
            if resp.status in (200, 204, 400, 403, 404, 409, 413, 422):
                # 403/404/409: the manager no longer waits for it (already has a
                # result, cancelled, or gone); 400/413/422: it never will accept this body.
                # Keeping it would block every later result.
                if resp.status >= 400:
                    logger.warning("manager dropped result %s: HTTP %d", path.stem, resp.status)
                path.unlink(missing_ok=True)
                done += 1
            else:
                logger.warning(
                    "result %s not accepted (HTTP %d), will retry", path.stem, resp.status
                )
                break
        return done

    @staticmethod
    def _shrink(path: Path) -> bool:
        """Replace a result the manager found too large by its outcome without the output."""
        doc = json.loads(path.read_bytes())
        if doc.get("result_too_large"):
            return False
        size = path.stat().st_size
        slim = {k: doc.get(k) for k in ("id", "exit_code", "started", "finished")}
        slim["error"] = (
            f"result too large for the manager ({size} bytes): output, JSON and "
            f"fetched files dropped. {doc.get('error') or ''}"
        ).strip()
        slim["result_too_large"] = True
        logger.warning(
            "result %s is %d bytes, over the manager's limit: sending its outcome without output",
            path.stem,
            size,
        )
        write_atomic(path, json.dumps(slim).encode("utf-8"))
        return True

    def _send(self, req: Request) -> Response:
        with self._io:
            return self.transport.send(req)

    def poll_once(self, *, background: bool = False) -> wire.CommandResult | None:
        """Fetch at most one command, run it and post its result.

        With `background`, an ordinary command is handed to the worker thread (None is
        returned) and only the urgent ones run here.
        """
        self.flush_results()
        resp = self._get()
        if resp.status == 204 or not resp.body.strip():
            return None
        if resp.status != 200:
            logger.warning("GET /commands: HTTP %d", resp.status)
            return None
        try:
            data = json.loads(resp.body)
            if isinstance(data, dict) and "data" in data and "name" not in data:
                data = data["data"]
            command = wire.Command.from_dict(data)
        except (ValueError, TypeError) as ex:
            logger.warning("ignoring a malformed command: %s", ex)
            return None
        self.notify_activity()
        if background and command.name not in URGENT_COMMANDS:
            self._enqueue(command)
            return None
        return self._execute(command)

    def _enqueue(self, command: wire.Command) -> None:
        with self._backlog_lock:
            self._backlog.append(command)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._drain_backlog, daemon=True, name="heron-link-command"
                )
                self._worker.start()

    def _drain_backlog(self) -> None:
        while not self._stop.is_set():
            with self._backlog_lock:
                if not self._backlog:
                    self._worker = None
                    return
                command = self._backlog.pop(0)
            try:
                self._execute(command)
            except Exception:
                logger.error("command %s crashed", command.id, exc_info=True)

    def wait_backlog(self, timeout: float = 30.0) -> bool:
        """Block until the worker ran every handed-over command (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._backlog_lock:
                if self._worker is None:
                    return True
            time.sleep(0.02)
        return False

    def _execute(self, command: wire.Command) -> wire.CommandResult:
        logger.info("command %s: %s %s", command.id, command.name, " ".join(command.args))
        result = self.runner(command, self.context())
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", command.id)[:100] or "command"
        write_atomic(
            self.results_dir / f"{safe}.json",
            json.dumps(result.to_dict(), default=str).encode("utf-8"),
        )
        self.executed += 1
        try:
            self.flush_results()
        except LinkError as ex:
            logger.warning("result of %s kept for retry: %s", command.id, ex)
        return result

    def run(self) -> None:
        """Loop until `stop()`."""
        while not self._stop.is_set():
            try:
                self.poll_once(background=True)
            except LinkError as ex:
                logger.debug("command poll failed: %s", ex)
                self.held = False
            self.sleep(self.next_interval())

    def stop(self) -> None:
        """End the loop; a held long-poll is interrupted (else it holds the stop up to `wait`)."""
        self._stop.set()
        interrupt = getattr(self.transport, "interrupt", None)
        if callable(interrupt):
            interrupt()
