"""The console's static files: a fixed catalog read once, served with security headers.

Only files that exist under `appliance/console/static/` when the catalog is built can be served, by
exact relative path; there is no path joining at request time, so no traversal. Every response of
the console (page, asset or console JSON) carries `SECURITY_HEADERS`, whose Content-Security-Policy
allows nothing but this origin: no inline script or style, no CDN, no frames. The console works on
an air-gapped appliance by construction.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import falcon

from appliance.core.errors import NotFound

__all__ = [
    "CSP",
    "SECURITY_HEADERS",
    "STATIC_DIR",
    "Asset",
    "AssetCatalog",
    "apply_security_headers",
]

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "manifest-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), usb=()",
}

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}


def apply_security_headers(resp: falcon.Response) -> None:
    """Set the console's security headers (CSP and friends) on a response."""
    for name, value in SECURITY_HEADERS.items():
        resp.set_header(name, value)


@dataclass(frozen=True, slots=True)
class Asset:
    """One static file: its bytes, content type and strong ETag."""

    path: str
    body: bytes
    content_type: str
    etag: str


class AssetCatalog:
    """Every servable console file, keyed by its path relative to the static directory.

    Args:
        root: the static directory (the packaged one by default).
    """

    def __init__(self, root: Path = STATIC_DIR) -> None:
        self.root = root
        self._assets: dict[str, Asset] = {}
        for path in sorted(root.rglob("*")):
            if not path.is_file() or path.suffix not in CONTENT_TYPES:
                continue
            rel = path.relative_to(root).as_posix()
            body = path.read_bytes()
            etag = hashlib.sha256(body).hexdigest()[:32]
            self._assets[rel] = Asset(rel, body, CONTENT_TYPES[path.suffix], etag)
        logger.debug("console catalog: %d assets under %s", len(self._assets), root)

    def __contains__(self, rel: object) -> bool:
        return rel in self._assets

    def __iter__(self) -> Iterator[Asset]:
        return iter(sorted(self._assets.values(), key=lambda a: a.path))

    def __len__(self) -> int:
        return len(self._assets)

    def get(self, rel: str) -> Asset | None:
        """The asset at relative path `rel`, or None."""
        return self._assets.get(rel)

    def serve(self, req: falcon.Request, resp: falcon.Response, rel: str) -> None:
        """Write asset `rel` into `resp` (304 on a matching If-None-Match); 404 if unknown."""
        asset = self._assets.get(rel)
        if asset is None:
            raise NotFound(f"no console asset {rel!r}")
        apply_security_headers(resp)
        resp.etag = asset.etag
        resp.cache_control = ["no-cache"]
        if asset.etag in (req.if_none_match or []):  # falcon parses ETag objects (str subclass)
            resp.status = falcon.HTTP_304
            return
        resp.content_type = asset.content_type
        resp.data = asset.body
