"""Boot benchmark: airlock vs QEMU microvm, same kernel, initramfs, memory and vCPUs.

For each run: time from process launch to the AIRLOCK_USERSPACE_READY line on the serial
console, and the VMM's own memory at that moment: peak RSS (VmHWM) minus the resident part of
the guest-RAM mapping (both from /proc/PID), i.e. what the VMM costs beyond the guest's memory.
Also, for reading the figures (not in the ratios): guest_s, the guest's /proc/uptime at the
marker (the test initramfs prints AIRLOCK_UPTIME=<s> right after it), and boot_s - guest_s.
Read that difference as an upper bound of the time before the guest kernel's clock started
(VMM start-up, image loading, the kernel's first instructions): in the nested runner the
guest's uptime lags its own printk clock by 0.3 s and more, because timekeeping runs on the
jiffies clocksource until clocksource_done_booting, where late timer ticks are probably lost. Last
column: the guest RAM resident at the marker.

Needs a usable /dev/kvm (run it through bench/boot/run.sh, which uses scripts/kvm-run).
Prints one row per run, the medians, and the line
  RESULT boot_ratio_vs_qemu=<x> rss_ratio_vs_qemu=<y>
(airlock over QEMU's fastest configuration).
"""

import argparse
import os
import re
import select
import signal
import statistics
import subprocess
import sys
import time

MARKER = b"AIRLOCK_USERSPACE_READY"
UPTIME = re.compile(rb"AIRLOCK_UPTIME=([0-9.]+)\s")


def guest_ram_rss_kib(pid, mem_mib):
    """Rss of the largest mapping at least as large as guest RAM (the guest-RAM mapping)."""
    best_size, best_rss = 0, 0
    size = rss = 0
    in_candidate = False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            if "-" in parts[0] and len(parts) >= 5 and not parts[0].endswith(":"):
                if in_candidate and size > best_size:
                    best_size, best_rss = size, rss
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                size = (hi - lo) // 1024
                rss = 0
                in_candidate = size >= mem_mib * 1024
            elif parts[0] == "Rss:":
                rss = int(parts[1])
    if in_candidate and size > best_size:
        best_size, best_rss = size, rss
    return best_rss


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def run_once(name, argv, mem_mib, timeout):
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    buf = b""
    boot_s = None
    overhead_kib = None
    guest_kib = None
    guest_s = None
    try:
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([proc.stdout], [], [], 0.5)
            if not r:
                if proc.poll() is not None:
                    break
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            if boot_s is None and MARKER in buf:
                boot_s = time.monotonic() - t0
                peak = peak_rss_kib(proc.pid)
                guest_kib = guest_ram_rss_kib(proc.pid, mem_mib)
                overhead_kib = peak - guest_kib
                deadline = min(deadline, time.monotonic() + 10)  # for the uptime line only
            if boot_s is not None:
                m = UPTIME.search(buf, buf.index(MARKER))
                if m:
                    guest_s = float(m.group(1))
                    break
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            print(f"{name}: pid {proc.pid} did not die after SIGKILL", file=sys.stderr)
    if boot_s is None:
        tail = buf[-2000:].decode(errors="replace")
        print(f"{name}: no {MARKER.decode()} within {timeout}s; output tail:\n{tail}",
              file=sys.stderr)
    return boot_s, overhead_kib, guest_s, guest_kib


