"""Console static files: catalog, headers (CSP), no external URL anywhere, imports resolve."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import falcon.testing
import pytest

from appliance.console import CSP, STATIC_DIR, AssetCatalog

CATALOG = AssetCatalog()
TEXT_ASSETS = [a for a in CATALOG if a.content_type.startswith(("text/", "image/svg"))]

# Anything that would make the browser leave the appliance: absolute URLs, protocol-relative
# URLs, CSS imports of remote sheets, web fonts from elsewhere.
EXTERNAL = re.compile(
    r"""(?i)(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}|@import\s+url\(\s*['"]?(?:https?:)?//"""
)
ALLOWED = {"http://www.w3.org/2000/svg"}  # an XML namespace name, never fetched


def test_catalog_holds_the_page_and_its_modules() -> None:
    names = {a.path for a in CATALOG}
    assert {"index.html", "css/console.css", "js/main.js", "js/api.js", "icon.svg"} <= names
    assert any(n.startswith("js/pages/") for n in names)
    assert len(CATALOG) == len([p for p in STATIC_DIR.rglob("*") if p.is_file()])


@pytest.mark.parametrize("asset", TEXT_ASSETS, ids=lambda a: a.path)
def test_no_external_url_in_asset(asset) -> None:  # type: ignore[no-untyped-def]
    text = asset.body.decode("utf-8")
    found = [m.group(0) for m in EXTERNAL.finditer(text)]
    found = [f for f in found if not any(f in ok for ok in ALLOWED)]
    assert not found, f"{asset.path} references external resources: {found}"


JS_ASSETS = [a for a in CATALOG if a.path.endswith(".js")]


@pytest.mark.parametrize("asset", JS_ASSETS, ids=lambda a: a.path)
def test_js_module_imports_resolve_inside_catalog(asset) -> None:  # type: ignore[no-untyped-def]
    text = asset.body.decode("utf-8")
    base = PurePosixPath(asset.path).parent
    for spec in re.findall(r"""^\s*import\b[^'"]*['"]([^'"]+)['"]""", text, flags=re.M):
        assert spec.startswith("."), f"{asset.path}: bare or absolute import {spec!r}"
        target = PurePosixPath(*(base / spec).parts)
        resolved = []
        for part in target.parts:
            if part == "..":
                resolved.pop()
            elif part != ".":
                resolved.append(part)
        assert "/".join(resolved) in CATALOG, f"{asset.path}: {spec} not in the catalog"


def test_no_inline_script_or_style_in_page() -> None:
    page = CATALOG.get("index.html")
    assert page is not None
    html = page.body.decode()
    inline_script = re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert inline_script is None, "inline <script> breaks the CSP"
    assert "<style" not in html and " style=" not in html and "onclick=" not in html
    for ref in re.findall(r"""(?:src|href)="(/console/static/[^"]+)""", html):
        assert ref.removeprefix("/console/static/") in CATALOG, ref


def test_no_innerhtml_in_scripts() -> None:
    for asset in CATALOG:
        if asset.path.endswith(".js"):
            assert "innerHTML" not in asset.body.decode(), f"{asset.path} uses innerHTML"


def test_page_is_served_with_csp_and_security_headers(client: falcon.testing.TestClient) -> None:
    for path in ("/console", "/console/"):
        result = client.simulate_get(path)
        assert result.status_code == 200
        assert result.headers["content-type"].startswith("text/html")
        assert result.headers["content-security-policy"] == CSP
        assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
        assert "frame-ancestors 'none'" in CSP
        assert result.headers["x-content-type-options"] == "nosniff"
        assert result.headers["x-frame-options"] == "DENY"
        assert "Heron console" in result.text


def test_assets_have_types_etags_and_304(client: falcon.testing.TestClient) -> None:
    result = client.simulate_get("/console/static/js/main.js")
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("text/javascript")
    assert result.headers["content-security-policy"] == CSP
    etag = result.headers["etag"]
    again = client.simulate_get("/console/static/js/main.js", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    css = client.simulate_get("/console/static/css/console.css")
    assert css.headers["content-type"].startswith("text/css")


@pytest.mark.parametrize(
    "path",
    [
        "/console/static/../auth.py",
        "/console/static/%2e%2e/auth.py",
        "/console/static/..%2fauth.py",
        "/console/static/js/../../sessions.py",
        "/console/static/nope.js",
        "/console/static/",
    ],
)
def test_only_catalogued_files_are_served(client: falcon.testing.TestClient, path: str) -> None:
    result = client.simulate_get(path)
    assert result.status_code == 404
    assert b"SessionStore" not in result.content and b"import" not in result.content


def test_console_json_routes_use_the_envelope(client: falcon.testing.TestClient) -> None:
    result = client.simulate_get("/console/api/session")
    assert result.json == {"data": None, "message": "OK", "error": ""}
    assert result.headers["cache-control"] == "no-store"
