/* Misuse of the C ABI without a VM: NULL and bogus handles, wrong struct sizes, bad arguments,
 * thread-local errors, many threads at once. Every case must give a clear status, never a crash
 * or a hang. */
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "airlock.h"
#include "check.h"

static int contains(const char* haystack, const char* needle) {
  return strstr(haystack, needle) != NULL;
}

/* Every entry point with a NULL or never-created handle. */
static void null_and_bogus_handles(void) {
  char fake_storage[256];
  airlock_sandbox* fakes[2];
  airlock_process* fake_procs[2];
  airlock_exec_result r;
  airlock_file_stat st;
  char* buf = (char*)1;
  size_t len = 99;
  int pid = 0;
  const char* argv[] = {"true"};
  airlock_process* proc = (airlock_process*)1;
  int i;

  memset(fake_storage, 0xab, sizeof fake_storage);
  fakes[0] = NULL;
  fakes[1] = (airlock_sandbox*)(void*)fake_storage;
  fake_procs[0] = NULL;
  fake_procs[1] = (airlock_process*)(void*)fake_storage;

  for (i = 0; i < 2; i++) {
    airlock_sandbox* sb = fakes[i];
    airlock_process* p = fake_procs[i];
    airlock_exec_result_init(&r);
    airlock_file_stat_init(&st);
    CHECK_RC(airlock_sandbox_close(sb), AIRLOCK_E_INVALID_ARGUMENT);
    CHECK(contains(airlock_last_error(), "handle"));
    CHECK_RC(airlock_sandbox_status(sb), AIRLOCK_E_INVALID_ARGUMENT);
    CHECK_RC(airlock_sandbox_ping(sb, 10), AIRLOCK_E_INVALID_ARGUMENT);
    CHECK_RC(airlock_sandbox_console(sb, &buf, &len), AIRLOCK_E_INVALID_ARGUMENT);
    CHECK(buf == NULL && len == 0);
    CHECK_RC(airlock_sandbox_sh(sb, "true", NULL, &r), AIRLOCK_E_INVALID_ARGUMENT);
    CHECK(r.stdout_data == NULL);
    CHECK_RC(airlock_sandbox_exec(sb, argv, 1, NULL, &r), AIRLOCK_E_INVALID_ARGUMENT);
    CHECK_RC(airlock_sandbox_spawn(sb, argv, 1, NULL, &proc), AIRLOCK_E_INVALID_ARGUMENT);
    CHECK(proc == NULL);
    CHECK_RC(airlock_fs_write(sb, "/x", "a", 1, 0), AIRLOCK_E_INVALID_ARGUMENT);
    CHECK_RC(airlock_fs_read(sb, "/x", &buf, &len), AIRLOCK_E_INVALID_ARGUMENT);
    CHECK_RC(airlock_fs_upload(sb, "/etc/hostname", "/x", -1), AIRLOCK_E_INVALID_ARGUMENT);
    CHECK_RC(airlock_fs_download(sb, "/x", "/nonexistent/x"), AIRLOCK_E_INVALID_ARGUMENT);
    CHECK_RC(airlock_fs_mkdir(sb, "/x", 0, 1), AIRLOCK_E_INVALID_ARGUMENT);
    CHECK_RC(airlock_fs_stat(sb, "/x", &st), AIRLOCK_E_INVALID_ARGUMENT);
    CHECK_RC(airlock_fs_remove(sb, "/x", 0), AIRLOCK_E_INVALID_ARGUMENT);
    CHECK_RC(airlock_env_get(sb, "A", &buf), AIRLOCK_E_INVALID_ARGUMENT);
    CHECK_RC(airlock_env_list(sb, &buf, &len), AIRLOCK_E_INVALID_ARGUMENT);
    CHECK_RC(airlock_env_set(sb, "A", "b"), AIRLOCK_E_INVALID_ARGUMENT);
    CHECK_RC(airlock_env_unset(sb, "A"), AIRLOCK_E_INVALID_ARGUMENT);
    CHECK_RC(airlock_process_pid(p, &pid), AIRLOCK_E_INVALID_ARGUMENT);
    CHECK_RC(airlock_process_write_stdin(p, "a", 1, 10), AIRLOCK_E_INVALID_ARGUMENT);
    CHECK_RC(airlock_process_close_stdin(p), AIRLOCK_E_INVALID_ARGUMENT);
    CHECK_RC(airlock_process_kill(p, 9), AIRLOCK_E_INVALID_ARGUMENT);
    CHECK_RC(airlock_process_wait(p, 10, &r), AIRLOCK_E_INVALID_ARGUMENT);
  }
  /* Destroying a bogus (non-NULL) handle is refused, not dereferenced. */
  CHECK_RC(airlock_sandbox_destroy(fakes[1]), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK_RC(airlock_process_destroy(fake_procs[1]), AIRLOCK_E_INVALID_ARGUMENT);
  /* NULL out parameters. */
  CHECK_RC(airlock_sandbox_create(NULL, NULL), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK_RC(airlock_sandbox_sh(fakes[1], "true", NULL, NULL), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK(contains(airlock_last_error(), "result"));
  CHECK_RC(airlock_sandbox_exec(fakes[1], NULL, 0, NULL, &r), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK_RC(airlock_hook_deny(NULL, 403, "x"), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK_RC(airlock_hook_set_header(NULL, "a", "b"), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK_RC(airlock_hook_remove_header(NULL, "a"), AIRLOCK_E_INVALID_ARGUMENT);
}

/* Option structs: smaller than version 1 refused; larger accepted only with a zero tail. */
static void struct_sizes(void) {
  struct {
    airlock_sandbox_options o;
    unsigned char tail[32];
  } big;
  airlock_sandbox* sb = (airlock_sandbox*)1;
  airlock_exec_result r;

  airlock_sandbox_options_init(&big.o);
  big.o.struct_size = sizeof(size_t);
  CHECK_RC(airlock_sandbox_create(&big.o, &sb), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK(sb == NULL);
  CHECK(contains(airlock_last_error(), "struct_size"));
  big.o.struct_size = 0;
  CHECK_RC(airlock_sandbox_create(&big.o, &sb), AIRLOCK_E_INVALID_ARGUMENT);
  big.o.struct_size = (size_t)1 << 40;
  CHECK_RC(airlock_sandbox_create(&big.o, &sb), AIRLOCK_E_INVALID_ARGUMENT);

  /* A newer caller's bigger struct with an unknown field set: refused. */
  memset(big.tail, 0, sizeof big.tail);
  big.o.struct_size = sizeof big;
  big.tail[5] = 1;
  CHECK_RC(airlock_sandbox_create(&big.o, &sb), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK(contains(airlock_last_error(), "does not know"));
  /* With a zero tail it is accepted: the failure is now about the (missing) kernel. */
  big.tail[5] = 0;
  big.o.kernel_path = "/nonexistent/airlock-kernel";
  big.o.initramfs_path = "/nonexistent/airlock-initramfs";
  CHECK_RC(airlock_sandbox_create(&big.o, &sb), AIRLOCK_E_NOT_FOUND);
  CHECK(contains(airlock_last_error(), "/nonexistent/airlock-kernel"));
  CHECK(sb == NULL);

  /* Result structs must be initialised. */
  memset(&r, 0, sizeof r);
  CHECK_RC(airlock_sandbox_sh((airlock_sandbox*)1, "true", NULL, &r), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK(contains(airlock_last_error(), "struct_size"));
}

static void bad_arguments(void) {
  airlock_sandbox_options o;
  airlock_sandbox* sb = NULL;
  airlock_env_var env[1];
  const char* hosts[1];
  airlock_secret secret;

  airlock_sandbox_options_init(&o);
  o.env_count = 2; /* with env == NULL */
  CHECK_RC(airlock_sandbox_create(&o, &sb), AIRLOCK_E_INVALID_ARGUMENT);
  env[0].name = "A";
  env[0].value = NULL;
  o.env = env;
  o.env_count = 1;
  CHECK_RC(airlock_sandbox_create(&o, &sb), AIRLOCK_E_INVALID_ARGUMENT);

  /* Networking options: either wired through (then the missing kernel is reported) or refused
   * with "networking not built yet"; never silently ignored. */
  airlock_sandbox_options_init(&o);
  o.kernel_path = "/nonexistent/airlock-kernel";
  hosts[0] = "example.com";
  o.allow_net = hosts;
  o.allow_net_count = 1;
  {
    int rc = airlock_sandbox_create(&o, &sb);
    /* NOT_FOUND: the kernel. UNAVAILABLE/PERMISSION_DENIED: networking not built, or no
     * network namespace here (unprivileged). */
    CHECK(rc == AIRLOCK_E_NOT_FOUND || rc == AIRLOCK_E_UNAVAILABLE ||
          rc == AIRLOCK_E_PERMISSION_DENIED);
  }
  secret.name = "API_KEY";
  secret.value = "sk-not-a-real-key";
  secret.hosts = hosts;
  secret.hosts_count = 1;
  o.secrets = &secret;
  o.secrets_count = 1;
  {
    int rc = airlock_sandbox_create(&o, &sb);
    /* NOT_FOUND: the kernel. UNAVAILABLE/PERMISSION_DENIED: networking not built, or no
     * network namespace here (unprivileged). */
    CHECK(rc == AIRLOCK_E_NOT_FOUND || rc == AIRLOCK_E_UNAVAILABLE ||
          rc == AIRLOCK_E_PERMISSION_DENIED);
    /* The secret's value never appears in an error. */
    CHECK(!contains(airlock_last_error(), "sk-not-a-real-key"));
  }
  CHECK(sb == NULL);
}

/* airlock_last_error() is per thread. */
static void* other_thread_error(void* arg) {
  (void)arg;
  CHECK(strcmp(airlock_last_error(), "") == 0);
  CHECK_RC(airlock_env_set(NULL, "A", "b"), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK(contains(airlock_last_error(), "sandbox handle is NULL"));
  return NULL;
}

static void thread_local_errors(void) {
  pthread_t t;
  CHECK_RC(airlock_fs_read((airlock_sandbox*)1, NULL, NULL, NULL), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK(contains(airlock_last_error(), "out is NULL"));
  pthread_create(&t, NULL, other_thread_error, NULL);
  pthread_join(t, NULL);
  CHECK(contains(airlock_last_error(), "out is NULL"));
}

static void* hammer(void* arg) {
  int i;
  (void)arg;
  for (i = 0; i < 2000; i++) {
    null_and_bogus_handles();
    if (i % 100 == 0) struct_sizes();
  }
  return NULL;
}

/* The volume/snapshot store needs no VM: a fresh store in a temporary directory. */
static void storage(void) {
  char dir[] = "/tmp/airlock-capi-store-XXXXXX";
  char cmd[128];
  char* list = NULL;
  size_t len = 0;
  CHECK(mkdtemp(dir) != NULL);
  CHECK_RC(airlock_volume_create(dir, "data", 32u << 20), AIRLOCK_OK);
  CHECK_RC(airlock_volume_create(dir, "data", 32u << 20), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK_RC(airlock_volume_create(dir, "../escape", 32u << 20), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK_RC(airlock_volume_create(dir, NULL, 32u << 20), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK_RC(airlock_volume_list(dir, &list, &len), AIRLOCK_OK);
  CHECK(list != NULL && strncmp(list, "data 33554432 ", 14) == 0 && contains(list, " 0\n"));
  CHECK(len == (list ? strlen(list) : 0));
  airlock_free(list);
  CHECK_RC(airlock_volume_snapshot(dir, "data", "data-v1"), AIRLOCK_OK);
  CHECK_RC(airlock_volume_from_snapshot(dir, "data-v1", "copy"), AIRLOCK_OK);
  CHECK_RC(airlock_volume_from_snapshot(dir, "absent", "copy2"), AIRLOCK_E_NOT_FOUND);
  list = NULL;
  CHECK_RC(airlock_snapshot_list(dir, &list, NULL), AIRLOCK_OK);
  CHECK(list != NULL && strncmp(list, "data-v1 ", 8) == 0 && contains(list, " 0\n"));
  airlock_free(list);
  CHECK_RC(airlock_snapshot_remove(dir, "data-v1"), AIRLOCK_OK);
  CHECK_RC(airlock_snapshot_remove(dir, "data-v1"), AIRLOCK_E_NOT_FOUND);
  CHECK_RC(airlock_volume_remove(dir, "copy"), AIRLOCK_OK);
  CHECK_RC(airlock_volume_remove(dir, "data"), AIRLOCK_OK);
  list = NULL;
  CHECK_RC(airlock_volume_list(dir, &list, &len), AIRLOCK_OK);
  CHECK(len == 0);
  airlock_free(list);
  CHECK_RC(airlock_volume_list(dir, NULL, NULL), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK_RC(airlock_sandbox_snapshot(NULL, "x"), AIRLOCK_E_INVALID_ARGUMENT);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  CHECK(system(cmd) == 0);
}

/* Lifecycle, stats and exposed ports with bad handles and arguments. */
static void lifecycle(void) {
  char fake_storage[256];
  airlock_sandbox* fake = (airlock_sandbox*)(void*)fake_storage;
  airlock_sandbox_stats st;
  airlock_sandbox_options o;
  airlock_sandbox* sb = (airlock_sandbox*)1;
  char* addr = (char*)1;

  memset(fake_storage, 0xab, sizeof fake_storage);
  airlock_sandbox_stats_init(&st);
  CHECK(st.struct_size == sizeof st && st.time_left_ms == -1 && st.running == 0);
  CHECK_RC(airlock_sandbox_set_timeout(NULL, 1000), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK_RC(airlock_sandbox_extend(fake, 1000), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK_RC(airlock_sandbox_kill(NULL), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK_RC(airlock_sandbox_kill(fake), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK_RC(airlock_sandbox_stats_get(fake, &st), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK_RC(airlock_sandbox_stats_get(fake, NULL), AIRLOCK_E_INVALID_ARGUMENT);
  st.struct_size = 8;
  CHECK_RC(airlock_sandbox_stats_get(fake, &st), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK(contains(airlock_last_error(), "struct_size"));
  CHECK_RC(airlock_sandbox_expose_http(fake, 8080, &addr), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK(addr == NULL);
  CHECK_RC(airlock_sandbox_expose_port(fake, 8080, NULL), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK_RC(airlock_sandbox_expose_port(fake, 0, &addr), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK_RC(airlock_sandbox_expose_port(fake, 70000, &addr), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK(contains(airlock_last_error(), "65535"));
  /* Out-of-range sizes and lifetimes are refused before anything boots. */
  airlock_sandbox_options_init(&o);
  o.kernel_path = "/nonexistent/kernel";
  o.memory_bytes = 100ull << 20;
  CHECK_RC(airlock_sandbox_create(&o, &sb), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK(sb == NULL && contains(airlock_last_error(), "memory"));
  o.memory_bytes = 5ull << 30;
  CHECK_RC(airlock_sandbox_create(&o, &sb), AIRLOCK_E_INVALID_ARGUMENT);
  o.memory_bytes = 0;
  o.vcpus = 1000;
  CHECK_RC(airlock_sandbox_create(&o, &sb), AIRLOCK_E_INVALID_ARGUMENT);
  o.vcpus = 0;
  o.timeout_ms = 10000;
  o.max_lifetime_ms = 5000;
  CHECK_RC(airlock_sandbox_create(&o, &sb), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK(contains(airlock_last_error(), "max_lifetime"));
}

/* has_tap_fd/tap_fd (appended after version 1): the fd reaches the library and is checked before
 * anything boots; the caller's fd is borrowed; a version 1 caller (smaller struct_size) never
 * has its bytes past max_lifetime_ms read. */
static void tap_fd_option(void) {
  airlock_sandbox_options o;
  airlock_sandbox* sb = NULL;
  const char* hosts[1] = {"example.com"};
  int p[2];

  CHECK(pipe(p) == 0);
  airlock_sandbox_options_init(&o);
  o.kernel_path = "/nonexistent/airlock-kernel";
  o.initramfs_path = "/nonexistent/airlock-initramfs";
  o.allow_net = hosts;
  o.allow_net_count = 1;
  o.has_tap_fd = 1;
  o.tap_fd = p[0];
  CHECK_RC(airlock_sandbox_create(&o, &sb), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK(contains(airlock_last_error(), "tap_fd") && contains(airlock_last_error(), "tun/tap"));
  CHECK(sb == NULL);
  CHECK(fcntl(p[0], F_GETFD) >= 0); /* still the caller's */

  /* fd 0 is an fd like any other: with the flag set it is checked, not taken as "default". */
  o.tap_fd = 0;
  CHECK_RC(airlock_sandbox_create(&o, &sb), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK(contains(airlock_last_error(), "tap_fd (0)"));
  o.tap_fd = -5;
  CHECK_RC(airlock_sandbox_create(&o, &sb), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK(contains(airlock_last_error(), "tap_fd is negative"));

  /* Without allow_net a tap is refused too. */
  o.tap_fd = p[0];
  o.allow_net_count = 0;
  CHECK_RC(airlock_sandbox_create(&o, &sb), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK(contains(airlock_last_error(), "tap_fd needs allow_net"));

  /* A version 1 caller's struct ends at max_lifetime_ms: accepted, and the (garbage, to this
   * caller unknown) bytes after it are not read: the failure is the missing kernel. */
  o.struct_size = offsetof(airlock_sandbox_options, max_lifetime_ms) + sizeof(uint64_t);
  CHECK_RC(airlock_sandbox_create(&o, &sb), AIRLOCK_E_NOT_FOUND);
  CHECK(contains(airlock_last_error(), "/nonexistent/airlock-kernel"));
  o.struct_size = offsetof(airlock_sandbox_options, max_lifetime_ms);
  CHECK_RC(airlock_sandbox_create(&o, &sb), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK(contains(airlock_last_error(), "version 1"));
  CHECK(sb == NULL);
  close(p[0]);
  close(p[1]);
}

int main(void) {
  pthread_t threads[8];
  int i;
  null_and_bogus_handles();
  struct_sizes();
  bad_arguments();
  thread_local_errors();
  lifecycle();
  storage();
  tap_fd_option();
  for (i = 0; i < 8; i++) pthread_create(&threads[i], NULL, hammer, NULL);
  for (i = 0; i < 8; i++) pthread_join(threads[i], NULL);
  if (failures) {
    fprintf(stderr, "%d checks failed\n", failures);
    return 1;
  }
  printf("misuse ok\n");
  return 0;
}
