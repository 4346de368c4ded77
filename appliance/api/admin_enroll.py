"""Admin API, enrollment material for the console: the CA fingerprint and offline bundles.

`POST /enroll/bundles` is `heron-manager enroll bundle` over HTTPS: it pre-enrolls an endpoint and
answers a zip (client.pem, client.key, ca.pem, bundle.json) for an air-gapped install. Admins only
(the default for writes); the audit trail records who created which bundle.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any
from urllib.parse import urlsplit

import falcon

from rules import wire

from ..core.errors import Unavailable, ValidationError
from ..runtime.context import AppContext
from .common import envelope
from .middleware import JsonBody

__all__ = ["ENROLL_ROUTES"]


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


class EnrollBundles:
    """POST /enroll/bundles {group, hostname}: pre-enroll an endpoint, answer its bundle (zip)."""

    PRODUCES = {"post": "application/zip"}

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
        """A zip with client.pem, client.key, ca.pem and bundle.json (the key is shown once)."""
        bundle = self.ctx.identity.bundle(**req.context.body)
        url = urlsplit(bundle.endpoint_url)
        meta = {
            "uuid": bundle.uuid,
            "endpoint_url": bundle.endpoint_url,
            "manager": f"{url.hostname}:{url.port or wire.ENDPOINT_PORT}",
            "group": bundle.group,
            "client_cert": "client.pem",
            "client_key": "client.key",
            "ca_cert": "ca.pem",
        }
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("client.pem", bundle.certificate_pem)
            info = zipfile.ZipInfo("client.key")
            info.external_attr = 0o600 << 16
            zf.writestr(info, bundle.key_pem)
            zf.writestr("ca.pem", bundle.ca_pem)
            zf.writestr("bundle.json", json.dumps(meta, indent=2))
        resp.content_type = "application/zip"
        resp.downloadable_as = f"heron-bundle-{bundle.uuid}.zip"
        resp.cache_control = ["no-store"]
        resp.set_header("X-Heron-Endpoint", bundle.uuid)
        resp.data = buf.getvalue()


ENROLL_ROUTES: list[tuple[str, Any, str | None]] = [
    ("/enroll/ca", EnrollCa, None),
    ("/enroll/bundles", EnrollBundles, None),
]
