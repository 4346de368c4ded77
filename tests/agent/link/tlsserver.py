"""A tiny mutual-TLS manager double for link tests: a CA from `cryptography` + http.server."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


class MiniCA:
    """A throwaway CA that issues server and client certificates."""

    def __init__(self, name: str = "Test CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def issue(
        self,
        cn: str,
        public: Any,
        *,
        server: bool = False,
        days: float = 30,
        not_before: dt.datetime | None = None,
    ) -> x509.Certificate:
        now = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.cert.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if server:
            b = b.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            ).add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        else:
            b = b.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
        return b.sign(self.key, hashes.SHA256())

    def sign_csr(self, csr_pem: str, cn: str, days: float = 30) -> str:
        csr = x509.load_pem_x509_csr(csr_pem.encode("ascii"))
        assert csr.is_signature_valid
        return (
            self.issue(cn, csr.public_key(), days=days)
            .public_bytes(serialization.Encoding.PEM)
            .decode("ascii")
        )

    def write_server(self, directory: Path) -> tuple[Path, Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self.issue("localhost", key.public_key(), server=True)
        directory.mkdir(parents=True, exist_ok=True)
        c, k, ca = directory / "server.pem", directory / "server.key", directory / "ca.pem"
        c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        k.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        ca.write_text(self.pem)
        return c, k, ca


Handler = Callable[[str, str, bytes, dict[str, str], str | None], tuple[int, bytes]]


class TlsManager:
    """Threaded HTTPS server; `handler(method, path, body, headers, client_cn)`."""

    def __init__(
        self, ca: MiniCA, directory: Path, handler: Handler, *, require_cert: bool = False
    ) -> None:
        cert, key, ca_file = ca.write_server(directory)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        ctx.load_verify_locations(cafile=str(ca_file))
        ctx.verify_mode = ssl.CERT_REQUIRED if require_cert else ssl.CERT_OPTIONAL
        outer = self
        self.handler = handler
        self.requests: list[tuple[str, str, str | None]] = []

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _do(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                peer = self.connection.getpeercert()
                cn = None
                if peer:
                    cn = dict(x[0] for x in peer["subject"]).get("commonName")
                outer.requests.append((self.command, self.path, cn))
                status, out = outer.handler(self.command, self.path, body, dict(self.headers), cn)
                if status < 0:  # simulate a revoked cert: close without answering
                    self.close_connection = True
                    return
                drop_after = status >= 1000  # answer, then close the keep-alive silently
                self.send_response(status % 1000)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)
                if drop_after:
                    self.close_connection = True

            do_GET = do_POST = _do

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def enroll_handler(ca: MiniCA, *, token: str = "tok", days: float = 30) -> Handler:
    def handle(
        method: str, path: str, body: bytes, headers: dict[str, str], cn: str | None
    ) -> tuple[int, bytes]:
        if path == "/enroll":
            req = json.loads(body)
            if req["token"] != token:
                return 403, b"bad token"
            cert = ca.sign_csr(req["csr_pem"], "uuid-1234", days)
            return 200, json.dumps(
                {"uuid": "uuid-1234", "certificate_pem": cert, "ca_pem": ca.pem, "group": "g1"}
            ).encode()
        if path == "/renew":
            if cn is None:
                return 401, b"no cert"
            req = json.loads(body)
            cert = ca.sign_csr(req["csr_pem"], cn, days)
            return 200, json.dumps({"uuid": cn, "certificate_pem": cert, "ca_pem": ca.pem}).encode()
        return (200, b"ok") if cn else (401, b"no cert")

    return handle
