"""Values ``EventStore`` returns (batch results, search pages, state) and its search cursors."""

from __future__ import annotations

import base64
import binascii
import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from index.errors import IndexQueryError

__all__ = [
    "AppendResult",
    "EndpointRef",
    "IndexHealth",
    "IndexState",
    "SearchPage",
    "StoreState",
    "decode_cursor",
    "encode_cursor",
    "rfc3339_ns",
]


class StoreState(enum.Enum):
    """Lifecycle of an :class:`EventStore`."""

    OPEN = "open"  # accepting appends and queries
    CLOSED = "closed"  # close() ran; every call raises StoreClosedError


class IndexState(enum.Enum):
    """Whether the event index keeps up with the journal (``EventStore.health``)."""

    OK = "ok"
    GAP = "gap"  # a backend failed (cluster: or shipping); appends stay durable, it catches up
    STOPPED = "stopped"  # the writer thread ended: nothing is indexed until a restart


@dataclass(frozen=True, slots=True)
class IndexHealth:
    """The one health value of the event index, for /healthz, /metrics and /stats.

    ``backlog``: journaled events not yet handed to both backends; ``reason``: why the state is
    not ``OK`` (None when it is); ``writer_pid``: the process writing the Tantivy index;
    ``cluster``: in cluster mode, the ClickHouse shipper's state (``state``, ``lag``,
    ``shipped_seq``, ``error``; docs/cluster.md).
    """

    state: IndexState
    reason: str | None
    backlog: int
    writer_pid: int | None
    cluster: dict[str, object] | None = None

    @property
    def ok(self) -> bool:
        """True while every journaled event is on its way into the index."""
        return self.state is IndexState.OK


@dataclass(frozen=True, slots=True)
class EndpointRef:
    """The endpoint a batch came from (its certificate CN is ``uuid``)."""

    uuid: str
    hostname: str = ""
    ip: str = ""
    group: str = ""

    def to_edr(self) -> dict[str, str]:
        """Return the WHIDS ``EdrData.Endpoint`` object."""
        return {"UUID": self.uuid, "IP": self.ip, "Hostname": self.hostname, "Group": self.group}


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Outcome of ``append``: the sequence range given to the batch.

    Attributes:
        first_seq: Sequence number of the first event (0 for an empty batch).
        count: Number of events stored.
        duplicate: True when ``(endpoint, batch_id)`` was already stored (nothing written).
    """

    first_seq: int
    count: int
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of search results, newest event first.

    Attributes:
        events: Full events (with ``EdrData``).
        next_cursor: Opaque cursor for the next page, ``None`` on the last page.
        total: Number of matching events (of the whole result, not this page).
    """

    events: list[dict[str, Any]]
    next_cursor: str | None
    total: int


def rfc3339_ns(ns: int) -> str:
    """Nanoseconds since the epoch as RFC 3339 UTC text with 9 fraction digits."""
    secs, frac = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{frac:09d}Z"


def encode_cursor(ts_ns: int, seqs: list[int], total: int) -> str:
    """Opaque cursor: the last page's event time, the seqs seen at that time, the total."""
    raw = orjson.dumps({"t": ts_ns, "s": seqs, "n": total})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, set[int], int]:
    """Inverse of ``encode_cursor``; ``IndexQueryError`` for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        body = orjson.loads(raw)
        return int(body["t"]), {int(s) for s in body["s"]}, int(body["n"])
    except (ValueError, KeyError, TypeError, binascii.Error, orjson.JSONDecodeError) as ex:
        raise IndexQueryError("invalid cursor", query=cursor) from ex
