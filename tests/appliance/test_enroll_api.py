"""Enrollment material over the admin API: CA fingerprint and offline bundles (JSON or zip)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import zipfile

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from .conftest import Env


def test_ca_fingerprint(env: Env) -> None:
    data = env.a("GET", "/enroll/ca", key=env.analyst_key).json["data"]
    der = x509.load_pem_x509_certificate(data["ca_pem"].encode()).public_bytes(Encoding.DER)
    assert data["ca_sha256"].replace(":", "").lower() == hashlib.sha256(der).hexdigest()
    assert data["endpoint_url"].startswith("https://")


@pytest.fixture
def named_env(env: Env) -> Env:
    """The manager's certificate names a DNS name first, then an IP address."""
    config = env.ctx.config
    tls = dataclasses.replace(config.tls, server_names=("mgr.example.org", "10.1.2.3"))
    env.ctx.config = dataclasses.replace(config, tls=tls)
    return env


def test_bundle_json_names_the_manager_by_ip_address(named_env: Env) -> None:
    env = named_env
    res = env.a("POST", "/enroll/bundle", json={"group": "lab", "hostname": "AIRGAP-0"})
    assert res.status_code == 201, res.text
    doc = res.json["data"]
    assert doc["manager"] == "10.1.2.3:1519"  # no DNS needed
    assert doc["addresses"] == ["10.1.2.3:1519", "mgr.example.org:1519"]
    assert (
        doc["key_pem"].startswith("-----BEGIN") and res.headers["x-heron-endpoint"] == doc["uuid"]
    )
    assert res.headers["cache-control"] == "no-store"
    assert env.ctx.store.endpoints.get(doc["uuid"]).hostname == "AIRGAP-0"


def test_bundle_zip_is_a_pre_enrolled_endpoint_named_by_ip_address(named_env: Env) -> None:
    env = named_env
    res = env.a("POST", "/enroll/bundle?format=zip", json={"group": "lab", "hostname": "AIRGAP-1"})
    assert res.status_code == 201, res.text
    assert res.headers["content-type"] == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(res.content))
    assert set(zf.namelist()) == {"client.pem", "client.key", "ca.pem", "bundle.json"}
    meta = json.loads(zf.read("bundle.json"))
    assert meta["group"] == "lab" and meta["uuid"] == res.headers["x-heron-endpoint"]
    # the same addresses as the JSON form (was: the endpoint URL's DNS name)
    assert meta["manager"] == "10.1.2.3:1519"
    assert meta["addresses"] == ["10.1.2.3:1519", "mgr.example.org:1519"]
    assert meta["ca_sha256"] == env.ctx.pki.ca_sha256  # type: ignore[union-attr]
    cert = x509.load_pem_x509_certificate(zf.read("client.pem"))
    assert meta["uuid"] in cert.subject.rfc4514_string()
    assert env.ctx.store.endpoints.get(meta["uuid"]).hostname == "AIRGAP-1"
    assert (zf.getinfo("client.key").external_attr >> 16) == 0o600


@pytest.mark.parametrize("query", ["", "?format=zip"])
def test_bundle_is_for_admins_with_one_body_check(env: Env, query: str) -> None:
    route = "/enroll/bundle" + query
    assert env.a("POST", route, key=env.analyst_key, json={}).status_code == 403
    assert env.a("POST", route, json={"hostname": "a\nb"}).status_code == 422
    assert env.a("POST", route, json={"group": "x" * 256}).status_code == 422
    assert env.a("POST", route, json=[]).status_code == 422
    before = len(env.ctx.store.endpoints.list())
    assert env.a("POST", "/enroll/bundle?format=tar", json={}).status_code == 400
    assert len(env.ctx.store.endpoints.list()) == before  # refused before minting anything
    assert env.a("POST", route, json={}).status_code == 201
    env.ctx.store.db.write(lambda cur: None)
    assert any(a["action"].startswith("POST /enroll/bundle") for a in env.ctx.store.audit.list())


def test_one_bundle_route() -> None:
    from appliance.api.admin_enroll import ENROLL_ROUTES

    assert [r for r, _, _ in ENROLL_ROUTES if r.startswith("/enroll/bundle")] == ["/enroll/bundle"]
