#!/usr/bin/env bash
# Disk benchmark: sequential (1 MiB) and random (4 KiB) reads and writes from inside a guest,
# queue depth 1, O_DIRECT in the guest, on airlock's virtio-blk and, side by side in the same
# run, on QEMU -M microvm's virtio-blk (virtio-mmio) with the same kernel, initramfs and image.
#
#   bench/disk/run.sh [BUILD_DIR]        (default build/; needs BUILD_DIR/bench/bench_disk)
#   AIRLOCK_BENCH_SECS=5                 seconds per pattern
#
# Runs itself under scripts/kvm-run (nested QEMU TCG with kvm-amd where this machine's /dev/kvm
# cannot boot Debian's kernel at speed). Absolute numbers there are emulated: only the ratios
# mean something. Ends with
#   RESULT blk_seq_vs_qemu=<x> blk_rand_vs_qemu=<y>
# x: geometric mean of airlock/QEMU MB/s over seqread and seqwrite; y: the same over the IOPS
# of randread and randwrite. Above 1.0 airlock is faster.
set -euo pipefail
AIRLOCK_PROG=bench-disk
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../../scripts/lib/common.sh
. "$here/../../scripts/lib/common.sh"

build="$(cd "${1:-$here/../../build}" && pwd)"
secs="${AIRLOCK_BENCH_SECS:-5}"
bench_bin="$build/bench/bench_disk"
[ -x "$bench_bin" ] || die "$bench_bin missing: ninja -C $build bench_disk"

if [ "${AIRLOCK_BENCH_INSIDE:-0}" != 1 ]; then
  need_cmd gcc cpio gzip qemu-system-x86_64
  nested=()
  # A paravirtual /dev/kvm (kvm_pvm) creates VMs but cannot run a stock kernel at speed, and
  # neither can QEMU on it: use the nested runner there, as without vmx/svm.
  if [ -d /sys/module/kvm_pvm ] || ! grep -qwE 'vmx|svm' /proc/cpuinfo; then nested=(--nested); fi
  exec env AIRLOCK_BENCH_INSIDE=1 AIRLOCK_BENCH_SECS="$secs" \
    "$here/../../scripts/kvm-run" "${nested[@]}" --timeout 1800 -- "$0" "$build"
fi

kdir="$(current_kernel_dir)" || die "no cached kernel: scripts/fetch-kernel.sh"
kernel="$kdir/vmlinuz"
base_initramfs="$AIRLOCK_CACHE/initramfs/test.cpio.gz"
[ -e "$base_initramfs" ] || die "no test initramfs: scripts/build-initramfs.sh"

work="$(mktemp -d /tmp/airlock-bench-disk.XXXXXX)"
trap 'rm -rf "$work"' EXIT
# The test initramfs plus a second archive with the load generator and the guest script (the
# kernel unpacks concatenated archives in order).
mkdir -p "$work/stage/bin" "$work/stage/tests"
gcc -O2 -static -o "$work/stage/bin/blkio" "$here/blkio.c"
install -m 755 "$here/diskbench" "$work/stage/tests/diskbench"
(cd "$work/stage" && find . | cpio -o -H newc --quiet | gzip -9) >"$work/extra.cpio.gz"
cat "$base_initramfs" "$work/extra.cpio.gz" >"$work/bench.cpio.gz"
# Real data, so that reads are not answered from holes.
dd if=/dev/urandom of="$work/disk.img" bs=1M count=256 status=none
args="airlock_test=diskbench airlock_bench_secs=$secs"

log "airlock: $secs s per pattern"
"$bench_bin" "$kernel" "$work/bench.cpio.gz" "$work/disk.img" "$args" 900 >"$work/airlock.out" ||
  { cat "$work/airlock.out" >&2; die "airlock run failed"; }
log "qemu -M microvm: $secs s per pattern"
timeout 900 qemu-system-x86_64 -M microvm -enable-kvm -cpu host -smp 1 -m 512 \
  -nodefaults -no-user-config -display none -serial stdio -no-reboot \
  -kernel "$kernel" -initrd "$work/bench.cpio.gz" \
  -append "console=ttyS0 reboot=k panic=-1 quiet $args" \
  -drive id=d0,file="$work/disk.img",format=raw,if=none \
  -device virtio-blk-device,drive=d0,serial=bench </dev/null >"$work/qemu.out" 2>&1 ||
  { cat "$work/qemu.out" >&2; die "qemu run failed"; }

for f in airlock qemu; do
  grep -q BENCH_DONE "$work/$f.out" || { cat "$work/$f.out" >&2; die "$f: benchmark did not finish"; }
  tr -d '\r' <"$work/$f.out" | grep '^BENCH ' >"$work/$f.txt"
  echo "--- $f"
  cat "$work/$f.txt"
done
awk '
  FNR == 1 { vmm = (FILENAME ~ /airlock\.txt$/) ? "a" : "q" }
  /^BENCH / {
    for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    mb[vmm, $2] = v["MBps"]; io[vmm, $2] = v["iops"]
  }
  END {
    seq = sqrt((mb["a", "seqread"] / mb["q", "seqread"]) * (mb["a", "seqwrite"] / mb["q", "seqwrite"]))
    rnd = sqrt((io["a", "randread"] / io["q", "randread"]) * (io["a", "randwrite"] / io["q", "randwrite"]))
    printf "RESULT blk_seq_vs_qemu=%.2f blk_rand_vs_qemu=%.2f\n", seq, rnd
  }' "$work/airlock.txt" "$work/qemu.txt"
