"""The PyMISP boundary: lazy connection, back-off, error translation, TLS with a custom CA."""

from __future__ import annotations

import datetime as dt
import inspect
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pymisp import exceptions as pymisp_exceptions

from appliance.misp import MispRejected, MispServerError, MispSettingsError, MispUnavailable
from appliance.misp.client import EXCEPTION_MAP, MispClient, pymisp_factory, translate
from tests.fakemisp import DEFAULT_KEY, FakeMisp

from .conftest import Clock, MakeSync, base_settings


def test_every_pymisp_and_requests_exception_is_mapped() -> None:
    classes = [
        c
        for _, c in inspect.getmembers(pymisp_exceptions, inspect.isclass)
        if issubclass(c, Exception) and c.__module__ == pymisp_exceptions.__name__
    ]
    classes += [
        c
        for _, c in inspect.getmembers(requests.exceptions, inspect.isclass)
        if issubclass(c, requests.exceptions.RequestException)
    ]
    unmapped = [c.__name__ for c in classes if not any(k in EXCEPTION_MAP for k in c.__mro__)]
    assert classes and unmapped == []
    assert isinstance(translate(requests.exceptions.ReadTimeout("x"), "op"), MispUnavailable)
    assert isinstance(translate(pymisp_exceptions.MISPServerError("x"), "op"), MispServerError)
    assert isinstance(translate(pymisp_exceptions.NoKey("x"), "op"), MispSettingsError)
    assert isinstance(translate(pymisp_exceptions.InvalidMISPObject("x"), "op"), MispRejected)


def test_client_is_created_lazily(fake: FakeMisp, make_sync: MakeSync) -> None:
    sync = make_sync()
    assert fake.requests == [] and not sync.status()["connected"]
    sync.pull_iocs()
    paths = [r.path for r in fake.requests][:3]
    assert paths == ["/servers/getVersion", "/users/view/me", "/attributes/describeTypes.json"]
    first = fake.requests[0].headers
    assert first["Authorization"] == DEFAULT_KEY and first["Accept"] == "application/json"
    assert first["User-Agent"].startswith("PyMISP ") and first["User-Agent"].endswith(" - heron")


def test_manager_starts_while_misp_is_down_then_connects(
    fake: FakeMisp, make_sync: MakeSync, clock: Clock
) -> None:
    fake.stop()
    sync = make_sync()
    sync.run_pending()  # never raises
    status = sync.status()
    assert not status["connected"] and "connect" in status["pull"]["last_error"]
    assert status["next_attempt"] == clock.now + 10
    sync.run_pending()  # inside the back-off window: no new attempt
    assert sync.status()["pull"]["runs"] == 1
    clock.advance(11)
    sync.run_pending()
    assert sync.client.backoff() == 20  # doubled after the second failure
    fake.start()
    clock.advance(21)
    sync.run_pending()
    assert sync.status()["connected"] and sync.status()["pull"]["last_error"] == ""


def test_bad_key_fails_cleanly_and_is_retried_later(fake: FakeMisp, clock: Clock) -> None:
    settings = base_settings(fake, api_key="b" * 40)
    client = MispClient(settings, clock=clock)
    with pytest.raises(MispRejected, match="Unable to get the user settings"):
        client.call("test", lambda api: api.misp_instance_version)
    with pytest.raises(MispUnavailable, match="not retrying"):
        client.call("test", lambda api: api.misp_instance_version)
    assert len(fake.requests_to("/users/view/me")) == 1


def test_server_errors_and_timeouts_are_unavailable(fake: FakeMisp, clock: Clock) -> None:
    client = MispClient(base_settings(fake, read_timeout=1.0), clock=clock)
    client.call("connect", lambda api: None)
    fake.inject("500", "/attributes/restSearch", times=1)
    with pytest.raises(MispServerError, match="in search"):
        client.call("search", lambda api: api.search(controller="attributes", limit=1, page=1))
    clock.advance(client.backoff() + 1)
    fake.inject("slow", "/attributes/restSearch", times=1, delay=2.5)
    with pytest.raises(MispUnavailable, match="Timeout"):
        client.call("search", lambda api: api.search(controller="attributes", limit=1, page=1))
    clock.advance(client.backoff() + 1)
    fake.inject("reset", "/attributes/restSearch", times=1)
    with pytest.raises(MispUnavailable):
        client.call("search", lambda api: api.search(controller="attributes", limit=1, page=1))


