"""Where Tantivy documents are written: in this process, or in a writer child process.

The store's writer thread (``index.writer.Indexer``) hands each group of projected documents
to a sink. Both sinks run the same operations (``tantivy_writer.TantivyWriter``) in the order
they were issued and give the same guarantees: ``commit_async`` resolves once every document
added before it is committed (the caller reloads its reader to see them). A sink reports a
failure by raising :class:`StoreError` from the operation, and a child that dies between
operations through ``on_failure``; the writer then replaces the sink (``Indexer`` repair).

* :class:`WriterProcess` (the default, what the manager runs) owns the writer in a child process
  (``index.writer_child``), so indexing runs under another interpreter lock. Performance:
  ``add_json`` releases and re-takes the GIL for every document; in the manager, request
  threads hold the GIL most of the time, so each re-take waited for a switch interval and the
  writer thread, not the CPU, bounded ingest (docs/index.md "Writer process").
* :class:`LocalWriter` owns it in this process (tests and tools: ``index_process=False``).
"""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Protocol

import tantivy

from index.errors import StoreError
from index.tantivy_writer import TantivyWriter
from index.writer_protocol import (
    DEADLINES,
    NO_REQUEST,
    Op,
    child_command,
    decode_reply,
    encode_adds,
    encode_request,
    read_frame,
    write_frame,
)

__all__ = ["LocalWriter", "TantivySink", "WriterProcess"]

logger = logging.getLogger(__name__)

_SENDING = -1  # the watchdog's key for the ADD message being sent


class TantivySink(Protocol):
    """What the writer thread needs from a Tantivy writer (one caller thread)."""

    @property
    def pid(self) -> int | None:
        """Pid of the process holding the Tantivy writer."""

    def add(self, docs: list[bytes], raws: list[bytes]) -> None:
        """Add JSON documents with their stored events (``schema.with_raw``), in order."""

    def commit_async(self) -> Future[None]:
        """Commit everything added so far; the future resolves when it is committed."""

    def delete_below(self, seq: int) -> None:
        """Delete every document with ``seq`` below ``seq``; commit it with what was added."""

    def delete_all(self) -> None:
        """Delete (and commit the deletion of) every committed document."""

    def merge(self, *, wait: bool = True) -> None:
        """Commit, wait for segment merges (unless not ``wait``) and collect unused files."""

    def close(self, timeout: float | None = None) -> None:
        """Wait for merges and release the writer lock."""


