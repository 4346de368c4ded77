"""The CLI's way into a running manager: admin commands through the admin API.

The fleet store is a DuckDB file one process holds, so `heron-manager user|enroll|endpoint`
cannot open it while the manager runs. Instead, `run` keeps an admin user `heron-local-cli`
whose key it rotates at every start and writes, with the admin URL and the CA, to
`<data>/run/local-admin.json` (mode 0600 in a 0700 directory: whoever may read the data
directory, and only they, may administer the manager, as with the store itself). The CLI finds
that file, checks the process is alive, and calls the admin API; every call is in the audit log
as `heron-local-cli`. The file is removed at shutdown.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import ApplianceError

if TYPE_CHECKING:
    from .context import AppContext

__all__ = ["LOCAL_USER", "LocalAdmin", "local_admin", "publish", "withdraw"]

LOCAL_USER = "heron-local-cli"
_FILE = Path("run") / "local-admin.json"


def _file(data_dir: Path) -> Path:
    return Path(data_dir) / _FILE


def _client_host(host: str) -> str:
    """Where a local client reaches a listener bound to ``host`` (any address → loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host in ("::", "[::]"):
        return "::1"
    return host


def publish(ctx: AppContext, data_dir: Path, admin: tuple[str, int]) -> Path:
    """Rotate the local CLI user's key and write where and how to reach the admin API."""
    from ..store import Role

    users = {u.identifier: u for u in ctx.store.users.list()}
    if LOCAL_USER in users:
        _, key = ctx.identity.rotate_key(users[LOCAL_USER].uuid)
    else:
        _, key = ctx.identity.add_user(
            LOCAL_USER, Role.ADMIN, description="heron-manager CLI on this host"
        )
    path = _file(data_dir)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path.parent, 0o700)
    doc = {
        "host": _client_host(admin[0]),
        "port": admin[1],
        "key": key,
        "pid": os.getpid(),
        "ca": str(ctx.pki.ca_path) if ctx.pki is not None else "",
    }
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh)
    tmp.replace(path)
    return path


def withdraw(data_dir: Path) -> None:
    """Remove the file at shutdown (a stale one is ignored anyway: its process is gone)."""
    try:
        _file(data_dir).unlink()
    except FileNotFoundError:
        pass


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # Windows: signal 0 is not supported for every process
        return True
    return True


@dataclass(frozen=True, slots=True)
class LocalAdmin:
    """The admin API of the manager running on this data directory."""

    host: str
    port: int
    key: str
    ca: str

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One admin API call; returns the envelope's ``data``; ApplianceError on failure."""
        ctx = ssl.create_default_context(cafile=self.ca or None)
        # the CA is this manager's own (read from its data dir) and the socket
        # is local; the admin listener's certificate need not name the address it is bound to.
        ctx.check_hostname = False
        conn = http.client.HTTPSConnection(self.host, self.port, context=ctx, timeout=60)
        try:
            conn.request(
                method,
                path,
                body=None if body is None else json.dumps(body),
                headers={"X-Api-Key": self.key, "Content-Type": "application/json"},
            )
            resp = conn.getresponse()
            raw = resp.read()
        except OSError as ex:
            raise ApplianceError(
                f"cannot reach the running manager at {self.host}:{self.port}: {ex}"
            ) from ex
        finally:
            conn.close()
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = {}
        if resp.status >= 300:
            raise ApplianceError(
                f"running manager refused {method} {path}: HTTP {resp.status} "
                f"{doc.get('error') or raw[:200]!r}"
            )
        return doc.get("data")


def local_admin(data_dir: Path) -> LocalAdmin | None:
    """The running manager's admin API for CLI commands, or None when none runs here."""
    try:
        doc = json.loads(_file(data_dir).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not _alive(int(doc.get("pid", 0))):
        return None
    return LocalAdmin(str(doc["host"]), int(doc["port"]), str(doc["key"]), str(doc.get("ca", "")))
