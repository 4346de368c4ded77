"""Admin API keys and endpoint enrollment (one-time tokens, CSR signing, renewal, revocation).

API keys and enrollment tokens are 256-bit random strings shown once; only their sha256 is stored
(they are high-entropy, so a fast hash is the right tool). Endpoint identity is the certificate:
CN = endpoint uuid, serial recorded in the `certs` table, revocation checked per connection.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import unicodedata
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass

from rules import wire

from ..core.config import Config
from ..core.errors import Forbidden, NotFound, Unauthorized, ValidationError
from ..security.pki import IssuedCert, PeerIdentity, Pki
from ..store import CertRecord, Endpoint, EndpointStatus, Role, Store, Token, User

__all__ = ["Bundle", "Identity", "hash_secret", "new_secret"]

logger = logging.getLogger(__name__)
VERIFIED_TTL = 5.0  # seconds an endpoint record is reused for a verified certificate
ISSUED_MAX = 200_000  # certificates whose (uuid, sha256) are kept in memory


def new_secret(prefix: str = "") -> str:
    return prefix + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Bundle:
    """Offline enrollment material for an air-gapped endpoint."""

    uuid: str
    certificate_pem: str
    key_pem: str
    ca_pem: str
    endpoint_url: str
    group: str


class Identity:
    """Users, API keys, tokens and endpoint certificates."""

    def __init__(
        self, *, store: Store, pki: Pki | None, config: Config, clock: Callable[[], float]
    ) -> None:
        self.store = store
        self.pki = pki
        self.config = config
        self.clock = clock
        # Performance: serial → (checked at, Endpoint); saves two queries per request.
        # Revocation clears it, so a revoked certificate is refused at once; in cluster mode
        # so does another front-end's revocation, enrollment or endpoint change (NOTIFY).
        self._verified: dict[str, tuple[float, Endpoint]] = {}
        # Performance: serial → (uuid, sha256) as issued, which never changes (revocation and
        # expiry are checked in memory first). Loaded in one query at the first use: 10,000
        # agents reconnecting to a restarted manager made 10,000 `certs` point queries.
        self._issued: dict[str, tuple[str, str]] | None = None
        self._generation = 0  # bumped by each clear: a record read before it is not cached
        for topic in ("certs", "endpoints"):
            store.changes.subscribe(topic, self._forget)

    def _forget(self) -> None:
        self._generation += 1
        self._verified.clear()

    # --- admin users ----------------------------------------------------------------------

    def add_user(
        self,
        identifier: str,
        role: Role,
        *,
        group: str = "",
        description: str = "",
        uuid: str | None = None,
    ) -> tuple[User, str]:
        if not identifier or len(identifier) > 128:
            raise ValidationError("identifier must be 1–128 characters")
        if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in identifier):
            # Security: identifiers go into the audit log and the console
            raise ValidationError("identifier must not contain control or format characters")
        key = new_secret("hk_")
        user = User(
            uuid or str(uuidlib.uuid4()), identifier, role, group, description, self.clock()
        )
        self.store.users.add(user, hash_secret(key))
        return user, key

    def rotate_key(self, ref: str) -> tuple[User, str]:
        user = self.store.users.get(ref)
        key = new_secret("hk_")
        return self.store.users.update(user.uuid, key_hash=hash_secret(key)), key

    def authenticate(self, key: str | None) -> User:
        """The user holding `key`; Unauthorized when missing or unknown."""
        if not key:
            raise Unauthorized("an API key is required (X-Api-Key header)")
        user = self.store.users.by_key_hash(hash_secret(key.strip()))
        if user is None:
            raise Unauthorized("invalid API key")
        return user

    # --- enrollment tokens ----------------------------------------------------------------

    def create_token(
        self, *, group: str = "", ttl: float | None = None, uuid: str | None = None
    ) -> tuple[str, float]:
        now = self.clock()
        expires = now + (ttl if ttl is not None else self.config.enroll.token_ttl)
        token = new_secret("het_")
        self.store.tokens.add(Token(hash_secret(token), uuid, group, expires, None, now))
        return token, expires

    def create_endpoint(self, *, group: str = "") -> tuple[Endpoint, str]:
        """WHIDS `PUT /endpoints`: a pending endpoint plus a one-time token bound to its uuid."""
        ep = Endpoint(str(uuidlib.uuid4()), group=group, created=self.clock())
        self.store.endpoints.create(ep)
        token, _ = self.create_token(group=group, uuid=ep.uuid)
        return ep, token

    # --- enrollment and renewal -----------------------------------------------------------

    def _pki(self) -> Pki:
        if self.pki is None:
            raise NotFound("this manager has no PKI")
        return self.pki

    def enroll(self, req: wire.EnrollRequest, peer_ip: str) -> wire.EnrollResponse:
        pki = self._pki()
        if not isinstance(req.token, str) or not isinstance(req.csr_pem, str):
            raise ValidationError("token and csr_pem must be strings")
        token = self.store.tokens.consume(hash_secret(req.token), self.clock())
        if token is None:
            raise Forbidden("enrollment token is unknown, used or expired")
        issued = None
        uuid = token.uuid or str(uuidlib.uuid4())
        issued = pki.sign_csr(req.csr_pem, uuid=uuid, days=self.config.tls.client_cert_days)
        hostname = str(req.hostname or "")[:255]
        if token.uuid and self.store.endpoints.find(uuid) is not None:
            self.store.endpoints.update(
                uuid, hostname=hostname, ip=peer_ip, status=EndpointStatus.ACTIVE
            )
        else:
            self.store.endpoints.create(
                Endpoint(
                    uuid,
                    hostname,
                    peer_ip,
                    token.group,
                    status=EndpointStatus.ACTIVE,
                    created=self.clock(),
                )
            )
        self._record(uuid, issued)
        logger.info("enrolled endpoint %s (%s) from %s", uuid, hostname, peer_ip)
        return wire.EnrollResponse(uuid, issued.pem, pki.ca_pem, token.group)

    def renew(self, ep: Endpoint, peer: PeerIdentity, csr_pem: str) -> wire.EnrollResponse:
        """Issue a fresh certificate to an endpoint whose current one expires soon."""
        pki = self._pki()
        window = self.config.tls.renew_before_days * 86400.0
        if peer.not_after - self.clock() > window:
            raise Forbidden(f"renewal opens {self.config.tls.renew_before_days} days before expiry")
        issued = pki.sign_csr(csr_pem, uuid=ep.uuid, days=self.config.tls.client_cert_days)
        self._record(ep.uuid, issued)
        return wire.EnrollResponse(ep.uuid, issued.pem, pki.ca_pem, ep.group)

    def bundle(self, *, group: str = "", hostname: str = "") -> Bundle:
        """Pre-enroll an endpoint offline: key pair + certificate + CA + URL."""
        pki = self._pki()
        uuid = str(uuidlib.uuid4())
        issued, key_pem = pki.issue_client(uuid, days=self.config.tls.client_cert_days)
        self.store.endpoints.create(
            Endpoint(uuid, hostname, "", group, status=EndpointStatus.ACTIVE, created=self.clock())
        )
        self._record(uuid, issued)
        return Bundle(uuid, issued.pem, key_pem, pki.ca_pem, self.config.endpoint_url(), group)

    def _record(self, uuid: str, issued: IssuedCert) -> None:
        self.store.certs.add(
            CertRecord(issued.serial, uuid, issued.sha256, issued.not_before, issued.not_after)
        )

    def revoke(self, uuid: str) -> int:
        self.store.endpoints.get(uuid)
        count = self.store.certs.revoke(uuid=uuid, now=self.clock())
        self._forget()
        self.store.endpoints.update(uuid, status=EndpointStatus.REVOKED)
        logger.info("revoked %d certificate(s) of endpoint %s", count, uuid)
        return count

    # --- per connection / request ---------------------------------------------------------

    def accept_certificate(self, peer: PeerIdentity) -> bool:
        """TLS-front check: issued by us, not revoked, not expired (by the injected clock)."""
        if peer.not_after < self.clock():
            return False
        if self.store.certs.is_revoked(peer.serial):
            return False
        return True

    def _issued_to(self, serial: str) -> tuple[str, str] | None:
        """(uuid, sha256) the certificate `serial` was issued with; None if not by us."""
        issued = self._issued
        if issued is None:
            rows = self.store.certs.issued(ISSUED_MAX + 1)
            issued = self._issued = dict(rows) if len(rows) <= ISSUED_MAX else {}
        found = issued.get(serial)
        if found is None:  # issued since, or by another front-end
            record = self.store.certs.get(serial)
            if record is None:
                return None
            found = (record.uuid, record.sha256)
            if len(issued) < ISSUED_MAX:
                issued[serial] = found
        return found

    def endpoint_for(self, peer: PeerIdentity | None) -> Endpoint:
        """The endpoint a verified certificate belongs to; Unauthorized/Forbidden otherwise."""
        if peer is None:
            raise Unauthorized("a client certificate issued by this manager is required")
        if not self.accept_certificate(peer):
            raise Forbidden("client certificate is revoked or expired")
        now = self.clock()
        cached = self._verified.get(peer.serial)
        if cached is not None and now - cached[0] < VERIFIED_TTL and cached[1].uuid == peer.cn:
            return cached[1]
        generation = self._generation
        if self._issued_to(peer.serial) != (peer.cn, peer.sha256):
            raise Forbidden("client certificate was not issued to an endpoint of this manager")
        ep = self.store.endpoints.find(peer.cn)
        if ep is None or ep.status is EndpointStatus.REVOKED:
            raise Forbidden("endpoint is unknown or revoked")
        if len(self._verified) > 100_000:
            self._verified.clear()
        if generation == self._generation:
            self._verified[peer.serial] = (now, ep)
        return ep
