"""Enrollment (one-time token or offline bundle) and certificate renewal.

Online enrollment creates a key and CSR locally (the private key never leaves the host), POSTs a
`rules.wire.EnrollRequest` to `/enroll` and stores the returned certificate and CA; from then on
the CA is pinned and is the only trust anchor. On first contact the agent cannot verify the
manager yet, so the CA can be pinned up front with `ca_file` or `ca_sha256` (the fingerprint
`heron-manager enroll token` prints); without either it trusts on first use, logs a WARNING, and
still checks that the server certificate it talked to was issued by the CA it received.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from rules import wire

from .errors import EnrollmentError, LinkError
from .identity import (
    Identity,
    IdentityStore,
    ca_fingerprint,
    check_issued_by,
    new_key_and_csr,
    split_manager,
)
from .transport import HttpsTransport, Request, Transport, create_ssl_context

logger = logging.getLogger(__name__)


def _bootstrap_context(ca_file: Path | None) -> ssl.SSLContext:
    if ca_file is not None:
        return create_ssl_context(ca_file)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # Security: TOFU, verified after the answer below
    return ctx


def _post_json(transport: Transport, path: str, payload: dict[str, object]) -> dict[str, object]:
    req = Request(
        "POST", path, json.dumps(payload).encode("utf-8"), {"Content-Type": wire.CONTENT_JSON}
    )
    resp = transport.send(req)
    if resp.status != 200:
        text = resp.body[:500].decode("utf-8", "replace")
        raise EnrollmentError(f"manager refused {path}: HTTP {resp.status}: {text}")
    try:
        data = json.loads(resp.body)
    except ValueError as ex:
        raise EnrollmentError(f"{path}: answer is not JSON: {ex}") from ex
    if isinstance(data, dict) and isinstance(data.get("data"), dict) and "uuid" not in data:
        data = data["data"]  # tolerate the {data, message, error} envelope
    if not isinstance(data, dict):
        raise EnrollmentError(f"{path}: answer is not a JSON object")
    return data


def enroll_online(
    manager: str,
    token: str,
    store: IdentityStore,
    *,
    hostname: str | None = None,
    ca_file: Path | None = None,
    ca_sha256: str = "",
    timeout: float = 30.0,
    transport: Transport | None = None,
    peer_cert: Callable[[], bytes | None] | None = None,
) -> Identity:
    """Enroll with a one-time token; returns the stored identity.

    Args:
        manager: `HOST:PORT` of the endpoint API.
        transport: injected for tests; by default an HTTPS transport without a client cert.
        peer_cert: returns the DER server certificate seen (default: from the HTTPS transport).
    """
    host, port = split_manager(manager)
    hostname = hostname or socket.gethostname()
    own: HttpsTransport | None = None
    if transport is None:
        own = HttpsTransport(
            host, port, _bootstrap_context(ca_file), timeout=timeout, hostname_header=hostname
        )
        transport = own
        peer_cert = own.peer_certificate
    key_pem, csr_pem = new_key_and_csr(hostname)
    try:
        body = wire.EnrollRequest(token=token, csr_pem=csr_pem, hostname=hostname).to_dict()
        data = _post_json(transport, wire.ROUTE_ENROLL, body)
        server_der = peer_cert() if peer_cert else None
    except LinkError as ex:
        if isinstance(ex, EnrollmentError):
            raise
        raise EnrollmentError(f"cannot reach manager {manager}: {ex}") from ex
    finally:
        if own is not None:
            own.close()
    try:
        resp = wire.EnrollResponse.from_dict(data)
    except (TypeError, ValueError) as ex:
        raise EnrollmentError(f"/enroll answer is malformed: {ex}") from ex
    fingerprint = ca_fingerprint(resp.ca_pem)
    if ca_sha256 and fingerprint != ca_sha256.lower().replace(":", ""):
        raise EnrollmentError(
            f"manager CA fingerprint {fingerprint} does not match the pinned "
            f"{ca_sha256}: refusing to enroll"
        )
    if server_der is not None:
        check_issued_by(server_der, resp.ca_pem)
    if ca_file is None and not ca_sha256:
        logger.warning(
            "enrolled without a pinned CA (trust on first use); CA sha256 %s", fingerprint
        )
    return store.save(
        uuid=resp.uuid,
        manager=manager,
        group=resp.group,
        key_pem=key_pem,
        cert_pem=resp.certificate_pem,
        ca_pem=resp.ca_pem,
    )


def _read_bundle(path: Path) -> dict[str, object]:
    """Read a bundle: one JSON with inline PEMs, or `heron-manager enroll bundle`'s directory
    (`bundle.json` naming `client_cert`, `client_key` and `ca_cert` files next to it)."""
    if path.is_dir():
        path = path / "bundle.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError("a bundle is a JSON object")
    for key, ref in (
        ("certificate_pem", "client_cert"),
        ("key_pem", "client_key"),
        ("ca_pem", "ca_cert"),
    ):
        if key not in raw and isinstance(raw.get(ref), str):
            raw[key] = (path.parent / Path(str(raw[ref])).name).read_text(encoding="ascii")
    return raw


def enroll_bundle(path: Path, store: IdentityStore, *, manager: str = "") -> Identity:
    """Enroll offline from a bundle file (`rules.wire.EnrollBundle` JSON).

    The manager address comes from `manager`, else the bundle's `manager` or `endpoint_url`.
    """
    try:
        raw = _read_bundle(Path(path))
        bundle = wire.EnrollBundle.from_dict(raw)
    except (OSError, ValueError, TypeError) as ex:
        raise EnrollmentError(f"cannot read enrollment bundle {path}: {ex}") from ex
    address = manager or bundle.manager
    url = raw.get("endpoint_url") if isinstance(raw, dict) else None
    if not address and isinstance(url, str) and url:
        parsed = urlsplit(url if "//" in url else f"https://{url}")
        address = f"{parsed.hostname}:{parsed.port or wire.ENDPOINT_PORT}"
    if not address:
        raise EnrollmentError(f"bundle {path} names no manager: pass --manager HOST:PORT")
    return store.save(
        uuid=bundle.uuid,
        manager=address,
        group=bundle.group,
        key_pem=bundle.key_pem.encode("ascii"),
        cert_pem=bundle.certificate_pem,
        ca_pem=bundle.ca_pem,
    )


def renew(store: IdentityStore, transport: Transport) -> Identity:
    """Renew the client certificate over mutual TLS (`POST /renew` with a fresh key's CSR)."""
    current = store.load()
    key_pem, csr_pem = new_key_and_csr(current.uuid)
    body = wire.EnrollRequest(token="", csr_pem=csr_pem, hostname=socket.gethostname())
    data = _post_json(transport, wire.ROUTE_RENEW, body.to_dict())
    try:
        resp = wire.EnrollResponse.from_dict(data)
    except (TypeError, ValueError) as ex:
        raise EnrollmentError(f"/renew answer is malformed: {ex}") from ex
    pinned = store.ca_path.read_text(encoding="ascii")
    if ca_fingerprint(resp.ca_pem) != ca_fingerprint(pinned):
        raise EnrollmentError("/renew answered with a different CA: refusing to re-pin")
    identity = store.save(
        uuid=current.uuid,
        manager=current.manager,
        group=resp.group or current.group,
        key_pem=key_pem,
        cert_pem=resp.certificate_pem,
        ca_pem=pinned,
    )
    logger.info("client certificate renewed; valid until %s", identity.not_after)
    return identity
