"""The agent ↔ manager wire contract: routes, headers, content types and message shapes.

This module is data only (no I/O). Both `agent/` and `appliance/` import it; they never import each
other. Message classes are frozen dataclasses converted at the edge with `from_dict`/`to_dict`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import TypeAlias, TypeVar

HERON_VERSION = "0.1.0"  # kept equal to pyproject's version (tests/test_version.py)

ENDPOINT_PORT = 1519
ADMIN_PORT = 1520

# --- endpoint API routes (mutual TLS; /enroll is the only one without a client certificate) ---
ROUTE_ENROLL = "/enroll"
ROUTE_RENEW = "/renew"
ROUTE_KEY = "/key"
ROUTE_LOGS = "/logs"
ROUTE_COMMANDS = "/commands"
ROUTE_RULES = "/rules"
ROUTE_RULES_SHA256 = "/rules/sha256"
ROUTE_IOCS = "/iocs"
ROUTE_IOCS_SHA256 = "/iocs/sha256"
ROUTE_SUPPRESSIONS = "/suppressions"  # per-rule exclusions of this endpoint (rules.suppress)
ROUTE_SUPPRESSIONS_SHA256 = "/suppressions/sha256"
ROUTE_CONFIG = "/config"
ROUTE_CONFIG_SHA256 = "/config/sha256"
ROUTE_SYSMON_CONFIG = "/sysmon/config"
ROUTE_SYSMON_CONFIG_SHA256 = "/sysmon/config/sha256"
ROUTE_UPLOAD_DUMPS = "/upload/dumps"
ROUTE_SYSTEM_INFO = "/info/system"
ROUTE_TOOLS = "/tools"
ROUTE_HEALTH = "/healthz"
# Every update hash in one answer (issue 24): {"rules", "iocs", "config", "sysmon", "tools"} →
# sha256 or null (none set); ?os=&version= as for /sysmon/config. The single routes stay.
ROUTE_UPDATES = "/updates"
UPDATE_ITEMS = ("rules", "iocs", "config", "sysmon", "tools")

# --- headers ---
HEADER_HOSTNAME = "X-Endpoint-Hostname"
HEADER_BATCH_ID = "X-Heron-Batch-Id"  # idempotency key of a /logs batch (exactly-once delivery)
HEADER_API_KEY = "X-Api-Key"
HEADER_API_KEY_LEGACY = "Api-Key"  # sent by older WHIDS clients (pywhids)
HEADER_AGENT_VERSION = "X-Heron-Agent-Version"
# Seconds the manager wants between an agent's update checks (longer under load; issue 24).
HEADER_POLL_AFTER = "X-Heron-Poll-After"
# Seconds the manager wants an agent's open /logs batch to wait (only under load; issue 24):
# the agent waits max(its batch_delay, min(this, MAX_BATCH_AFTER)).
HEADER_BATCH_AFTER = "X-Heron-Batch-After"
MAX_BATCH_AFTER = 10.0
# GET /commands?wait=N: hold the request up to N seconds until a command is queued (long-poll).
QUERY_WAIT = "wait"
USER_AGENT = f"Heron-Agent/{HERON_VERSION}"

CONTENT_NDJSON = "application/x-ndjson"
CONTENT_JSON = "application/json"
ENCODING_GZIP = "gzip"

# Limits the manager enforces and the agent respects (a clear 4xx, never a silent cut).
MAX_LOGS_BODY = 64 * 1024 * 1024  # decompressed bytes per /logs batch
MAX_LOGS_BODY_COMPRESSED = 16 * 1024 * 1024
MAX_EVENT_LINE = 4 * 1024 * 1024  # one NDJSON line (WHIDS cut silently at 64 KiB)
MAX_LOGS_EVENTS = 10_000  # events (NDJSON lines) per /logs batch: the agent's segment size
UPLOAD_CHUNK_SIZE = 3 * 1024 * 1024
MAX_UPLOAD_SIZE = 512 * 1024 * 1024

# IoC types Heron understands (MISP types are mapped onto these).
IOC_TYPES = (
    "md5",
    "sha1",
    "sha256",
    "imphash",
    "domain",
    "hostname",
    "ip-src",
    "ip-dst",
    "filename",
    "regkey",
    "named-pipe",
)

# Files an artifact directory `<process-guid>/<event-hash>/` may hold, by kind.
ARTIFACT_MANIFEST = "manifest.json"
ARTIFACT_EVENT = "event.json"
ARTIFACT_REPORT = "report.json"
ARTIFACT_KINDS = ("event", "report", "filedump", "memdump", "regdump", "command")

T = TypeVar("T")

# A decoded JSON value, for fields whose shape the wire does not fix.
JsonValue: TypeAlias = "str | int | float | bool | None | list[JsonValue] | dict[str, JsonValue]"


def _from_dict(cls: type[T], data: Mapping[str, object]) -> T:
    """Build dataclass `cls` from a mapping, ignoring unknown keys, keeping defaults."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in names})


