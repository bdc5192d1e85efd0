# Shared by the benchmarks whose guest prints result rows "BENCH <kind> key=value ...": read
# airlock.txt and qemu.txt (one file per VMM, rows appended over rounds), then, in the caller's
# END block, median(vmm, kind, key) is the median of that field over the rounds.
#   awk -f bench/lib/bench_rows.awk -f <caller's END program> .../airlock.txt .../qemu.txt

function median(vmm, kind, key,    n, i, j, t, a) {
  n = count[vmm, kind]
  for (i = 1; i <= n; i++) a[i] = val[vmm, kind, key, i]
  for (i = 2; i <= n; i++)
    for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
  return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}

FNR == 1 { vmm = (FILENAME ~ /airlock\.txt$/) ? "airlock" : "qemu" }

/^BENCH / {
  row = ++count[vmm, $2]
  for (i = 3; i <= NF; i++) { split($i, kv, "="); val[vmm, $2, kv[1], row] = kv[2] }
}
