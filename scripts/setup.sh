#!/usr/bin/env bash
# Installs every Debian package airlock needs to build, test and benchmark. Idempotent: it
# installs only what is missing. Run as root (or with sudo available).
set -euo pipefail

PACKAGES=(
  # build
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev clang-format
  linux-libc-dev libfmt-dev android-libboringssl-dev node-llhttp doctest-dev
  # guest kernel, test initramfs, nested KVM runner
  busybox-static cpio gzip xz-utils zstd kmod qemu-system-x86 apt-utils dpkg-dev e2fsprogs
  # real clients and servers for tests
  curl python3 python3-pytest python3-requests nodejs iproute2 openssl
  # peers for benchmarks
  squid-openssl mitmproxy hey
)

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# squid starts a system service on install; airlock's benchmarks run their own instance.
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now squid >/dev/null 2>&1 || true; fi
echo "setup: done"
