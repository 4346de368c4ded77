"""Admin API, enrollment material: the CA fingerprint and offline bundles.

`POST /enroll/bundle` is `heron-manager enroll bundle` over HTTPS while the manager runs: it
pre-enrolls an endpoint and answers its bundle, as JSON (`format=json`, the default: PEMs inline,
what `heron-agent enroll --bundle FILE` reads) or as a zip (`format=zip`: client.pem, client.key,
ca.pem and bundle.json, the directory `enroll bundle --out DIR` writes). Both name the manager by
an IP address when it has one (`manager`; `addresses` lists every name): air-gapped networks
often have no DNS. Admins only (the default for writes); the audit trail records who created
which bundle. The private key is in the answer only (shown once, never kept).
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import falcon

from ..core.errors import InvalidParam, Unavailable, ValidationError
from ..runtime.context import AppContext
from .common import envelope, q_str
from .middleware import JsonBody

__all__ = ["ENROLL_ROUTES", "bundle_document", "bundle_files", "bundle_meta"]

BUNDLE_FORMATS = ("json", "zip")


def _bundle_body(data: Any) -> dict[str, str]:
    if not isinstance(data, dict):
        raise ValidationError("expected a JSON object")
    out = {}
    for key in ("group", "hostname"):
        value = data.get(key) or ""
        if not isinstance(value, str) or len(value) > 255 or any(ord(c) < 32 for c in value):
            raise ValidationError(f"{key} must be a printable string of at most 255 characters")
        out[key] = value
    return out


def bundle_document(ctx: AppContext, group: str, hostname: str) -> dict[str, Any]:
    """Pre-enroll an endpoint: its bundle (key pair, certificate, CA, manager address) as JSON."""
    bundle = ctx.identity.bundle(group=group, hostname=hostname)
    addresses = ctx.config.endpoint_addresses()
    return {
        "uuid": bundle.uuid,
        "endpoint_url": bundle.endpoint_url,
        "manager": addresses[0],  # an IP address when there is one: no DNS needed
        "addresses": addresses,
        "group": bundle.group,
        "ca_sha256": ctx.pki.ca_sha256 if ctx.pki else None,
        "certificate_pem": bundle.certificate_pem,
        "key_pem": bundle.key_pem,
        "ca_pem": bundle.ca_pem,
    }


def bundle_meta(doc: dict[str, Any]) -> dict[str, Any]:
    """`bundle.json` of a bundle directory or zip: the PEMs are the files next to it."""
    return {
        "uuid": doc["uuid"],
        "endpoint_url": doc["endpoint_url"],
        "manager": doc["manager"],
        "addresses": doc.get("addresses", [doc["manager"]]),
        "group": doc["group"],
        "ca_sha256": doc.get("ca_sha256"),
        "client_cert": "client.pem",
        "client_key": "client.key",
        "ca_cert": "ca.pem",
    }


def bundle_files(doc: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(name, text, mode) of each file of a bundle directory or zip."""
    return [
        ("client.pem", doc["certificate_pem"], 0o644),
        ("client.key", doc["key_pem"], 0o600),
        ("ca.pem", doc["ca_pem"], 0o644),
        ("bundle.json", json.dumps(bundle_meta(doc), indent=2), 0o644),
    ]


def _zip(doc: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text, mode in bundle_files(doc):
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, text)
    return buf.getvalue()


class EnrollCa:
    """GET /enroll/ca: the CA certificate, its sha256 fingerprint and the endpoint URL."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """What an agent must trust and where it connects."""
        if self.ctx.pki is None:
            raise Unavailable("this manager has no PKI")
        envelope(
            resp,
            {
                "ca_sha256": self.ctx.pki.ca_sha256,
                "ca_pem": self.ctx.pki.ca_pem,
                "endpoint_url": self.ctx.config.endpoint_url(),
            },
        )


class EnrollBundle:
    """POST /enroll/bundle[?format=json|zip] {group, hostname}: an offline enrollment bundle."""

    QUERY = {"post": {"format": "string"}}
    PRODUCES = {"post": (falcon.MEDIA_JSON, "application/zip")}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.BODY = {
            "post": JsonBody(
                _bundle_body,
                {
                    "type": "object",
                    "properties": {"group": {"type": "string"}, "hostname": {"type": "string"}},
                },
            )
        }

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Pre-enroll an endpoint; its private key is in the answer (shown once, not kept)."""
        fmt = q_str(req, "format", "json", 8)
        if fmt not in BUNDLE_FORMATS:
            raise InvalidParam("format must be json or zip")
        body = req.context.body
        doc = bundle_document(self.ctx, body["group"], body["hostname"])
        resp.cache_control = ["no-store"]
        resp.set_header("X-Heron-Endpoint", doc["uuid"])
        if fmt == "json":
            envelope(resp, doc, 201)
            return
        resp.status = falcon.HTTP_201
        resp.content_type = "application/zip"
        resp.downloadable_as = f"heron-bundle-{doc['uuid']}.zip"
        resp.data = _zip(doc)


ENROLL_ROUTES: list[tuple[str, Any, str | None]] = [
    ("/enroll/ca", EnrollCa, None),
    ("/enroll/bundle", EnrollBundle, None),
]
