#!/usr/bin/env bash
# Boot benchmark (airlock vs QEMU microvm): runs boot_bench.py through scripts/kvm-run, which
# runs it natively on hardware KVM and otherwise (no vmx/svm, or a PVM /dev/kvm) in the nested
# QEMU runner. Arguments go to boot_bench.py (--runs N (default 5), --memory MiB, --cpus N,
# --airlock PATH, --extra-cmdline FLAGS).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
exec scripts/kvm-run --timeout 3600 -- /usr/bin/python3 "$here/boot_bench.py" "$@"
