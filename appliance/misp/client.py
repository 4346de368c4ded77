"""The one boundary to PyMISP: lazy, retried connection and translation of every failure.

`MispClient` builds the PyMISP object on first use through an injected factory (the constructor
makes 3 HTTP calls, docs/reference/misp.md §1.2, so it is never built at manager start), backs off
exponentially
while MISP is down, and turns requests/PyMISP exceptions and PyMISP's `{"errors": (status, body)}`
replies into the `MispError` tree (`EXCEPTION_MAP`, checked complete by a test). Callers above this
module never see a PyMISP or requests exception.
"""

from __future__ import annotations

import email.utils
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import requests
from pymisp import PyMISP
from pymisp import exceptions as pymisp_exceptions

from .errors import (
    MispError,
    MispRateLimited,
    MispRejected,
    MispServerError,
    MispSettingsError,
    MispUnavailable,
)
from .settings import MispSettings

__all__ = ["EXCEPTION_MAP", "ClientFactory", "MispClient", "pymisp_factory", "role_of"]

logger = logging.getLogger(__name__)

ClientFactory = Callable[[MispSettings], Any]
TOOL = "heron"
SERVER_ERRORS_BACKOFF = 3

# Third-party exception → ours; the most specific entry (by MRO) wins.
EXCEPTION_MAP: dict[type[BaseException], type[MispError]] = {
    requests.exceptions.RequestException: MispUnavailable,
    pymisp_exceptions.PyMISPError: MispRejected,
    pymisp_exceptions.MISPServerError: MispServerError,
    pymisp_exceptions.PyMISPUnexpectedResponse: MispServerError,
    pymisp_exceptions.PyMISPEmptyResponse: MispServerError,
    pymisp_exceptions.NoURL: MispSettingsError,
    pymisp_exceptions.NoKey: MispSettingsError,
}


def translate(ex: BaseException, operation: str) -> MispError:
    """The MispError for a third-party exception.

    Walks the exception's MRO for the closest entry of EXCEPTION_MAP.
    """
    for cls in type(ex).__mro__:
        target = EXCEPTION_MAP.get(cls)
        if target is not None:
            return target(f"{type(ex).__name__}: {_short(ex)}", operation=operation)
    return MispUnavailable(f"{type(ex).__name__}: {_short(ex)}", operation=operation)


def _short(ex: BaseException) -> str:
    text = str(ex).replace("\n", " ")
    return text if len(text) <= 300 else text[:300] + "…"


def pymisp_factory(settings: MispSettings) -> PyMISP:
    """Build the real PyMISP client from the settings.

    CA bundle or verify flag, bounded timeouts, `heron` in the User-Agent.
    """
    if settings.verify is False:
        logger.warning("MISP TLS certificate verification is OFF for %s", settings.url)
    cert: str | tuple[str, str] | None = None
    if settings.client_cert:
        cert = (
            (settings.client_cert, settings.client_key)
            if settings.client_key
            else settings.client_cert
        )
    return PyMISP(
        settings.url,
        settings.api_key,
        ssl=settings.verify,
        timeout=(settings.connect_timeout, settings.read_timeout),
        tool=TOOL,
        proxies={"http": settings.proxy, "https": settings.proxy} if settings.proxy else None,
        cert=cert,
    )


