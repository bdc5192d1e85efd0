#!/bin/sh
# bench/bindings: sh("true") round trip from C, Python and Node, each binding compared with C ON
# THE SAME SANDBOX in the same process:
#   Python: bench_py.py boots one sandbox with the Python binding and times sb.sh("true") and,
#           on that sandbox's handle, c_loop.so's bench_sh_loop (a C loop over
#           airlock_sandbox_sh, loaded with ctypes; it shares the binding's libairlock.so.0).
#   Node:   bench_node.mjs boots one sandbox with the Node binding and times `await sb.sh`true``
#           and the addon's internal _benchShLoop (the same C loop, on the addon's pool thread).
# Rounds of N/10 alternate between the binding and C; medians over N each. A Python process and
# a Node process cannot share one sandbox, so the two ratios come from two sandboxes, each ratio
# from one. Needs a usable /dev/kvm: run it through scripts/kvm-run (nested here), e.g.
#   scripts/kvm-run --nested --timeout 3600 -- bench/bindings/run.sh build 200
# Ends with RESULT py_over_c=<x> node_over_c=<y>.
#   bench/bindings/run.sh BUILD_DIR [N]     (needs BUILD_DIR's libairlock and Node addon)
set -eu
build=$(cd "${1:?build dir}" && pwd)
n=${2:-200}
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
out=$(mktemp -d "$build/bench-bindings.XXXXXX")
trap 'rm -rf "$out"' EXIT
cc -O2 -std=c99 -D_POSIX_C_SOURCE=200809L -fPIC -shared -I"$src/capi" "$here/c_loop.c" \
  -o "$out/c_loop.so" -L"$build/capi" -lairlock -Wl,-rpath,"$build/capi"
export AIRLOCK_LIBRARY="$build/capi/libairlock.so.0"
export AIRLOCK_NODE_ADDON="$build/bindings/node/airlock.node"
py=$(PYTHONPATH="$src/bindings/python" /usr/bin/python3 "$here/bench_py.py" "$out/c_loop.so" "$n")
echo "python process: $py"
node=$(node "$here/bench_node.mjs" "$n")
echo "node process:   $node"
field() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
c_py=$(field "$py" c_ns); py_ns=$(field "$py" py_ns)
c_node=$(field "$node" c_ns); node_ns=$(field "$node" node_ns)
awk -v c1="$c_py" -v p="$py_ns" -v c2="$c_node" -v j="$node_ns" 'BEGIN {
  printf "sh(\"true\") median round trip (us):\n"
  printf "  sandbox 1:  C %10.1f   Python %10.1f   ratio %.2f\n", c1 / 1e3, p / 1e3, p / c1
  printf "  sandbox 2:  C %10.1f   Node   %10.1f   ratio %.2f\n", c2 / 1e3, j / 1e3, j / c2
  printf "RESULT py_over_c=%.2f node_over_c=%.2f\n", p / c1, j / c2
}'
