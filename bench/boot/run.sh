#!/usr/bin/env bash
# Boot benchmark (airlock vs QEMU microvm). Runs boot_bench.py where /dev/kvm is real
# hardware KVM: natively if so, else in the nested runner (scripts/kvm-run --nested). A PVM
# /dev/kvm (kvm_pvm) cannot run Debian's stock kernel at a usable speed, so it counts as absent.
# Arguments go to boot_bench.py (--runs N, --memory MiB, --cpus N, --airlock PATH, ...).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
nested=()
if [ -d /sys/module/kvm_pvm ] || ! grep -q -w -E 'vmx|svm' /proc/cpuinfo; then nested=(--nested); fi
cd "$root"
exec scripts/kvm-run "${nested[@]}" --timeout 3600 -- /usr/bin/python3 "$here/boot_bench.py" "$@"
