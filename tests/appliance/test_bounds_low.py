"""Issue 18's low items: security headers, escaped text logs, reserved names, TLS suites."""

from __future__ import annotations

import logging
import ssl

import pytest

from appliance.core.errors import InvalidParam
from appliance.runtime.jsonlog import TextFormatter
from appliance.security.pki import Pki
from appliance.services.artifacts import check_filename

from .conftest import Env


def test_every_response_says_nosniff(env: Env) -> None:
    for res in (env.a("GET", "/healthz"), env.a("GET", "/nope"), env.e("GET", "/key", None)):
        assert res.headers["X-Content-Type-Options"] == "nosniff"
        assert res.headers["X-Frame-Options"] == "DENY"


def test_text_log_lines_cannot_be_forged() -> None:
    fmt = TextFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord(
        "t", logging.WARNING, "", 0, "enrolled %s", ("host\n2026-01-01 INFO forged line",), None
    )
    line = fmt.format(record)
    assert "\n" not in line and "host\\n2026" in line
    plain = logging.LogRecord("t", logging.INFO, "", 0, "enrolled %s", ("host-1",), None)
    assert fmt.format(plain) == "INFO enrolled host-1"


@pytest.mark.parametrize("name", ["con", "NUL", "nul.txt", "aaa.", "com1.log", "LPT9", "a "])
def test_windows_reserved_artifact_names_refused(name: str) -> None:
    with pytest.raises(InvalidParam):
        check_filename(name)


@pytest.mark.parametrize("name", ["report.json.gz", "console.log", "nul2.bin", "a.b"])
def test_ordinary_names_accepted(name: str) -> None:
    assert check_filename(name) == name


def test_tls12_offers_only_aead_suites(pki_dir: object) -> None:
    from pathlib import Path

    ctx = Pki(Path(str(pki_dir))).server_context(client_certs=False)
    tls12 = [c for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12 and all(c["aead"] for c in tls12), [c["name"] for c in tls12]
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
