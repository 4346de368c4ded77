"""Where Tantivy documents are written: in this process, or in a writer child process.

The store's writer thread (``index.writer.Indexer``) hands each group of projected documents
to a sink. Both sinks apply operations in the order they were issued and give the same
guarantees: ``commit_async`` resolves once every document added before it is committed
(durable in the index directory; the caller reloads its reader to see them).

* :class:`LocalWriter` owns a ``tantivy.IndexWriter`` in this process.
* :class:`WriterProcess` owns it in a child process (``index.writer_child``), so indexing runs
  under another interpreter lock. PERF(index): ``add_json`` releases and re-takes the GIL for
  every document; in the manager, request threads hold the GIL most of the time, so each
  re-take waited for a switch interval and the writer thread, not the CPU, bounded ingest
  (docs/index.md "Writer process"). The child has no such contention and uses the second core.
"""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol

import orjson
import tantivy

from index.errors import StoreError
from index.schema import with_raw
from index.writer_child import (
    FROZEN_ARG,
    OP_ADD,
    OP_CLOSE,
    OP_COMMIT,
    OP_DELETE_ALL,
    OP_DELETE_BELOW,
    OP_MERGE,
    delete_below_query,
    read_frame,
    write_frame,
)

__all__ = ["LocalWriter", "TantivySink", "WriterProcess"]

logger = logging.getLogger(__name__)

# NOTE(index): not ``-m index.writer_child``: the package imports that module first.
_CHILD_CODE = "import sys; from index.writer_child import main; sys.exit(main())"
# NOTE(index): a message to the child holds at most this many documents or bytes.
_CHUNK_DOCS = 2_000
_CHUNK_BYTES = 16 * 1024 * 1024
# NOTE(index): an operation the child has not answered by then means it hangs: it is killed
# (the store then starts a new one and replays the journal).
_ADD_DEADLINE = 600.0
_DEADLINES = {
    OP_COMMIT: 600.0,
    OP_DELETE_BELOW: 3600.0,
    OP_DELETE_ALL: 3600.0,
    OP_MERGE: 3600.0,
    OP_CLOSE: 3600.0,
}


def _child_command(path: Path, heap_size: int, num_threads: int) -> list[str]:
    args = [str(path), str(heap_size), str(num_threads)]
    if getattr(sys, "frozen", False):  # NOTE(index): appliance.cli.main routes FROZEN_ARG here
        return [sys.executable, FROZEN_ARG, *args]
    return [sys.executable, "-P", "-c", _CHILD_CODE, *args]  # NOTE: -P: not the cwd first


def _watchdog(seconds: float, fn: Callable[..., None], *args: Any) -> threading.Timer:
    """A started daemon timer calling ``fn(*args)`` unless cancelled within ``seconds``."""
    timer = threading.Timer(seconds, fn, args)
    timer.daemon = True
    timer.start()
    return timer


class TantivySink(Protocol):
    """What the writer thread needs from a Tantivy writer (one caller thread)."""

    last_error: str | None

    @property
    def pid(self) -> int | None:
        """Pid of the process holding the Tantivy writer."""

    def add(self, docs: list[bytes], raws: list[bytes]) -> None:
        """Add JSON documents with their stored events (``schema.with_raw``), in order."""

    def check(self) -> None:
        """Raise :class:`StoreError` when the sink can no longer write."""

    def commit_async(self) -> Future[None]:
        """Commit everything added so far; the future resolves when it is committed."""

    def delete_below(self, seq: int) -> None:
        """Delete (and commit the deletion of) every document with ``seq`` below ``seq``."""

    def delete_all(self) -> None:
        """Delete (and commit the deletion of) every committed document."""

    def merge(self) -> None:
        """Commit, wait for segment merges and collect unused files."""

    def close(self, timeout: float | None = None) -> None:
        """Wait for merges and release the writer lock."""


