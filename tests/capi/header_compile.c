/* airlock.h must compile as strict C99 (-std=c99 -pedantic -Werror) and as C++ (this same file,
 * built once more as C++). It also checks the runtime agrees with the header on versions, status
 * names and the _init functions. */
#include "airlock.h"

#include <stdio.h>
#include <string.h>

static int failures = 0;
#define CHECK(cond)                                                  \
  do {                                                               \
    if (!(cond)) {                                                   \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                    \
    }                                                                \
  } while (0)

static void on_output(const char *data, size_t len, void *user_data) {
  (void)data;
  (void)len;
  (void)user_data;
}

int main(void) {
  airlock_sandbox_options so;
  airlock_exec_options eo;
  airlock_spawn_options po;
  airlock_exec_result r;
  airlock_file_stat st;
  airlock_output_fn fn = on_output;

  CHECK(airlock_abi_version() == AIRLOCK_ABI_VERSION);
  CHECK(strlen(airlock_version()) > 0);
  CHECK(strcmp(airlock_status_name(AIRLOCK_OK), "ok") == 0);
  CHECK(strcmp(airlock_status_name(AIRLOCK_E_TIMEOUT), "timeout") == 0);
  CHECK(strcmp(airlock_status_name(AIRLOCK_E_CLOSED), "closed") == 0);
  CHECK(strcmp(airlock_status_name(AIRLOCK_E_CANCELLED), "cancelled") == 0);
  CHECK(strcmp(airlock_status_name(-99), "unknown") == 0);
  CHECK(strcmp(airlock_status_name(5), "unknown") == 0);
  CHECK(airlock_last_error() != NULL);

  memset(&so, 0xff, sizeof so);
  airlock_sandbox_options_init(&so);
  CHECK(so.struct_size == sizeof so);
  CHECK(so.kernel_path == NULL && so.vcpus == 0 && so.on_console == NULL);
  airlock_exec_options_init(&eo);
  CHECK(eo.struct_size == sizeof eo);
  airlock_spawn_options_init(&po);
  CHECK(po.struct_size == sizeof po);
  po.on_stdout = fn;
  airlock_exec_result_init(&r);
  CHECK(r.struct_size == sizeof r && r.stdout_data == NULL && r.exit_code == -1);
  airlock_exec_result_free(&r);
  CHECK(r.struct_size == sizeof r);
  airlock_file_stat_init(&st);
  CHECK(st.struct_size == sizeof st);
  airlock_free(NULL);
  CHECK(airlock_sandbox_destroy(NULL) == AIRLOCK_OK);
  CHECK(airlock_process_destroy(NULL) == AIRLOCK_OK);

  if (failures) return 1;
  printf("header ok (abi %d, version %s)\n", airlock_abi_version(), airlock_version());
  return 0;
}
