#!/usr/bin/env bash
# Self-test of the scripts: kernel cache, test initramfs (booted for real in QEMU TCG microvm
# with virtio-mmio devices announced on the kernel command line), kvm-run native and nested.
#
#   scripts/lib/selftest.sh [--skip-nested]
#
# Prints PASS/FAIL per check and a summary; exits 1 if any check failed. Takes a few minutes
# (every guest boot is emulated). Uses the normal cache (AIRLOCK_CACHE_DIR honoured).
set -uo pipefail
AIRLOCK_PROG=selftest
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
S="$AIRLOCK_SCRIPTS_DIR"

skip_nested=0
[ "${1:-}" = --skip-nested ] && skip_nested=1

pass=0
failed=()
check() { # check NAME COMMAND...: PASS if COMMAND succeeds
  local name="$1"
  shift
  if "$@"; then
    echo "PASS $name"
    pass=$((pass + 1))
  else
    echo "FAIL $name"
    failed+=("$name")
  fi
}

work="$(mktemp -d /tmp/airlock-selftest.XXXXXX)"
trap 'rm -rf "$work"' EXIT

# ---- fetch-kernel.sh ----
"$S/fetch-kernel.sh" >"$work/fk1" 2>&1
t0=$(date +%s%N)
"$S/fetch-kernel.sh" >"$work/fk2" 2>&1
fk_ms=$((($(date +%s%N) - t0) / 1000000))
kdir="$(current_kernel_dir)"
check fetch-kernel.cached-run-under-3s [ "$fk_ms" -lt 3000 ]
check fetch-kernel.prints-paths grep -q "^vmlinux  $kdir/vmlinux$" "$work/fk2"
check fetch-kernel.vmlinux-is-elf64 "$AIRLOCK_PY" -c '
import sys, struct
b = open(sys.argv[1], "rb").read(64)
sys.exit(0 if b[:4] == b"\x7fELF" and b[4] == 2 and struct.unpack_from("<H", b, 18)[0] == 62 else 1)
' "$kdir/vmlinux"
check fetch-kernel.bzimage-header "$AIRLOCK_PY" -c '
import sys; b = open(sys.argv[1], "rb").read(0x210); sys.exit(0 if b[0x202:0x206] == b"HdrS" else 1)
' "$kdir/vmlinuz"
check fetch-kernel.modules-dep [ -s "$kdir/modules/modules.dep" ]

# ---- build-initramfs.sh ----
"$S/build-initramfs.sh" >/dev/null 2>&1
initrd="$AIRLOCK_CACHE/initramfs/test.cpio.gz"
sum1="$(sha256sum <"$initrd")"
"$S/build-initramfs.sh" >"$work/bi" 2>&1
check build-initramfs.up-to-date grep -q "up to date" "$work/bi"
"$S/build-initramfs.sh" --force >/dev/null 2>&1
check build-initramfs.reproducible [ "$(sha256sum <"$initrd")" = "$sum1" ]
zcat "$initrd" | (cd "$work" && mkdir -p x && cd x && cpio -id --quiet 2>/dev/null)
check build-initramfs.helper-after-virtio_mmio bash -c "grep -A1 -x kernel/drivers/virtio/virtio_mmio.ko \
  '$work/x/etc/modules.order' | tail -n1 | grep -qx extra/virtio_mmio_cmdline.ko"
for t in marker cpus hwrng idle reboot echo blk net; do
  check "build-initramfs.has-test-$t" [ -x "$work/x/tests/$t" ]
done

# ---- boots: QEMU TCG microvm, devices announced as virtio_mmio.device= (acpi=off) ----
rm -rf "$work/disk" && mkdir "$work/disk" && echo "selftest-$$" >"$work/disk/airlock.txt"
mkfs.ext4 -q -d "$work/disk" "$work/disk.img" 16M >/dev/null 2>&1
boot() { # boot TEST OUTFILE [stdin]: runs one guest to its end (90 s limit)
  timeout 90 qemu-system-x86_64 -M microvm,acpi=off -accel tcg -cpu max -smp 2 -m 256 \
    -nodefaults -no-user-config -display none -no-reboot -serial stdio \
    -kernel "$kdir/vmlinux" -initrd "$initrd" \
    -append "console=ttyS0 reboot=k panic=-1 quiet tsc=reliable no_timer_check airlock_test=$1" \
    -device virtio-rng-device \
    -drive "file=$work/disk.img,if=none,id=d0,format=raw" -device virtio-blk-device,drive=d0 \
    -netdev user,id=n0,restrict=on -device virtio-net-device,netdev=n0 \
    <"${3:-/dev/null}" >"$2" 2>&1
}
has() { grep -aq -- "$2" "$1" 2>/dev/null; }

