"""The index writer child process (``index.sinks.WriterProcess`` starts it).

It runs ``tantivy_writer.TantivyWriter`` operations as the parent asks over standard input and
answers on standard output (``index.writer_protocol``). A reader thread drains standard input
into a bounded queue so that a long commit does not stall the parent's sends beyond that bound.
When the parent goes away (end of file on standard input) the child exits at once: what it had
not committed is still in the parent's journal and is replayed at the next start.
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import threading
import traceback
from typing import IO, NoReturn

from index.mapped import MAPPED_LIMIT, MappedTrimmer
from index.tantivy_writer import TantivyWriter, open_index
from index.writer_protocol import (
    NO_REQUEST,
    Op,
    decode_add,
    decode_request,
    encode_reply,
    read_frame,
    write_frame,
)

__all__ = ["main"]

_INBOX = 16  # messages (≤ 2,000 documents each) buffered while a commit runs
_LOCK_WAIT = 30.0  # a previous writer may still be exiting after a crash


def _serve(writer: TantivyWriter, stdin: IO[bytes], out: IO[bytes]) -> NoReturn:
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
            os._exit(0)  # parent gone; its journal replays what is uncommitted
        try:
            op, rid, arg = decode_request(message)
        except ValueError as ex:
            write_frame(out, encode_reply(NO_REQUEST, f"malformed request: {ex}"))
            os._exit(1)
        if op is Op.ADD:
            try:
                writer.add(decode_add(message))
            except Exception as ex:  # noqa: BLE001 - reported; the parent replays
                # some documents of the message may be in the writer; exit
                # without committing so the replay from the committed max adds them once.
                error = f"adding documents failed: {type(ex).__name__}: {ex}"[:2000]
                write_frame(out, encode_reply(NO_REQUEST, error))
                os._exit(1)
            continue
        try:
            go_on = writer.run(op, arg)
        except Exception as ex:  # noqa: BLE001 - reported to the parent
            write_frame(out, encode_reply(rid, f"{type(ex).__name__}: {ex}"))
            continue
        write_frame(out, encode_reply(rid, None))
        if not go_on:
            os._exit(0)  # the reader thread is blocked on standard input


def _detach_stdout() -> IO[bytes]:
    """The reply stream: a private copy of file descriptor 1, which then points to stderr.

    nothing else (native code, libraries) may write into the replies.
    """
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def _ignore_stop_signals() -> None:
    """The parent stops us (end of file or Op.CLOSE) after its last commit; a Ctrl-C or a
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
        writer = TantivyWriter(
            open_index(path),
            heap_size=int(heap_size),
            num_threads=int(num_threads),
            lock_wait=_LOCK_WAIT,
        )
    except Exception as ex:  # noqa: BLE001 - reported to the parent
        write_frame(stdout, encode_reply(NO_REQUEST, f"cannot open the Tantivy writer: {ex}"))
        return 1
    write_frame(stdout, encode_reply(NO_REQUEST, None))
    # a merge maps its source segments: without this, their pages stayed in the RSS
    MappedTrimmer(path, MAPPED_LIMIT).start()
    try:
        _serve(writer, stdin, stdout)
    except BaseException:  # noqa: BLE001 - e.g. the parent is gone while we reply
        traceback.print_exc()
        os._exit(1)  # the reader thread holds stdin: no interpreter shutdown
