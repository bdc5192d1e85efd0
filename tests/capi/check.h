/* CHECK for the C ABI tests that call from several threads: a failed condition is printed with
 * the calling thread's airlock_last_error() and counted in `failures`; main() returns non-zero
 * when it is. Include once per test program, after airlock.h. */
#ifndef AIRLOCK_TESTS_CAPI_CHECK_H
#define AIRLOCK_TESTS_CAPI_CHECK_H

#include <pthread.h>
#include <stdio.h>

static int failures = 0;
static pthread_mutex_t failures_lock = PTHREAD_MUTEX_INITIALIZER;
#define CHECK(cond)                                                                            \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, __LINE__, #cond, \
              airlock_last_error());                                                           \
      pthread_mutex_lock(&failures_lock);                                                      \
      failures++;                                                                              \
      pthread_mutex_unlock(&failures_lock);                                                    \
    }                                                                                          \
  } while (0)
#define CHECK_RC(expr, want) CHECK((expr) == (want))

#endif
