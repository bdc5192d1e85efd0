"""bench/bindings, Python side: sh("true") round trips through the Python binding and, on the
same sandbox in the same process, through the C ABI (c_loop.so's bench_sh_loop, called with the
handle the binding created). Rounds alternate between the two so drift in the (nested, shared)
machine hits both alike. Prints c_ns and py_ns medians.
    bench_py.py C_LOOP_SO [N]"""
import ctypes
import statistics
import sys
import time

import airlock

loop_path = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 200
rounds = 10
per_round = max(1, n // rounds)

loop = ctypes.CDLL(loop_path)
loop.bench_sh_loop.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_double)]
loop.bench_sh_loop.restype = ctypes.c_int

with airlock.Sandbox(boot_timeout=600) as sb:
    handle = ctypes.cast(sb._h(), ctypes.c_void_p)  # internal: the binding's C handle

    def c_round(k):
        out = (ctypes.c_double * k)()
        rc = loop.bench_sh_loop(handle, k, out)
        if rc != 0:
            raise SystemExit(f"bench_sh_loop failed: {rc}")
        return list(out)

    def py_round(k):
        ns = []
        for _ in range(k):
            t = time.perf_counter_ns()
            r = sb.sh("true")
            ns.append(time.perf_counter_ns() - t)
            assert r.exit_code == 0
        return ns

    c_round(10)  # warm-up, both paths
    py_round(10)
    c_ns, py_ns = [], []
    for _ in range(rounds):
        c_ns += c_round(per_round)
        py_ns += py_round(per_round)
print(f"c_ns={statistics.median(c_ns):.0f} py_ns={statistics.median(py_ns):.0f} "
      f"n={len(py_ns)}")
