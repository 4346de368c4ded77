#!/usr/bin/env bash
# Heron air-gapped installer: verifies SHA256SUMS, then installs the bundled .deb packages.
# Nothing is downloaded: every file it needs is in this directory.
#
#   sudo ./install.sh manager [--admin-listen ADDR:1520]  # the manager (initialised on install;
#                                                     # admin API + console on 127.0.0.1:1520 by default)
#   sudo ./install.sh agent --manager IP:1519 --token TOKEN --ca-sha256 SHA256  # CA pinned
#        (--trust-first-use instead of --ca-sha256 accepts the CA the manager presents)
#   sudo ./install.sh agent --bundle /media/usb/endpoint-42 [--manager IP:1519]  # bundle dir
#   ./install.sh --verify-only                        # check the bundle only
#   ./install.sh --extract DIR [manager|agent]        # copy the frozen one-dirs (hosts without dpkg)
#   --root DIR                                        # install into another root (dpkg --root; testing)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

roles=()
verify_only=0
extract=""
target_root=""
manager=""
token=""
bundle=""
ca_sha256=""
tofu=""
admin_listen=""
while [ $# -gt 0 ]; do
    case "$1" in
        manager|agent) roles+=("$1"); shift ;;
        --verify-only) verify_only=1; shift ;;
        --extract) extract="$2"; shift 2 ;;
        --root) target_root="$2"; shift 2 ;;
        --manager) manager="$2"; shift 2 ;;
        --token) token="$2"; shift 2 ;;
        --bundle) bundle="$2"; shift 2 ;;
        --ca-sha256) ca_sha256="$2"; shift 2 ;;
        --trust-first-use) tofu=1; shift ;;
        --admin-listen) admin_listen="$2"; shift 2 ;;
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
            HERON_CA_SHA256="$ca_sha256" HERON_TRUST_FIRST_USE="$tofu" \
            dpkg "${dpkg_args[@]}" ${DPKG_EXTRA_ARGS:-} -i "${debs[0]}"
    else
        HERON_ADMIN_LISTEN="$admin_listen" \
            dpkg "${dpkg_args[@]}" ${DPKG_EXTRA_ARGS:-} -i "${debs[0]}"
    fi
done
echo "done: systemctl status ${roles[*]/#/heron-}"
