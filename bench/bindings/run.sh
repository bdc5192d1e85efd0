#!/bin/sh
# bench/bindings: sh("true") round trip from C, Python and Node (median of N each, after 20
# warm-up calls). Each language boots its own sandbox with the same options, one after another
# (a sandbox cannot be shared between processes). Needs a usable /dev/kvm: run it through
# scripts/kvm-run. Ends with RESULT py_over_c=<x> node_over_c=<y>.
#   bench/bindings/run.sh BUILD_DIR [N]
set -eu
build=$(cd "${1:?build dir}" && pwd)
n=${2:-200}
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
out=$(mktemp -d "$build/bench-bindings.XXXXXX")
trap 'rm -rf "$out"' EXIT
cc -O2 -std=c99 -D_POSIX_C_SOURCE=200809L -I"$src/capi" "$here/bench_c.c" -o "$out/bench_c" \
  -L"$build/capi" -lairlock -Wl,-rpath,"$build/capi"
export AIRLOCK_LIBRARY="$build/capi/libairlock.so.0"
export AIRLOCK_NODE_ADDON="$build/bindings/node/airlock.node"
c=$("$out/bench_c" "$n" | sed -n 's/^c_us=//p')
py=$(PYTHONPATH="$src/bindings/python" /usr/bin/python3 "$here/bench_py.py" "$n" | sed -n 's/^py_us=//p')
node=$(node "$here/bench_node.mjs" "$n" | sed -n 's/^node_us=//p')
echo "sh(\"true\") median: c=${c}us python=${py}us node=${node}us (n=$n)"
awk -v c="$c" -v p="$py" -v j="$node" 'BEGIN { printf "RESULT py_over_c=%.2f node_over_c=%.2f\n", p / c, j / c }'
