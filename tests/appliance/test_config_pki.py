"""Config loading (unknown keys are errors, documented defaults) and the PKI."""

from __future__ import annotations

import datetime as dt
import ipaddress
import tomllib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.core.config import SECTIONS, Config, load_config, parse_listen, render_toml
from appliance.core.errors import ConfigError, PkiError, ValidationError
from appliance.security.pki import Pki, peer_identity
from rules.settings import settings_of

from .conftest import make_csr

DOCS = Path(__file__).resolve().parents[2] / "docs" / "manager.md"


def test_defaults_round_trip_through_rendered_toml(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(render_toml())
    assert load_config(path) == Config()
    assert load_config(tmp_path / "missing.toml") == Config()


@pytest.mark.parametrize(
    "text,match",
    [
        ("[admin]\nlisten = '127.0.0.1:1'\nlisen = 'x'\n", "unknown key at admin.lisen"),
        ("[nope]\n", "unknown key at nope in .*config.toml"),
        ("[streams]\nmax_clients = 'many'\n", "expected an integer.*streams.max_clients"),
        ("[streams]\nmax_clients = -1\n", "at least 0, got -1 at streams.max_clients"),
        ("[logging]\njson = 1\n", "expected a boolean, got 1 at logging.json"),
        ("[tls]\nserver_names = 'host'\n", "list of strings"),
        ("[admin]\nlisten = 'nohost'\n", "HOST:PORT"),
        ("admin = 3\n", "expected a table.*at admin"),
        ("[admin\n", "config.toml"),
        ("[misp]\nurl = 'ftp://misp'\n", r"url 'ftp://misp' is not an http\(s\) URL at misp in "),
        ("[misp]\nenabled = true\n", r"url is required when enabled at misp in .*config.toml"),
        ("[misp]\napi_key = 'short'\n", "api_key must be 40 letters or digits"),
        ("[misp]\nioc_types = []\n", "ioc_types must not be empty"),
        ("[misp]\nnamespace = 'x'\n", "namespace must be a UUID"),
        ("[misp]\nurl = 1\n", "expected a string, got 1 at misp.url"),
        ("[server]\nthreads = 2\n", "at least 4, got 2 at server.threads"),
        ("[cluster]\nmode = 'swarm'\n", "unknown value 'swarm'.*cluster.mode"),
    ],
)
def test_bad_config_is_an_error_naming_the_place(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_every_config_key_is_documented() -> None:
    text = DOCS.read_text()
    rendered = tomllib.loads(render_toml())
    for name, cls in SECTIONS.items():
        assert f"[{name}]" in text
        for spec in settings_of(cls):
            assert spec.name in rendered[name]
            assert f"{spec.name} = " in text, f"[{name}] {spec.name} missing from docs/manager.md"
            assert spec.help


def test_listen_parsing_and_overrides() -> None:
    assert parse_listen("[::1]:1519") == ("::1", 1519)
    assert parse_listen(":1519") == ("0.0.0.0", 1519)
    cfg = Config().with_listen(admin="127.0.0.1:0", endpoint="10.0.0.1:9")
    assert cfg.admin.listen == "127.0.0.1:0" and cfg.endpoint_url() == "https://localhost:9"
    with pytest.raises(ConfigError):
        Config().with_listen(admin="x:99999")


def test_ca_and_server_certificate(tmp_path: Path) -> None:
    pki = Pki.create(tmp_path / "pki", server_names=["manager.example", "10.1.2.3"])
    assert oct((tmp_path / "pki" / "ca.key").stat().st_mode & 0o777) == "0o600"
    server = x509.load_pem_x509_certificate((tmp_path / "pki" / "server.pem").read_bytes())
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["manager.example"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.1.2.3")]
    assert server.issuer == pki.ca_cert.subject
    with pytest.raises(PkiError, match="already exists"):
        Pki.create(tmp_path / "pki", server_names=["x"])
    with pytest.raises(PkiError, match="cannot load CA"):
        Pki(tmp_path / "empty")


def test_client_certificate_from_csr(tmp_path: Path) -> None:
    clock = lambda: 1_800_000_000.0  # noqa: E731
    pki = Pki.create(tmp_path / "pki", server_names=["localhost"], clock=clock)
    csr, _ = make_csr("evil-cn")
    issued = pki.sign_csr(csr, uuid="11111111-2222-4333-8444-555555555555", days=30)
    cert = x509.load_pem_x509_certificate(issued.pem.encode())
    assert issued.cn == "11111111-2222-4333-8444-555555555555"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.not_valid_after_utc == dt.datetime.fromtimestamp(clock(), dt.UTC) + dt.timedelta(
        days=30
    )
    from cryptography.hazmat.primitives import serialization

    ident = peer_identity(cert.public_bytes(serialization.Encoding.DER))
    assert (ident.cn, ident.serial, ident.sha256) == (issued.cn, issued.serial, issued.sha256)
    with pytest.raises(ValidationError):
        pki.sign_csr("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", uuid="u", days=1)


def test_renewal_window(env) -> None:
    agent = env.enroll()
    csr, _ = make_csr()
    res = env.e("POST", "/renew", agent, json={"csr_pem": csr})
    assert res.status_code == 403 and "renewal opens" in res.json["error"]
    env.ctx.clock.now += 340 * 86400  # within renew_before_days of the 365-day validity
    res = env.e("POST", "/renew", agent, json={"csr_pem": csr})
    assert res.status_code == 200, res.text
    assert res.json["uuid"] == agent.uuid
    renewed = env.connect(res.json["certificate_pem"])
    env.ctx.clock.now += 60 * 86400  # old certificate expired, new one still valid
    from .conftest import Agent

    assert env.e("GET", "/key", agent).status_code == 403
    new = Agent(agent.uuid, res.json["certificate_pem"], "", renewed)
    assert env.e("GET", "/key", new).text == agent.uuid


def test_public_surface_is_pinned() -> None:
    import appliance

    assert set(appliance.__all__) == {
        "Api",
        "AppContext",
        "Config",
        "ManagerServer",
        "Pki",
        "build_context",
        "create_app",
        "load_config",
    }
    for name in appliance.__all__:
        assert getattr(appliance, name) is not None


def test_limits_validated(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[commands]\npoll_wait = 31\n")
    with pytest.raises(ConfigError, match="poll_wait"):
        load_config(path)


def test_weak_csr_keys_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    pki = Pki.create(tmp_path / "pki", server_names=["localhost"])
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    for key in (rsa.generate_private_key(65537, 1024), ec.generate_private_key(ec.SECP192R1())):
        csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
        pem = csr.public_bytes(serialization.Encoding.PEM).decode()
        with pytest.raises(ValidationError, match="at least"):
            pki.sign_csr(pem, uuid="u", days=1)


def test_every_cli_command_is_documented() -> None:
    from appliance.cli import build_parser

    text = DOCS.read_text()
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, parser in sub.choices.items():
        assert f"### `{name}`" in text, name
        for action in parser._actions:
            for flag in action.option_strings:
                assert flag in text, (name, flag)


def test_bad_misp_section_is_a_clean_cli_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from appliance.cli import main

    (tmp_path / "config.toml").write_text("[misp]\nenabled = true\nurl = 'misp.example'\n")
    assert main(["init", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("heron-manager: url 'misp.example' is not an http(s) URL at misp in ")
    assert "config.toml" in err and "Traceback" not in err


def test_endpoint_addresses_put_ip_addresses_first() -> None:
    from dataclasses import replace as dc_replace

    from appliance.core.config import Config

    base = Config()
    cfg = dc_replace(
        base,
        endpoint=dc_replace(base.endpoint, listen="0.0.0.0:1519"),
        tls=dc_replace(base.tls, server_names=("mgr", "mgr.corp", "10.1.2.3", "fd00::5")),
    )
    assert cfg.endpoint_addresses() == [
        "10.1.2.3:1519",
        "[fd00::5]:1519",
        "mgr:1519",
        "mgr.corp:1519",
    ]
    bound = dc_replace(cfg, endpoint=dc_replace(cfg.endpoint, listen="192.0.2.7:1519"))
    assert bound.endpoint_addresses()[0] == "192.0.2.7:1519"
    public = dc_replace(
        cfg, endpoint=dc_replace(cfg.endpoint, public_url="https://edr.example:443")
    )
    assert public.endpoint_addresses() == ["edr.example:443"]
