"""The index writer child process (``index.sinks.WriterProcess`` starts it).

Run as ``python -c "...main()" PATH HEAP THREADS`` (or, frozen, ``heron-manager
--heron-index-writer PATH HEAP THREADS``). It talks over its standard input and output in
frames (4-byte little-endian length, then the payload). Parent → child: an op byte, then for
``OP_ADD`` NUL-separated pairs of document JSON and stored event JSON (orjson never emits a
raw NUL byte; ``schema.with_raw`` joins each pair), for the other
ops a request id and an integer argument (8 bytes little-endian each). Child → parent, JSON
``[request id, error or null]``; id 0 is the start-up answer, or the error of a document
batch (which has no request). Operations run in the order they arrive.

A reader thread drains standard input into a bounded queue so that a long commit does not
stall the parent's sends beyond that bound. When the parent goes away (end of file on
standard input) the child exits at once: what it had not committed is still in the parent's
journal and is replayed at the next start.
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import threading
import time
import traceback
from typing import IO, Any, NoReturn

import orjson
import tantivy

from index.schema import build_schema, register_analyzers, with_raw

__all__ = [
    "FROZEN_ARG",
    "OP_ADD",
    "OP_CLOSE",
    "OP_COMMIT",
    "OP_DELETE_ALL",
    "OP_DELETE_BELOW",
    "OP_MERGE",
    "delete_below_query",
    "main",
    "open_writer",
    "read_frame",
    "write_frame",
]

FROZEN_ARG = "--heron-index-writer"

OP_ADD = b"A"
OP_COMMIT = b"C"
OP_DELETE_BELOW = b"D"
OP_DELETE_ALL = b"X"
OP_MERGE = b"M"
OP_CLOSE = b"Q"
_INBOX = 16  # NOTE(index): messages (≤ 2,000 documents each) buffered while a commit runs
_LOCK_WAIT = 30.0  # NOTE(index): a previous writer may still be exiting after a crash


def read_frame(stream: IO[bytes]) -> bytes | None:
    """Read one frame; ``None`` at end of file (also in the middle of a frame)."""
    head = stream.read(4)
    if len(head) < 4:
        return None
    size = int.from_bytes(head, "little")
    body = stream.read(size)
    return body if len(body) == size else None


def write_frame(stream: IO[bytes], payload: bytes) -> None:
    """Write and flush one frame."""
    stream.write(len(payload).to_bytes(4, "little") + payload)
    stream.flush()


def delete_below_query(schema: tantivy.Schema, seq: int) -> tantivy.Query:
    """The query matching every document whose ``seq`` is below ``seq``."""
    return tantivy.Query.range_query(schema, "seq", tantivy.FieldType.Unsigned, 0, seq - 1)


def open_writer(
    index: tantivy.Index, heap_size: int, num_threads: int, wait: float = _LOCK_WAIT
) -> Any:
    """Open the index writer, waiting up to ``wait`` seconds for the writer lock."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return index.writer(heap_size=heap_size, num_threads=num_threads)
        except ValueError as ex:
            if "lock" not in str(ex).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class _Child:
    def __init__(self, out: IO[bytes], path: str, heap_size: int, num_threads: int) -> None:
        self.out = out
        self.heap_size = heap_size
        self.num_threads = num_threads
        self.index = tantivy.Index(build_schema(), path=path, reuse=True)
        register_analyzers(self.index)
        self.writer = open_writer(self.index, heap_size, num_threads)

    def handle(self, op: bytes, arg: int) -> bool:
        """Run one request; return False when the child must exit."""
        if op == OP_COMMIT:
            self.writer.commit()
        elif op == OP_DELETE_BELOW:
            self.writer.delete_documents_by_query(delete_below_query(self.index.schema, arg))
            self.writer.commit()
        elif op == OP_DELETE_ALL:
            # NOTE(index): delete_all_documents spares documents added but not yet committed.
            self.writer.commit()
            self.writer.delete_all_documents()
            self.writer.commit()
        elif op == OP_MERGE:
            self.writer.commit()
            self.writer.wait_merging_threads()  # NOTE(index): consumes the writer
            self.writer = open_writer(self.index, self.heap_size, self.num_threads)
            self.writer.garbage_collect_files()
        elif op == OP_CLOSE:
            self.writer.wait_merging_threads()
            return False
        else:
            raise ValueError(f"unknown operation {op!r}")
        return True

    def add(self, payload: bytes) -> None:
        add = self.writer.add_json
        parts = payload.split(b"\0")
        for i in range(0, len(parts) - 1, 2):
            add(with_raw(parts[i], parts[i + 1]))

    def reply(self, rid: int, error: str | None) -> None:
        write_frame(self.out, orjson.dumps([rid, error]))

    def run(self, stdin: IO[bytes]) -> NoReturn:
        inbox: queue.Queue[bytes | None] = queue.Queue(maxsize=_INBOX)

        def read() -> None:
            try:
                while (frame := read_frame(stdin)) is not None:
                    inbox.put(frame)
            finally:
                inbox.put(None)

        threading.Thread(target=read, name="heron-index-inbox", daemon=True).start()
        while True:
            message = inbox.get()
            if message is None:
                os._exit(0)  # NOTE(index): parent gone; its journal replays what is uncommitted
            op = message[:1]
            if op == OP_ADD:
                try:
                    self.add(message[1:])
                except Exception as ex:  # noqa: BLE001 - reported; the parent replays
                    # NOTE(index): some documents of the message may be in the writer; exit
                    # without committing so the replay from the committed max adds them once.
                    self.reply(0, f"adding documents failed: {type(ex).__name__}: {ex}"[:2000])
                    os._exit(1)
                continue
            rid = int.from_bytes(message[1:9], "little")
            arg = int.from_bytes(message[9:17], "little")
            try:
                go_on = self.handle(op, arg)
            except Exception as ex:  # noqa: BLE001 - reported to the parent
                self.reply(rid, f"{type(ex).__name__}: {ex}")
                continue
            self.reply(rid, None)
            if not go_on:
                os._exit(0)  # NOTE(index): the reader thread is blocked on standard input


