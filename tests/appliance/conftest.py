"""Fixtures for manager tests: an in-process context, the two apps, enrolled endpoints."""

from __future__ import annotations

import gzip
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.api.app import Api, create_app
from appliance.runtime.context import AppContext, build_context
from appliance.security.pki import Pki, peer_identity
from appliance.store import Role, Store
from appliance.transport.identities import ConnInfo
from rules import wire
from tests.support.clock import Clock
from tests.support.events import detection, gene_event

NOW = 1_780_000_000.0  # s: 2026-05-28T20:26:40Z, after the events `event()` builds

_ports = itertools.count(20000)


def make_csr(cn: str = "ignored") -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return csr.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def event(
    i: int = 0,
    *,
    signature: str | None = None,
    crit: int = 5,
    channel: str = "Microsoft-Windows-Sysmon/Operational",
    eid: int = 1,
    extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    data = {"Image": f"C:\\Windows\\System32\\cmd{i}.exe", "CommandLine": f"cmd /c {i}"}
    return gene_event(
        eid,
        {**data, **(extra or {})},
        channel=channel,
        computer="HOST-1",
        time="2026-05-28T12:00:00.000000000Z",
        detect=detection([signature], crit) if signature else None,
    )


def ndjson_gz(events: list[dict[str, Any]]) -> bytes:
    return gzip.compress(b"".join(json.dumps(e).encode() + b"\n" for e in events))


@dataclass
class Agent:
    """An enrolled endpoint as seen by the in-process endpoint app."""

    uuid: str
    cert_pem: str
    key_pem: str
    port: int

    @property
    def extras(self) -> dict[str, Any]:
        return {"REMOTE_PORT": str(self.port)}


class Env:
    """Test environment: context + clients + helpers."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.admin = falcon.testing.TestClient(create_app(ctx, Api.ADMIN))
        self.endpoint = falcon.testing.TestClient(create_app(ctx, Api.ENDPOINT))
        _, self.admin_key = ctx.identity.add_user("root", Role.ADMIN)
        _, self.analyst_key = ctx.identity.add_user("ana", Role.ANALYST)
        _, self.plugin_key = ctx.identity.add_user("misp", Role.PLUGIN)

    def a(self, method: str, path: str, *, key: str | None = None, **kw: Any) -> Any:
        headers = dict(kw.pop("headers", {}) or {})
        headers.setdefault(wire.HEADER_API_KEY, key or self.admin_key)
        return self.admin.simulate_request(method, path, headers=headers, **kw)

    def e(self, method: str, path: str, agent: Agent | None, **kw: Any) -> Any:
        extras = dict(kw.pop("extras", {}) or {})
        if agent is not None:
            extras.update(agent.extras)
        return self.endpoint.simulate_request(
            method, path, remote_addr="127.0.0.1", extras=extras, **kw
        )

    def connect(self, cert_pem: str, ip: str = "10.0.0.5") -> int:
        """Register a TLS connection carrying `cert_pem`, as the TLS front would."""
        der = x509.load_pem_x509_certificate(cert_pem.encode()).public_bytes(
            serialization.Encoding.DER
        )
        port = next(_ports)
        self.ctx.identities.put(port, ConnInfo(peer_identity(der), ip, 50000))
        return port

    def enroll(self, hostname: str = "host-1", group: str = "") -> Agent:
        token, _ = self.ctx.identity.create_token(group=group)
        csr, key_pem = make_csr()
        res = self.e(
            "POST",
            wire.ROUTE_ENROLL,
            None,
            json={"token": token, "csr_pem": csr, "hostname": hostname},
        )
        assert res.status_code == 200, res.text
        body = res.json
        return Agent(
            body["uuid"], body["certificate_pem"], key_pem, self.connect(body["certificate_pem"])
        )

    def post_logs(
        self, agent: Agent, events: list[dict[str, Any]], batch_id: str | None = None
    ) -> Any:
        headers = {"Content-Encoding": "gzip", "Content-Type": wire.CONTENT_NDJSON}
        if batch_id:
            headers[wire.HEADER_BATCH_ID] = batch_id
        return self.e("POST", wire.ROUTE_LOGS, agent, body=ndjson_gz(events), headers=headers)


@pytest.fixture(scope="session")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pki")
    Pki.create(root, server_names=["localhost", "127.0.0.1"])
    return root


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


def _event_store(tmp_path: Path, clock: Clock) -> Any:
    """The real index.EventStore (journal + Tantivy + DuckDB) under tmp_path."""
    from index import EventStore

    return EventStore(tmp_path / "events", commit_interval=0.2, index_process=False)


@pytest.fixture
def env(tmp_path: Path, pki_dir: Path, clock: Clock) -> Iterator[Env]:
    store = Store(":memory:")
    ctx = build_context(
        data_dir=tmp_path,
        store=store,
        pki=Pki(pki_dir, clock=clock),
        clock=clock,
        events=_event_store(tmp_path, clock),
    )
    ctx.sleep = lambda s: setattr(clock, "now", clock.now + s)
    yield Env(ctx)
    ctx.close()
