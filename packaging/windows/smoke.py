"""Live smoke of the Windows MSIs against the installed manager (.github/workflows/windows.yml).

Stdlib only (it runs with any Python on the runner). Everything it needs comes from the key file
that the manager MSI's init writes (`first-admin-key.json`: admin URL, API key, CA file):

    python smoke.py token   KEYFILE                      print a one-time enrollment token
    python smoke.py event   KEYFILE MARKER [--timeout S] wait until a Sysmon process-creation
                                                         event whose command line holds MARKER
                                                         is searchable (/search), print it
    python smoke.py endpoints KEYFILE [--expect N]       print the enrolled endpoints (uuid,
                                                         hostname); fail unless there are N

Exit status 0 on success, 1 with a message on stderr otherwise.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

SYSMON = "Microsoft-Windows-Sysmon/Operational"


class Admin:
    """The admin API as the key file describes it."""

    def __init__(self, key_file: str) -> None:
        with open(key_file, encoding="utf-8") as fh:
            info = json.load(fh)
        self.url = str(info["admin_url"]).rstrip("/")
        self.key = str(info["api_key"])
        self.tls = ssl.create_default_context(cafile=info["ca_cert"])

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """The `data` of the admin envelope (the whole document where there is none)."""
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"X-Api-Key": self.key, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, context=self.tls, timeout=30) as res:
            doc = json.load(res)
        return doc["data"] if isinstance(doc, dict) and "data" in doc else doc

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.call("GET", "/healthz")
                return
            except (OSError, urllib.error.URLError, ValueError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(2)


def _is_process_create(event: dict[str, Any], marker: str) -> bool:
    ev = event.get("Event", event)
    system, data = ev.get("System", {}), ev.get("EventData", {})
    return (
        system.get("Channel") == SYSMON
        and int(system.get("EventID", 0)) == 1
        and marker in str(data.get("CommandLine", ""))
    )


def cmd_token(admin: Admin, args: argparse.Namespace) -> int:
    """Prints `TOKEN CA_SHA256` (the MSI pins the manager CA with CA_SHA256)."""
    out = admin.call("POST", "/enroll/tokens", {"ttl": 3600})
    print(out["token"], out["ca_sha256"])
    return 0


def cmd_event(admin: Admin, args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.timeout
    query = urllib.parse.urlencode({"q": args.marker, "limit": 50})
    while time.monotonic() < deadline:
        found = [
            e
            for e in admin.call("GET", f"/search?{query}")["events"]
            if _is_process_create(e, args.marker)
        ]
        if found:
            print(json.dumps(found[0], indent=1))
            return 0
        time.sleep(3)
    print(
        f"no Sysmon process creation with {args.marker!r} after {args.timeout:.0f} s",
        file=sys.stderr,
    )
    return 1


def cmd_endpoints(admin: Admin, args: argparse.Namespace) -> int:
    data = admin.call("GET", "/endpoints")
    rows = data["endpoints"] if isinstance(data, dict) else data
    for row in rows:
        print(row.get("uuid"), row.get("hostname"))
    if args.expect is not None and len(rows) != args.expect:
        print(f"expected {args.expect} endpoint(s), found {len(rows)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smoke.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn in (("token", cmd_token), ("event", cmd_event), ("endpoints", cmd_endpoints)):
        p = sub.add_parser(name)
        p.add_argument("key_file")
        p.set_defaults(fn=fn)
        if name == "event":
            p.add_argument("marker")
            p.add_argument("--timeout", type=float, default=300.0)
        if name == "endpoints":
            p.add_argument("--expect", type=int)
    args = parser.parse_args(argv)
    admin = Admin(args.key_file)
    try:
        admin.wait_healthy(120)
        return int(args.fn(admin, args))
    except (OSError, urllib.error.URLError, KeyError, ValueError) as ex:
        print(f"smoke.py {args.command}: {ex}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
