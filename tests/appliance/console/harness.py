"""A real manager for the browser tests: both listeners behind the TLS front, on 127.0.0.1.

`start_manager(tmp)` creates a PKI, a data directory, an admin and an analyst user, an enrolled
endpoint (offline bundle: client certificate and key) and serves both listeners with
`appliance.transport.server.ManagerServer` (waitress behind the TLS front), as `heron-manager run`
does.
`post_logs` sends a gzip NDJSON batch over mutual TLS, as an agent does.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import json
import logging
import uuid as uuidlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from appliance.console import console_for
from appliance.core.config import AdminConfig, Config, EndpointConfig
from appliance.runtime.context import AppContext, build_context
from appliance.security.pki import Pki
from appliance.store import Role
from appliance.transport.server import ManagerServer
from rules import wire

if TYPE_CHECKING:
    from .browser import Browser

logger = logging.getLogger(__name__)


@dataclass
class Manager:
    """Handles on a running manager."""

    ctx: AppContext
    admin_url: str
    endpoint_url: str
    admin_key: str
    analyst_key: str
    endpoint_uuid: str
    hostname: str
    client_cert: tuple[str, str]
    ca_path: str
    spki_sha256_b64: str
    _closers: list[Any] = field(default_factory=list)

    def admin(self, method: str, path: str, **kw: Any) -> requests.Response:
        """Call the admin API with the admin key (verifies TLS against the test CA)."""
        headers = {wire.HEADER_API_KEY: self.admin_key, **kw.pop("headers", {})}
        return requests.request(
            method, self.admin_url + path, headers=headers, verify=self.ca_path, timeout=10, **kw
        )

    def post_logs(self, events: list[dict[str, Any]]) -> requests.Response:
        """POST one gzip NDJSON batch to /logs over mutual TLS, as the agent does."""
        body = gzip.compress(b"".join(json.dumps(e).encode() + b"\n" for e in events))
        return requests.post(
            self.endpoint_url + wire.ROUTE_LOGS,
            data=body,
            cert=self.client_cert,
            verify=self.ca_path,
            timeout=10,
            headers={
                "Content-Type": wire.CONTENT_NDJSON,
                "Content-Encoding": wire.ENCODING_GZIP,
                wire.HEADER_BATCH_ID: str(uuidlib.uuid4()),
                wire.HEADER_HOSTNAME: self.hostname,
            },
        )

    def post_system_info(self, info: dict[str, Any]) -> requests.Response:
        """POST /info/system over mutual TLS, as the agent does when its system changes."""
        return requests.post(
            self.endpoint_url + wire.ROUTE_SYSTEM_INFO,
            json=info,
            cert=self.client_cert,
            verify=self.ca_path,
            timeout=10,
        )

    def upload_artifact(
        self, guid: str, event_hash: str, name: str, data: bytes
    ) -> requests.Response:
        """POST one file to /upload/dumps (single chunk) over mutual TLS, as the agent does."""
        chunk = wire.UploadChunk(
            filename=name,
            guid=guid,
            event_hash=event_hash,
            content=base64.b64encode(data).decode(),
            chunk=1,
            total=1,
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
        )
        return requests.post(
            self.endpoint_url + wire.ROUTE_UPLOAD_DUMPS,
            json=chunk.to_dict(),
            cert=self.client_cert,
            verify=self.ca_path,
            timeout=10,
        )

    def another_endpoint(self, tmp: Path, hostname: str) -> Manager:
        """The same manager with a newly enrolled endpoint (offline bundle, group "finance"):
        a test that changes an endpoint for good (revokes it) does it on one of its own."""
        uuid, cert = _enroll(self.ctx, tmp, hostname)
        return replace(self, endpoint_uuid=uuid, hostname=hostname, client_cert=cert)

    def close(self) -> None:
        for close in reversed(self._closers):
            try:
                close()
            except Exception:
                logger.exception("closing the test manager")


def _spki_hash(cert_path: Path) -> str:
    """base64(sha256(SubjectPublicKeyInfo)) of a certificate: Chromium's SPKI allow-list format."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def _event_store(root: Path) -> Any:
    from index import EventStore

    return EventStore(root, commit_interval=0.2, index_process=False)


def _enroll(ctx: AppContext, tmp: Path, hostname: str) -> tuple[str, tuple[str, str]]:
    """An endpoint of group "finance" enrolled by offline bundle: its uuid, and its client
    certificate and key written under `tmp`."""
    bundle = ctx.identity.bundle(group="finance", hostname=hostname)
    (tmp / "client.pem").write_text(bundle.certificate_pem)
    (tmp / "client.key").write_text(bundle.key_pem)
    return bundle.uuid, (str(tmp / "client.pem"), str(tmp / "client.key"))