class LocalWriter:
    """A ``tantivy.IndexWriter`` in this process; commits run on a short-lived helper thread.

    PERF(index): the helper thread releases the GIL for the whole commit, so the writer
    thread projects and inserts the next rows meanwhile; adding documents waits for it.
    """

    def __init__(self, index: tantivy.Index, *, heap_size: int, num_threads: int) -> None:
        self._index = index
        self._heap_size = heap_size
        self._num_threads = num_threads
        self._writer: Any = self._open()
        self._pending: Future[None] | None = None
        self.last_error: str | None = None
        self._broken: str | None = None  # NOTE(index): a failed add/commit: replace the writer

    def _open(self) -> Any:
        try:
            return self._index.writer(heap_size=self._heap_size, num_threads=self._num_threads)
        except ValueError as ex:
            raise StoreError(f"cannot open the Tantivy writer: {ex}") from ex

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            try:
                pending.result()
            except Exception:  # noqa: BLE001 - reported through the future already handed out
                pass

    def check(self) -> None:
        if self._broken is not None:
            raise StoreError(self._broken)

    def _break(self, what: str, ex: BaseException) -> StoreError:
        self._broken = self.last_error = f"{what}: {ex}"
        return StoreError(self._broken)

    def add(self, docs: list[bytes], raws: list[bytes]) -> None:
        self._wait()
        self.check()
        add = self._writer.add_json
        try:
            for doc, raw in zip(docs, raws, strict=True):
                add(with_raw(doc, raw))
        except ValueError as ex:  # NOTE(index): partly added: only a new writer is clean
            raise self._break("adding documents failed", ex) from ex

    def commit_async(self) -> Future[None]:
        self._wait()
        future: Future[None] = Future()

        def run() -> None:
            try:
                self._writer.commit()
            except BaseException as ex:  # noqa: BLE001 - handed to the future
                future.set_exception(self._break("Tantivy commit failed", ex))
            else:
                future.set_result(None)

        self._pending = future
        threading.Thread(target=run, name="heron-index-commit", daemon=True).start()
        return future

    def delete_below(self, seq: int) -> None:
        self._wait()
        self._writer.delete_documents_by_query(delete_below_query(self._index.schema, seq))
        self._commit_now()

    def delete_all(self) -> None:
        # NOTE(index): delete_all_documents spares documents added but not yet committed.
        self._commit_now()
        self._writer.delete_all_documents()
        self._commit_now()

    def merge(self) -> None:
        self._commit_now()
        self._writer.wait_merging_threads()  # NOTE(index): consumes the writer
        self._writer = self._open()
        self._writer.garbage_collect_files()

    def _commit_now(self) -> None:
        self._wait()
        self.check()
        try:
            self._writer.commit()
        except ValueError as ex:
            raise self._break("Tantivy commit failed", ex) from ex

    @property
    def pid(self) -> int | None:
        return os.getpid()

    def close(self, timeout: float | None = None) -> None:
        self._wait()
        try:
            self._writer.wait_merging_threads()  # NOTE(index): uncommitted documents are dropped
        except Exception:  # noqa: BLE001 - close path
            pass
        self._writer = None  # NOTE(index): releases the writer lock for a replacement


