"""The manager side of the fleet benchmark: an enrolled data directory (made once, cached), its
config, the `heron-manager run` subprocess (CPU, RSS) and its admin /metrics counters."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")

NOFILE = 1 << 16  # descriptors wanted by the manager and by the fleet (10,000 agents: ~25,000)


def raise_nofile() -> None:
    """Soft limit to the hard one, and the hard one to NOFILE where allowed (root)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < NOFILE:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
            return
        except (ValueError, OSError):
            pass
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ----------------------------------------------------------------------------- enrollment
def enroll(cache: Path, n: int) -> Path:
    """A data dir with ≥ n enrolled endpoints (certs in <cache>/fleet/), made once."""
    meta = cache / "fleet.json"
    if meta.exists() and json.loads(meta.read_text())["n"] >= n:
        return cache
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    data = cache / "data"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "appliance",
            "init",
            "--data-dir",
            str(data),
            "--json",
            "--admin-listen",
            "127.0.0.1:0",
            "--endpoint-listen",
            "127.0.0.1:0",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    api_key = json.loads(out.stdout)["api_key"]
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from appliance.runtime.datadir import open_context
    from rules import wire

    def make_csr() -> tuple[str, str]:
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sim")]))
            .sign(key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return csr.public_bytes(serialization.Encoding.PEM).decode(), key_pem

    ctx = open_context(data, with_events=False)
    (cache / "fleet").mkdir()
    uuids = []
    t0 = time.monotonic()
    try:
        for i in range(n):
            token, _ = ctx.identity.create_token()
            csr, key_pem = make_csr()
            ans = ctx.identity.enroll(wire.EnrollRequest(token, csr, f"sim-{i}"), "127.0.0.1")
            (cache / "fleet" / f"{i}.pem").write_text(ans.certificate_pem)
            (cache / "fleet" / f"{i}.key").write_text(key_pem)
            uuids.append(ans.uuid)
            if i % 1000 == 999:
                print(
                    f"  enrolled {i + 1:,} endpoints ({time.monotonic() - t0:.0f} s)",
                    file=sys.stderr,
                )
    finally:
        ctx.close()
    meta.write_text(json.dumps({"n": n, "uuids": uuids, "api_key": api_key}))
    return cache


def configure(code: Path, data: Path, max_connections: int) -> None:
    """A minimal config.toml every version reads: loopback listeners and the connection cap.

    A manager that sizes the cap from memory (appliance/transport/capacity.py) gets 0: sized."""
    if any(code.glob("appliance/**/capacity.py")):
        max_connections = 0
    (data / "config.toml").write_text(
        '[admin]\nlisten = "127.0.0.1:0"\n[endpoint]\nlisten = "127.0.0.1:0"\n'
        f"[tls]\nmax_connections = {max_connections}\n"
    )


def python_of(code: Path) -> Path:
    venv = code / ".venv" / "bin" / "python"
    return venv if venv.exists() else Path(sys.executable)


# ----------------------------------------------------------------------------- the manager
class Manager:
    def __init__(self, code: Path, data: Path) -> None:
        self.log = open(data / "manager.log", "wb")
        self.proc = subprocess.Popen(
            [str(python_of(code)), "-m", "appliance", "run", "--data-dir", str(data)],
            cwd=code,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=raise_nofile,
        )
        self.data = data
        self.endpoint, self.admin = self._ports()

    def _ports(self) -> tuple[int, int]:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((self.data / "manager.log").read_text()[-3000:])
            text = (self.data / "manager.log").read_text(errors="replace")
            for line in text.splitlines():
                if "endpoint API on https://" in line:
                    m = re.search(
                        r"endpoint API on https://[^:]+:(\d+).*admin API on "
                        r"https://[^:]+:(\d+)",
                        line,
                    )
                    if m:
                        return int(m.group(1)), int(m.group(2))
            time.sleep(0.2)
        raise RuntimeError("the manager did not start")

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def rss(self) -> int:
        return int(Path(f"/proc/{self.proc.pid}/statm").read_text().split()[1]) * PAGE

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


METRICS = ("heron_events_received_total", "heron_batches_received_total", "heron_journal_syncs")


def metrics(port: int, cache: Path) -> dict[str, float]:
    """The counters of METRICS from the admin API's /metrics (absent ones are left out)."""
    import requests

    api_key = json.loads((cache / "fleet.json").read_text())["api_key"]
    text = requests.get(
        f"https://127.0.0.1:{port}/metrics",
        headers={"X-Api-Key": api_key},
        verify=str(cache / "data" / "pki" / "ca.pem"),
        timeout=60,
    ).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in METRICS:
            out[name] = float(value)
    return out
