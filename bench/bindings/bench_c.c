/* sh("true") round trips through the C ABI: prints the median in microseconds. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "airlock.h"

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 200, i;
  double *us = malloc(sizeof(double) * (size_t)n);
  airlock_sandbox_options o;
  airlock_sandbox *sb;
  airlock_exec_result r;
  airlock_sandbox_options_init(&o);
  o.boot_timeout_ms = 240000;
  if (airlock_sandbox_create(&o, &sb) != AIRLOCK_OK) {
    fprintf(stderr, "create: %s\n", airlock_last_error());
    return 1;
  }
  airlock_exec_result_init(&r);
  for (i = 0; i < 20; i++) { airlock_sandbox_sh(sb, "true", NULL, &r); airlock_exec_result_free(&r); }
  for (i = 0; i < n; i++) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    if (airlock_sandbox_sh(sb, "true", NULL, &r) != AIRLOCK_OK || r.exit_code != 0) return 1;
    clock_gettime(CLOCK_MONOTONIC, &b);
    airlock_exec_result_free(&r);
    us[i] = (b.tv_sec - a.tv_sec) * 1e6 + (b.tv_nsec - a.tv_nsec) / 1e3;
  }
  qsort(us, (size_t)n, sizeof(double), cmp);
  printf("c_us=%.1f\n", us[n / 2]);
  airlock_sandbox_destroy(sb);
  return 0;
}
