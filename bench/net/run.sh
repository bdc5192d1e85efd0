#!/usr/bin/env bash
# Network benchmark: a 64 MiB HTTPS download and a run of small HTTPS requests from inside a
# guest through airlock's egress proxy (TLS intercepted, CONNECT via HTTPS_PROXY), on airlock's
# virtio-net and, side by side in the same run, on QEMU -M microvm's virtio-net (virtio-mmio,
# tap backend, no vhost) -- same kernel, initramfs, client (Debian's curl), proxy and upstream.
#
#   bench/net/run.sh [BUILD_DIR]     (default build/; needs bench_net and airlock-bench-upstream)
#   AIRLOCK_BENCH_ROUNDS=1           alternating airlock/QEMU rounds; medians are compared
#   AIRLOCK_BENCH_SMALL=200          small requests per round
#
# The path is the same for both VMMs, by construction: bench_net (net_bench.cc) makes one
# sandbox network (namespace, tap, DNS) and one airlock proxy per run, and hands the tap either
# to airlock's virtio-net or, as an inherited fd, to QEMU's. The upstream is
# airlock-bench-upstream (bench/proxy) on the runner's 127.0.0.1, reached by name through the
# proxy's resolver override. Needs root (namespaces, taps). Runs itself under scripts/kvm-run
# (nested where this machine's /dev/kvm cannot run Debian's kernel at speed): absolute figures
# there are emulated, only the ratios mean something. Ends with
#   RESULT net_mbps_vs_qemu=<x> net_rps_vs_qemu=<y>
# (airlock / QEMU of the median download MB/s and small requests/s; above 1.0 airlock is faster).
set -euo pipefail
AIRLOCK_PROG=bench-net
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../../scripts/lib/common.sh
. "$here/../../scripts/lib/common.sh"

build="$(cd "${1:-$here/../../build}" && pwd)"
rounds="${AIRLOCK_BENCH_ROUNDS:-1}"
small="${AIRLOCK_BENCH_SMALL:-200}"
bench_bin="$build/bench/bench_net"
upstream_bin="$build/bin/airlock-bench-upstream"
[ -x "$bench_bin" ] && [ -x "$upstream_bin" ] ||
  die "build first: ninja -C $build bench_net airlock-bench-upstream"

if [ "${AIRLOCK_BENCH_INSIDE:-0}" != 1 ]; then
  need_cmd cpio gzip qemu-system-x86_64 openssl curl
  nested=()
  if [ -d /sys/module/kvm_pvm ] || ! grep -qwE 'vmx|svm' /proc/cpuinfo; then nested=(--nested); fi
  exec env AIRLOCK_BENCH_INSIDE=1 AIRLOCK_BENCH_ROUNDS="$rounds" AIRLOCK_BENCH_SMALL="$small" \
    "$here/../../scripts/kvm-run" "${nested[@]}" --timeout 2400 -- "$0" "$build"
fi

kdir="$(current_kernel_dir)" || die "no cached kernel: scripts/fetch-kernel.sh"
kernel="$kdir/vmlinuz"
base_initramfs="$AIRLOCK_CACHE/initramfs/test.cpio.gz"
[ -e "$base_initramfs" ] || die "no test initramfs: scripts/build-initramfs.sh"

work="$(mktemp -d /tmp/airlock-bench-net.XXXXXX)"
upstream_pid=""
cleanup() {
  if [ -n "$upstream_pid" ]; then kill "$upstream_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

# The test initramfs plus curl (with its libraries, at the host's paths) and the guest script.
mkdir -p stage/tests
for f in /usr/bin/curl $(ldd /usr/bin/curl | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
  install -D -m 755 "$(readlink -f "$f")" "stage$f"
done
install -m 755 "$here/netbench" stage/tests/netbench
(cd stage && find . | cpio -o -H newc --quiet | gzip -1) >extra.cpio.gz
cat "$base_initramfs" extra.cpio.gz >bench.cpio.gz

# The upstream: its own CA and a certificate for the name the guest asks for.
name=bench.example.test
port=8443
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout up-ca.key \
  -out up-ca.pem -days 2 -subj "/CN=bench upstream CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout up.key -out up.csr \
  -subj "/CN=$name" 2>/dev/null
printf "subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n" \
  "$name" >up.ext
openssl x509 -req -in up.csr -CA up-ca.pem -CAkey up-ca.key -CAcreateserial -out up.pem \
  -days 2 -extfile up.ext 2>/dev/null
"$upstream_bin" 127.0.0.1 "$port" up.pem up.key >upstream.log 2>&1 &
upstream_pid=$!
for _ in $(seq 50); do grep -q listening upstream.log && break; sleep 0.1; done
grep -q listening upstream.log || die "upstream did not start: $(cat upstream.log)"

args="airlock_test=netbench bench_url=https://$name:$port bench_small=$small"
: >airlock.txt
: >qemu.txt
for round in $(seq 1 "$rounds"); do
  log "round $round/$rounds: airlock"
  "$bench_bin" airlock "$kernel" bench.cpio.gz "$args" up-ca.pem "$name" 900 |
    tee airlock.out | sed -u 's/^/  airlock| /' >&2 || die "airlock run failed"
  log "round $round/$rounds: qemu -M microvm (virtio-net-device on the same kind of tap, no vhost)"
  "$bench_bin" qemu "$kernel" bench.cpio.gz "$args" up-ca.pem "$name" -- \
    timeout 1200 qemu-system-x86_64 -M microvm -enable-kvm -cpu host -smp 1 -m 512 \
    -nodefaults -no-user-config -display none -serial stdio -no-reboot </dev/null |
    tee qemu.out | sed -u 's/^/  qemu| /' >&2 || die "qemu run failed"
  for f in airlock qemu; do
    grep -q BENCH_DONE "$f.out" || die "$f: benchmark did not finish"
    tr -d '\r' <"$f.out" | grep '^BENCH ' | tee -a "$f.txt" | sed "s/^/$f: /"
  done
done

awk -f "$here/../lib/bench_rows.awk" -f <(cat <<'AWK'
END {
  a = median("airlock", "download", "MBps"); q = median("qemu", "download", "MBps")
  printf "median download  airlock %8.2f  qemu %8.2f  MB/s  ratio %.2f\n", a, q, a / q
  b = median("airlock", "small", "rps"); r = median("qemu", "small", "rps")
  printf "median small     airlock %8.2f  qemu %8.2f  req/s ratio %.2f\n", b, r, b / r
  printf "RESULT net_mbps_vs_qemu=%.2f net_rps_vs_qemu=%.2f\n", a / q, b / r
}
AWK
) airlock.txt qemu.txt
