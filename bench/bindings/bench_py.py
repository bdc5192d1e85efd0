"""sh("true") round trips through the Python binding: prints the median in microseconds."""
import statistics
import sys
import time

import airlock

n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
with airlock.Sandbox(boot_timeout=240) as sb:
    for _ in range(20):
        sb.sh("true")
    us = []
    for _ in range(n):
        t = time.perf_counter()
        assert sb.sh("true").exit_code == 0
        us.append((time.perf_counter() - t) * 1e6)
print(f"py_us={statistics.median(us):.1f}")
