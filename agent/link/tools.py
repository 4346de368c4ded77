"""Tool distribution: keep `<tools_dir>` in sync with the manager's `/tools` (osqueryi, Sysmon…).

Every `tools_interval` the agent lists `GET /tools?os=<os>`; a tool whose local copy is missing
or has another sha256 is fetched by hash (`&hash=<sha256>&binary=true`), verified against that
sha256 and written atomically (mode 0755). `find_tool` looks in this directory before PATH, so
the `osquery` command and the Sysmon applier use what the manager distributes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

from rules import wire

from .identity import write_atomic
from .transport import Request, Transport

logger = logging.getLogger(__name__)


def local_os() -> str:
    if sys.platform == "win32":
        return "windows"
    return "darwin" if sys.platform == "darwin" else "linux"


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


class ToolSync:
    """Downloads changed tools; `run_once()` returns `{name: outcome}`."""

    def __init__(self, transport: Transport, tools_dir: Path, *, os_name: str = "") -> None:
        self.transport = transport
        self.tools_dir = Path(tools_dir)
        self.os_name = os_name or local_os()

    def _get_json(self, query: str) -> dict[str, Any]:
        resp = self.transport.send(Request("GET", f"{wire.ROUTE_TOOLS}?{query}"))
        if resp.status == 204 or not resp.body:
            return {}
        if resp.status != 200:
            raise ValueError(f"HTTP {resp.status} on /tools")
        data = json.loads(resp.body)
        if not isinstance(data, dict):
            raise ValueError("/tools: expected a JSON object")
        return data

    def run_once(self) -> dict[str, str]:
        out: dict[str, str] = {}
        try:
            listing = self._get_json(f"os={self.os_name}")
        except ValueError as ex:
            return {"*": f"error: {ex}"}
        for name, item in sorted(listing.items()):
            out[name] = self._sync(name, item)
        return out

    def _sync(self, name: str, item: dict[str, Any]) -> str:
        sha = str(item.get("metadata", {}).get("sha256", "")).lower()
        filename = Path(str(item.get("alias") or name)).name
        if self.os_name == "windows" and not filename.lower().endswith(".exe"):
            filename += ".exe"
        if not sha or not filename or filename in (".", ".."):
            return "error: listing without a sha256 or name"
        target = self.tools_dir / filename
        if _sha256(target) == sha:
            return "unchanged"
        try:
            found = self._get_json(f"os={self.os_name}&hash={sha}&binary=true")
            entry: dict[str, Any] = found.get(name) or next(iter(found.values()), {})
            data = base64.b64decode(entry.get("binary", ""), validate=True)
        except (ValueError, binascii.Error, StopIteration) as ex:
            return f"error: {ex}"
        if hashlib.sha256(data).hexdigest() != sha:
            logger.warning(
                "tool %s: download does not match sha256 %s; kept the old copy", name, sha[:12]
            )
            return "error: sha256 mismatch"
        self.tools_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(target, data)
        target.chmod(0o755)
        logger.info("tool %s updated (%s, %d bytes)", filename, sha[:12], len(data))
        return "updated"
