#!/usr/bin/env bash
# Builds the sandbox initramfs every airlock::Sandbox boots by default:
#   ${AIRLOCK_CACHE_DIR:-$HOME/.cache/airlock}/initramfs/sandbox-<hash>.cpio.gz
#   ${AIRLOCK_CACHE_DIR:-$HOME/.cache/airlock}/initramfs/sandbox.cpio.gz -> sandbox-<hash>.cpio.gz
# <hash> covers every input (agent binary, busybox, module list, kernel version, this script),
# so different builds never overwrite each other's image.
#
#   scripts/build-sandbox-image.sh [AGENT_BINARY]   (default: build/bin/airlock-guest-agent)
#
# Contents: the airlock guest agent (src/guest) as /init, static busybox for /bin/sh and the
# usual applets, and the kernel modules the sandbox needs, in load order in /etc/modules.order.
set -euo pipefail
AIRLOCK_PROG=build-sandbox-image
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/initramfs.sh
. "$AIRLOCK_SCRIPTS_DIR/lib/initramfs.sh"

# virtio-mmio bus; vsock for the agent; rng for guest entropy; net and blk for the network and
# persistence layers; ext4 (crc32c_generic first, for metadata_csum) and overlay for root images
# and volumes (src/guest/root.h).
MODULES=(
  virtio_mmio
  vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport
  virtio_rng
  virtio_net
  virtio_blk
  crc16 mbcache jbd2 crc32c_generic ext4 overlay
)

agent="${1:-$AIRLOCK_SCRIPTS_DIR/../build/bin/airlock-guest-agent}"
[ -x "$agent" ] || die "agent binary $agent not found (build the airlock-guest-agent target)"
LC_ALL=C file -b "$agent" | grep -q 'statically linked' || die "$agent is not statically linked"
need_cmd strip

kdir="$(current_kernel_dir)" || {
  "$AIRLOCK_SCRIPTS_DIR/fetch-kernel.sh" >/dev/null
  kdir="$(current_kernel_dir)" || die "no kernel in the cache after fetch-kernel.sh"
}
ver="$(cat "$kdir/version")"
outdir="$AIRLOCK_CACHE/initramfs"
mkdir -p "$outdir"

hash="$(echo "$ver ${MODULES[*]}" |
  cat - <(inputs_hash "$0" "$AIRLOCK_SCRIPTS_DIR/lib" "$agent" "$AIRLOCK_BUSYBOX") |
  sha256sum | cut -c1-16)"
out="$outdir/sandbox-$hash.cpio.gz"

exec 9>"$outdir/.sandbox.lock"
flock 9

if [ -f "$out" ]; then
  log "up to date: $(basename "$out")"
else
  stage="$(mktemp -d "$outdir/.sandbox-stage.XXXXXX")"
  trap 'rm -rf "$stage"' EXIT
  stage_busybox "$stage"
  stage_modules "$stage" "$kdir/modules" "$ver" "${MODULES[@]}"
  strip -o "$stage/init" "$agent"
  chmod 755 "$stage/init"
  ln -s /init "$stage/bin/airlock-guest-agent"
  build_cpio "$stage" "$out"
  log "built $(basename "$out"): $(stat -c %s "$out") bytes, $(wc -l <"$stage/etc/modules.order") modules"
fi
ln -sfn "$(basename "$out")" "$outdir/sandbox.cpio.gz.tmp.$$"
mv -T "$outdir/sandbox.cpio.gz.tmp.$$" "$outdir/sandbox.cpio.gz"
echo "$out"