class LocalWriter:
    """A ``TantivyWriter`` in this process; commits run on a short-lived helper thread.

    Performance: the helper thread releases the GIL for the whole commit, so the writer
    thread projects and inserts the next rows meanwhile; adding documents waits for it.
    """

    def __init__(self, index: tantivy.Index, *, heap_size: int, num_threads: int) -> None:
        try:
            self._writer = TantivyWriter(index, heap_size=heap_size, num_threads=num_threads)
        except ValueError as ex:
            raise StoreError(f"cannot open the Tantivy writer: {ex}") from ex
        self._pending: Future[None] | None = None
        self._broken: str | None = None  # partly written: only a new one is clean

    def _ready(self) -> TantivyWriter:
        """The writer once the pending commit ended; raises when a failure broke it."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.exception()  # waits; a failure is reported through the future
        if self._broken is not None:
            raise StoreError(self._broken)
        return self._writer

    def _run(self, what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except ValueError as ex:
            self._broken = f"{what}: {ex}"
            raise StoreError(self._broken) from ex

    def add(self, docs: list[bytes], raws: list[bytes]) -> None:
        writer = self._ready()
        self._run("adding documents failed", lambda: writer.add(zip(docs, raws, strict=True)))

    def commit_async(self) -> Future[None]:
        writer = self._ready()
        future: Future[None] = Future()

        def run() -> None:
            try:
                self._run("Tantivy commit failed", writer.commit)
            except BaseException as ex:  # noqa: BLE001 - handed to the future
                future.set_exception(ex)
            else:
                future.set_result(None)

        self._pending = future
        threading.Thread(target=run, name="heron-index-commit", daemon=True).start()
        return future

    def delete_below(self, seq: int) -> None:
        writer = self._ready()
        self._run("retention delete failed", lambda: writer.delete_below(seq))

    def delete_all(self) -> None:
        self._run("delete failed", self._ready().delete_all)

    def merge(self, *, wait: bool = True) -> None:
        writer = self._ready()
        self._run("merge failed", lambda: writer.merge(wait=wait))

    @property
    def pid(self) -> int | None:
        return os.getpid()

    def close(self, timeout: float | None = None) -> None:
        if self._pending is not None:
            self._pending.exception()
        try:
            self._writer.close()  # releases the writer lock for a replacement
        except Exception:  # noqa: BLE001 - close path
            pass


class WriterProcess:
    """A Tantivy writer in a child process, driven over its standard input and output.

    Documents are sent without a reply (the pipe applies back-pressure); other operations
    carry a request id and resolve a future when the child answers. One watchdog thread kills
    a child that leaves an operation unanswered past its deadline (``DEADLINES``). If the child
    dies, every pending and later operation fails with :class:`StoreError` and ``on_failure``
    is told why (the journal keeps the events; the store replays them).
    """

    def __init__(
        self,
        path: Path,
        *,
        heap_size: int,
        num_threads: int,
        on_failure: Callable[[str], None] | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        # its own session: a terminal's Ctrl-C reaches the manager only, which
        # then closes the writer cleanly (the child also ignores SIGINT/SIGTERM).
        # without a stderr of ours (a Windows service), its messages go to a file.
        self._log = (
            None if sys.stderr is not None else (path.parent / "index-writer.log").open("ab")
        )
        self._proc = subprocess.Popen(
            child_command(path, heap_size, num_threads),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=os.name == "posix",
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._stdin, self._stdout = self._proc.stdin, self._proc.stdout
        self._on_failure = on_failure
        self._ids = itertools.count(1)
        self._pending: dict[int, Future[None]] = {}
        self._deadlines: dict[int, tuple[float, str]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._send_lock = threading.Lock()
        self._dead: str | None = None
        self._closing = False
        started: Future[str | None] = Future()
        threading.Thread(target=self._first_answer, args=(started,), daemon=True).start()
        try:
            error = started.result(start_timeout)
        except TimeoutError:
            error = f"the index writer process did not start in {start_timeout} s"
        if error:
            self._stop_child(1.0)
            raise StoreError(error)
        threading.Thread(target=self._receive, name="heron-index-replies", daemon=True).start()
        threading.Thread(target=self._watch, name="heron-index-watchdog", daemon=True).start()

    def _first_answer(self, started: Future[str | None]) -> None:
        try:
            frame = read_frame(self._stdout)
            error = None if frame is None else decode_reply(frame)[1]
        except (OSError, ValueError) as ex:  # closed after a start timeout
            frame, error = None, str(ex)
        if frame is None:
            error = (
                f"the index writer process exited at start (code "
                f"{self._exitcode()}; see its messages above)"
            )
        started.set_result(error)

    # -- parent side of the protocol --------------------------------------------------

    def _receive(self) -> None:
        while True:
            try:
                frame = read_frame(self._stdout)
            except (OSError, ValueError):  # ValueError: read from a closed file
                frame = None
            if frame is None:
                if self._closing:
                    self._fail_all("the index writer process is closed", quiet=True)
                else:
                    self._fail_all(f"the index writer process exited (code {self._exitcode()})")
                return
            try:
                rid, error = decode_reply(frame)
            except ValueError as ex:
                self._kill(str(ex))
                return
            if rid == NO_REQUEST:  # documents were refused; the child exits
                self._kill(f"index writer process: {error}")
                continue
            with self._lock:
                future = self._pending.pop(rid, None)
                self._deadlines.pop(rid, None)
            if future is None:
                continue
            if error:
                # a writer-level failure (e.g. a commit on a full disk) leaves
                # Tantivy's writer unusable: the store replaces the process and replays.
                self._kill(f"index writer process failed: {error}")
                future.set_exception(StoreError(error))
            else:
                future.set_result(None)

    def _watch(self) -> None:
        """Kill the child when an operation stays unanswered past its deadline."""
        with self._wake:
            while self._dead is None:
                if not self._deadlines:
                    self._wake.wait()
                    continue
                when, reason = min(self._deadlines.values())
                delay = when - time.monotonic()
                if delay <= 0:
                    break
                self._wake.wait(delay)
            else:
                return
        self._kill(reason)

    def _expect(self, key: int, op: Op) -> None:
        """Start the deadline of an operation (``_lock`` held)."""
        seconds = DEADLINES[op]
        what = "take documents" if op is Op.ADD else f"answer {op.name}"
        reason = f"the index writer process did not {what} in {seconds:.0f} s; killed"
        self._deadlines[key] = (time.monotonic() + seconds, reason)
        self._wake.notify()

    def _kill(self, reason: str) -> None:
        """Fail everything pending and kill the child (it hangs or its stream is corrupt)."""
        self._fail_all(reason)
        try:
            self._proc.kill()
        except OSError:
            pass

    def _exitcode(self) -> int | None:
        try:
            return self._proc.wait(1.0)
        except subprocess.TimeoutExpired:
            return None

    def _fail_all(self, reason: str, *, quiet: bool = False) -> None:
        with self._lock:
            reason = self._dead or reason  # the first reason is the cause
            self._dead = reason
            pending, self._pending = self._pending, {}
            self._deadlines.clear()
            self._wake.notify_all()
            quiet = quiet or self._closing  # a sink being replaced is not news
        for future in pending.values():
            future.set_exception(StoreError(reason))
        if not quiet:
            logger.error("%s", reason)
            if self._on_failure is not None:
                self._on_failure(reason)

    def _send(self, payload: bytes) -> None:
        if self._dead is not None:
            raise StoreError(self._dead)
        try:
            with self._send_lock:
                write_frame(self._stdin, payload)
        except (OSError, ValueError) as ex:
            raise StoreError(f"the index writer process is gone: {ex}") from ex

    def _request(self, op: Op, arg: int = 0) -> Future[None]:
        future: Future[None] = Future()
        with self._lock:
            if self._dead is not None:
                raise StoreError(self._dead)
            rid = next(self._ids)
            self._pending[rid] = future
            self._expect(rid, op)
        try:
            self._send(encode_request(op, rid, arg))
        except StoreError as ex:
            with self._lock:
                owned = self._pending.pop(rid, None) is not None
                self._deadlines.pop(rid, None)
            if owned:  # else _fail_all has failed it already
                future.set_exception(ex)
            raise
        return future

    # -- TantivySink ------------------------------------------------------------------

    def add(self, docs: list[bytes], raws: list[bytes]) -> None:
        for message in encode_adds(docs, raws):
            with self._lock:
                self._expect(_SENDING, Op.ADD)
            try:
                self._send(message)
            finally:
                with self._lock:
                    self._deadlines.pop(_SENDING, None)

    def commit_async(self) -> Future[None]:
        return self._request(Op.COMMIT)

    def delete_below(self, seq: int) -> None:
        self._request(Op.DELETE_BELOW, seq).result()

    def delete_all(self) -> None:
        self._request(Op.DELETE_ALL).result()

    def merge(self, *, wait: bool = True) -> None:
        self._request(Op.MERGE, 0 if wait else 1).result()

    def close(self, timeout: float | None = 60.0) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
        try:
            self._request(Op.CLOSE).result(timeout)
        except Exception as ex:  # noqa: BLE001 - close path: the child is stopped below
            logger.warning("index writer process did not close cleanly: %s", ex)
        self._stop_child(timeout)

    def _stop_child(self, timeout: float | None = 10.0) -> None:
        self._closing = True
        try:
            self._stdin.close()  # end of file: the child exits
        except OSError:
            pass
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5.0)
        self._stdout.close()
        if self._log is not None:
            self._log.close()

    @property
    def pid(self) -> int | None:
        """The child's process id."""
        return self._proc.pid
