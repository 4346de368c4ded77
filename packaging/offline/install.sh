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
#   ./install.sh --extract DIR [manager|agent]        # unpack the frozen one-dirs (hosts without dpkg)
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

# Unpacks /opt/heron/<role>/ of a .deb into DEST/heron-<role>/ with coreutils and tar only (a
# .deb is an ar archive: 8-byte magic, then members with 60-byte headers, 2-byte aligned).
extract_deb() {
    local deb="$1" role="$2" dest="$3" off=8 total hdr name size z
    total="$(wc -c < "$deb")"
    [ "$(head -c 7 "$deb")" = '!<arch>' ] || { echo "$deb is not a .deb" >&2; return 1; }
    while [ "$off" -lt "$total" ]; do
        hdr="$(dd if="$deb" iflag=skip_bytes,count_bytes skip="$off" count=60 2>/dev/null)"
        name="${hdr:0:16}"; name="${name%%[ /]*}"
        size="${hdr:48:10}"; size="${size%% *}"
        off=$((off + 60))
        case "$name" in
            data.tar*)
                case "$name" in
                    *.xz) z=(-J) ;; *.gz) z=(-z) ;; *.zst) z=(--zstd) ;; *) z=() ;;
                esac
                mkdir -p "$dest/heron-$role"
                dd if="$deb" iflag=skip_bytes,count_bytes bs=1M skip="$off" count="$size" \
                    2>/dev/null | tar -x "${z[@]}" -C "$dest/heron-$role" --strip-components=4 \
                    "./opt/heron/$role"
                return 0 ;;
        esac
        off=$((off + size + size % 2))
    done
    echo "$deb has no data member" >&2
    return 1
}

if [ -n "$extract" ]; then
    mkdir -p "$extract"
    for role in "${roles[@]}"; do
        debs=("$HERE"/packages/heron-"$role"_*.deb)
        [ -f "${debs[0]}" ] || { echo "no heron-$role package in this bundle" >&2; exit 1; }
        extract_deb "${debs[0]}" "$role" "$extract"
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
