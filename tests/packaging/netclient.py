"""HTTPS probes the frozen smoke test runs inside the test's network namespace.

The smoke test runs the frozen programs in a private network namespace (no route off the host, so
any download attempt fails). The test process itself stays outside it, so its HTTP checks run as
this small script under `nsenter`. Output is one JSON document on stdout.

    python netclient.py wait URL CAFILE T0 TIMEOUT        first 200 from URL; seconds since T0
    python netclient.py get URL CAFILE APIKEY             GET with X-Api-Key: status, type, body
"""

from __future__ import annotations

import json
import ssl
import sys
import time
import urllib.error
import urllib.request


def _context(cafile: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile)


def wait(url: str, cafile: str, t0: float, timeout: float) -> dict[str, object]:
    """Poll `url` until it answers 200; report when, relative to `t0` (a time.time() value)."""
    ctx = _context(cafile)
    deadline = time.time() + timeout
    last = ""
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:
                if resp.status == 200:
                    return {"ok": True, "seconds": time.time() - t0}
        except (OSError, urllib.error.URLError) as ex:
            last = repr(ex)
        time.sleep(0.02)
    return {"ok": False, "error": last}


def get(url: str, cafile: str, api_key: str) -> dict[str, object]:
    req = urllib.request.Request(url, headers={"X-Api-Key": api_key})
    try:
        with urllib.request.urlopen(req, context=_context(cafile), timeout=10) as resp:
            raw = resp.read()
            kind = resp.headers.get("Content-Type", "")
            if kind.startswith("application/json"):
                return {"status": resp.status, "type": kind, "body": json.loads(raw)}
            return {
                "status": resp.status,
                "type": kind,
                "body": raw[:4096].decode("utf-8", "replace"),
            }
    except urllib.error.HTTPError as ex:
        return {"status": ex.code, "body": ex.read().decode("utf-8", "replace")}


def main(argv: list[str]) -> int:
    if argv[0] == "wait":
        out = wait(argv[1], argv[2], float(argv[3]), float(argv[4]))
    elif argv[0] == "get":
        out = get(argv[1], argv[2], argv[3])
    else:
        raise SystemExit(f"unknown probe {argv[0]}")
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