def test_unconfigured_client_refuses(clock: Clock) -> None:
    from appliance.misp import MispSettings

    with pytest.raises(MispSettingsError, match="not configured"):
        MispClient(MispSettings(), clock=clock).call("x", lambda api: None)


# --- TLS ------------------------------------------------------------------------------------------


def _write_pki(root: Path) -> tuple[Path, Path, Path]:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake MISP test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = root / "ca.pem", root / "misp.pem", root / "misp.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_https_with_custom_ca(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, cert, key = _write_pki(tmp_path)
    # requests lets this variable override Session.verify=True (docs/reference/deps.md §2); a CA
    # path is immune.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "missing-bundle.pem"))
    with FakeMisp(clock=clock, tls=(str(cert), str(key))) as fake:
        assert fake.url.startswith("https://")
        good = MispClient(base_settings(fake, ca_file=str(ca)), clock=clock, factory=pymisp_factory)
        version: Any = good.call("version", lambda api: api.misp_instance_version)
        assert version["version"] == "2.5.1"
        monkeypatch.delenv("REQUESTS_CA_BUNDLE")
        unknown_ca = MispClient(base_settings(fake), clock=clock)
        with pytest.raises(MispUnavailable, match="connect"):
            unknown_ca.call("version", lambda api: api.misp_instance_version)
        insecure = MispClient(base_settings(fake, verify_tls=False), clock=clock)
        assert insecure.call("version", lambda api: api.misp_instance_version)["version"]
        for c in (good, unknown_ca, insecure):
            c.close()


def test_connection_test_reports_missing_permissions(clock: Clock, tmp_path: Path) -> None:
    from appliance.misp import MispStorage, MispSync

    with FakeMisp(clock=clock, perm_sighting=False) as fake:
        sync = MispSync(base_settings(fake), MispStorage.open(tmp_path), clock)
        result = sync.test_connection()
        assert result["ok"] is True and result["missing_permissions"] == [
            "perm_tag_editor",  # the stock User role: report_tags that MISP lacks are dropped
            "perm_sighting",
        ]
        assert result["user"] == "heron@example.org"
        bad = sync.test_connection({"url": "http://127.0.0.1:9"})
        assert bad["ok"] is False and "connect" in bad["error"]
        assert sync.test_connection({"api_key": "short"})["ok"] is False
        sync.close()


def test_requests_go_through_the_configured_proxy(
    fake: FakeMisp, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An explicit proxy setting (users behind an egress proxy), not only the environment's."""
    from tests.fakemisp.proxy import ForwardProxy

    monkeypatch.delenv("HTTP_PROXY", raising=False)
    monkeypatch.delenv("http_proxy", raising=False)
    with ForwardProxy() as proxy:
        client = MispClient(base_settings(fake, proxy=proxy.url), clock=clock)
        version: Any = client.call("version", lambda api: api.misp_instance_version)
        client.close()
    assert version["version"] == "2.5.1"
    assert f"GET {fake.url}/servers/getVersion" in proxy.seen
    with pytest.raises(MispSettingsError, match="proxy"):
        base_settings(fake, proxy="socks://nope")


def test_client_certificate_authentication(tmp_path: Path, clock: Clock) -> None:
    """MISP behind a reverse proxy that requires a client certificate (mutual TLS)."""
    ca, cert, key = _write_pki(tmp_path)
    with FakeMisp(clock=clock, tls=(str(cert), str(key)), client_ca=str(ca)) as fake:
        without = MispClient(base_settings(fake, ca_file=str(ca)), clock=clock)
        with pytest.raises(MispUnavailable):
            without.call("version", lambda api: api.misp_instance_version)
        with_cert = MispClient(
            base_settings(fake, ca_file=str(ca), client_cert=str(cert), client_key=str(key)),
            clock=clock,
        )
        version: Any = with_cert.call("version", lambda api: api.misp_instance_version)
        assert version["version"] == "2.5.1"
        for c in (without, with_cert):
            c.close()
