#!/usr/bin/env bash
# Disk benchmark: sequential (1 MiB) and random (4 KiB) reads and writes from inside a guest,
# queue depth 1, O_DIRECT in the guest, on airlock's virtio-blk and, side by side in the same
# run, on QEMU -M microvm's virtio-blk (virtio-mmio) with the same kernel, initramfs and image.
#
#   bench/disk/run.sh [BUILD_DIR]        (default build/; needs BUILD_DIR/bench/bench_disk)
#   AIRLOCK_BENCH_SECS=5                 seconds per pattern
#   AIRLOCK_BENCH_ROUNDS=3               alternating airlock/QEMU rounds; medians are compared
#
# Runs itself under scripts/kvm-run (nested QEMU TCG with kvm-amd where this machine's /dev/kvm
# cannot boot Debian's kernel at speed). Absolute numbers there are emulated: only the ratios
# mean something. Ends with
#   RESULT blk_seq_vs_qemu=<x> blk_rand_vs_qemu=<y>
# x: geometric mean of the airlock/QEMU ratios of median MB/s for seqread and seqwrite; y: the
# same for the median IOPS of randread and randwrite. Above 1.0 airlock is faster.
set -euo pipefail
AIRLOCK_PROG=bench-disk
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../../scripts/lib/common.sh
. "$here/../../scripts/lib/common.sh"

build="$(cd "${1:-$here/../../build}" && pwd)"
secs="${AIRLOCK_BENCH_SECS:-5}"
rounds="${AIRLOCK_BENCH_ROUNDS:-3}"
bench_bin="$build/bench/bench_disk"
[ -x "$bench_bin" ] || die "$bench_bin missing: ninja -C $build bench_disk"

if [ "${AIRLOCK_BENCH_INSIDE:-0}" != 1 ]; then
  need_cmd gcc cpio gzip qemu-system-x86_64
  nested=()
  # A paravirtual /dev/kvm (kvm_pvm) creates VMs but cannot run a stock kernel at speed, and
  # neither can QEMU on it: use the nested runner there, as without vmx/svm.
  if [ -d /sys/module/kvm_pvm ] || ! grep -qwE 'vmx|svm' /proc/cpuinfo; then nested=(--nested); fi
  exec env AIRLOCK_BENCH_INSIDE=1 AIRLOCK_BENCH_SECS="$secs" AIRLOCK_BENCH_ROUNDS="$rounds" \
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

# Rounds alternate airlock and QEMU, so that load from elsewhere on the machine hits both alike;
# the median of the rounds counts.
: >"$work/airlock.txt"
: >"$work/qemu.txt"
for round in $(seq 1 "$rounds"); do
  log "round $round/$rounds: airlock, $secs s per pattern"
  # The guest console also goes to stderr as it happens, so that a stuck run shows where.
  "$bench_bin" "$kernel" "$work/bench.cpio.gz" "$work/disk.img" "$args" 900 |
    tee "$work/airlock.out" | sed -u 's/^/  airlock| /' >&2 || die "airlock run failed"
  log "round $round/$rounds: qemu -M microvm, $secs s per pattern"
  # reboot=t: microvm has no i8042, and a keyboard-controller reboot ends in a KVM emulation
  # failure that leaves QEMU running; a triple fault with -no-reboot ends QEMU.
  timeout 900 qemu-system-x86_64 -M microvm -enable-kvm -cpu host -smp 1 -m 512 \
    -nodefaults -no-user-config -display none -serial stdio -no-reboot \
    -kernel "$kernel" -initrd "$work/bench.cpio.gz" \
    -append "console=ttyS0 reboot=t panic=-1 quiet $args" \
    -drive id=d0,file="$work/disk.img",format=raw,if=none \
    -device virtio-blk-device,drive=d0,serial=bench </dev/null 2>&1 |
    tee "$work/qemu.out" | sed -u 's/^/  qemu| /' >&2 || die "qemu run failed"
  for f in airlock qemu; do
    grep -q BENCH_DONE "$work/$f.out" || die "$f: benchmark did not finish"
    tr -d '\r' <"$work/$f.out" | grep '^BENCH ' | tee -a "$work/$f.txt" | sed "s/^/$f: /"
  done
done

awk -f "$here/../lib/bench_rows.awk" -f <(cat <<'AWK'
END {
  split("seqread seqwrite randread randwrite", modes, " ")
  for (m = 1; m <= 4; m++) {
    key = (m <= 2) ? "MBps" : "iops"
    a = median("airlock", modes[m], key); q = median("qemu", modes[m], key)
    ratio[modes[m]] = a / q
    printf "median %-9s airlock %8.2f  qemu %8.2f  %s  ratio %.2f\n", modes[m], a, q, (m <= 2) ? "MB/s" : "IOPS", a / q
  }
  printf "RESULT blk_seq_vs_qemu=%.2f blk_rand_vs_qemu=%.2f\n", sqrt(ratio["seqread"] * ratio["seqwrite"]), sqrt(ratio["randread"] * ratio["randwrite"])
}
AWK
) "$work/airlock.txt" "$work/qemu.txt"
