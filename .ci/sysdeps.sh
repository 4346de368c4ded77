#!/usr/bin/env bash
# Installs the Debian packages Heron's tests and builds need, only when missing (idempotent).
set -euo pipefail
# clang llvm libbpf-dev bpftool: build the eBPF sensor (agent/sources/ebpf); libbpf1: load it
# clickhouse-server postgresql-15: the cluster test tier starts its own servers (tests/cluster)
# zookeeper default-jre-headless: replicated ClickHouse shards in that tier (test_replicas.py)
want=(chromium chromium-driver wixl msitools iptables nftables dpkg-dev binutils clang llvm libbpf-dev bpftool libbpf1
      clickhouse-server postgresql-15 zookeeper default-jre-headless)
missing=()
for pkg in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -eq 0 ]; then exit 0; fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing system packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
