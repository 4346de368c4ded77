#!/usr/bin/env bash
# Compiles heron.bpf.c into heron.bpf.o (CO-RE: one object for every BTF kernel).
# Needs clang, llvm-strip, bpftool and the libbpf headers (Debian: clang llvm bpftool libbpf-dev,
# installed by .ci/sysdeps.sh). vmlinux.h is generated from this machine's BTF; CO-RE relocations
# adapt the object to the endpoint's kernel at load time, so endpoints need no compiler.
# Without the tools the build is skipped with a warning (the agent then falls back to /proc),
# unless HERON_REQUIRE_EBPF=1.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
out="$here/heron.bpf.o"
work="$root/.ebpf-build"
missing=()
for tool in clang llvm-strip bpftool; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ -f /usr/include/bpf/bpf_helpers.h ] || missing+=("libbpf-dev")
[ -r /sys/kernel/btf/vmlinux ] || missing+=("/sys/kernel/btf/vmlinux")
if [ "${#missing[@]}" -ne 0 ]; then
    echo "heron: eBPF sensor not built (missing: ${missing[*]}); the agent will use /proc" >&2
    [ "${HERON_REQUIRE_EBPF:-0}" = "1" ] && exit 1
    exit 0
fi
mkdir -p "$work"
bpftool btf dump file /sys/kernel/btf/vmlinux format c > "$work/vmlinux.h.tmp"
mv "$work/vmlinux.h.tmp" "$work/vmlinux.h"
arch="$(uname -m)"
case "$arch" in x86_64) target=x86 ;; aarch64) target=arm64 ;; *) target="$arch" ;; esac
clang -g -O2 -Wall -Wno-unused-variable -target bpf "-D__TARGET_ARCH_${target}" -I "$work" \
    -c "$here/heron.bpf.c" -o "$work/heron.bpf.o"
llvm-strip -g "$work/heron.bpf.o"  # drops DWARF, keeps the .BTF/.BTF.ext CO-RE needs
mv "$work/heron.bpf.o" "$out"
echo "heron: built $out ($(stat -c %s "$out") bytes)"
