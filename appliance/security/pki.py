"""The appliance PKI: one CA, the server certificate, endpoint client certificates (CN = uuid).

Files under `<data>/pki/`: `ca.pem`, `ca.key`, `server.pem`, `server.key` (keys mode 0600). Issued
and revoked serials live in the fleet store (table `certs`); this module only mints and parses.
Keys are EC P-256. Client certificates carry EKU clientAuth and never the CSR's own subject: the
CN is always the endpoint uuid the manager chose.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import logging
import os
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..core.errors import PkiError, ValidationError

__all__ = ["IssuedCert", "PeerIdentity", "Pki", "peer_identity"]

logger = logging.getLogger(__name__)
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class IssuedCert:
    """A certificate the CA signed."""

    serial: str  # hex
    cn: str
    pem: str
    sha256: str  # hex of the DER
    not_before: float
    not_after: float


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """The verified identity of a TLS client (from its certificate, never from headers)."""

    cn: str
    serial: str
    sha256: str
    not_after: float


def peer_identity(der: bytes) -> PeerIdentity:
    """Parse a DER client certificate into a PeerIdentity."""
    cert = x509.load_der_x509_certificate(der)
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return PeerIdentity(
        cn=str(cns[0].value) if cns else "",
        serial=format(cert.serial_number, "x"),
        sha256=hashlib.sha256(der).hexdigest(),
        not_after=cert.not_valid_after_utc.timestamp(),
    )


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _san(names: Iterable[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


class Pki:
    """CA operations over `<data>/pki/`."""

    def __init__(self, root: Path, *, clock: Clock = time.time) -> None:
        self.root = root
        self.clock = clock
        try:
            self.ca_cert = x509.load_pem_x509_certificate((root / "ca.pem").read_bytes())
            loaded = serialization.load_pem_private_key((root / "ca.key").read_bytes(), None)
        except (OSError, ValueError) as ex:
            raise PkiError(f"cannot load CA: {ex}", where=str(root)) from ex
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise PkiError("CA key is not an EC key", where=str(root))
        self._ca_key = loaded

    # --- creation -------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        root: Path,
        *,
        server_names: Iterable[str],
        server_days: int = 825,
        ca_days: int = 3650,
        clock: Clock = time.time,
        org: str = "Heron",
    ) -> Pki:
        """Create the CA and a server certificate under `root` (refuses to overwrite a CA)."""
        root.mkdir(parents=True, exist_ok=True)
        if (root / "ca.pem").exists():
            raise PkiError("a CA already exists", where=str(root))
        now = dt.datetime.fromtimestamp(clock(), dt.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{org} appliance CA"),
            ]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=ca_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        _write_private(root / "ca.key", _key_pem(key))
        (root / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        pki = cls(root, clock=clock)
        pki.issue_server(server_names, days=server_days)
        logger.info("created CA and server certificate in %s", root)
        return pki

    def issue_server(self, names: Iterable[str], *, days: int) -> IssuedCert:
        """(Re)issue the server certificate with `names` as SANs."""
        names = list(names) or ["localhost"]
        key = ec.generate_private_key(ec.SECP256R1())
        builder = self._builder(names[0], key.public_key(), days).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        builder = builder.add_extension(_san(names), critical=False)
        issued = self._sign(builder)
        _write_private(self.root / "server.key", _key_pem(key))
        (self.root / "server.pem").write_text(issued.pem, encoding="utf-8")
        return issued

    # --- endpoint certificates ------------------------------------------------------------

    def sign_csr(self, csr_pem: str, *, uuid: str, days: int) -> IssuedCert:
        """Sign an endpoint CSR; the subject is replaced by CN=`uuid`."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode("utf-8"))
        except ValueError as ex:
            raise ValidationError(f"csr_pem is not a PEM certificate request: {ex}") from ex
        if not csr.is_signature_valid:
            raise ValidationError("csr_pem signature does not verify")
        public = csr.public_key()
        if isinstance(public, ec.EllipticCurvePublicKey):
            if public.curve.key_size < 256:
                raise ValidationError("csr_pem EC key must be at least 256 bits")
        elif isinstance(public, rsa.RSAPublicKey):
            if public.key_size < 2048:
                raise ValidationError("csr_pem RSA key must be at least 2048 bits")
        else:
            raise ValidationError("csr_pem key must be EC or RSA")
        return self._client(uuid, public, days)

    def issue_client(self, uuid: str, *, days: int) -> tuple[IssuedCert, str]:
        """Mint a key pair and certificate for `uuid` (offline bundles); returns (cert, key PEM)."""
        key = ec.generate_private_key(ec.SECP256R1())
        return self._client(uuid, key.public_key(), days), _key_pem(key).decode("ascii")

    def _client(self, uuid: str, public: object, days: int) -> IssuedCert:
        builder = self._builder(uuid, public, days).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        return self._sign(builder)

    def _builder(self, cn: str, public: object, days: int) -> x509.CertificateBuilder:
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.ca_cert.subject)
            .public_key(public)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )

    def _sign(self, builder: x509.CertificateBuilder) -> IssuedCert:
        try:
            cert = builder.sign(self._ca_key, hashes.SHA256())
        except (ValueError, TypeError, InvalidSignature) as ex:
            raise PkiError(f"signing failed: {ex}") from ex
        der = cert.public_bytes(serialization.Encoding.DER)
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return IssuedCert(
            serial=format(cert.serial_number, "x"),
            cn=str(cns[0].value) if cns else "",
            pem=cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            sha256=hashlib.sha256(der).hexdigest(),
            not_before=cert.not_valid_before_utc.timestamp(),
            not_after=cert.not_valid_after_utc.timestamp(),
        )

    # --- accessors ------------------------------------------------------------------------

    @property
    def ca_pem(self) -> str:
        return self.ca_cert.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @property
    def ca_sha256(self) -> str:
        return hashlib.sha256(self.ca_cert.public_bytes(serialization.Encoding.DER)).hexdigest()

    @property
    def ca_path(self) -> Path:
        return self.root / "ca.pem"

    def server_context(self, *, client_certs: bool) -> ssl.SSLContext:
        """TLS ≥ 1.2 server context; with `client_certs`, clients may present a CA-signed cert.

        the endpoint listener uses CERT_OPTIONAL (so `/enroll` works without one);
        the app refuses every other route when the connection has no verified identity.
        """
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        # Security: TLS 1.2 with forward-secret AEAD suites only (no CBC); TLS 1.3
        # suites are not affected by set_ciphers
        ctx.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")
        ctx.load_cert_chain(self.root / "server.pem", self.root / "server.key")
        # TLS 1.3 session tickets (stateless, keys per context, OpenSSL's 7,200 s): an
        # agent's reconnect resumes without certificates or signatures. One ticket per
        # handshake is enough for an agent's one connection at a time.
        ctx.num_tickets = 1
        if client_certs:
            ctx.verify_mode = ssl.CERT_OPTIONAL
            ctx.load_verify_locations(cafile=str(self.ca_path))
        return ctx
