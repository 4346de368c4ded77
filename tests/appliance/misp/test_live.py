"""Opt-in check against a real MISP (docs/reference/misp.md §7): set MISP_URL and MISP_KEY (and
MISP_VERIFY=0 or a
CA path); skipped otherwise. Read-only: it connects and pulls one page of IoCs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from appliance.misp import MemoryIocSink, MispSettings, MispStorage, MispSync

URL, KEY = os.environ.get("MISP_URL", ""), os.environ.get("MISP_KEY", "")

pytestmark = pytest.mark.skipif(not (URL and KEY), reason="MISP_URL/MISP_KEY not set")


def test_live_connection_and_pull(tmp_path: Path) -> None:
    verify = os.environ.get("MISP_VERIFY", "1")
    settings = MispSettings.from_dict(
        {
            "enabled": True,
            "url": URL,
            "api_key": KEY,
            "page_limit": 50,
            "verify_tls": verify not in ("0", "false"),
            "ca_file": verify if verify not in ("0", "1", "false", "true") else "",
        }
    )
    sync = MispSync(settings, MispStorage.open(tmp_path), time.time, sink=MemoryIocSink())
    result = sync.test_connection()
    assert result["ok"], result
    pulled = sync.pull_iocs(full=True)
    assert pulled.full and pulled.total_iocs >= 0
    sync.close()
