"""Build times and artifact sizes: frozen one-dirs, .deb packages, MSIs, the offline bundle.

Runs `make build`, `make deb` and `make offline-bundle` one after the other into a scratch dist
directory (the build venv and wheelhouse are the Makefile's: `make wheelhouse` first makes the
build offline), timing each, then all three again, which must find nothing to do (file targets
with their inputs as prerequisites). Then prints the size of every artifact, what the bundle is
made of, and what the old bundle layout (a programs/ copy of the one-dirs next to the .deb
packages, before issue 15) would have added, measured by compressing those one-dirs the same way.

    .venv/bin/python benchmarks/build_sizes.py                 # build into a scratch dist
    .venv/bin/python benchmarks/build_sizes.py --dist dist     # build (incrementally) into dist/
    .venv/bin/python benchmarks/build_sizes.py --measure dist  # sizes of an existing build only

DEB_COMPRESSION (default xz) and BUNDLE_GZIP_LEVEL (default 6) are passed through: the defaults
are what a release uses.
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIB = 2**20


def _tree(path: Path) -> tuple[int, int]:
    """(bytes, files) of a directory tree."""
    files = [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()]
    return sum(p.stat().st_size for p in files), len(files)


def _gzip_size(paths: list[Path], level: int) -> int:
    """Bytes of a gzip'ed tar of `paths`: what they add to a .tar.gz bundle."""

    class Counter:
        n = 0

        def write(self, data: bytes) -> int:
            self.n += len(data)
            return len(data)

        def flush(self) -> None:
            pass

    sink = Counter()
    with gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=level) as gz:  # type: ignore[arg-type]
        with tarfile.open(fileobj=gz, mode="w") as tar:
            for path in paths:
                tar.add(path, arcname=path.name)
    return sink.n


def _make(dist: Path, *targets: str) -> tuple[float, list[str]]:
    """Run make; (wall seconds, the recipe lines it ran)."""
    start = time.monotonic()
    proc = subprocess.run(
        ["make", "--no-print-directory", f"DIST={dist}", *targets],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    took = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"make {' '.join(targets)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    ran = [ln for ln in proc.stdout.splitlines() if ln.startswith(("bash ", "PYTHON="))]
    for line in proc.stdout.splitlines():
        if line.startswith("built "):
            print(f"  {line}")
    return took, ran


def build(dist: Path) -> None:
    """Time each target, then the no-op rebuild."""
    total = 0.0
    for target in ("build", "deb", "offline-bundle"):
        took, ran = _make(dist, target)
        total += took
        print(f"make {target:15s} {took:7.1f} s  ({len(ran)} recipe(s) ran)")
    print(f"make build deb offline-bundle, first time: {total:.1f} s")
    took, ran = _make(dist, "build", "deb", "offline-bundle")
    print(f"make build deb offline-bundle, again:      {took:.1f} s, {len(ran)} recipe(s) ran")


def measure(dist: Path) -> None:
    """Print the size of every artifact in `dist`."""
    level = int(os.environ.get("BUNDLE_GZIP_LEVEL", "6"))
    onedirs = [dist / f"heron-{role}" for role in ("manager", "agent")]
    for onedir in onedirs:
        if onedir.is_dir():
            size, files = _tree(onedir)
            print(f"one-dir  {onedir.name:44s} {size / MIB:7.1f} MiB  {files:5d} files")
    packages = sorted((dist / "packages").glob("heron-*"))
    for pkg in packages:
        print(f"package  {pkg.name:44s} {pkg.stat().st_size / MIB:7.1f} MiB")
    for venv in (ROOT / ".venv-build", ROOT / ".venv"):
        site = next(venv.glob("lib/python3*/site-packages"), None)
        if site is not None:
            size, _ = _tree(site)
            dists = len(list(site.glob("*.dist-info")))
            print(f"venv     {venv.name:44s} {size / MIB:7.1f} MiB  {dists:5d} packages")
    wheelhouse = ROOT / "wheelhouse"
    if wheelhouse.is_dir():
        size, files = _tree(wheelhouse)
        print(f"wheels   {wheelhouse.name:44s} {size / MIB:7.1f} MiB  {files:5d} wheels")
    for bundle in sorted(dist.glob("heron-offline-*.tar.gz")):
        with tarfile.open(bundle) as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
        debs = sum(m.size for m in members if m.name.endswith(".deb"))
        msis = sum(m.size for m in members if m.name.endswith(".msi"))
        rest = sum(m.size for m in members) - debs - msis
        size = bundle.stat().st_size
        print(
            f"bundle   {bundle.name:44s} {size / MIB:7.1f} MiB  (.deb {debs / MIB:.1f} MiB, "
            f"MSI {msis / MIB:.1f} MiB, everything else {rest / 1024:.0f} KiB)"
        )
        present = [p for p in onedirs if p.is_dir()]
        if len(present) == 2:
            extra = _gzip_size(present, level)
            print(
                f"         the old layout's programs/ copy would add {extra / MIB:.1f} MiB "
                f"(gzip -{level}): {(size + extra) / MIB:.1f} MiB"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dist", type=Path, help="build into this dist directory (default: scratch)")
    ap.add_argument("--measure", type=Path, help="only measure this existing dist directory")
    args = ap.parse_args()
    if args.measure:
        measure(args.measure.resolve())
        return
    if args.dist:
        build(args.dist.resolve())
        measure(args.dist.resolve())
        return
    with tempfile.TemporaryDirectory(prefix="heron-build-bench-") as tmp:
        build(Path(tmp))
        measure(Path(tmp))


if __name__ == "__main__":
    main()
