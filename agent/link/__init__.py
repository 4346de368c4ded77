"""The agent ↔ manager link: enrollment, mutual TLS, durable forwarding, commands, updates."""

from __future__ import annotations

from .attach import attach
from .backoff import Backoff
from .config import LinkConfig
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
from .hooks import LinkHooks
from .identity import Identity, IdentityStore
from .link import Link
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
    "Identity",
    "IdentityStore",
    "Link",
    "LinkConfig",
    "LinkError",
    "LinkHooks",
    "LinkState",
    "MemoryTransport",
    "Request",
    "Response",
    "Spool",
    "SpoolError",
    "Transport",
    "TransportError",
    "attach",
]
