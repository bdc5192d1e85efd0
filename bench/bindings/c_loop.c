/* bench/bindings helper, built only by run.sh: the C side of the comparison, run on a sandbox
 * handle that the Python binding created (loaded with ctypes; this library's libairlock.so.0
 * is the very copy the binding loaded, so the handle is valid here). Node measures its C side
 * with the addon's internal _benchShLoop, the same loop over the same C ABI call. */
#include <stddef.h>
#include <time.h>

#include "airlock.h"

/* Runs sh("true") n times on sb and stores each round trip in ns_out[i] (nanoseconds).
 * Returns 0, or the failing call's status code (airlock_last_error() says why; -1000 when
 * `true` did not exit 0). The calling thread blocks; ctypes releases the GIL around it. */
int bench_sh_loop(airlock_sandbox *sb, int n, double *ns_out) {
  airlock_exec_result r;
  int i, rc;
  airlock_exec_result_init(&r);
  for (i = 0; i < n; i++) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    rc = airlock_sandbox_sh(sb, "true", NULL, &r);
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (rc != AIRLOCK_OK) return rc;
    rc = r.exit_code;
    airlock_exec_result_free(&r);
    if (rc != 0) return -1000;
    ns_out[i] = (double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec);
  }
  return 0;
}
