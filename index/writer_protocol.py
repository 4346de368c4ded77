"""The messages between the store (parent) and the index writer child process.

The child runs ``python -P -c CHILD_CODE PATH HEAP THREADS`` (a frozen manager re-runs itself
with ``FROZEN_ARG``: ``heron-manager --heron-index-writer PATH HEAP THREADS``). They talk over
the child's standard input and output in frames: a 4-byte little-endian length, then the payload.

Parent → child, the first byte is the :class:`Op`:

* ``Op.ADD`` then NUL-separated pairs of document JSON and stored event JSON (orjson never emits
  a raw NUL byte; ``schema.with_raw`` joins each pair). No reply: the pipe's back-pressure
  bounds them, and a refused document is reported with request id 0 (the child then exits).
* any other op: a request id and an integer argument, 8 bytes little-endian each.

Child → parent: JSON ``[request id, error or null]``; id 0 is the start-up answer, or the error
of a document batch. Operations run in the order they arrive.

Only the standard library and orjson here: the manager's command line imports ``FROZEN_ARG``.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import orjson

__all__ = [
    "CHILD_CODE",
    "DEADLINES",
    "FROZEN_ARG",
    "NO_REQUEST",
    "Op",
    "child_command",
    "decode_add",
    "decode_reply",
    "decode_request",
    "encode_adds",
    "encode_reply",
    "encode_request",
    "read_frame",
    "write_frame",
]

FROZEN_ARG = "--heron-index-writer"
# not ``-m index.writer_child``: the package imports that module first.
CHILD_CODE = "import sys; from index.writer_child import main; sys.exit(main())"
NO_REQUEST = 0  # the request id of the start-up answer and of a refused document batch


class Op(enum.Enum):
    """What the parent asks of the child."""

    ADD = b"A"
    COMMIT = b"C"
    DELETE_BELOW = b"D"  # delete every document with seq < arg, and commit
    DELETE_ALL = b"X"
    MERGE = b"M"  # arg 0: wait for the merges in flight; 1: commit and collect files only
    CLOSE = b"Q"


# an operation the child has not answered by then means it hangs: it is killed
# (the store then starts a new one and replays the journal). ADD: the time to take one message.
DEADLINES = {
    Op.ADD: 600.0,
    Op.COMMIT: 600.0,
    Op.DELETE_BELOW: 3600.0,
    Op.DELETE_ALL: 3600.0,
    Op.MERGE: 3600.0,
    Op.CLOSE: 3600.0,
}
# one ADD message holds at most this many documents or bytes.
_CHUNK_DOCS = 2_000
_CHUNK_BYTES = 16 * 1024 * 1024


def child_command(path: Path, heap_size: int, num_threads: int) -> list[str]:
    """The command line that starts the writer child for the index at ``path``."""
    args = [str(path), str(heap_size), str(num_threads)]
    if getattr(sys, "frozen", False):  # appliance.cli.main routes FROZEN_ARG here
        return [sys.executable, FROZEN_ARG, *args]
    return [sys.executable, "-P", "-c", CHILD_CODE, *args]  # NOTE: -P: not the cwd first


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


def encode_adds(docs: list[bytes], raws: list[bytes]) -> Iterator[bytes]:
    """``Op.ADD`` messages for the documents and their stored events, in order."""
    parts: list[bytes] = []
    size = 0
    for doc, raw in zip(docs, raws, strict=True):
        parts += (doc, raw)
        size += len(doc) + len(raw) + 2
        if len(parts) >= 2 * _CHUNK_DOCS or size >= _CHUNK_BYTES:
            yield Op.ADD.value + b"\0".join(parts)
            parts, size = [], 0
    if parts:
        yield Op.ADD.value + b"\0".join(parts)


def decode_add(message: bytes) -> Iterator[tuple[bytes, bytes]]:
    """The ``(document, stored event)`` pairs of an ``Op.ADD`` message."""
    parts = message[1:].split(b"\0")
    for i in range(0, len(parts) - 1, 2):
        yield parts[i], parts[i + 1]


def encode_request(op: Op, rid: int, arg: int = 0) -> bytes:
    """A request other than ``Op.ADD``."""
    return op.value + rid.to_bytes(8, "little") + arg.to_bytes(8, "little")


def decode_request(message: bytes) -> tuple[Op, int, int]:
    """``(op, request id, argument)`` of a message (``Op.ADD``: id and argument are 0).

    Raises:
        ValueError: an unknown operation.
    """
    op = Op(message[:1])
    if op is Op.ADD:
        return op, NO_REQUEST, 0
    return op, int.from_bytes(message[1:9], "little"), int.from_bytes(message[9:17], "little")


def encode_reply(rid: int, error: str | None) -> bytes:
    """The child's answer to request ``rid`` (``NO_REQUEST``: start-up or documents)."""
    return orjson.dumps([rid, error])


def decode_reply(frame: bytes) -> tuple[int, str | None]:
    """``(request id, error or None)`` of an answer.

    Raises:
        ValueError: a malformed answer.
    """
    try:
        rid, error = orjson.loads(frame)
        return int(rid), None if error is None else str(error)
    except (TypeError, ValueError) as ex:
        raise ValueError(f"malformed answer from the index writer process ({ex})") from ex
