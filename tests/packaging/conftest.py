"""Fixtures for the packaging tests: placeholder one-dirs, the build scripts, throwaway dpkg roots.

The fast tier never runs PyInstaller: it packages small placeholder one-dirs (a shell program
that records its arguments) with the real scripts in packaging/. The slow tier (test_frozen.py)
builds the real programs once per session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build"
PACKAGING = ROOT / "packaging"
ROLES = ("manager", "agent")

# A placeholder one-dir program: appends "<name> <args>" to $HERON_FAKE_LOG; `init [--json]
# --data-dir D` creates D/config.toml and D/pki/ca.pem like the real `heron-manager init` does and
# refuses an initialised directory the same way.
FAKE_PROGRAM = """#!/bin/sh
echo "$(basename "$0") $*" >> "${HERON_FAKE_LOG:-/dev/null}"
if [ "$1" = init ]; then
    for d; do :; done
    if [ -e "$d/pki/ca.pem" ]; then echo "already initialized" >&2; exit 2; fi
    mkdir -p "$d/pki" && echo '# fake' > "$d/config.toml" && echo ca > "$d/pki/ca.pem"
    chmod 0700 "$d"
    echo '{"api_key": "fake-key"}'
fi
exit 0
"""


def run(
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run `cmd`, returning text output; on failure the assertion shows stdout and stderr."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        cmd, env=full_env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check:
        assert proc.returncode == 0, (
            f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def need(*tools: str) -> None:
    """Skip when a system tool is missing (.ci/sysdeps.sh installs all of them)."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"missing system tools {missing}: run `make sysdeps`")


def make_fake_onedirs(dest: Path, *, windows: bool = False) -> Path:
    """Create dest/heron-manager/ and dest/heron-agent/ shaped like PyInstaller one-dirs."""
    for role in ROLES:
        name = f"heron-{role}"
        onedir = dest / name
        internal = onedir / "_internal"
        (internal / "rules").mkdir(parents=True)
        (internal / "base_library.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
        (internal / "rules" / "bundled.gen").write_text("{}\n")
        (internal / ("python311.dll" if windows else "libpython3.11.so.1.0")).write_bytes(b"\0")
        if role == "manager":
            data = internal / "pymisp" / "data"
            data.mkdir(parents=True)
            (data / "describeTypes.json").write_text("{}\n")
        program = onedir / (f"{name}.exe" if windows else name)
        program.write_text(FAKE_PROGRAM)
        program.chmod(0o755)
    return dest


@pytest.fixture(scope="session")
def fake_dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Linux-shaped placeholder one-dirs (dist/heron-manager, dist/heron-agent)."""
    return make_fake_onedirs(tmp_path_factory.mktemp("fake-dist"))


@pytest.fixture(scope="session")
def fake_debs(fake_dist: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The two .deb packages built by packaging/deb/build-deb.sh from the placeholder one-dirs."""
    need("dpkg-deb")
    out = tmp_path_factory.mktemp("debs")
    run(
        [
            "bash",
            str(PACKAGING / "deb" / "build-deb.sh"),
            "--src",
            str(fake_dist),
            "--out",
            str(out),
        ],
        env={"DEB_COMPRESSION": "gzip"},
    )
    debs = {role: next(out.glob(f"heron-{role}_*.deb")) for role in ROLES}
    return debs


class DpkgRoot:
    """A throwaway filesystem root that dpkg installs into (maintainer scripts run chrootless)."""

    def __init__(self, path: Path, log: Path) -> None:
        self.path = path
        self.log = log
        (path / "var/lib/dpkg/info").mkdir(parents=True)
        (path / "var/lib/dpkg/updates").mkdir(parents=True)
        (path / "var/lib/dpkg/status").touch()
        (path / "etc").mkdir()
        (path / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (path / "etc/group").write_text("root:x:0:\n")

    def dpkg(
        self, *args: str, env: dict[str, str] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        # --force-depends: the throwaway root has no libc6 package registered.
        # --force-unsafe-io: no fsync per unpacked file (the root is thrown away anyway).
        return run(
            [
                "dpkg",
                f"--root={self.path}",
                "--force-script-chrootless",
                "--force-depends",
                "--force-unsafe-io",
                "--log=/dev/null",
                *args,
            ],
            env={"HERON_FAKE_LOG": str(self.log), **(env or {})},
            check=check,
        )

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def user(self, name: str) -> list[str] | None:
        for line in (self.path / "etc/passwd").read_text().splitlines():
            if line.split(":")[0] == name:
                return line.split(":")
        return None

    def files(self) -> set[str]:
        """Every path under the root except dpkg's own database, relative, with a leading /."""
        found = set()
        for p in self.path.rglob("*"):
            rel = "/" + p.relative_to(self.path).as_posix()
            if not rel.startswith("/var/lib/dpkg"):
                found.add(rel)
        return found


@pytest.fixture
def dpkg_root(tmp_path: Path) -> Callable[[], DpkgRoot]:
    need("dpkg", "systemctl")
    if os.geteuid() != 0:
        pytest.skip("installing into a throwaway root needs root (chown to the heron uid)")
    counter = iter(range(100))

    def make() -> DpkgRoot:
        n = next(counter)
        return DpkgRoot(tmp_path / f"root{n}", tmp_path / f"calls{n}.log")

    return make
