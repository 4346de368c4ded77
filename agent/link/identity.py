"""The endpoint's identity on disk: private key, client certificate, pinned CA, uuid.

Files under the identity directory::

    key.pem         EC P-256 private key (0600 on POSIX; SYSTEM/Administrators-only ACL on Windows)
    cert.pem        client certificate issued by the appliance CA (CN = endpoint uuid)
    ca.pem          the appliance CA: the ONLY trust anchor the link ever uses
    identity.json   {"uuid", "manager", "group", "ca_sha256"}

Writes are atomic (temp file + rename) so a crash during renewal leaves the old pair usable.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .errors import EnrollmentError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Identity:
    """A loaded, enrolled identity."""

    uuid: str
    manager: str  # HOST:PORT
    group: str
    key_path: Path
    cert_path: Path
    ca_path: Path
    not_before: float
    not_after: float

    @property
    def host(self) -> str:
        return split_manager(self.manager)[0]

    @property
    def port(self) -> int:
        return split_manager(self.manager)[1]

    def renewal_due(
        self, now: float, *, fraction: float = 1 / 3, before: float = 20 * 86400.0
    ) -> bool:
        """True once less than `fraction` of the lifetime, capped at `before` seconds, is left.

        the manager opens renewal `tls.renew_before_days` (30) days before expiry;
        the 20-day cap keeps long-lived certificates inside that window.
        """
        lifetime = max(self.not_after - self.not_before, 1.0)
        return self.not_after - now < min(lifetime * fraction, before)


def split_manager(address: str, default_port: int = 1519) -> tuple[str, int]:
    """Parse `HOST:PORT` (`[v6]:PORT` for IPv6) into a tuple."""
    address = address.strip()
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host, int(rest.lstrip(":") or default_port)
    host, sep, port = address.rpartition(":")
    if not sep:
        return address, default_port
    if not port.isdigit():
        raise ValueError(f"bad manager address {address!r}: expected HOST:PORT")
    return host, int(port)


def new_key_and_csr(common_name: str) -> tuple[bytes, str]:
    """Create an EC P-256 key and a CSR; returns (key PEM, CSR PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name or "heron")]))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


def ca_fingerprint(ca_pem: str) -> str:
    """Hex sha256 of the CA certificate's DER (what `--ca-sha256` pins)."""
    cert = x509.load_pem_x509_certificate(ca_pem.encode("ascii"))
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def check_issued_by(cert_pem_or_der: str | bytes, ca_pem: str) -> None:
    """Raise EnrollmentError unless the certificate was signed by the CA."""
    try:
        ca = x509.load_pem_x509_certificate(ca_pem.encode("ascii"))
        if isinstance(cert_pem_or_der, bytes):
            cert = x509.load_der_x509_certificate(cert_pem_or_der)
        else:
            cert = x509.load_pem_x509_certificate(cert_pem_or_der.encode("ascii"))
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError) as ex:
        raise EnrollmentError(f"certificate not issued by the manager's CA: {ex}") from ex
    except Exception as ex:  # cryptography.exceptions.InvalidSignature
        raise EnrollmentError(f"certificate signature does not verify against the CA: {ex}") from ex


def icacls_command(path: Path) -> list[str]:
    """icacls argv leaving only SYSTEM (S-1-5-18) and Administrators (S-1-5-32-544) access."""
    return [
        "icacls",
        str(path),
        "/inheritance:r",
        "/grant:r",
        "*S-1-5-18:F",
        "/grant:r",
        "*S-1-5-32-544:F",
    ]


def protect_private_file(
    path: Path, *, platform: str = sys.platform, runner: Callable[..., object] = subprocess.run
) -> None:
    """Restrict a secret file to its owner (POSIX 0600; Windows: SYSTEM + Administrators)."""
    if platform == "win32":
        runner(icacls_command(path), check=True, capture_output=True, timeout=30)
    else:
        os.chmod(path, 0o600)


def write_atomic(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write `data` to `path` via a temp file, fsync and rename."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(
        tmp,
        os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0),
        0o600 if private else 0o644,
    )
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    if private:
        protect_private_file(tmp)
    os.replace(tmp, path)


class IdentityStore:
    """Reads and writes the identity files in one directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.key_path = self.root / "key.pem"
        self.cert_path = self.root / "cert.pem"
        self.ca_path = self.root / "ca.pem"
        self.meta_path = self.root / "identity.json"

    def exists(self) -> bool:
        return all(
            p.exists() for p in (self.key_path, self.cert_path, self.ca_path, self.meta_path)
        )

    def load(self) -> Identity:
        """Load the identity, or raise EnrollmentError if the agent is not enrolled."""
        if not self.exists():
            raise EnrollmentError(
                f"not enrolled (no identity in {self.root}): run "
                "`heron-agent enroll --manager HOST:PORT --token TOKEN`"
            )
        meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
        cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        return Identity(
            uuid=meta["uuid"],
            manager=meta["manager"],
            group=meta.get("group", ""),
            key_path=self.key_path,
            cert_path=self.cert_path,
            ca_path=self.ca_path,
            not_before=cert.not_valid_before_utc.timestamp(),
            not_after=cert.not_valid_after_utc.timestamp(),
        )

    def save(
        self, *, uuid: str, manager: str, group: str, key_pem: bytes, cert_pem: str, ca_pem: str
    ) -> Identity:
        """Verify the certificate matches the key and the CA, then store everything."""
        check_issued_by(cert_pem, ca_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        cert = x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
        spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
            raise EnrollmentError("the issued certificate does not match our private key")
        self.root.mkdir(parents=True, exist_ok=True)
        if os.name == "posix":
            os.chmod(self.root, 0o700)
        # stage key and cert first so the swap is two renames (renewal crash window).
        write_atomic(self.key_path.with_name("key.pem.new"), key_pem, private=True)
        write_atomic(self.cert_path.with_name("cert.pem.new"), cert_pem.encode("ascii"))
        write_atomic(self.ca_path, ca_pem.encode("ascii"))
        os.replace(self.key_path.with_name("key.pem.new"), self.key_path)
        os.replace(self.cert_path.with_name("cert.pem.new"), self.cert_path)
        meta = {
            "uuid": uuid,
            "manager": manager,
            "group": group,
            "ca_sha256": ca_fingerprint(ca_pem),
            "enrolled": dt.datetime.now(dt.UTC).isoformat(),
        }
        write_atomic(self.meta_path, json.dumps(meta, indent=1).encode("utf-8"))
        logger.info("identity saved: endpoint %s, manager %s", uuid, manager)
        return self.load()
