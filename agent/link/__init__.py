"""The agent ↔ manager link: enrollment, mutual TLS, durable forwarding, commands, updates."""

from __future__ import annotations

from .backoff import Backoff
from .errors import (
    BatchError,
    CertificateRejected,
    EnrollmentError,
    HTTPStatusError,
    LinkError,
    SpoolError,
    TransportError,
)
from .forwarder import Forwarder, LinkState
from .spool import Spool
from .transport import HttpsTransport, MemoryTransport, Request, Response, Transport

__all__ = [
    "Backoff",
    "BatchError",
    "CertificateRejected",
    "EnrollmentError",
    "Forwarder",
    "HTTPStatusError",
    "HttpsTransport",
    "LinkError",
    "LinkState",
    "MemoryTransport",
    "Request",
    "Response",
    "Spool",
    "SpoolError",
    "Transport",
    "TransportError",
]
