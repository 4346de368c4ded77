"""Errors raised by the agent ↔ manager link.

Tree::

    LinkError(ConnectionError)
    ├── TransportError            network/TLS failure talking to the manager (carries `.path`)
    │   └── CertificateRejected   TLS session refused or closed right after the handshake
    ├── HTTPStatusError           the manager answered with an unexpected status (`.status`)
    ├── BatchError                a /logs batch failed (carries `.batch_id`)
    ├── EnrollmentError           enrollment or renewal could not complete
    └── SpoolError                the on-disk queue is unusable (disk full, corrupt state)
"""

from __future__ import annotations


class LinkError(ConnectionError):
    """Base class of every link error."""


class TransportError(LinkError):
    """A request could not be delivered (connection refused, reset, TLS failure)."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(f"{message} ({path})" if path else message)
        self.path = path


class CertificateRejected(TransportError):
    """The manager refused our client certificate (rejected or revoked)."""


class HTTPStatusError(LinkError):
    """The manager answered with a status the caller did not expect."""

    def __init__(self, status: int, body: bytes = b"", *, path: str = "") -> None:
        text = body[:200].decode("utf-8", "replace")
        super().__init__(f"HTTP {status} from {path or 'manager'}: {text}")
        self.status = status
        self.body = body
        self.path = path


class BatchError(LinkError):
    """A /logs batch could not be delivered; carries the batch id."""

    def __init__(self, message: str, *, batch_id: str) -> None:
        super().__init__(f"{message} in batch {batch_id}")
        self.batch_id = batch_id


class EnrollmentError(LinkError):
    """Enrollment (token or bundle) or certificate renewal failed."""


class SpoolError(LinkError):
    """The durable queue cannot store or read events."""