boot marker "$work/marker"
check boot.marker.ready has "$work/marker" AIRLOCK_USERSPACE_READY
check boot.marker.ok has "$work/marker" AIRLOCK_MARKER_OK
check boot.marker.exit0 has "$work/marker" AIRLOCK_TEST_EXIT=0
check boot.no-insmod-failure bash -c "! grep -aq 'insmod .* failed' '$work/marker'"
boot cpus "$work/cpus"
check boot.cpus.2 has "$work/cpus" AIRLOCK_CPUS=2
boot hwrng "$work/hwrng"
check boot.hwrng.ok has "$work/hwrng" AIRLOCK_HWRNG_OK
check boot.hwrng.virtio has "$work/hwrng" AIRLOCK_HWRNG_CURRENT=virtio_rng
boot blk "$work/blk"
check boot.blk.mounted has "$work/blk" AIRLOCK_BLK_MOUNTED
check boot.blk.read has "$work/blk" "AIRLOCK_BLK_FILE=selftest-$$"
check boot.blk.write bash -c "debugfs -R 'cat /guest.txt' '$work/disk.img' 2>/dev/null | grep -q written-by-guest"
boot net "$work/net"
check boot.net.eth0 has "$work/net" "AIRLOCK_NET_IF=eth0 52:54:00"
boot reboot "$work/reboot"
check boot.reboot.exits bash -c "grep -aq AIRLOCK_REBOOTING '$work/reboot' && ! grep -aq AIRLOCK_TEST_EXIT '$work/reboot'"
# idle: must still be running after its marker; stopped from here.
(boot idle "$work/idle") &
bp=$!
for _ in $(seq 60); do has "$work/idle" AIRLOCK_IDLE && break; sleep 1; done
sleep 3
check boot.idle.stays-up bash -c "has() { grep -aq \"\$2\" \"\$1\"; }; has '$work/idle' AIRLOCK_IDLE && ! has '$work/idle' AIRLOCK_TEST_EXIT"
# The background subshell's child is `timeout`, which passes SIGTERM on to QEMU.
kill -TERM $(pgrep -P $bp) 2>/dev/null
wait $bp 2>/dev/null
# echo: the line is sent once the guest says it waits.
mkfifo "$work/in"
exec 5<>"$work/in"
(boot echo "$work/echo" "$work/in") &
bp=$!
for _ in $(seq 60); do has "$work/echo" AIRLOCK_ECHO_WAITING && break; sleep 1; done
echo "line from host $$" >&5
wait $bp
exec 5>&-
check boot.echo has "$work/echo" "AIRLOCK_ECHO=line from host $$"

# ---- kvm-run ----
mkdir -p "$work/cwd"
cd "$work/cwd" || exit 1
kvm_py='import fcntl,os; k=os.open("/dev/kvm",os.O_RDWR); v=fcntl.ioctl(k,0xAE01,0); print("KVM_OK", v>=0, os.environ.get("AIRLOCK_KVM_RUN_NESTED","0"))'
# The native path, forced (this machine's /dev/kvm may be PVM, which kvm-run avoids).
if "$AIRLOCK_PY" "$S/lib/kvm-check.py" -q --create-only 2>/dev/null; then
  "$S/kvm-run" --native -- "$AIRLOCK_PY" -c "$kvm_py" >"$work/n1" 2>&1
  check kvm-run.native.kvm grep -q "KVM_OK True 0" "$work/n1"
else
  echo "SKIP kvm-run.native.kvm (no /dev/kvm here)"
fi
"$S/kvm-run" --native -- sh -c 'exit 7'
check kvm-run.native.exit-code [ $? = 7 ]
"$S/kvm-run" --native --timeout 1 -- sleep 30 2>/dev/null
check kvm-run.native.timeout [ $? = 124 ]
if [ "$skip_nested" = 0 ]; then
  export SELFTEST_VAR='a b$c'
  # Output goes to a regular file that the caller also writes before and after.
  {
    echo before
    "$S/kvm-run" --nested --env SELFTEST_VAR --timeout 600 -- bash -c \
      "$AIRLOCK_PY -c '$kvm_py' && echo guest-wrote >file.txt && echo \"var=[\$SELFTEST_VAR]\" && echo to-stderr >&2; exit 3" \
      </dev/null
    rc=$?
    echo after
  } >"$work/o1" 2>"$work/e1"
  check kvm-run.nested.stdout-in-order bash -c "head -n1 '$work/o1' | grep -qx before && tail -n1 '$work/o1' | grep -qx after"
  check kvm-run.nested.exit-code [ $rc = 3 ]
  check kvm-run.nested.kvm grep -q "KVM_OK True 1" "$work/o1"
  check kvm-run.nested.cwd-writable grep -qx guest-wrote "$work/cwd/file.txt"
  check kvm-run.nested.env grep -qF 'var=[a b$c]' "$work/o1"
  check kvm-run.nested.stderr-separate bash -c "grep -qx to-stderr '$work/e1' && ! grep -q to-stderr '$work/o1'"
  # Inside the nested guest, kvm-amd is hardware KVM as far as it can tell: a kvm-run there
  # takes the native path (automatic choice, full kvm-check with a test guest).
  "$S/kvm-run" --nested --timeout 600 -- "$S/kvm-run" -- bash -c \
    "$AIRLOCK_PY $S/lib/kvm-check.py && $AIRLOCK_PY -c '$kvm_py'" </dev/null >"$work/o2" 2>&1
  check kvm-run.nested.inner-native-check grep -q "real-mode test guest ran" "$work/o2"
  check kvm-run.nested.inner-native-kvm grep -q "KVM_OK True 1" "$work/o2"
  "$S/kvm-run" --nested --timeout 5 -- sleep 600 </dev/null >/dev/null 2>&1
  check kvm-run.nested.timeout [ $? = 124 ]
fi

echo "selftest: $pass passed, ${#failed[@]} failed${failed:+: ${failed[*]}}"
[ ${#failed[@]} = 0 ]
