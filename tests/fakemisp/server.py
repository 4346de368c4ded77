"""The fake MISP HTTP(S) server: routing, authentication, request recording, fault injection.

A `ThreadingHTTPServer` on 127.0.0.1, port 0, run in a thread (docs/reference/misp.md §8). It
checks what MISP
checks (the API key in `Authorization` or `X-MISP-AUTH`, `Accept: application/json`, JSON bodies,
parameter names and values against describeTypes) and answers with MISP's bodies and status codes.
Tests seed data through `FakeMisp.model` (under `FakeMisp.lock`), inject faults with
`FakeMisp.inject`, and take the server down and up again with `stop()`/`start()` on the same port.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import data
from .model import MispModel, Rejected

logger = logging.getLogger(__name__)

DEFAULT_KEY = "a" * 36 + "0001"
KEY_FORMAT = re.compile(r"^[a-zA-Z0-9]{40}$")
FAULT_KINDS = ("403", "429", "500", "slow", "reset", "truncate", "hold", "error200")
# MISP's stock "User" role (db_schema / INSTALL default roles): no publish, no tag creation.
STOCK_USER_ROLE: dict[str, Any] = {
    "id": "3",
    "name": "User",
    "perm_add": True,
    "perm_modify": True,
    "perm_modify_org": False,
    "perm_publish": False,
    "perm_sighting": True,
    "perm_tagger": True,
    "perm_tag_editor": False,
    "perm_auth": True,
    "enforce_rate_limit": False,
    "rate_limit_count": "0",
}
RATE_LIMIT_WINDOW = 900  # RateLimitComponent: rate_limit_count searches per user per 15 minutes
NO_PERMISSION = "You do not have permission to use this functionality."


@dataclass(frozen=True, slots=True)
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    status: int = 0


@dataclass(slots=True)
class Fault:
    """An injected failure on the routes whose path starts with `prefix` ("" = every route)."""

    kind: str
    prefix: str = ""
    times: int | None = None
    delay: float = 2.0
    reset_after: int = 900
    arrived: threading.Event = field(default_factory=threading.Event)  # "hold": a request waits
    release: threading.Event = field(default_factory=threading.Event)  # "hold": let it answer


@dataclass
class _State:
    faults: list[Fault] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class FakeMisp:
    """A loopback MISP double; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        *,
        key: str = DEFAULT_KEY,
        clock: Callable[[], float] = time.time,
        tls: tuple[str, str] | None = None,
        perm_sighting: bool = True,
        role: dict[str, Any] | None = None,
        max_body: int | None = None,
        client_ca: str | None = None,
    ) -> None:
        self.key = key
        self.model = MispModel(clock)
        self.lock = self.model.lock
        self.tls = tls
        self.client_ca = client_ca  # Apache `SSLVerifyClient require`: mutual TLS in front of MISP
        self.role = {**STOCK_USER_ROLE, "perm_sighting": perm_sighting, **(role or {})}
        self.model.role = self.role
        # A reverse proxy's body limit (nginx client_max_body_size): an HTML 413, not MISP's JSON.
        self.max_body = max_body
        self._budget: tuple[float, int] = (0.0, 0)  # rate-limit window start, searches used
        self.port = 0
        self._state = _State()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()

    # --- lifecycle --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> FakeMisp:
        """Listen (again) on the same port; the first start picks a free port."""
        handler = type("Handler", (_Handler,), {"fake": self})
        server = _Server(("127.0.0.1", self.port), handler)
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self.tls)
            if self.client_ca:
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(self.client_ca)
            server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fakemisp",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket and kept-alive connections: refused until start()."""
        with self.lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeMisp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- test controls ----------------------------------------------------------------------------

    def inject(
        self,
        kind: str,
        prefix: str = "",
        *,
        times: int | None = None,
        delay: float = 2.0,
        reset_after: int = 900,
    ) -> Fault:
        """Make matching requests fail: 403 bad key, 429 (restSearch only), 500, slow, reset (before
        processing), truncate (processed, then the reply is cut: a lost response)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}")
        fault = Fault(kind, prefix, times, delay, reset_after)
        with self.lock:
            self._state.faults.append(fault)
        return fault

    @property
    def perm_sighting(self) -> bool:
        return bool(self.role.get("perm_sighting"))

    def rate_limit(self, path: str) -> tuple[bool, dict[str, str]]:
        """RateLimitComponent::check: only restSearch, only for roles with enforce_rate_limit.

        Every limited reply carries X-Rate-Limit-Limit/-Remaining/-Reset; past the budget, 429.
        """
        if "/restSearch" not in path or not self.role.get("enforce_rate_limit"):
            return True, {}
        limit = int(self.role.get("rate_limit_count") or 0)
        now = self.model.clock()
        with self.lock:
            start, used = self._budget
            if now >= start + RATE_LIMIT_WINDOW:
                start, used = now, 0
            allowed = used < limit
            used += 1 if allowed else 0
            self._budget = (start, used)
        reset = max(int(start + RATE_LIMIT_WINDOW - now), 1)
        return allowed, {
            "X-Rate-Limit-Limit": str(limit),
            "X-Rate-Limit-Remaining": str(max(limit - used, 0)),
            "X-Rate-Limit-Reset": str(reset),
        }

    def clear_faults(self) -> None:
        with self.lock:
            self._state.faults.clear()

    @property
    def requests(self) -> list[Recorded]:
        with self.lock:
            return list(self._state.requests)

    def requests_to(self, prefix: str, method: str | None = None) -> list[Recorded]:
        return [
            r
            for r in self.requests
            if r.path.startswith(prefix) and (method is None or r.method == method)
        ]

    @property
    def warnings(self) -> list[str]:
        """Unknown parameter names seen (MISP ignores them; a client sending them is suspect)."""
        with self.lock:
            return list(self._state.warnings)

    @property
    def violations(self) -> list[str]:
        """Protocol violations: bad values, unknown fields, and invalid responses of the fake."""
        with self.lock:
            return list(self.model.violations)

    def take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self._state.faults:
                if not path.startswith(fault.prefix):
                    continue
                if fault.kind == "429" and "/restSearch" not in path:
                    continue  # RateLimitComponent limits only the restSearch endpoints
                if fault.times is not None:
                    if fault.times <= 0:
                        continue
                    fault.times -= 1
                return fault
        return None

    def record(self, rec: Recorded) -> None:
        with self.lock:
            self._state.requests.append(rec)

    def warn(self, text: str) -> None:
        with self.lock:
            self._state.warnings.append(text)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or reject our certificate hang up mid-reply: not a server bug.
        logger.debug("fakemisp: connection from %s ended abruptly", client_address, exc_info=True)


def _version_body() -> dict[str, Any]:
    return {
        "version": "2.5.1",
        "pymisp_recommended_version": "2.5.1",
        "perm_sync": False,
        "perm_sighting": True,
        "perm_galaxy_editor": False,
        "perm_analyst_data": False,
        "uuid": "-",
        "request_encoding": ["gzip", "br"],
        "filter_sightings": True,
    }


class _Handler(BaseHTTPRequestHandler):
    fake: FakeMisp
    protocol_version = "HTTP/1.1"
    server_version = "Apache"

    def setup(self) -> None:
        super().setup()
        with self.fake.lock:
            self.fake._conns.add(self.connection)

    def finish(self) -> None:
        with self.fake.lock:
            self.fake._conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def date_time_string(self, timestamp: float | None = None) -> str:
        # Apache's `Date` header is the server's clock: the fake's clock here.
        return super().date_time_string(self.fake.model.clock() if timestamp is None else timestamp)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("fakemisp: " + format, *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    # --- plumbing ---------------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        fake = self.fake
        path = self.path.split("?", 1)[0]
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        status = 0
        try:
            if fake.max_body is not None and len(raw) > fake.max_body:
                status = 413
                self._html(413, "413 Request Entity Too Large")
                return
            fault = fake.take_fault(path)
            if fault is not None and fault.kind == "hold":
                fault.arrived.set()
                fault.release.wait(60)
                fault = None
            if fault is not None and fault.kind == "truncate":
                status, _, _ = self._route(method, path, body)  # done, but the reply is lost
            if fault is not None and self._apply_fault(fault, path):
                status = -status if status else -1
                return
            allowed, limits = fake.rate_limit(path)
            if not allowed:
                status = 429
                self._reply(
                    429,
                    {
                        "name": "Rate limit exceeded.",
                        "message": "Rate limit exceeded.",
                        "url": path,
                    },
                    limits,
                )
                return
            status, payload, headers = self._route(method, path, body)
            self._reply(status, payload, {**headers, **limits}, head=(method == "HEAD"))
        finally:
            fake.record(Recorded(method, path, dict(self.headers.items()), body, status))

    def _apply_fault(self, fault: Fault, path: str) -> bool:
        """Serve an injected failure; returns False for 'slow', which then answers normally."""
        if fault.kind == "slow":
            time.sleep(fault.delay)
            return False
        if fault.kind == "reset":
            self.close_connection = True
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            self.connection.close()
            return True
        if fault.kind == "truncate":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"response": {"Attri')
            self.close_connection = True
            return True
        if fault.kind == "error200":
            # SightingsController::add answers its failures with HTTP 200 and a message.
            self._reply(
                200, {"message": "Could not add the Sighting. Reason: an injected failure"}, {}
            )
            return True
        if fault.kind == "403":
            self._reply(403, _auth_failed(path), {})
            return True
        if fault.kind == "429":
            reset = str(fault.reset_after)
            self._reply(
                429,
                {"name": "Rate limit exceeded.", "message": "Rate limit exceeded.", "url": path},
                {
                    "X-Rate-Limit-Limit": "10",
                    "X-Rate-Limit-Remaining": "0",
                    "X-Rate-Limit-Reset": reset,
                },
            )
            return True
        self._reply(
            500,
            {
                "name": "An Internal Error Has Occurred.",
                "message": "An Internal Error Has Occurred.",
                "url": path,
            },
            {},
        )
        return True

    def _html(self, status: int, title: str) -> None:
        raw = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(raw.encode())
        self.close_connection = True

    def _reply(
        self, status: int, payload: Any, headers: dict[str, str], *, head: bool = False
    ) -> None:
        if head:
            # A body on a HEAD reply breaks PyMISP's next request on the kept-alive connection.
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        raw = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)

    # --- routes -----------------------------------------------------------------------------------

    def _route(self, method: str, path: str, body: Any) -> tuple[int, Any, dict[str, str]]:
        fake = self.fake
        keys = [
            k.strip()
            for k in (
                self.headers.get("Authorization") or self.headers.get("X-MISP-AUTH") or ""
            ).split(",")
        ]
        if not any(KEY_FORMAT.match(k) and k == fake.key for k in keys):
            return 403, _auth_failed(path), {}
        if "application/json" not in (self.headers.get("Accept") or ""):
            return 406, {"name": "Not Acceptable", "message": "Not Acceptable", "url": path}, {}
        if body is not None and "application/json" not in (self.headers.get("Content-Type") or ""):
            fake.model.violations.append(f"{method} {path}: body sent without a JSON content type")
        if method == "POST" and not isinstance(body, dict | list | type(None)):
            return (
                400,
                {"name": "Invalid JSON", "message": "The request body is not JSON.", "url": path},
                {},
            )
        with fake.lock:
            try:
                return self._route_locked(method, path, body)
            except Rejected as ex:
                return ex.status, ex.body, ex.headers

    def _route_locked(  # noqa: C901 - one flat routing table, as MISP's routes.php
        self,
        method: str,
        path: str,
        body: Any,
    ) -> tuple[int, Any, dict[str, str]]:
        fake, model = self.fake, self.fake.model
        parts = [p for p in path.split("/") if p]
        if method == "GET" and path == "/servers/getVersion":
            return 200, _version_body(), {}
        if method == "GET" and path == "/servers/getPyMISPVersion.json":
            return 200, {"version": "2.5.1"}, {}
        if method == "GET" and path == "/users/view/me":
            role = dict(fake.role)
            return (
                200,
                {
                    "User": {
                        "id": "1",
                        "org_id": "1",
                        "email": "heron@example.org",
                        "role_id": "3",
                    },
                    "Role": role,
                    "UserSetting": [],
                    "Organisation": {"id": "1", "name": "ORGNAME"},
                },
                {},
            )
        if method == "GET" and path == "/attributes/describeTypes.json":
            return 200, {"result": data.describe_types()}, {}
        if method == "POST" and path in ("/attributes/restSearch", "/attributes/restSearch/json"):
            return self._rest_search(body or {})
        if method == "POST" and parts[:2] == ["sightings", "add"]:
            if not fake.perm_sighting:
                return (
                    403,
                    {
                        "name": NO_PERMISSION,
                        "message": NO_PERMISSION,
                        "url": path,
                    },
                    {},
                )
            self._check_names(path, body or {}, data.SIGHTING_PARAMS)
            result = model.add_sightings(body or {}, parts[2] if len(parts) > 2 else None)
            if "Sighting" in result:
                self._check("sighting", data.check_sighting(result["Sighting"]))
            return 200, result, {}
        if parts[:2] == ["events", "view"] and len(parts) == 3 and method in ("GET", "HEAD"):
            ev = model.find_event(parts[2])
            if ev is None:
                return 404, {"name": "Invalid event", "message": "Invalid event", "url": path}, {}
            view = model.render_event(ev)
            self._check("event", data.check_event(view))
            return 200, {"Event": view}, {}
        if method == "POST" and path == "/events/add":
            if not isinstance(body, dict):
                return (
                    403,
                    {
                        "name": "The event could not be saved.",
                        "message": "The event could not be saved.",
                        "url": path,
                        "errors": {"Event": {"info": ["Info cannot be empty."]}},
                    },
                    {},
                )
            view = model.render_event(model.add_event(body))
            self._check("event", data.check_event(view))
            return 200, {"Event": view}, {}
        if method == "POST" and parts[:2] == ["objects", "add"] and len(parts) >= 3:
            ev = model.find_event(parts[2])
            if ev is None:
                return 404, {"name": "Invalid event.", "message": "Invalid event.", "url": path}, {}
            extra = [p for p in parts[3:] if not p.startswith("breakOnDuplicate:")]
            obj = model.add_object(
                ev,
                body if isinstance(body, dict) else {},
                url=path,
                template_ref=extra[0] if extra else None,
            )
            view = model.render_object(obj)
            self._check("object", data.check_object(view))
            return 200, {"Object": view}, {}
        if method == "POST" and parts[:2] == ["events", "publish"] and len(parts) == 3:
            if not fake.role.get("perm_publish"):
                # ACLComponent: events/publish needs perm_publish (the stock User role lacks it).
                return 403, {"name": NO_PERMISSION, "message": NO_PERMISSION, "url": path}, {}
            ev = model.find_event(parts[2])
            if ev is None:
                return 404, {"name": "Invalid event.", "message": "Invalid event.", "url": path}, {}
            model.publish(ev.id)
            return (
                200,
                {
                    "saved": True,
                    "success": True,
                    "name": "Job queued",
                    "message": "Job queued",
                    "url": path,
                    "id": str(ev.id),
                },
                {},
            )
        if method == "POST" and path == "/warninglists/checkValue":
            hits = {
                str(v): [
                    {
                        "id": data.WARNINGLIST[str(v).lower()][0],
                        "name": data.WARNINGLIST[str(v).lower()][1],
                    }
                ]
                for v in data.as_list(body)
                if str(v).lower() in data.WARNINGLIST
            }
            return 200, hits, {}
        return 404, {"name": "Not Found", "message": "Not Found", "url": path}, {}

    def _rest_search(self, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        self._check_names("/attributes/restSearch", body, data.RESTSEARCH_PARAMS)
        types = data.describe_types()
        for t in data.as_list(body.get("type")):
            if str(t).lstrip("!") not in types["types"]:
                self.fake.model.violations.append(f"restSearch: unknown type {t!r}")
        for c in data.as_list(body.get("category")):
            if str(c).lstrip("!") not in types["categories"]:
                self.fake.model.violations.append(f"restSearch: unknown category {c!r}")
        for flag in (
            "to_ids",
            "published",
            "enforceWarninglist",
            "includeEventUuid",
            "withAttachments",
        ):
            for v in data.as_list(body.get(flag)):
                if data.to_bool(v) is None:
                    self.fake.model.violations.append(f"restSearch: {flag}={v!r} is not boolean")
        if body.get("returnFormat", "json") != "json":
            self.fake.model.violations.append("restSearch: the fake serves returnFormat json only")
        for key in ("limit", "page"):
            if body.get(key) is not None and int(body[key]) < (0 if key == "limit" else 1):
                return (
                    400,
                    {
                        "name": f"Invalid {key}",
                        "message": f"Invalid {key}",
                        "url": "/attributes/restSearch",
                    },
                    {},
                )
        rows, _total = self.fake.model.search(body)
        for row in rows:
            self._check("attribute", data.check_attribute(row))
        headers = {
            # RestResponseComponent counts the rows of the page it sends, not every match.
            "X-Result-Count": str(len(rows)),
            "X-Export-Module-Used": "json",
            "X-Response-Format": "json",
            "X-Skipped-Elements-Count": "0",
        }
        return 200, {"response": {"Attribute": rows}}, headers

    def _check_names(self, route: str, body: dict[str, Any], known: frozenset[str]) -> None:
        if not isinstance(body, dict):
            self.fake.model.violations.append(f"{route}: body is not a JSON object")
            return
        for name in body:
            if name not in known:
                self.fake.warn(f"{route}: unknown parameter {name!r}")

    def _check(self, what: str, problems: list[str]) -> None:
        for p in problems:
            self.fake.model.violations.append(f"invalid {what} response: {p}")


def _auth_failed(path: str) -> dict[str, str]:
    msg = (
        "Authentication failed. Please make sure you pass the API key of an API enabled user "
        "along in the Authorization header."
    )
    return {"name": msg, "message": msg, "url": path}