def _detach_stdout() -> IO[bytes]:
    """The reply stream: a private copy of file descriptor 1, which then points to stderr.

    NOTE(index): nothing else (native code, libraries) may write into the replies.
    """
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def _ignore_stop_signals() -> None:
    """The parent stops us (end of file or OP_CLOSE) after its last commit; a Ctrl-C or a
    service manager's SIGTERM to the whole group must not kill us first."""
    for name in ("SIGINT", "SIGTERM"):
        try:
            signal.signal(getattr(signal, name), signal.SIG_IGN)
        except (AttributeError, OSError, ValueError):
            pass


def main(argv: list[str] | None = None) -> int:
    """Entry point of the writer process: ``PATH HEAP_SIZE NUM_THREADS``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print(
            "usage: index writer PATH HEAP_SIZE NUM_THREADS (started by the event store)",
            file=sys.stderr,
        )
        return 2
    path, heap_size, num_threads = args
    _ignore_stop_signals()
    stdin, stdout = sys.stdin.buffer, _detach_stdout()
    try:
        child = _Child(stdout, path, int(heap_size), int(num_threads))
    except Exception as ex:  # noqa: BLE001 - reported to the parent
        write_frame(stdout, orjson.dumps([0, f"cannot open the Tantivy writer: {ex}"]))
        return 1
    write_frame(stdout, orjson.dumps([0, None]))
    try:
        child.run(stdin)
    except BaseException:  # noqa: BLE001 - e.g. the parent is gone while we reply
        traceback.print_exc()
        os._exit(1)  # NOTE(index): the reader thread holds stdin: no interpreter shutdown
