#!/usr/bin/env bash
# Exec benchmark: bench_exec (see exec_bench.cc) where /dev/kvm can boot Debian's kernel at
# speed: natively with hardware KVM, else in the nested runner (scripts/kvm-run --nested), where
# absolute times are emulated and only the ratio exec/echo means something.
#   bench/exec/run.sh [BUILD_DIR] [--runs N]     (default build/; needs BUILD_DIR/bench/bench_exec)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="$(cd "${1:-$root/build}" && pwd)"
shift || true
[ -x "$build/bench/bench_exec" ] || { echo "bench/exec: build bench_exec first" >&2; exit 1; }
nested=()
if [ -d /sys/module/kvm_pvm ] || ! grep -q -w -E 'vmx|svm' /proc/cpuinfo; then nested=(--nested); fi
cd "$root"
exec scripts/kvm-run "${nested[@]}" --timeout 3600 -- "$build/bench/bench_exec" "$@"