def main():
    cache = os.environ.get("AIRLOCK_CACHE_DIR", os.path.expanduser("~/.cache/airlock"))
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--airlock", default=os.path.join(root, "build", "bin", "airlock"))
    ap.add_argument("--qemu", default="qemu-system-x86_64")
    ap.add_argument("--vmlinux", default=os.path.join(cache, "kernel/current/vmlinux"))
    ap.add_argument("--bzimage", default=os.path.join(cache, "kernel/current/vmlinuz"))
    ap.add_argument("--initramfs", default=os.path.join(cache, "initramfs/test.cpio.gz"))
    ap.add_argument("--memory", type=int, default=512, help="MiB")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=180, help="per boot, seconds")
    ap.add_argument("--extra-cmdline", default="",
                    help="appended to both VMMs' kernel command line (A/B of a flag, e.g. "
                         "cryptomgr.notests=0 to undo a default)")
    a = ap.parse_args()
    for path in (a.airlock, a.vmlinux, a.bzimage, a.initramfs):
        if not os.path.exists(path):
            sys.exit(f"boot_bench: missing {path} (build airlock; scripts/fetch-kernel.sh; "
                     "scripts/build-initramfs.sh)")

    # The guest prints the marker, then sits idle until killed. Both VMMs boot the same kernel
    # command line: airlock's default (vmm::default_cmdline(true)) plus `extra`.
    # tsc=reliable no_timer_check: QEMU microvm guests sometimes hang calibrating the TSC in the
    # nested runner without them (airlock's do not; they get them too, for equal terms).
    extra = ("tsc=reliable no_timer_check airlock_test=idle " + a.extra_cmdline).strip()
    # Keep in step with default_cmdline() in src/vmm/machine.cc: QEMU gets the same flags
    # (cryptomgr.notests included), so the ratio compares VMMs, not command lines.
    cmdline = ("console=ttyS0 reboot=k panic=-1 8250.nr_uarts=1 pci=off i8042.noaux i8042.nomux "
               "cryptomgr.notests quiet " + extra)
    qemu_common = [a.qemu, "-M", "microvm,rtc=on", "-enable-kvm", "-cpu", "host", "-nodefaults",
                   "-no-user-config", "-nographic", "-serial", "stdio", "-m", str(a.memory),
                   "-smp", str(a.cpus), "-initrd", a.initramfs, "-append", cmdline]
    configs = [
        ("airlock-vmlinux", [a.airlock, "boot", "--kernel", a.vmlinux, "--initramfs", a.initramfs,
                             "--memory", str(a.memory), "--cpus", str(a.cpus),
                             "--cmdline", extra]),
        ("qemu-microvm-bzImage", qemu_common + ["-kernel", a.bzimage]),
        # QEMU boots an uncompressed vmlinux through its PVH note: its fastest configuration.
        ("qemu-microvm-vmlinux-pvh", qemu_common + ["-kernel", a.vmlinux]),
    ]
    results = {name: [] for name, _ in configs}
    print(f"{'config':26} {'run':>3} {'boot_s':>8} {'vmm_overhead_MiB':>17} {'guest_s':>8} "
          f"{'boot-guest':>11} {'guest_ram_MiB':>13}")
    for run in range(a.runs):
        for name, argv in configs:
            boot_s, over, guest_s, guest_kib = run_once(name, argv, a.memory, a.timeout)
            if boot_s is not None:
                results[name].append((boot_s, over, guest_s))
                g = f"{guest_s:8.2f} {boot_s - guest_s:11.2f}" if guest_s is not None else \
                    f"{'?':>8} {'?':>11}"
                print(f"{name:26} {run:>3} {boot_s:8.3f} {over / 1024:17.2f} {g} "
                      f"{guest_kib / 1024:13.1f}", flush=True)
            else:
                print(f"{name:26} {run:>3} {'failed':>8}", flush=True)

    med = {}
    for name, rows in results.items():
        if rows:
            med[name] = (statistics.median(r[0] for r in rows),
                         statistics.median(r[1] for r in rows))
            pre = [r[0] - r[2] for r in rows if r[2] is not None]
            pre_txt = f", boot_s - guest_s {statistics.median(pre):.2f} s" if pre else ""
            print(f"median {name:19} boot {med[name][0]:.3f} s (min {min(r[0] for r in rows):.3f})"
                  f"{pre_txt}, VMM overhead {med[name][1] / 1024:.2f} MiB ({len(rows)} runs)")
    qemu = [n for n in med if n.startswith("qemu")]
    if "airlock-vmlinux" not in med or not qemu:
        sys.exit("boot_bench: not enough successful runs for a comparison")
    fastest = min(qemu, key=lambda n: med[n][0])
    boot_ratio = med["airlock-vmlinux"][0] / med[fastest][0]
    rss_ratio = med["airlock-vmlinux"][1] / med[fastest][1]
    print(f"QEMU's fastest configuration: {fastest}")
    print(f"RESULT boot_ratio_vs_qemu={boot_ratio:.3f} rss_ratio_vs_qemu={rss_ratio:.3f}")


if __name__ == "__main__":
    main()
