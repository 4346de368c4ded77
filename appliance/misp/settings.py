"""MISP sync settings: the frozen value, its declared keys with help, and its encrypted file store.

`MispSettings` is parsed at the edge (`from_dict`, unknown keys are errors) from the `[misp]`
section of the manager's config file or from the admin API. `SettingsStore` keeps the current
settings in `<data>/misp/settings.json`; the API key is never written in clear: it is encrypted with
Fernet under a key kept apart in `<data>/keys/misp.key` (mode 0400, directory 0700), and the public
view only says whether a key is set.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from rules.settings import ConfigError, Setting, parse_section, setting, settings_of

from .errors import MispSettingsError
from .mapping import DEFAULT_MISP_TYPES, MISP_TYPES
from .state import atomic_write

__all__ = ["SETTINGS", "MispSettings", "Setting", "SettingsStore", "key_path_for"]

logger = logging.getLogger(__name__)

KEY_FORMAT = re.compile(r"^[a-zA-Z0-9]{40}$")
# describeTypes categories (PyMISP's bundled copy; MISP 2.5).
CATEGORIES = frozenset(
    {
        "Internal reference",
        "Targeting data",
        "Antivirus detection",
        "Payload delivery",
        "Artifacts dropped",
        "Payload installation",
        "Persistence mechanism",
        "Network activity",
        "Payload type",
        "Attribution",
        "External analysis",
        "Financial fraud",
        "Support Tool",
        "Social network",
        "Person",
        "Other",
    }
)


def _f(default: Any, help: str, **bounds: Any) -> Any:
    """A MISP setting: applied live (PUT /misp/settings), text typed into a form is stripped."""
    return setting(default, help, live=True, strip=True, **bounds)


@dataclass(frozen=True, slots=True)
class MispSettings:
    """[misp]: MISP sync (docs/misp.md); API key: PUT /misp/settings."""

    enabled: bool = _f(False, "Master switch of the MISP sync.")
    url: str = _f("", "Base URL of the MISP instance, e.g. https://misp.example.org.")
    api_key: str = _f(
        "", "40-character MISP automation key (stored encrypted, never returned).", secret=True
    )
    verify_tls: bool = _f(True, "Verify MISP's TLS certificate.")
    ca_file: str = _f("", "PEM bundle of the CA that signed MISP's certificate (implies verify).")
    client_cert: str = _f("", "PEM client certificate presented to MISP (mutual TLS; empty: none).")
    client_key: str = _f("", "PEM key of client_cert when not in the same file.")
    proxy: str = _f("", "HTTP(S) proxy URL for MISP requests (empty: the environment's, if any).")
    connect_timeout: float = _f(5.0, "Seconds to wait for a TCP/TLS connection to MISP.", above=0)
    read_timeout: float = _f(60.0, "Seconds to wait for a MISP response.", above=0)
    pull_enabled: bool = _f(True, "Pull IoCs from MISP.")
    pull_interval: float = _f(300.0, "Seconds between incremental IoC pulls.", above=0)
    full_sync_interval: float = _f(
        86400.0, "Seconds between full IoC resyncs (catches hard deletes).", above=0
    )
    page_limit: int = _f(5000, "Attributes per restSearch page.", min=1)
    ioc_types: tuple[str, ...] = _f(
        DEFAULT_MISP_TYPES,
        "MISP attribute types pulled (mapped to Heron IoC types).",
        choices=MISP_TYPES,
        noun="MISP type",
    )
    categories: tuple[str, ...] = _f(
        (),
        "Only pull attributes of these MISP categories (empty: all).",
        choices=CATEGORIES,
        noun="category",
    )
    tags: tuple[str, ...] = _f((), "Tag filter of the pull; `!tag` excludes (empty: no filter).")
    orgs: tuple[str, ...] = _f(
        (), "Only pull events created by these organisations (name or id; `!org` excludes)."
    )
    threat_levels: tuple[str, ...] = _f(
        (),
        "Only pull events of these threat levels (1 high, 2 medium, 3 low, 4 undefined).",
        choices=("1", "2", "3", "4"),
        noun="threat level",
    )
    distributions: tuple[str, ...] = _f(
        (),
        "Only pull events of these distributions (0 org … 4 sharing group; empty: all).",
        choices=("0", "1", "2", "3", "4"),
        noun="distribution",
    )
    exclude_decayed: bool = _f(False, "Drop attributes every enabled MISP decaying model expired.")
    expire_on_sighting: bool = _f(
        False,
        "Drop attributes with a past MISP expiration sighting (type 2; adds includeSightings).",
    )
    pull_since: str = _f(
        "", "Only pull attributes changed since this UTC date (YYYY-MM-DD; empty: all)."
    )
    published_only: bool = _f(True, "Only pull attributes of published events.")
    enforce_warninglist: bool = _f(True, "Drop attributes that hit an enabled MISP warninglist.")
    sightings_enabled: bool = _f(True, "Push sightings of IoC values seen on endpoints.")
    sighting_ttl: float = _f(
        60.0, "Seconds during which a (source, value) sighting is not repeated.", above=0
    )
    sighting_batch_delay: float = _f(2.0, "Seconds hits are collected before one batched request.")
    sighting_max_attempts: int = _f(
        5, "Attempts for a batch MISP answers with 5xx before drop.", min=1
    )
    sighting_queue_max: int = _f(
        10_000, "Pending sighting batches kept on disk; oldest dropped beyond.", min=1
    )
    sighting_lookup: bool = _f(
        False, "Also sight values of types not pulled by asking MISP (sends candidate values)."
    )
    sighting_lookup_types: tuple[str, ...] = _f(
        ("filename", "regkey", "named pipe"),
        "MISP types looked up by value when not pulled.",
        choices=MISP_TYPES,
        noun="MISP type",
    )
    sighting_lookup_per_minute: int = _f(30, "Most value-lookup requests per minute.", min=1)
    sighting_lookup_ttl: float = _f(
        3600.0, "Seconds a value-lookup answer (hit or miss) is kept.", above=0
    )
    reports_enabled: bool = _f(True, "Push IR reports as edr-report objects.")
    report_distribution: int = _f(
        0, "Distribution of the daily report event (0 = organisation).", max=3
    )
    report_tags: tuple[str, ...] = _f(("tlp:amber",), "Tags of the daily report event.")
    report_zip_files: bool = _f(True, "Zip dumped files with the password 'infected'.")
    report_max_file_size: int = _f(
        10 * 1024 * 1024, "Largest dumped file attached, in bytes.", min=1
    )
    report_max_object_size: int = _f(
        30 * 1024 * 1024, "Largest total of attachments per report, in bytes.", min=1
    )
    report_publish: bool = _f(
        False, "Publish the daily event after each report (needs perm_publish)."
    )
    report_max_attempts: int = _f(
        5, "Attempts for a report MISP answers with 5xx before it is dead-lettered.", min=1
    )
    report_since: str = _f(
        "", "Push reports detected since this UTC date (YYYY-MM-DD); empty: since MISP was enabled."
    )
    report_max_per_hour: int = _f(120, "Most reports pushed per hour (paces a backfill).", min=1)
    source_name: str = _f("misp", "Source name given to pulled IoCs.")
    namespace: str = _f("", "UUID namespace of the deterministic event and object UUIDs.")
    retry_backoff: float = _f(
        30.0, "First delay, in seconds, before retrying an unreachable MISP.", above=0
    )
    retry_backoff_max: float = _f(900.0, "Longest delay, in seconds, between retries.", above=0)

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise MispSettingsError("; ".join(problems), operation="settings")

    def _problems(self) -> list[str]:
        """Checks across keys and of formats; types, bounds and choices are declared."""
        bad = []
        if self.url and not re.match(r"^https?://[^/\s]+", self.url):
            bad.append(f"url {self.url!r} is not an http(s) URL")
        if self.proxy and not re.match(r"^https?://[^/\s]+", self.proxy):
            bad.append(f"proxy {self.proxy!r} is not an http(s) URL")
        if self.client_key and not self.client_cert:
            bad.append("client_key needs client_cert")
        if self.enabled and not self.url:
            bad.append("url is required when enabled")
        if self.api_key and not KEY_FORMAT.match(self.api_key):
            bad.append("api_key must be 40 letters or digits")
        if not self.ioc_types:
            bad.append("ioc_types must not be empty")
        if self.pull_since and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", self.pull_since):
            bad.append("pull_since must be a date YYYY-MM-DD (or empty)")
        if self.report_since and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", self.report_since):
            bad.append("report_since must be a date YYYY-MM-DD (or empty)")
        if self.namespace:
            try:
                uuid.UUID(self.namespace)
            except ValueError:
                bad.append("namespace must be a UUID")
        return bad

    @property
    def verify(self) -> bool | str:
        """What PyMISP's `ssl=` gets: the CA bundle path, or whether to verify."""
        return self.ca_file if self.ca_file else self.verify_tls

    @property
    def configured(self) -> bool:
        """Enabled, with a URL and a key."""
        return self.enabled and bool(self.url) and bool(self.api_key)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MispSettings:
        """Parse a config-file section or an API body; unknown keys and wrong types are errors."""
        try:
            settings: MispSettings = parse_section(cls, data)
        except MispSettingsError:
            raise
        except ConfigError as ex:
            raise MispSettingsError(str(ex), operation="settings") from ex
        return settings

    def to_dict(self) -> dict[str, Any]:
        """All keys, the API key in clear (for the store only)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def to_public_dict(self) -> dict[str, Any]:
        """What the admin API shows: no API key, only whether one is set."""
        out = self.to_dict()
        out.pop("api_key")
        out["api_key_set"] = bool(self.api_key)
        return out

    def merged(self, patch: Mapping[str, Any]) -> MispSettings:
        """A copy with the keys of `patch` replaced.

        The API key changes only if the patch has one.
        """
        base = self.to_dict()
        base.update(patch)
        return MispSettings.from_dict(base)

    def with_namespace(self) -> MispSettings:
        """A copy with a fresh random namespace when none is set yet."""
        if self.namespace:
            return self
        return dataclasses.replace(self, namespace=str(uuid.uuid4()))


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def key_path_for(root: Path) -> Path:
    """Where the Fernet key of the settings under `root` lives: apart from them.

    `<data>/misp` → `<data>/keys/misp.key`; an instance, `<data>/misp/instances/<name>` →
    `<data>/keys/misp-instances-<name>.key`.
    """
    root = Path(root)
    if root.parent.name == "instances":
        base = key_path_for(root.parent.parent)
        return base.parent / f"{base.stem}-instances-{root.name}.key"
    return root.parent / "keys" / f"{root.name}.key"


class SettingsStore:
    """Settings persisted under `<root>` with the API key encrypted at rest.

    Security: the Fernet key is kept apart from the ciphertext (`key_path_for`): in a
    `keys/` directory of mode 0700, the file read-only to the manager's user (0400), so a copy
    of `<data>/misp/` (a backup, a support bundle) does not carry what decrypts the MISP key.
    An install's `<root>/secret.key` (the earlier layout) is moved there on first use.
    """

    FILE = "settings.json"
    LEGACY_KEY_FILE = "secret.key"

    def __init__(self, root: Path, key_path: Path | None = None) -> None:
        self.root = Path(root)
        self.key_path = Path(key_path) if key_path is not None else key_path_for(self.root)

    def _write_key(self, data: bytes) -> None:
        """Create the key file (0400 in a 0700 directory) durably and atomically."""
        folder = self.key_path.parent
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        tmp = folder / f".{self.key_path.name}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.key_path)
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _migrate(self) -> None:
        """Move `<root>/secret.key` of an earlier install next to the other keys."""
        legacy = self.root / self.LEGACY_KEY_FILE
        if not legacy.exists():
            return
        data = legacy.read_bytes()
        if not self.key_path.exists():
            self._write_key(data)
            logger.info("MISP key-encryption key moved from %s to %s", legacy, self.key_path)
        elif self.key_path.read_bytes().strip() != data.strip():
            logger.warning("%s differs from %s and is left in place", legacy, self.key_path)
            return
        legacy.unlink()

    def _fernet(self) -> Fernet:
        self._migrate()
        if not self.key_path.exists():
            self._write_key(Fernet.generate_key())
        return Fernet(self.key_path.read_bytes().strip())

    def load(self, default: MispSettings | None = None) -> MispSettings:
        """The stored settings, else `default`.

        `default` is the config file section; a namespace is fixed on first load.
        """
        doc = self._read()
        if doc is None:
            doc = self._create(self._encrypt((default or MispSettings()).with_namespace()))
        token = doc.pop("api_key_encrypted", "")
        key = ""
        if token:
            self._migrate()
            if not self.key_path.exists():
                # Cluster mode: another front-end wrote the token; its key must be copied here.
                logger.error(
                    "the stored MISP API key is encrypted but %s is missing: copy it from the "
                    "front-end that set the key",
                    self.key_path,
                )
                token = ""
        if token:
            try:
                key = self._fernet().decrypt(token.encode("ascii")).decode("utf-8")
            except InvalidToken:
                # The key file was replaced or lost: keep running without a key, loudly, so that
                # an operator can enter it again (PUT /misp/settings) instead of a dead manager.
                logger.error(
                    "the stored MISP API key cannot be decrypted with %s; set it again",
                    self.key_path,
                )
        doc["api_key"] = key
        return MispSettings.from_dict(doc).with_namespace()

    def save(self, settings: MispSettings) -> None:
        """Write the settings; the API key only as a Fernet token."""
        self._write(self._encrypt(settings))
        logger.info("MISP settings saved (enabled=%s, url=%s)", settings.enabled, settings.url)

    def _encrypt(self, settings: MispSettings) -> dict[str, Any]:
        doc = settings.to_dict()
        key = doc.pop("api_key")
        doc["api_key_encrypted"] = (
            self._fernet().encrypt(key.encode("utf-8")).decode("ascii") if key else ""
        )
        return doc

    # The document's place: a file here; PostgreSQL's `settings` table in cluster mode
    # (pgstore.PgSettingsStore overrides these three).

    def _read(self) -> dict[str, Any] | None:
        path = self.root / self.FILE
        if not path.exists():
            return None
        doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return doc

    def _write(self, doc: dict[str, Any]) -> None:
        atomic_write(self.root / self.FILE, json.dumps(doc, indent=2, sort_keys=True).encode())

    def _create(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Store the first document unless one appeared meanwhile; the stored one."""
        self._write(doc)
        return doc


SETTINGS: tuple[Setting, ...] = settings_of(MispSettings)