class MispClient:
    """A lazily connected PyMISP with back-off.

    Every call goes through `call()`.
    """

    def __init__(
        self,
        settings: MispSettings,
        *,
        factory: ClientFactory = pymisp_factory,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self._factory = factory
        self._clock = clock
        self._api: Any = None
        self._lock = threading.RLock()
        self._failures = 0
        self.next_attempt = 0.0
        self.last_error = ""
        self._last_headers: Mapping[str, str] = {}
        self._last_status = 0
        self._server_errors = 0  # consecutive 5xx replies: MISP itself failing, not one item
        self.permissions: dict[str, bool] = {}
        self.role = ""
        self.user = ""
        self.rate_limit: dict[str, str] = {}

    @property
    def connected(self) -> bool:
        return self._api is not None

    def backoff(self) -> float:
        """Current retry delay, doubled per failure and capped."""
        s = self.settings
        return float(min(s.retry_backoff * (2 ** max(self._failures - 1, 0)), s.retry_backoff_max))

    def _connect(self) -> Any:
        if self._api is not None:
            return self._api
        if not self.settings.configured:
            raise MispSettingsError(
                "MISP sync is not configured (enabled, url, api_key)", operation="connect"
            )
        now = self._clock()
        if now < self.next_attempt:
            raise MispUnavailable(
                f"not retrying before {self.next_attempt - now:.0f}s "
                f"(last error: {self.last_error})",
                operation="connect",
            )
        try:
            api = self._factory(self.settings)
        except Exception as ex:
            err = translate(ex, "connect")
            if isinstance(err, MispRejected) and "Unable to connect" in str(ex):
                err = MispUnavailable(err.args[0], operation="connect")  # refused, reset, timeout
            self._fail(err)
            raise err from ex
        self._install_header_capture(api)
        self._read_role(api)
        self._api = api
        self._failures = 0
        self.last_error = ""
        logger.info("connected to MISP at %s", self.settings.url)
        return api

    def _fail(self, err: MispError) -> None:
        self._failures += 1
        delay = self.backoff()
        self.next_attempt = self._clock() + delay
        self.last_error = str(err)
        logger.warning(
            "MISP %s failed (%s); retrying in %.0fs", err.operation or "call", err, delay
        )

    def _install_header_capture(self, api: Any) -> None:
        # PyMISP hides response headers; a response hook on its session keeps the last
        # ones so that a 429's X-Rate-Limit-Reset can set the back-off (docs/reference/misp.md §5).
        session = getattr(api, "_PyMISP__session", None)
        if isinstance(session, requests.Session):
            session.hooks.setdefault("response", []).append(self._capture)

    def _capture(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._last_headers = dict(response.headers)
        self._last_status = response.status_code
        # RateLimitComponent sends these on every limited route (docs/reference/misp.md §5): kept
        # for the status.
        limits = {
            k.removeprefix("X-Rate-Limit-").lower(): v
            for k, v in response.headers.items()
            if k.lower().startswith("x-rate-limit-")
        }
        if limits:
            self.rate_limit = limits

    def _read_role(self, api: Any) -> None:
        """Role flags of the key's user.

        PyMISP's constructor already fetched /users/view/me (docs/reference/misp.md §1.2): no extra
        request.
        """
        info = role_of(api)
        self.permissions = info["perms"]
        self.role = info["role"]
        self.user = info["email"]

    def server_time(self) -> int | None:
        """MISP's clock, from the `Date` header of the last response (None if absent)."""
        text = self._last_headers.get("Date", "")
        try:
            return int(email.utils.parsedate_to_datetime(text).timestamp()) if text else None
        except (TypeError, ValueError):
            return None

    def allowed(self, perm: str) -> bool:
        """Whether the role has `perm`; True while unknown (the request will tell)."""
        return self.permissions.get(perm, True) if self.permissions else True

    def ready(self) -> bool:
        """Whether a call may be attempted now (not inside a back-off window)."""
        return self._api is not None or self._clock() >= self.next_attempt

    def call(self, operation: str, fn: Callable[[Any], Any]) -> Any:
        """Run `fn(pymisp)` and translate every failure.

        Raises MispError; returns PyMISP's (unwrapped) reply.
        """
        with self._lock:
            api = self._connect()
            if self._clock() < self.next_attempt:
                raise MispUnavailable(
                    f"backing off (last error: {self.last_error})", operation=operation
                )
            self._last_status = 0
            try:
                result = fn(api)
            except MispError:
                raise
            except Exception as ex:
                err = translate(ex, operation)
                if isinstance(err, MispServerError) and 400 <= self._last_status < 500:
                    # A 4xx that is not JSON (a proxy's HTML 413): PyMISP calls it a server error,
                    # but it is about this request, and resending it will not help.
                    err = MispRejected(
                        f"HTTP {self._last_status}: {_short(ex)}",
                        operation=operation,
                        status=self._last_status,
                        body=_short(ex),
                    )
                self._failed(err)
                raise err from ex
            if isinstance(result, Mapping) and "errors" in result:
                err = self._reply_error(operation, result["errors"])
                self._failed(err)
                raise err
            self._failures = 0
            self._server_errors = 0
            self.last_error = ""
            return result

    def _failed(self, err: MispError) -> None:
        """Global back-off only when MISP itself is unreachable or failing.

        A 5xx or a 4xx answers one request: the caller counts it against that item. Several 5xx
        in a row mean MISP is failing as a whole, and then everything backs off. A 429 limits
        restSearch only: its caller waits for the reset.
        """
        self.last_error = str(err)
        if isinstance(err, MispRateLimited | MispRejected):
            return
        if isinstance(err, MispServerError):
            self._server_errors += 1
            if self._server_errors < SERVER_ERRORS_BACKOFF:
                return
        if isinstance(err, MispUnavailable):
            self._fail(err)

    def _reply_error(self, operation: str, errors: Any) -> MispError:
        status, body = (
            errors if isinstance(errors, tuple | list) and len(errors) == 2 else (0, errors)
        )
        if status == 429:
            reset = self._last_headers.get("X-Rate-Limit-Reset", "")
            retry_after = float(reset) if reset.replace(".", "", 1).isdigit() else 0.0
            return MispRateLimited(
                f"rate limited: {body}", operation=operation, retry_after=retry_after
            )
        if status in (401, 403) and "Authentication failed" in str(body):
            # A wrong or revoked key: nothing is wrong with the request, keep it for later.
            return MispUnavailable(f"MISP answered {status}: {body}", operation=operation)
        return MispRejected(
            f"MISP answered {status}: {body}",
            operation=operation,
            status=int(status) if isinstance(status, int) else 0,
            body=body,
        )

    def close(self) -> None:
        """Drop the PyMISP object (its session is closed with it).

        Never waits for a call in flight (a settings change must not wait on the network): that
        call fails as unavailable and its item stays queued.
        """
        api, self._api = self._api, None
        session = getattr(api, "_PyMISP__session", None)
        if isinstance(session, requests.Session):
            try:
                session.close()
            except Exception:  # noqa: BLE001 - close paths never raise
                pass


def role_of(api: Any) -> dict[str, Any]:
    """User e-mail, role name and `perm_*` flags PyMISP read from /users/view/me."""
    user = getattr(api, "_current_user", None)
    role = getattr(api, "_current_role", None)
    perms = {
        k: bool(v)
        for k, v in (role.to_dict() if role is not None else {}).items()
        if k.startswith("perm_")
    }
    return {
        "email": str(getattr(user, "email", "")),
        "role": str(getattr(role, "name", "")),
        "perms": perms,
    }