def start_manager(tmp: Path, *, hostname: str = "WS-FINANCE-07") -> Manager:
    """Start a manager under `tmp`; call `.close()` when done."""
    pki = Pki.create(tmp / "pki", server_names=["127.0.0.1", "localhost"])
    events = _event_store(tmp / "events")
    config = Config(
        admin=AdminConfig(listen="127.0.0.1:0"), endpoint=EndpointConfig(listen="127.0.0.1:0")
    )
    ctx = build_context(data_dir=tmp, pki=pki, events=events, config=config)
    closers: list[Any] = [ctx.close]
    ctx.extensions.add(console_for(ctx))
    _, admin_key = ctx.identity.add_user("alice", Role.ADMIN, description="browser tests")
    _, analyst_key = ctx.identity.add_user("bob", Role.ANALYST)
    endpoint_uuid, client_cert = _enroll(ctx, tmp, hostname)

    server = ManagerServer(ctx)  # what `heron-manager run` starts
    bound = server.start()
    closers.append(server.close)
    admin_port, ep_port = bound.admin[1], bound.endpoint[1]
    return Manager(
        ctx=ctx,
        admin_url=f"https://127.0.0.1:{admin_port}",
        endpoint_url=f"https://127.0.0.1:{ep_port}",
        admin_key=admin_key,
        analyst_key=analyst_key,
        endpoint_uuid=endpoint_uuid,
        hostname=hostname,
        client_cert=client_cert,
        ca_path=str(pki.ca_path),
        spki_sha256_b64=_spki_hash(tmp / "pki" / "server.pem"),
        _closers=closers,
    )


def sysmon_event(
    hostname: str,
    *,
    image: str,
    command_line: str,
    signature: str = "",
    criticality: int = 0,
    event_id: int = 1,
) -> dict[str, Any]:
    """A WHIDS-shaped Sysmon event; with `signature` it carries the agent's Detection block."""
    now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    event: dict[str, Any] = {
        "Event": {
            "EventData": {
                "Image": image,
                "CommandLine": command_line,
                "ProcessGuid": "{" + str(uuidlib.uuid4()) + "}",
                "User": "LAB\\alice",
                "ParentImage": "C:\\Windows\\explorer.exe",
            },
            "System": {
                "Channel": "Microsoft-Windows-Sysmon/Operational",
                "Computer": hostname,
                "EventID": event_id,
                "TimeCreated": {"SystemTime": now},
            },
        }
    }
    if signature:
        event["Event"]["Detection"] = {
            "Signature": [signature],
            "Criticality": criticality,
            "Actions": [],
        }
    return event


def login(browser: Browser, manager: Manager) -> None:
    """Sign in with the admin key from the sign-in page (ends on the Dashboard)."""
    browser.driver.get(manager.admin_url + "/console/")
    key = browser.wait_css("input[name=api_key]")
    key.send_keys(manager.admin_key)
    key.submit()
    browser.wait_text("main h1", "Dashboard")


def signed_in_as(browser: Browser, manager: Manager) -> str:
    """Load the console; the role signed in ("admin", "analyst") or "" when signed out."""
    browser.driver.get(manager.admin_url + "/console/")
    browser.wait(lambda d: browser.all("main h1") and browser.heading() != "")
    if browser.heading() != "Dashboard":
        return ""
    who = browser.wait(lambda d: browser.css("#who").text)
    return "admin" if "(admin)" in who else "analyst"


def sign_out(browser: Browser, manager: Manager) -> None:
    """Sign out whoever an earlier test left signed in."""
    if signed_in_as(browser, manager):
        browser.button("Log out").click()
        browser.wait_css("input[name=api_key]")


def as_admin(browser: Browser, manager: Manager) -> None:
    """Sign in as the admin unless the browser already is (an earlier test may have left it
    signed out, or signed in as the analyst)."""
    if signed_in_as(browser, manager) != "admin":
        sign_out(browser, manager)
        login(browser, manager)


def logged_in_browser(manager: Manager) -> Browser:
    """Headless Chromium logged in to `manager`'s console with the admin key (on the Dashboard)."""
    from .browser import Browser

    b = Browser(spki_hash=manager.spki_sha256_b64)
    login(b, manager)
    return b
