"""Enrollment, pinning, renewal and TLS failure reporting against a real local TLS server."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agent.link.enroll import enroll_bundle, enroll_online, renew
from agent.link.errors import CertificateRejected, EnrollmentError, TransportError
from agent.link.identity import IdentityStore, ca_fingerprint, split_manager
from agent.link.transport import HttpsTransport, Request, create_ssl_context

from .tlsserver import MiniCA, TlsManager, enroll_handler


@pytest.fixture
def ca() -> MiniCA:
    return MiniCA()


@pytest.fixture
def server(ca: MiniCA, tmp_path: Path):
    srv = TlsManager(ca, tmp_path / "srv", enroll_handler(ca))
    yield srv
    srv.close()


def mtls(store: IdentityStore, port: int) -> HttpsTransport:
    ctx = create_ssl_context(store.ca_path, store.cert_path, store.key_path)
    return HttpsTransport("127.0.0.1", port, ctx, timeout=5)


def test_enroll_with_token_pins_ca_and_protects_key(server, ca, tmp_path: Path) -> None:
    store = IdentityStore(tmp_path / "id")
    ident = enroll_online(
        f"127.0.0.1:{server.port}", "tok", store, ca_sha256=ca_fingerprint(ca.pem)
    )
    assert ident.uuid == "uuid-1234" and ident.group == "g1"
    assert store.ca_path.read_text() == ca.pem
    if os.name == "posix":
        assert stat.S_IMODE(store.key_path.stat().st_mode) == 0o600
        assert stat.S_IMODE(store.root.stat().st_mode) == 0o700
    with mtls(store, server.port) as t:
        assert t.send(Request("GET", "/key")).status == 200
        assert t.send(Request("GET", "/key")).status == 200  # keep-alive reuse
    assert server.requests[-1][2] == "uuid-1234"


def test_bad_token_and_wrong_fingerprint_are_refused(server, tmp_path: Path) -> None:
    store = IdentityStore(tmp_path / "id")
    with pytest.raises(EnrollmentError, match="HTTP 403"):
        enroll_online(f"127.0.0.1:{server.port}", "wrong", store)
    with pytest.raises(EnrollmentError, match="does not match the pinned"):
        enroll_online(f"127.0.0.1:{server.port}", "tok", store, ca_sha256="00" * 32)
    assert not store.exists()


def test_tofu_checks_server_cert_against_received_ca(ca, tmp_path: Path) -> None:
    other = MiniCA("Other")

    def lying(method, path, body, headers, cn):  # answers with a CA that did not sign the server
        req = json.loads(body)
        return 200, json.dumps(
            {
                "uuid": "u",
                "certificate_pem": other.sign_csr(req["csr_pem"], "u"),
                "ca_pem": other.pem,
            }
        ).encode()

    srv = TlsManager(ca, tmp_path / "srv", lying)
    try:
        with pytest.raises(EnrollmentError, match="CA"):
            enroll_online(f"127.0.0.1:{srv.port}", "tok", IdentityStore(tmp_path / "id"))
    finally:
        srv.close()


def test_environment_ca_variables_are_ignored(server, ca, tmp_path: Path, monkeypatch) -> None:
    store = IdentityStore(tmp_path / "id")
    enroll_online(f"127.0.0.1:{server.port}", "tok", store, ca_file=None)
    rogue = MiniCA("Rogue")
    rogue_srv = TlsManager(rogue, tmp_path / "rogue", enroll_handler(rogue))
    bundle = tmp_path / "rogue-ca.pem"
    bundle.write_text(rogue.pem)
    for var in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.setenv(var, str(bundle))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    try:
        with mtls(store, server.port) as t:  # the pinned CA still works
            assert t.send(Request("GET", "/key")).status == 200
        with mtls(store, rogue_srv.port) as t, pytest.raises(TransportError, match="TLS"):
            t.send(Request("GET", "/key"))  # the env CA is not trusted
    finally:
        rogue_srv.close()


def test_rejected_client_cert_says_so_clearly(ca, tmp_path: Path) -> None:
    srv = TlsManager(ca, tmp_path / "srv", enroll_handler(ca), require_cert=True)
    rogue = MiniCA("Rogue")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = rogue.issue("uuid-x", key.public_key())
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tmp_path / "ca.pem").write_text(ca.pem)
    ctx = create_ssl_context(tmp_path / "ca.pem", tmp_path / "c.pem", tmp_path / "k.pem")
    try:
        with (
            HttpsTransport("127.0.0.1", srv.port, ctx, timeout=5) as t,
            pytest.raises(CertificateRejected, match="certificate"),
        ):
            t.send(Request("GET", "/key"))
    finally:
        srv.close()


def test_connection_closed_after_handshake_reports_revocation(ca, tmp_path: Path) -> None:
    store = IdentityStore(tmp_path / "id")
    handler = enroll_handler(ca)
    revoked = {"on": False}

    def h(method, path, body, headers, cn):
        if revoked["on"] and path != "/enroll":
            return -1, b""
        return handler(method, path, body, headers, cn)

    srv = TlsManager(ca, tmp_path / "srv", h)
    try:
        enroll_online(f"127.0.0.1:{srv.port}", "tok", store)
        revoked["on"] = True
        with (
            mtls(store, srv.port) as t,
            pytest.raises(CertificateRejected, match="probably rejected/revoked"),
        ):
            t.send(Request("GET", "/key"))
    finally:
        srv.close()


def test_renewal_replaces_key_and_cert_and_keeps_pinned_ca(server, ca, tmp_path: Path) -> None:
    store = IdentityStore(tmp_path / "id")
    before = enroll_online(f"127.0.0.1:{server.port}", "tok", store)
    old_key = store.key_path.read_bytes()
    assert not before.renewal_due(time.time())
    assert before.renewal_due(before.not_after - 86400)
    with mtls(store, server.port) as t:
        after = renew(store, t)
    assert after.uuid == before.uuid and store.key_path.read_bytes() != old_key
    with mtls(store, server.port) as t:
        assert t.send(Request("GET", "/key")).status == 200


def test_offline_bundle(ca, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = ca.issue("uuid-b", key.public_key())
    bundle = {
        "uuid": "uuid-b",
        "manager": "mgr.example:1519",
        "ca_pem": ca.pem,
        "certificate_pem": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "key_pem": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    }
    path = tmp_path / "b.json"
    path.write_text(json.dumps(bundle))
    ident = enroll_bundle(path, IdentityStore(tmp_path / "id"))
    assert ident.uuid == "uuid-b" and (ident.host, ident.port) == ("mgr.example", 1519)
    bundle["ca_pem"] = MiniCA("x").pem
    path.write_text(json.dumps(bundle))
    with pytest.raises(EnrollmentError):
        enroll_bundle(path, IdentityStore(tmp_path / "id2"))


def test_split_manager() -> None:
    assert split_manager("h:1") == ("h", 1)
    assert split_manager("[::1]:9") == ("::1", 9)
    assert split_manager("host") == ("host", 1519)


def test_private_file_protection_per_platform(tmp_path: Path) -> None:
    from agent.link.identity import protect_private_file

    f = tmp_path / "k.pem"
    f.write_text("secret")
    calls: list[list[str]] = []
    protect_private_file(f, platform="win32", runner=lambda argv, **kw: calls.append(argv))
    assert calls == [
        [
            "icacls",
            str(f),
            "/inheritance:r",
            "/grant:r",
            "*S-1-5-18:F",
            "/grant:r",
            "*S-1-5-32-544:F",
        ]
    ]
    if os.name == "posix":
        f.chmod(0o644)
        protect_private_file(f, platform="linux")
        assert stat.S_IMODE(f.stat().st_mode) == 0o600


def test_keepalive_dropped_by_manager_is_retried_not_reported(ca, tmp_path: Path) -> None:
    store = IdentityStore(tmp_path / "id")
    handler = enroll_handler(ca)

    def h(method, path, body, headers, cn):
        status, out = handler(method, path, body, headers, cn)
        return (status + 1000 if path == "/key" else status), out  # idle keep-alive closed

    srv = TlsManager(ca, tmp_path / "srv", h)
    try:
        enroll_online(f"127.0.0.1:{srv.port}", "tok", store)
        with mtls(store, srv.port) as t:
            for _ in range(3):
                assert t.send(Request("GET", "/key")).status == 200
        assert sum(1 for r in srv.requests if r[1] == "/key") == 3
    finally:
        srv.close()
