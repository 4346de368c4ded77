#!/usr/bin/env bash
# Builds heron-manager_<ver>_<arch>.deb and heron-agent_<ver>_<arch>.deb from PyInstaller one-dirs.
#
#   bash packaging/deb/build-deb.sh [--src DIR] [--out DIR] [--version V] [manager|agent|all]
#
#   --src      directory holding the one-dirs heron-manager/ and heron-agent/ (default: dist)
#   --out      where the .deb files go (default: dist/packages)
#   --version  package version (default: pyproject.toml's)
#   DEB_COMPRESSION=xz|gzip|zstd|none (default xz, readable by every dpkg since Debian 7)
#
# Layout: /opt/heron/<role>/ (the one-dir), /usr/bin/heron-<role> (symlink), a systemd unit in
# /lib/systemd/system, sysusers.d/tmpfiles.d entries, maintainer scripts from packaging/deb/<role>/.
# Built with `dpkg-deb --root-owner-group`, so no fakeroot and no root needed.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

SRC="$ROOT/dist"
OUT="$ROOT/dist/packages"
VERSION=""
what=all
while [ $# -gt 0 ]; do
    case "$1" in
        --src) SRC="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --version) VERSION="$2"; shift 2 ;;
        manager|agent|all) what="$1"; shift ;;
        *) echo "usage: $0 [--src DIR] [--out DIR] [--version V] [manager|agent|all]" >&2; exit 2 ;;
    esac
done
if [ -z "$VERSION" ]; then
    VERSION="$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$ROOT/pyproject.toml" | head -1)"
fi
ARCH="$(dpkg --print-architecture)"
# The frozen programs link against the build host's glibc: that is the real minimum.
GLIBC="$(getconf GNU_LIBC_VERSION | awk '{print $2}')"
COMPRESSION="${DEB_COMPRESSION:-xz}"

case "$what" in
    all) roles=(manager agent) ;;
    *) roles=("$what") ;;
esac

mkdir -p "$OUT"
STAGE="$(mktemp -d "${TMPDIR:-/tmp}/heron-deb.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT

build_role() {
    local role="$1" name="heron-$1"
    local onedir="$SRC/$name" pkg="$STAGE/$name" tmpl="$HERE/$role"
    if [ ! -x "$onedir/$name" ]; then
        echo "missing one-dir program $onedir/$name (run make build first)" >&2
        exit 1
    fi
    install -d -m 0755 "$pkg/DEBIAN" "$pkg/opt/heron" "$pkg/usr/bin" "$pkg/lib/systemd/system" \
        "$pkg/usr/lib/sysusers.d" "$pkg/usr/lib/tmpfiles.d" "$pkg/usr/share/doc/$name"
    cp -a "$onedir" "$pkg/opt/heron/$role"
    # Normalise permissions: the archive is the only source of modes (umask-independent builds).
    find "$pkg/opt/heron/$role" -type d -exec chmod 0755 {} +
    find "$pkg/opt/heron/$role" -type f -exec chmod go-w,u+rw,a+r {} +
    chmod 0755 "$pkg/opt/heron/$role/$name"
    ln -s "/opt/heron/$role/$name" "$pkg/usr/bin/$name"
    install -m 0644 "$tmpl/$name.service" "$pkg/lib/systemd/system/$name.service"
    install -m 0644 "$tmpl/$name.tmpfiles" "$pkg/usr/lib/tmpfiles.d/$name.conf"
    if [ -f "$tmpl/$name.sysusers" ]; then
        install -m 0644 "$tmpl/$name.sysusers" "$pkg/usr/lib/sysusers.d/$name.conf"
    else
        rmdir "$pkg/usr/lib/sysusers.d"
    fi
    # Everything under packaging/deb/<role>/etc/ is a conffile (dpkg keeps local edits).
    if [ -d "$tmpl/etc" ]; then
        (cd "$tmpl" && find etc -type f | sort) | while read -r rel; do
            install -D -m 0644 "$tmpl/$rel" "$pkg/$rel"
            echo "/$rel" >> "$pkg/DEBIAN/conffiles"
        done
    fi
    printf 'Heron %s %s: frozen PyInstaller one-dir, see docs/packaging.md.\n' "$name" "$VERSION" \
        > "$pkg/usr/share/doc/$name/README"
    for script in postinst prerm postrm; do
        install -m 0755 "$tmpl/$script" "$pkg/DEBIAN/$script"
    done
    local size
    size="$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)"
    sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@GLIBC@/$GLIBC/" -e "s/@SIZE@/$size/" \
        "$tmpl/control.in" > "$pkg/DEBIAN/control"
    (cd "$pkg" && find . -path ./DEBIAN -prune -o -type f -print0 | sort -z \
        | xargs -0 md5sum | sed 's# \./# #') > "$pkg/DEBIAN/md5sums"
    local deb="$OUT/${name}_${VERSION}_${ARCH}.deb"
    dpkg-deb --root-owner-group -Z"$COMPRESSION" --build "$pkg" "$deb" >/dev/null
    echo "built $deb ($(du -m "$deb" | cut -f1) MiB)"
}

for role in "${roles[@]}"; do
    build_role "$role"
done
