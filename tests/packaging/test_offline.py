"""The air-gapped bundle: one archive, valid SHA-256 sums, an installer refusing damaged files."""

from __future__ import annotations

import hashlib
import re
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.packaging.conftest import PACKAGING, DpkgRoot, need, run


@pytest.fixture(scope="module")
def bundle(
    fake_dist: Path, fake_debs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The bundle archive, built from the placeholder one-dirs and packages."""
    need("sha256sum")
    out = tmp_path_factory.mktemp("bundle")
    run(
        [
            "bash",
            str(PACKAGING / "offline/make-bundle.sh"),
            "--src",
            str(fake_dist),
            "--packages",
            str(fake_debs["manager"].parent),
            "--out",
            str(out),
        ]
    )
    [archive] = out.glob("heron-offline-*.tar.gz")
    return archive


@pytest.fixture
def unpacked(bundle: Path, tmp_path: Path) -> Path:
    with tarfile.open(bundle) as tar:
        tar.extractall(tmp_path, filter="tar")
    [top] = tmp_path.iterdir()
    return top


def test_archive_has_one_top_directory_with_everything(bundle: Path) -> None:
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
    top = names[0].split("/")[0]
    assert re.fullmatch(r"heron-offline-[0-9][0-9a-z.+~-]*-linux-[a-z0-9_]+", top), top
    assert all(name.split("/")[0] == top for name in names)
    rel = {name.removeprefix(top + "/") for name in names}
    assert {"install.sh", "README.txt", "SHA256SUMS"} <= rel
    assert any(n.startswith("packages/heron-manager_") and n.endswith(".deb") for n in rel)
    assert any(n.startswith("packages/heron-agent_") and n.endswith(".deb") for n in rel)
    # each program once, inside its .deb (a programs/ copy doubled the bundle: issue 15)
    assert not any(n.startswith("programs") for n in rel), sorted(rel)
    # The archive's own checksum file sits next to it.
    digest = hashlib.sha256(bundle.read_bytes()).hexdigest()
    assert (bundle.parent / (bundle.name + ".sha256")).read_text().split()[0] == digest


def test_sums_cover_every_file(unpacked: Path) -> None:
    sums = {}
    for line in (unpacked / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        sums[name] = digest
    files = {p.relative_to(unpacked).as_posix() for p in unpacked.rglob("*") if p.is_file()}
    assert set(sums) == files - {"SHA256SUMS"}
    for name, digest in sums.items():
        assert hashlib.sha256((unpacked / name).read_bytes()).hexdigest() == digest, name
    run(["sha256sum", "--check", "--strict", "--quiet", "SHA256SUMS"], cwd=unpacked)
    assert (unpacked / "install.sh").stat().st_mode & 0o111


def test_installer_verifies_before_anything_else(unpacked: Path) -> None:
    ok = run(["bash", str(unpacked / "install.sh"), "--verify-only"])
    assert "all files match" in ok.stdout
    deb = next((unpacked / "packages").glob("heron-agent_*.deb"))
    deb.write_bytes(deb.read_bytes() + b"tampered")
    bad = run(
        ["bash", str(unpacked / "install.sh"), "agent", "--root", str(unpacked / "r")], check=False
    )
    assert bad.returncode == 1 and "verification FAILED" in bad.stderr
    assert not (unpacked / "r").exists()


def test_installer_installs_into_a_root(unpacked: Path, dpkg_root: Callable[[], DpkgRoot]) -> None:
    root = dpkg_root()
    run(
        [
            "bash",
            str(unpacked / "install.sh"),
            "manager",
            "agent",
            "--root",
            str(root.path),
            "--manager",
            "mgr:1519",
            "--token",
            "t0k",
            "--ca-sha256",
            "ef" * 32,
            "--admin-listen",
            "0.0.0.0:1520",
        ],
        env={"HERON_FAKE_LOG": str(root.log), "DPKG_EXTRA_ARGS": "--force-depends --log=/dev/null"},
    )
    calls = root.calls()
    # Without HERON_SERVER_NAMES the host's names and loopback go into the server certificate.
    assert calls[0].startswith("heron-manager init --json --server-name ")
    assert (
        "--server-name localhost --server-name 127.0.0.1 --admin-listen 0.0.0.0:1520 "
        "--data-dir " in calls[0]
    )
    assert calls[1].endswith(
        f"enroll --config {root.path}/etc/heron/agent.toml --data-dir "
        f"{root.path}/var/lib/heron/agent --manager mgr:1519 --token t0k --ca-sha256 {'ef' * 32}"
    )
    assert (root.path / "opt/heron/manager/heron-manager").is_file()
    assert root.user("heron") is not None


def test_extract_unpacks_the_frozen_programs_from_the_debs(
    unpacked: Path, fake_dist: Path, tmp_path: Path
) -> None:
    run(["bash", str(unpacked / "install.sh"), "--extract", str(tmp_path / "x"), "agent"])
    assert (tmp_path / "x/heron-agent/heron-agent").stat().st_mode & 0o111
    assert not (tmp_path / "x/heron-manager").exists()
    assert _tree(tmp_path / "x/heron-agent") == _tree(fake_dist / "heron-agent")


def _tree(top: Path) -> dict[str, bytes]:
    return {p.relative_to(top).as_posix(): p.read_bytes() for p in top.rglob("*") if p.is_file()}


@pytest.mark.parametrize("compression", ["xz", "none"])
def test_extract_reads_every_deb_compression(
    fake_dist: Path, tmp_path: Path, compression: str
) -> None:
    # without dpkg: the installer's own ar reader, whatever build-deb.sh compressed with
    need("dpkg-deb", "xz")
    bundle = tmp_path / "b"
    run(
        ["bash", str(PACKAGING / "deb/build-deb.sh"), "--src", str(fake_dist), "--out"]
        + [str(bundle / "packages"), "manager"],
        env={"DEB_COMPRESSION": compression},
    )
    shutil.copy(PACKAGING / "offline/install.sh", bundle / "install.sh")
    run(["sh", "-c", "sha256sum install.sh packages/* > SHA256SUMS"], cwd=bundle)
    run(["bash", str(bundle / "install.sh"), "--extract", str(tmp_path / "x"), "manager"])
    assert _tree(tmp_path / "x/heron-manager") == _tree(fake_dist / "heron-manager")


def test_bundle_scripts_never_download() -> None:
    # What runs on the air-gapped host: the installer and the maintainer scripts.
    for script in (
        "offline/install.sh",
        "deb/manager/postinst",
        "deb/manager/prerm",
        "deb/manager/postrm",
        "deb/agent/postinst",
        "deb/agent/prerm",
        "deb/agent/postrm",
    ):
        text = (PACKAGING / script).read_text()
        for tool in (
            "curl ",
            "wget ",
            "pip install",
            "apt-get",
            "apt install",
            "http://",
            "https://",
        ):
            assert tool not in text, f"{script} uses {tool!r}"


def test_make_bundle_fails_without_packages(fake_dist: Path, tmp_path: Path) -> None:
    need("dpkg")
    if shutil.which("sha256sum") is None:
        pytest.skip("sha256sum missing")
    proc = run(
        [
            "bash",
            str(PACKAGING / "offline/make-bundle.sh"),
            "--src",
            str(fake_dist),
            "--packages",
            str(tmp_path),
            "--out",
            str(tmp_path / "out"),
        ],
        check=False,
    )
    assert proc.returncode != 0 and "make deb" in proc.stderr
