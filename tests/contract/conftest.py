"""Contract fixtures: the real appliance endpoint app, reached in process by the real agent link.

`FalconTransport` is the agent's `Transport` seam implemented with falcon's `simulate_request`
(the httpx `WSGITransport` idea): the request carries REMOTE_ADDR=127.0.0.1 and a fake backend
port that the appliance's `IdentityMap` resolves to the client certificate, exactly as the TLS
front does for a real connection.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from agent.link.identity import IdentityStore
from agent.link.transport import Request, Response

_ports = itertools.count(20000)


class FalconTransport:
    """Agent Transport → falcon simulate_request, with the client certificate's identity."""

    def __init__(self, app: Any, identities: Any, store: IdentityStore | None = None) -> None:
        self.client = falcon.testing.TestClient(app)
        self.identities = identities
        self.store = store
        self.port = next(_ports)
        self.requests: list[Request] = []

    def _bind_identity(self) -> None:
        from appliance.security.pki import peer_identity
        from appliance.transport.identities import ConnInfo

        if self.store is None or not self.store.cert_path.exists():
            self.identities.pop(self.port)
            return
        cert = x509.load_pem_x509_certificate(self.store.cert_path.read_bytes())
        der = cert.public_bytes(serialization.Encoding.DER)
        self.identities.put(self.port, ConnInfo(peer_identity(der), "127.0.0.1", self.port))

    def send(self, request: Request) -> Response:
        self.requests.append(request)
        self._bind_identity()
        path, _, query = request.path.partition("?")
        result = self.client.simulate_request(
            request.method,
            path,
            query_string=query or None,
            body=request.body or None,
            headers=dict(request.headers),
            remote_addr="127.0.0.1",
            extras={"REMOTE_PORT": str(self.port)},
        )
        return Response(
            result.status_code, result.content, {k.lower(): v for k, v in result.headers.items()}
        )


@dataclass
class Manager:
    ctx: Any
    app: Any
    admin: Any

    def transport(self, store: IdentityStore | None = None) -> FalconTransport:
        return FalconTransport(self.app, self.ctx.identities, store)

    def token(self, group: str = "") -> str:
        return str(self.ctx.identity.create_token(group=group)[0])


@pytest.fixture
def manager(tmp_path: Path):
    pytest.importorskip("appliance.api.app")
    from appliance.api.app import Api, create_app
    from appliance.runtime.context import build_context
    from appliance.security.pki import Pki

    pki = Pki.create(tmp_path / "pki", server_names=["localhost", "127.0.0.1"])
    from tests.support.memory_store import MemoryEventStore

    ctx = build_context(data_dir=tmp_path / "mgr", pki=pki, events=MemoryEventStore())
    mgr = Manager(ctx, create_app(ctx, Api.ENDPOINT), create_app(ctx, Api.ADMIN))
    yield mgr
    ctx.close()
