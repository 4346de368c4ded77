#!/usr/bin/env bash
# Builds heron-manager-<ver>-x64.msi and heron-agent-<ver>-x64.msi from Windows PyInstaller one-dirs.
#
#   bash packaging/windows/build-msi.sh [--src DIR] [--out DIR] [--version V]
#                                       [--allow-linux-layout] [manager|agent|all]
#
#   --src       directory holding the one-dirs heron-manager/ and heron-agent/ (default: dist)
#   --out       where the MSIs go (default: dist/packages)
#   --version   product version (default: pyproject.toml's; reduced to its numeric x.y.z part)
#   --allow-linux-layout
#               accept a Linux one-dir (program without .exe): it is staged with the program renamed
#               to <name>.exe. The result only proves that the MSI tables build; it cannot run on
#               Windows. Tests use it; releases must not.
#   TOOLCHAIN=wixl|wix3   default: wixl if installed (Linux, Debian msitools), else WiX 3 candle/light
#   PYTHON      interpreter for gen-components.py (default: python3, else python)
#
# The file list is generated from the one-dir by gen-components.py (a second .wxs input).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

SRC="$ROOT/dist"
OUT="$ROOT/dist/packages"
VERSION=""
ALLOW_LINUX=0
what=all
while [ $# -gt 0 ]; do
    case "$1" in
        --src) SRC="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --version) VERSION="$2"; shift 2 ;;
        --allow-linux-layout) ALLOW_LINUX=1; shift ;;
        manager|agent|all) what="$1"; shift ;;
        *) echo "usage: $0 [--src DIR] [--out DIR] [--version V] [--allow-linux-layout] [manager|agent|all]" >&2
           exit 2 ;;
    esac
done
if [ -z "$VERSION" ]; then
    VERSION="$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$ROOT/pyproject.toml" | head -1)"
fi
# MSI ProductVersion is numeric major.minor.build.
MSI_VERSION="$(printf '%s' "$VERSION" | grep -oE '^[0-9]+(\.[0-9]+){0,2}')"
[ -n "$MSI_VERSION" ] || { echo "cannot derive an MSI version from '$VERSION'" >&2; exit 2; }

if [ -z "${PYTHON:-}" ]; then
    if command -v python3 >/dev/null 2>&1; then PYTHON=python3; else PYTHON=python; fi
fi
if [ -z "${TOOLCHAIN:-}" ]; then
    if command -v wixl >/dev/null 2>&1; then TOOLCHAIN=wixl
    elif command -v candle >/dev/null 2>&1 || command -v candle.exe >/dev/null 2>&1; then TOOLCHAIN=wix3
    else echo "neither wixl (apt-get install wixl) nor WiX 3 candle/light found" >&2; exit 1; fi
fi

# Command line the service control manager starts each program with (see the CLIs' `run`).
SERVICE_ARGS_MANAGER='run --service --data-dir "[DATADIR]."'
SERVICE_ARGS_AGENT='run --service -c "[DATADIR]config.toml"'

case "$what" in
    all) roles=(manager agent) ;;
    *) roles=("$what") ;;
esac

mkdir -p "$OUT"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/heron-msi.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

build_role() {
    local role="$1" name="heron-$1"
    local onedir="$SRC/$name"
    if [ ! -f "$onedir/$name.exe" ]; then
        if [ "$ALLOW_LINUX" = 1 ] && [ -f "$onedir/$name" ]; then
            echo "WARNING: $onedir is a Linux one-dir: staging it as a fake Windows layout" \
                 "(MSI table check only, not installable)" >&2
            mkdir -p "$WORK/stage"
            cp -al "$onedir" "$WORK/stage/$name" 2>/dev/null || cp -a "$onedir" "$WORK/stage/$name"
            mv "$WORK/stage/$name/$name" "$WORK/stage/$name/$name.exe"
            onedir="$WORK/stage/$name"
        else
            echo "missing Windows one-dir program $onedir/$name.exe" >&2
            exit 1
        fi
    fi
    local files="$WORK/$name-files.wxs"
    "$PYTHON" "$HERE/gen-components.py" "$onedir" --product "$name" --main "$name.exe" \
        --group OneDirFiles --directory INSTALLDIR --out "$files"
    local args_var="SERVICE_ARGS_${role^^}"
    local msi="$OUT/$name-$VERSION-x64.msi"
    local src="$onedir"
    if [ "$TOOLCHAIN" = wixl ]; then
        # wixl cannot open absolute File/@Source paths: build from inside the one-dir.
        local out_abs
        out_abs="$(cd "$(dirname "$msi")" && pwd)/$(basename "$msi")"
        (cd "$src" && wixl -a x64 -D Version="$MSI_VERSION" -D SourceDir=. \
            -D ServiceArgs="${!args_var}" -o "$out_abs" "$HERE/$name.wxs" "$files")
    else
        if command -v cygpath >/dev/null 2>&1; then src="$(cygpath -w "$src")"; fi
        candle -nologo -arch x64 -dVersion="$MSI_VERSION" -dSourceDir="$src" \
            -dServiceArgs="${!args_var}" -out "$WORK/" "$HERE/$name.wxs" "$files"
        light -nologo -out "$msi" "$WORK/$name.wixobj" "$WORK/$name-files.wixobj"
    fi
    echo "built $msi ($(du -k "$msi" | cut -f1) KiB)"
}

for role in "${roles[@]}"; do
    build_role "$role"
done
