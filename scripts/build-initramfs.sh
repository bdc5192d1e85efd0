#!/usr/bin/env bash
# Builds the test initramfs the VMM's tests boot:
#   ${AIRLOCK_CACHE_DIR:-$HOME/.cache/airlock}/initramfs/test-<ver>.cpio.gz
#   ${AIRLOCK_CACHE_DIR:-$HOME/.cache/airlock}/initramfs/test.cpio.gz -> test-<ver>.cpio.gz
# for the kernel that kernel/current points at (fetch-kernel.sh is run first if needed).
#
# Contents: static busybox with applet symlinks, /init (scripts/initramfs/init), the test
# scripts (scripts/initramfs/tests/* -> /tests/), and the virtio/vsock/net/blk/ext4/overlay
# modules with their dependencies, listed in load order in /etc/modules.order, plus
# extra/virtio_mmio_cmdline.ko (scripts/initramfs/modules/, built against Debian's
# linux-headers) right after virtio_mmio: Debian's virtio_mmio has no device= parameter.
# Reproducible and incremental: rebuilt only when an input changed (hash in <out>.inputs).
set -euo pipefail
AIRLOCK_PROG=build-initramfs
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/initramfs.sh
. "$AIRLOCK_SCRIPTS_DIR/lib/initramfs.sh"
# shellcheck source=lib/kmod-build.sh
. "$AIRLOCK_SCRIPTS_DIR/lib/kmod-build.sh"

# Modules the VMM's devices need (rng-core, the hw_random core, is built in). crc32c_generic
# comes before ext4 so metadata checksums work on CPUs without SSE4.2 (crc32c-intel).
MODULES=(
  virtio_mmio
  virtio_rng
  vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport
  virtio_net
  virtio_blk
  crc32c_generic ext4
  overlay
)

force=0
case "${1:-}" in
  --force) force=1 ;;
  "") ;;
  *) die "usage: build-initramfs.sh [--force]" ;;
esac

kdir="$(current_kernel_dir)" || {
  "$AIRLOCK_SCRIPTS_DIR/fetch-kernel.sh" >/dev/null
  kdir="$(current_kernel_dir)" || die "no kernel in the cache after fetch-kernel.sh"
}
ver="$(cat "$kdir/version")"
src="$AIRLOCK_SCRIPTS_DIR/initramfs"
outdir="$AIRLOCK_CACHE/initramfs"
out="$outdir/test-$ver.cpio.gz"
mkdir -p "$outdir"

exec 9>"$outdir/.lock"
flock 9

hash="$({
  echo "$ver ${MODULES[*]}"
  inputs_hash "$0" "$AIRLOCK_SCRIPTS_DIR"/lib/{initramfs.sh,moddeps.py,kmod-build.sh} "$src" \
    "$AIRLOCK_BUSYBOX"
} | sha256sum | cut -d' ' -f1)"
if [ "$force" = 0 ] && [ -f "$out" ] && [ "$(cat "$out.inputs" 2>/dev/null)" = "$hash" ]; then
  log "up to date"
else
  stage="$(mktemp -d "$outdir/.stage.XXXXXX")"
  trap 'rm -rf "$stage"' EXIT
  stage_busybox "$stage"
  stage_modules "$stage" "$kdir/modules" "$ver" "${MODULES[@]}"
  # The helper goes right after virtio_mmio.ko; /init passes it the device= values.
  helper="$(build_helper_module "$kdir" "$ver" virtio_mmio_cmdline)"
  install -D -m 644 "$helper" "$stage/lib/modules/$ver/extra/virtio_mmio_cmdline.ko"
  sed -i 's#^kernel/drivers/virtio/virtio_mmio.ko$#&\nextra/virtio_mmio_cmdline.ko#' \
    "$stage/etc/modules.order"
  grep -qx extra/virtio_mmio_cmdline.ko "$stage/etc/modules.order" ||
    die "virtio_mmio.ko missing from the module list"
  install -m 755 "$src/init" "$stage/init"
  mkdir -p "$stage/tests"
  for t in "$src"/tests/*; do install -m 755 "$t" "$stage/tests/"; done
  build_cpio "$stage" "$out"
  echo "$hash" >"$out.inputs"
  log "built $(basename "$out"): $(stat -c %s "$out") bytes," \
    "$(wc -l <"$stage/etc/modules.order") modules"
fi
ln -sfn "test-$ver.cpio.gz" "$outdir/test.cpio.gz"
echo "initramfs $out"
echo "link      $outdir/test.cpio.gz"
echo "kernel    $kdir/vmlinuz"
echo "vmlinux   $kdir/vmlinux"