class _Message:
    """Mixin giving dataclass messages `from_dict` and `to_dict`."""

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, object]) -> T:
        return _from_dict(cls, data)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)  # type: ignore[call-overload,no-any-return]


@dataclass(frozen=True, slots=True)
class EnrollRequest(_Message):
    """POST /enroll body: a one-time token and a PEM certificate signing request."""

    token: str
    csr_pem: str
    hostname: str = ""


@dataclass(frozen=True, slots=True)
class EnrollResponse(_Message):
    """POST /enroll (and /renew) answer: the endpoint's identity and certificates."""

    uuid: str
    certificate_pem: str
    ca_pem: str
    group: str = ""


@dataclass(frozen=True, slots=True)
class EnrollBundle(_Message):
    """Offline enrollment file (`heron-agent enroll --bundle FILE`) for air-gapped hosts.

    The manager mints the key pair itself (its `issue_client`), so the file is a secret.
    `manager` is the `HOST:PORT` of the endpoint API.
    """

    uuid: str
    certificate_pem: str
    key_pem: str
    ca_pem: str
    manager: str = ""
    group: str = ""


@dataclass(frozen=True, slots=True)
class LogsAck(_Message):
    """POST /logs answer once the batch is durable (journal flushed)."""

    batch_id: str
    accepted: int
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class DropFile(_Message):
    """A file the manager drops on the endpoint before a command runs (content base64)."""

    name: str
    data: str


@dataclass(frozen=True, slots=True)
class Command(_Message):
    """GET /commands answer: one queued command for this endpoint."""

    id: str
    name: str
    args: list[str] = field(default_factory=list)
    timeout: float = 15.0
    drop: list[dict[str, str]] = field(default_factory=list)
    fetch: list[str] = field(default_factory=list)
    expect_json: bool = False


@dataclass(frozen=True, slots=True)
class FetchedFile(_Message):
    """A file the command fetched from the endpoint (content base64), or why not."""

    path: str
    data: str = ""
    sha256: str = ""
    error: str = ""


@dataclass(frozen=True, slots=True)
class CommandResult(_Message):
    """POST /commands body: the outcome of one command."""

    id: str
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: str = ""
    json: JsonValue = None  # the parsed output of a command that prints JSON
    fetched: list[dict[str, str]] = field(default_factory=list)
    started: str = ""
    finished: str = ""


@dataclass(frozen=True, slots=True)
class UploadChunk(_Message):
    """POST /upload/dumps body: one chunk of an artifact file (content base64, chunk 1-based).

    `sha256` is the hash of the whole file; the manager verifies it when the last chunk lands.
    """

    filename: str
    guid: str
    event_hash: str
    content: str
    chunk: int
    total: int
    sha256: str
    size: int = 0


@dataclass(frozen=True, slots=True)
class Ioc(_Message):
    """One indicator of compromise as distributed to agents."""

    value: str
    type: str
    uuid: str = ""
    guuid: str = ""
    source: str = ""


def rules_sha256(rules_text: str) -> str:
    """Hash of the /rules body (each rule's raw JSON + newline, concatenated)."""
    return hashlib.sha256(rules_text.encode("utf-8")).hexdigest()


def iocs_sha256(iocs: Iterable[Mapping[str, object]]) -> str:
    """Order-independent hash of an IoC list: sha256 over sorted `type:value` lines.

    Both sides compute it the same way (WHIDS hashed in insertion order on one side, sorted on the
    other, and never agreed).
    """
    lines = sorted(f"{i['type']}:{i['value']}" for i in iocs)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def tools_sha256(listing: Mapping[str, Mapping[str, object]]) -> str:
    """Hash of a /tools listing (name → entry): sha256 over sorted `name:sha256` lines."""
    lines = []
    for name, entry in listing.items():
        meta = entry.get("metadata")
        sha = meta.get("sha256", "") if isinstance(meta, Mapping) else ""
        lines.append(f"{name}:{str(sha).lower()}")
    return hashlib.sha256("\n".join(sorted(lines)).encode("utf-8")).hexdigest()


def config_sha256(document: Mapping[str, object]) -> str:
    """Hash of an agent config document: sha256 of its canonical (sorted-key) JSON."""
    import json

    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
