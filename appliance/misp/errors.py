"""Errors of the MISP sync; the only place PyMISP and requests failures become ours.

```
MispError(RuntimeError)
├── MispSettingsError(MispError, ConfigError)  settings rejected (bad URL, key format, unknown key)
├── MispUnavailable(MispError, ConnectionError) MISP unreachable, timed out, or answered 5xx: retry
│   ├── MispServerError                        MISP answered 5xx (retried a bounded number of times)
│   └── MispRateLimited                        429 on restSearch: retry after `retry_after` seconds
└── MispRejected(MispError)                    MISP answered 4xx: retrying won't help
```

Every error carries `operation` (e.g. "attributes/restSearch") so logs and the status API say where.
"""

from __future__ import annotations

from rules.settings import ConfigError

__all__ = [
    "MispError",
    "MispRateLimited",
    "MispRejected",
    "MispServerError",
    "MispSettingsError",
    "MispUnavailable",
]


class MispError(RuntimeError):
    """Base of every MISP sync error."""

    def __init__(self, message: str, *, operation: str = "") -> None:
        super().__init__(message)
        self.operation = operation

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} in {self.operation}" if self.operation else text


class MispSettingsError(MispError, ConfigError):
    """The MISP settings are invalid (a `rules.settings.ConfigError`, so the config loader
    reports it like any other bad setting)."""

    def __init__(self, message: str, *, operation: str = "") -> None:
        super().__init__(message, operation=operation)
        self.message, self.key, self.source = message, "", ""


class MispUnavailable(MispError, ConnectionError):
    """MISP is unreachable, timed out or failed: retry later.

    Also raised for 5xx replies; the request may be retried.
    """


class MispServerError(MispUnavailable):
    """MISP answered with a 5xx (or an unreadable 2xx): it is up but failing."""


class MispRateLimited(MispUnavailable):
    """MISP answered 429: retry after `retry_after` seconds."""

    def __init__(self, message: str, *, operation: str = "", retry_after: float = 0.0) -> None:
        super().__init__(message, operation=operation)
        self.retry_after = retry_after


class MispRejected(MispError):
    """MISP refused the request (4xx other than 429).

    `status` and `body` say why; retrying the same request won't help.
    """

    def __init__(
        self, message: str, *, operation: str = "", status: int = 0, body: object = None
    ) -> None:
        super().__init__(message, operation=operation)
        self.status = status
        self.body = body
