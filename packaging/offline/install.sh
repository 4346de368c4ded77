#!/usr/bin/env bash
# Heron air-gapped installer: verifies SHA256SUMS, then installs the bundled .deb packages.
# Nothing is downloaded: every file it needs is in this directory.
#
#   sudo ./install.sh manager                         # the manager appliance (initialised on install)
#   sudo ./install.sh agent --manager HOST:1519 --token TOKEN
#   sudo ./install.sh agent --bundle /media/usb/endpoint-42   # enroll bundle dir
#   ./install.sh --verify-only                        # check the bundle only
#   ./install.sh --extract DIR [manager|agent]        # copy the frozen one-dirs (hosts without dpkg)
#   --root DIR                                        # install into another root (dpkg --root; testing)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

roles=()
verify_only=0
extract=""
target_root=""
manager=""
token=""
bundle=""
while [ $# -gt 0 ]; do
    case "$1" in
        manager|agent) roles+=("$1"); shift ;;
        --verify-only) verify_only=1; shift ;;
        --extract) extract="$2"; shift 2 ;;
        --root) target_root="$2"; shift 2 ;;
        --manager) manager="$2"; shift 2 ;;
        --token) token="$2"; shift 2 ;;
        --bundle) bundle="$2"; shift 2 ;;
        -h|--help) usage ;;
        *) echo "unknown argument: $1" >&2; usage ;;
    esac
done

echo "verifying $HERE/SHA256SUMS"
(cd "$HERE" && sha256sum --check --quiet --strict SHA256SUMS) || {
    echo "checksum verification FAILED: the bundle is damaged or was modified; not installing" >&2
    exit 1
}
echo "all files match SHA256SUMS"
[ "$verify_only" = 1 ] && exit 0
[ "${#roles[@]}" -gt 0 ] || { echo "say what to install: manager and/or agent" >&2; usage; }

if [ -n "$extract" ]; then
    mkdir -p "$extract"
    for role in "${roles[@]}"; do
        cp -a "$HERE/programs/heron-$role" "$extract/"
        echo "extracted $extract/heron-$role (run $extract/heron-$role/heron-$role --help)"
    done
    exit 0
fi

command -v dpkg >/dev/null 2>&1 || {
    echo "dpkg not found: use --extract DIR to copy the frozen programs instead" >&2; exit 1; }
dpkg_args=()
if [ -n "$target_root" ]; then
    dpkg_args+=(--root="$target_root" --force-script-chrootless)
elif [ "$(id -u)" -ne 0 ]; then
    echo "installing packages needs root (sudo $0 ...)" >&2; exit 1
fi
arch="$(dpkg --print-architecture)"
for role in "${roles[@]}"; do
    debs=("$HERE"/packages/heron-"$role"_*_"$arch".deb)
    [ -f "${debs[0]}" ] || { echo "no heron-$role package for $arch in this bundle" >&2; exit 1; }
    if [ "$role" = agent ]; then
        HERON_MANAGER="$manager" HERON_ENROLL_TOKEN="$token" HERON_ENROLL_BUNDLE="$bundle" \
            dpkg "${dpkg_args[@]}" ${DPKG_EXTRA_ARGS:-} -i "${debs[0]}"
    else
        dpkg "${dpkg_args[@]}" ${DPKG_EXTRA_ARGS:-} -i "${debs[0]}"
    fi
done
echo "done: systemctl status ${roles[*]/#/heron-}"
