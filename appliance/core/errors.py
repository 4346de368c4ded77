"""Every error the manager raises, and the HTTP status each one maps to.

The tree (resources raise these; `appliance.api.app` owns the one handler table)::

    ApplianceError(Exception)                    500
    ├── BadRequest(ApplianceError, ValueError)   400
    │   ├── InvalidParam                         400  (a query or path parameter)
    │   ├── MalformedBody                        400  (JSON/gzip/NDJSON that does not parse)
    │   ├── PayloadTooLarge                      413
    │   ├── UnsupportedMediaType                 415
    │   └── ValidationError                      422  (well-formed, but wrong shape/values)
    ├── Unauthorized                             401  (no/unknown credentials)
    ├── Forbidden                                403  (known identity, not allowed)
    ├── NotFound                                 404
    ├── Conflict                                 409
    ├── TooManyRequests                          429  (a concurrency cap; Retry-After)
    ├── Unavailable                              503  (stream cap, store closed; Retry-After)
    ├── StoreError                               500  (duckdb errors, translated in store/)
    │   └── ClosedError                          503
    └── PkiError                                 500
    ConfigError(ValueError)                      startup only; the CLI turns it into exit 2
                                                 (rules.settings.ConfigError, shared by every
                                                 package: `message at KEY in SOURCE`)
"""

from __future__ import annotations

from rules.settings import ConfigError

__all__ = [
    "ApplianceError",
    "BadRequest",
    "ClosedError",
    "ConfigError",
    "Conflict",
    "Forbidden",
    "InvalidParam",
    "MalformedBody",
    "NotFound",
    "PayloadTooLarge",
    "PkiError",
    "StoreError",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
    "ValidationError",
]


class ApplianceError(Exception):
    """Base of every manager error; `status` is the HTTP status it renders as."""

    status: int = 500
    title: str = "Internal Server Error"

    def __init__(self, message: str = "", *, where: str = "", retry_after: int = 0) -> None:
        self.message = message or self.title
        self.where = where
        self.retry_after = retry_after  # seconds, sent as Retry-After when > 0
        super().__init__(f"{self.message} in {where}" if where else self.message)


class BadRequest(ApplianceError, ValueError):
    status = 400
    title = "Bad Request"


class InvalidParam(BadRequest):
    status = 400
    title = "Invalid parameter"


class MalformedBody(BadRequest):
    status = 400
    title = "Malformed body"


class PayloadTooLarge(BadRequest):
    status = 413
    title = "Payload Too Large"


class UnsupportedMediaType(BadRequest):
    status = 415
    title = "Unsupported Media Type"


class ValidationError(BadRequest):
    status = 422
    title = "Unprocessable Entity"


class Unauthorized(ApplianceError):
    status = 401
    title = "Unauthorized"


class Forbidden(ApplianceError):
    status = 403
    title = "Forbidden"


class NotFound(ApplianceError):
    status = 404
    title = "Not Found"


class Conflict(ApplianceError):
    status = 409
    title = "Conflict"


class TooManyRequests(ApplianceError):
    status = 429
    title = "Too Many Requests"


class Unavailable(ApplianceError):
    status = 503
    title = "Service Unavailable"


class StoreError(ApplianceError):
    status = 500
    title = "Store error"


class ClosedError(StoreError):
    status = 503
    title = "Store closed"


class PkiError(ApplianceError):
    status = 500
    title = "PKI error"
