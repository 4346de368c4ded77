"""Enrollment material over the admin API: CA fingerprint and offline bundles (zip)."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from .conftest import Env


def test_ca_fingerprint(env: Env) -> None:
    data = env.a("GET", "/enroll/ca", key=env.analyst_key).json["data"]
    der = x509.load_pem_x509_certificate(data["ca_pem"].encode()).public_bytes(Encoding.DER)
    assert data["ca_sha256"].replace(":", "").lower() == hashlib.sha256(der).hexdigest()
    assert data["endpoint_url"].startswith("https://")


def test_offline_bundle_is_a_zip_of_a_pre_enrolled_endpoint(env: Env) -> None:
    res = env.a("POST", "/enroll/bundles", json={"group": "lab", "hostname": "AIRGAP-1"})
    assert res.status_code == 200, res.text
    assert res.headers["content-type"] == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(res.content))
    assert set(zf.namelist()) == {"client.pem", "client.key", "ca.pem", "bundle.json"}
    meta = json.loads(zf.read("bundle.json"))
    assert meta["group"] == "lab" and meta["uuid"] == res.headers["x-heron-endpoint"]
    cert = x509.load_pem_x509_certificate(zf.read("client.pem"))
    assert meta["uuid"] in cert.subject.rfc4514_string()
    assert env.ctx.store.endpoints.get(meta["uuid"]).hostname == "AIRGAP-1"
    assert (zf.getinfo("client.key").external_attr >> 16) == 0o600
    assert env.a("POST", "/enroll/bundles", key=env.analyst_key, json={}).status_code == 403
    assert env.a("POST", "/enroll/bundles", json={"hostname": "a\nb"}).status_code == 422
    env.ctx.store.db.write(lambda cur: None)
    assert any(a["action"] == "POST /enroll/bundles" for a in env.ctx.store.audit.list())
