#!/usr/bin/env bash
# airlock's main job, end to end, on a fresh Debian 12 machine (run as root):
#   installs what it needs, builds, fetches the guest kernel, builds the sandbox image, then boots
#   sandboxes and shows: commands running in a microVM, a secret that the guest only sees as a
#   placeholder but that reaches its bound host as the real value, and a request to a host that
#   is not in allow_net refused by the egress proxy.
# Where /dev/kvm is missing or unusable, the sandboxes run inside scripts/kvm-run's nested QEMU
# guest (slow: expect a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-$PWD/build}

./scripts/setup.sh
cmake -S . -B "$BUILD_DIR" -G Ninja >/dev/null
ninja -C "$BUILD_DIR" airlock airlock-guest-agent
./scripts/fetch-kernel.sh >/dev/null
BUILD_DIR="$BUILD_DIR" ./scripts/build-sandbox-image.sh >/dev/null
exec ./scripts/kvm-run -- ./scripts/lib/demo-inner.sh "$BUILD_DIR"
