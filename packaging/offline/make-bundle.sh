#!/usr/bin/env bash
# Builds the air-gapped bundle dist/heron-offline-<ver>-linux-<arch>.tar.gz:
#
#   heron-offline-<ver>-linux-<arch>/
#     install.sh  README.txt  SHA256SUMS     (sha256 of every other file in the bundle)
#     packages/   heron-manager_*.deb  heron-agent_*.deb  [*.msi when built on the Windows runner]
#
# Each program is in the bundle once, inside its .deb: `install.sh --extract DIR` unpacks the
# one-dir from there on hosts without dpkg (a separate programs/ copy doubled the bundle's size).
#
#   bash packaging/offline/make-bundle.sh [--src DIR] [--packages DIR] [--out DIR] [--version V]
#
# `make offline-bundle` builds the programs and the .deb packages first.
# BUNDLE_GZIP_LEVEL=1..9 (default 6) trades archive size for build time. Nothing in the bundle
# fetches anything at install or run time.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

SRC="$ROOT/dist"
PACKAGES=""
OUT="$ROOT/dist"
VERSION=""
while [ $# -gt 0 ]; do
    case "$1" in
        --src) SRC="$2"; shift 2 ;;
        --packages) PACKAGES="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --version) VERSION="$2"; shift 2 ;;
        *) echo "usage: $0 [--src DIR] [--packages DIR] [--out DIR] [--version V]" >&2; exit 2 ;;
    esac
done
PACKAGES="${PACKAGES:-$SRC/packages}"
if [ -z "$VERSION" ]; then
    VERSION="$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$ROOT/pyproject.toml" | head -1)"
fi
ARCH="$(dpkg --print-architecture 2>/dev/null || uname -m)"
NAME="heron-offline-$VERSION-linux-$ARCH"

STAGE="$(mktemp -d "${TMPDIR:-/tmp}/heron-bundle.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
B="$STAGE/$NAME"
mkdir -p "$B/packages"

for role in manager agent; do
    name="heron-$role"
    deb="$PACKAGES/${name}_${VERSION}_${ARCH}.deb"
    [ -f "$deb" ] || { echo "missing $deb (make deb)" >&2; exit 1; }
    cp "$deb" "$B/packages/"
done
for msi in "$PACKAGES"/heron-*-"$VERSION"-x64.msi; do
    [ -f "$msi" ] && cp "$msi" "$B/packages/"
done
install -m 0755 "$HERE/install.sh" "$B/install.sh"
cat > "$B/README.txt" <<README
Heron $VERSION offline bundle ($ARCH). No internet access is needed to install or run it.

  ./install.sh --verify-only                          check every file against SHA256SUMS
  sudo ./install.sh manager                           install + initialise the manager
  sudo ./install.sh agent --manager HOST:1519 --token TOKEN
  sudo ./install.sh agent --bundle endpoint.json      offline enrollment file

  ./install.sh --extract DIR manager agent            the one-dir programs, for hosts without dpkg

packages/ holds the .deb packages (and the Windows MSIs when they were built). The programs in
them run on any glibc >= $(getconf GNU_LIBC_VERSION | awk '{print $2}') $ARCH Linux.
README
(cd "$B" && find . -type f ! -name SHA256SUMS -print0 | sort -z | xargs -0 sha256sum \
    | sed 's#  \./#  #' > SHA256SUMS)
mkdir -p "$OUT"
tar -C "$STAGE" -cf - "$NAME" | gzip -"${BUNDLE_GZIP_LEVEL:-6}" > "$OUT/$NAME.tar.gz"
(cd "$OUT" && sha256sum "$NAME.tar.gz" > "$NAME.tar.gz.sha256")
echo "built $OUT/$NAME.tar.gz ($(du -m "$OUT/$NAME.tar.gz" | cut -f1) MiB, $(wc -l < "$B/SHA256SUMS") files)"