class WriterProcess:
    """A Tantivy writer in a child process, driven over its standard input and output.

    Documents are sent without a reply (the pipe applies back-pressure); other operations
    carry a request id and resolve a future when the child answers. If the child dies, every
    pending and later operation fails with :class:`StoreError` (the journal keeps the events;
    the next start replays them).
    """

    def __init__(
        self, path: Path, *, heap_size: int, num_threads: int, start_timeout: float = 60.0
    ) -> None:
        # NOTE(index): its own session: a terminal's Ctrl-C reaches the manager only, which
        # then closes the writer cleanly (the child also ignores SIGINT/SIGTERM).
        # NOTE(index): without a stderr of ours (a Windows service), its messages go to a file.
        self._log = (
            None if sys.stderr is not None else (path.parent / "index-writer.log").open("ab")
        )
        self._proc = subprocess.Popen(  # noqa: S603 - our own interpreter or frozen binary
            _child_command(path, heap_size, num_threads),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=os.name == "posix",
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._stdin, self._stdout = self._proc.stdin, self._proc.stdout
        self._ids = itertools.count(1)
        self._pending: dict[int, Future[None]] = {}
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._dead: str | None = None
        self._closing = False
        self.last_error: str | None = None
        started: Future[str | None] = Future()
        threading.Thread(target=self._first_answer, args=(started,), daemon=True).start()
        try:
            error = started.result(start_timeout)
        except TimeoutError:
            error = f"the index writer process did not start in {start_timeout} s"
        if error:
            self._stop_child(1.0)
            raise StoreError(error)
        self._receiver = threading.Thread(
            target=self._receive, name="heron-index-replies", daemon=True
        )
        self._receiver.start()

    def _first_answer(self, started: Future[str | None]) -> None:
        try:
            frame = read_frame(self._stdout)
        except (OSError, ValueError):  # NOTE(index): closed after a start timeout
            frame = None
        if frame is None:
            started.set_result(
                f"the index writer process exited at start (code "
                f"{self._exitcode()}; see its messages above)"
            )
            return
        error = orjson.loads(frame)[1]
        started.set_result(str(error) if error else None)

    # -- parent side of the protocol --------------------------------------------------

    def _receive(self) -> None:
        while True:
            try:
                frame = read_frame(self._stdout)
            except (OSError, ValueError):  # NOTE(index): ValueError: read from a closed file
                frame = None
            if frame is None:
                if self._closing:
                    self._fail_all("the index writer process is closed", quiet=True)
                else:
                    self._fail_all(f"the index writer process exited (code {self._exitcode()})")
                return
            try:
                rid, error = orjson.loads(frame)
                rid = int(rid)
            except (ValueError, TypeError) as ex:
                self._kill(f"malformed answer from the index writer process ({ex})")
                return
            if rid == 0:  # NOTE(index): documents were refused; the child exits
                self._kill(f"index writer process: {error}")
                continue
            with self._lock:
                future = self._pending.pop(rid, None)
            if future is None:
                continue
            if error:
                # NOTE(index): a writer-level failure (e.g. a commit on a full disk) leaves
                # Tantivy's writer unusable: the store replaces the process and replays.
                self._kill(f"index writer process failed: {error}")
                future.set_exception(StoreError(error))
            else:
                future.set_result(None)

    def _kill(self, reason: str) -> None:
        """Fail everything pending and kill the child (it hangs or its stream is corrupt)."""
        self._fail_all(reason)
        try:
            self._proc.kill()
        except OSError:
            pass

    def _expire(self, rid: int, op: bytes) -> None:
        with self._lock:
            pending = rid in self._pending
        if pending:
            self._kill(
                f"the index writer process did not answer {op!r} in {_DEADLINES[op]:.0f} s; killed"
            )

    def _exitcode(self) -> int | None:
        try:
            return self._proc.wait(1.0)
        except subprocess.TimeoutExpired:
            return None

    def _fail_all(self, reason: str, *, quiet: bool = False) -> None:
        with self._lock:
            reason = self._dead or reason  # NOTE(index): the first reason is the cause
            self._dead = reason
            pending, self._pending = self._pending, {}
        for future in pending.values():
            future.set_exception(StoreError(reason))
        if not quiet:
            logger.error("%s", reason)
            self.last_error = reason

    def _send(self, payload: bytes) -> None:
        if self._dead is not None:
            raise StoreError(self._dead)
        try:
            with self._send_lock:
                write_frame(self._stdin, payload)
        except (OSError, ValueError) as ex:
            raise StoreError(f"the index writer process is gone: {ex}") from ex

    def _request(self, op: bytes, arg: int = 0) -> Future[None]:
        future: Future[None] = Future()
        with self._lock:
            if self._dead is not None:
                raise StoreError(self._dead)
            rid = next(self._ids)
            self._pending[rid] = future
        watchdog = _watchdog(_DEADLINES[op], self._expire, rid, op)
        future.add_done_callback(lambda _: watchdog.cancel())
        try:
            self._send(op + rid.to_bytes(8, "little") + arg.to_bytes(8, "little"))
        except StoreError as ex:
            with self._lock:
                owned = self._pending.pop(rid, None) is not None
            if owned:  # NOTE(index): else _fail_all has failed it already
                future.set_exception(ex)
            raise
        return future

    # -- TantivySink ------------------------------------------------------------------

    def check(self) -> None:
        if self._dead is not None:
            raise StoreError(self._dead)

    def add(self, docs: list[bytes], raws: list[bytes]) -> None:
        parts: list[bytes] = []
        size = 0
        for doc, raw in zip(docs, raws, strict=True):
            parts += (doc, raw)
            size += len(doc) + len(raw) + 2
            if len(parts) >= 2 * _CHUNK_DOCS or size >= _CHUNK_BYTES:
                self._send_documents(parts)
                parts, size = [], 0
        if parts:
            self._send_documents(parts)

    def _send_documents(self, parts: list[bytes]) -> None:
        """Send one OP_ADD; a child that does not take it in time is killed (it hangs)."""
        watchdog = _watchdog(
            _ADD_DEADLINE,
            self._kill,
            f"the index writer process did not take documents in {_ADD_DEADLINE:.0f} s; killed",
        )
        try:
            self._send(OP_ADD + b"\0".join(parts))
        finally:
            watchdog.cancel()

    def commit_async(self) -> Future[None]:
        return self._request(OP_COMMIT)

    def delete_below(self, seq: int) -> None:
        self._request(OP_DELETE_BELOW, seq).result()

    def delete_all(self) -> None:
        self._request(OP_DELETE_ALL).result()

    def merge(self) -> None:
        self._request(OP_MERGE).result()

    def close(self, timeout: float | None = 60.0) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
        try:
            self._request(OP_CLOSE).result(timeout)
        except Exception as ex:  # noqa: BLE001 - close path: the child is stopped below
            logger.warning("index writer process did not close cleanly: %s", ex)
        self._stop_child(timeout)

    def _stop_child(self, timeout: float | None = 10.0) -> None:
        self._closing = True
        try:
            self._stdin.close()  # NOTE(index): end of file: the child exits
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
