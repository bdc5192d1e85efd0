#define _GNU_SOURCE
/* The C ABI against a real sandbox (label kvm; nested runner in CI). One sandbox serves most
 * checks; a second one is destroyed while other threads are still calling it. */
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "airlock.h"
#include "check.h"

static airlock_sandbox* boot(void) {
  airlock_sandbox_options o;
  airlock_sandbox* sb = NULL;
  int rc;
  airlock_sandbox_options_init(&o);
  o.boot_timeout_ms = 240000; /* nested TCG runners are slow */
  rc = airlock_sandbox_create(&o, &sb);
  if (rc != AIRLOCK_OK) {
    fprintf(stderr, "create failed: %s: %s\n", airlock_status_name(rc), airlock_last_error());
    exit(1);
  }
  return sb;
}

struct collected {
  pthread_mutex_t lock;
  char data[4096];
  size_t len;
  int calls;
};

static void collect(const char* data, size_t len, void* user_data) {
  struct collected* c = (struct collected*)user_data;
  pthread_mutex_lock(&c->lock);
  if (c->len + len < sizeof c->data) {
    memcpy(c->data + c->len, data, len);
    c->len += len;
  }
  c->calls++;
  pthread_mutex_unlock(&c->lock);
}

static void commands(airlock_sandbox* sb) {
  airlock_exec_result r;
  airlock_exec_options eo;
  airlock_env_var env[1];
  const char* argv[] = {"no-such-program-here"};
  struct collected out;

  airlock_exec_result_init(&r);
  CHECK_RC(airlock_sandbox_sh(sb, "echo hello; echo oops >&2; exit 7", NULL, &r), AIRLOCK_OK);
  CHECK(r.exit_code == 7);
  CHECK(r.stdout_len == 6 && memcmp(r.stdout_data, "hello\n", 6) == 0);
  CHECK(r.stderr_len == 5 && memcmp(r.stderr_data, "oops\n", 5) == 0);
  airlock_exec_result_free(&r);
  CHECK(r.stdout_data == NULL);

  CHECK_RC(airlock_sandbox_exec(sb, argv, 1, NULL, &r), AIRLOCK_OK);
  CHECK(r.exit_code == 127);
  airlock_exec_result_free(&r);

  airlock_exec_options_init(&eo);
  env[0].name = "GREETING";
  env[0].value = "from C";
  eo.env = env;
  eo.env_count = 1;
  eo.cwd = "/tmp";
  eo.stdin_data = "abc";
  eo.stdin_len = 3;
  CHECK_RC(airlock_sandbox_sh(sb, "echo \"$GREETING $(pwd) $(cat)\"", &eo, &r), AIRLOCK_OK);
  CHECK(r.stdout_len == 16 && memcmp(r.stdout_data, "from C /tmp abc\n", 16) == 0);
  airlock_exec_result_free(&r);

  /* Streaming sh: output to the callback, not the result. */
  memset(&out, 0, sizeof out);
  pthread_mutex_init(&out.lock, NULL);
  airlock_exec_options_init(&eo);
  eo.on_stdout = collect;
  eo.user_data = &out;
  CHECK_RC(airlock_sandbox_sh(sb, "for i in 1 2 3; do echo line$i; done", &eo, &r), AIRLOCK_OK);
  CHECK(r.exit_code == 0 && r.stdout_len == 0);
  CHECK(out.len == 18 && memcmp(out.data, "line1\nline2\nline3\n", 18) == 0);
  airlock_exec_result_free(&r);

  /* Guest-side timeout. */
  airlock_exec_options_init(&eo);
  eo.timeout_ms = 500;
  CHECK_RC(airlock_sandbox_sh(sb, "sleep 30", &eo, &r), AIRLOCK_OK);
  CHECK(r.timed_out == 1);
  airlock_exec_result_free(&r);
}

static void processes(airlock_sandbox* sb) {
  const char* cat[] = {"cat"};
  const char* sleeper[] = {"sleep", "60"};
  airlock_spawn_options so;
  airlock_process* p = NULL;
  airlock_exec_result r;
  struct collected out;
  int pid = 0;

  memset(&out, 0, sizeof out);
  pthread_mutex_init(&out.lock, NULL);
  airlock_spawn_options_init(&so);
  so.on_stdout = collect;
  so.user_data = &out;
  CHECK_RC(airlock_sandbox_spawn(sb, cat, 1, &so, &p), AIRLOCK_OK);
  CHECK_RC(airlock_process_pid(p, &pid), AIRLOCK_OK);
  CHECK(pid > 1);
  CHECK_RC(airlock_process_write_stdin(p, "ping\n", 5, 0), AIRLOCK_OK);
  CHECK_RC(airlock_process_close_stdin(p), AIRLOCK_OK);
  airlock_exec_result_init(&r);
  CHECK_RC(airlock_process_wait(p, 60000, &r), AIRLOCK_OK);
  CHECK(r.exit_code == 0);
  CHECK(out.len == 5 && memcmp(out.data, "ping\n", 5) == 0);
  airlock_exec_result_free(&r);
  CHECK_RC(airlock_process_destroy(p), AIRLOCK_OK);
  /* Use after destroy: refused, not dereferenced. */
  CHECK_RC(airlock_process_kill(p, 9), AIRLOCK_E_INVALID_ARGUMENT);

  CHECK_RC(airlock_sandbox_spawn(sb, sleeper, 2, NULL, &p), AIRLOCK_OK);
  CHECK_RC(airlock_process_wait(p, 200, &r), AIRLOCK_E_TIMEOUT);
  CHECK_RC(airlock_process_kill(p, 15), AIRLOCK_OK);
  CHECK_RC(airlock_process_wait(p, 60000, &r), AIRLOCK_OK);
  CHECK(r.signal == 15);
  airlock_exec_result_free(&r);
  CHECK_RC(airlock_process_destroy(p), AIRLOCK_OK);
}

static void files_and_env(airlock_sandbox* sb) {
  char* buf = NULL;
  size_t len = 0;
  airlock_file_stat st;
  char host_path[] = "/tmp/airlock-capi-XXXXXX";
  int fd;
  FILE* f;
  char back[16];

  CHECK_RC(airlock_fs_write(sb, "/tmp/capi/a.bin", "x\0y", 3, 0600), AIRLOCK_OK);
  CHECK_RC(airlock_fs_read(sb, "/tmp/capi/a.bin", &buf, &len), AIRLOCK_OK);
  CHECK(len == 3 && memcmp(buf, "x\0y", 3) == 0);
  airlock_free(buf);
  airlock_file_stat_init(&st);
  CHECK_RC(airlock_fs_stat(sb, "/tmp/capi/a.bin", &st), AIRLOCK_OK);
  CHECK(st.type == AIRLOCK_FILE_REGULAR && st.size == 3 && st.mode == 0600);
  CHECK_RC(airlock_fs_stat(sb, "/tmp/capi", &st), AIRLOCK_OK);
  CHECK(st.type == AIRLOCK_FILE_DIRECTORY);
  CHECK_RC(airlock_fs_read(sb, "/tmp/capi/missing", &buf, &len), AIRLOCK_E_NOT_FOUND);
  CHECK(buf == NULL);
  CHECK_RC(airlock_fs_mkdir(sb, "/tmp/capi/d/e", 0, 1), AIRLOCK_OK);
  CHECK_RC(airlock_fs_remove(sb, "/tmp/capi", 1), AIRLOCK_OK);
  CHECK_RC(airlock_fs_stat(sb, "/tmp/capi", &st), AIRLOCK_E_NOT_FOUND);

  fd = mkstemp(host_path);
  CHECK(fd >= 0);
  CHECK(write(fd, "uploaded", 8) == 8);
  close(fd);
  CHECK_RC(airlock_fs_upload(sb, host_path, "/tmp/up.txt", -1), AIRLOCK_OK);
  unlink(host_path);
  CHECK_RC(airlock_fs_download(sb, "/tmp/up.txt", host_path), AIRLOCK_OK);
  f = fopen(host_path, "rb");
  CHECK(f != NULL);
  if (f) {
    memset(back, 0, sizeof back);
    CHECK(fread(back, 1, sizeof back, f) == 8 && memcmp(back, "uploaded", 8) == 0);
    fclose(f);
  }
  unlink(host_path);

  CHECK_RC(airlock_env_set(sb, "CAPI_VAR", "v1"), AIRLOCK_OK);
  CHECK_RC(airlock_env_get(sb, "CAPI_VAR", &buf), AIRLOCK_OK);
  CHECK(buf != NULL && strcmp(buf, "v1") == 0);
  airlock_free(buf);
  CHECK_RC(airlock_env_list(sb, &buf, &len), AIRLOCK_OK);
  CHECK(buf != NULL && len > 0 && memmem(buf, len, "CAPI_VAR=v1\0", 12) != NULL);
  airlock_free(buf);
  CHECK_RC(airlock_env_unset(sb, "CAPI_VAR"), AIRLOCK_OK);
  CHECK_RC(airlock_env_get(sb, "CAPI_VAR", &buf), AIRLOCK_OK);
  CHECK(buf == NULL);
  CHECK_RC(airlock_env_set(sb, "BAD=NAME", "x"), AIRLOCK_E_INVALID_ARGUMENT);
}

static void* many_sh(void* arg) {
  airlock_sandbox* sb = (airlock_sandbox*)arg;
  airlock_exec_result r;
  int i;
  for (i = 0; i < 5; i++) {
    airlock_exec_result_init(&r);
    CHECK_RC(airlock_sandbox_sh(sb, "echo $$", NULL, &r), AIRLOCK_OK);
    CHECK(r.exit_code == 0 && r.stdout_len > 1);
    airlock_exec_result_free(&r);
    CHECK_RC(airlock_sandbox_ping(sb, 30000), AIRLOCK_OK);
  }
  return NULL;
}

/* A sleep that may be cut short by destroy: must end with a clean error, not a hang. */
static void* doomed_sh(void* arg) {
  airlock_sandbox* sb = (airlock_sandbox*)arg;
  airlock_exec_result r;
  int rc;
  airlock_exec_result_init(&r);
  rc = airlock_sandbox_sh(sb, "sleep 120", NULL, &r);
  CHECK(rc == AIRLOCK_E_CLOSED || rc == AIRLOCK_E_INVALID_ARGUMENT);
  airlock_exec_result_free(&r);
  return NULL;
}

struct after_destroy {
  pthread_mutex_t lock;
  int destroyed;
  int late_calls;
  int destroy_rc_inside;
  airlock_sandbox* sb;
};

static void count_late(const char* data, size_t len, void* user_data) {
  struct after_destroy* a = (struct after_destroy*)user_data;
  (void)data;
  (void)len;
  pthread_mutex_lock(&a->lock);
  if (a->destroyed) a->late_calls++;
  pthread_mutex_unlock(&a->lock);
  /* Destroying the sandbox from its own callback is refused, not a deadlock. */
  if (a->destroy_rc_inside == 1) a->destroy_rc_inside = airlock_sandbox_destroy(a->sb);
  usleep(1000);
}

/* Stats, timeouts and an exposed HTTP server read with the host's curl. */
static void lifecycle(airlock_sandbox* sb) {
  airlock_sandbox_stats st;
  airlock_exec_result r;
  airlock_spawn_options so;
  airlock_process* httpd = NULL;
  const char* httpd_argv[] = {"busybox", "httpd", "-f", "-p", "127.0.0.1:8090", "-h", "/srv"};
  char *url = NULL, *again = NULL, cmd[256], body[256];
  size_t n;
  FILE* curl;

  airlock_sandbox_stats_init(&st);
  CHECK_RC(airlock_sandbox_stats_get(sb, &st), AIRLOCK_OK);
  CHECK(st.running == 1 && st.commands > 0 && st.vcpu_time_ns > 0 && st.uptime_ms > 0);
  CHECK(st.memory_bytes == 512ull << 20 && st.memory_resident_bytes > 0);
  CHECK(st.time_left_ms == -1);
  CHECK_RC(airlock_sandbox_extend(sb, 1000), AIRLOCK_E_INVALID_ARGUMENT); /* no timeout yet */
  CHECK_RC(airlock_sandbox_set_timeout(sb, 600000), AIRLOCK_OK);
  CHECK_RC(airlock_sandbox_extend(sb, 60000), AIRLOCK_OK);
  CHECK_RC(airlock_sandbox_stats_get(sb, &st), AIRLOCK_OK);
  CHECK(st.time_left_ms > 600000 && st.time_left_ms <= 660000);
  CHECK_RC(airlock_sandbox_set_timeout(sb, 0), AIRLOCK_OK);

  airlock_exec_result_init(&r);
  CHECK_RC(airlock_sandbox_sh(sb, "mkdir -p /srv && echo 'hello from the guest' > /srv/index.html",
                              NULL, &r),
           AIRLOCK_OK);
  airlock_exec_result_free(&r);
  airlock_spawn_options_init(&so);
  CHECK_RC(airlock_sandbox_spawn(sb, httpd_argv, 7, &so, &httpd), AIRLOCK_OK);
  CHECK_RC(airlock_sandbox_sh(sb,
                              "for i in $(seq 100); do wget -q -O /dev/null "
                              "http://127.0.0.1:8090/index.html && exit 0; sleep 0.1; done; "
                              "exit 1",
                              NULL, &r),
           AIRLOCK_OK);
  CHECK(r.exit_code == 0);
  airlock_exec_result_free(&r);
  CHECK_RC(airlock_sandbox_expose_http(sb, 8090, &url), AIRLOCK_OK);
  CHECK(url != NULL && strncmp(url, "http://127.0.0.1:", 17) == 0);
  CHECK_RC(airlock_sandbox_expose_port(sb, 8090, &again), AIRLOCK_OK);
  CHECK(again != NULL && url != NULL && strcmp(again, url + 7) == 0);
  if (url) {
    snprintf(cmd, sizeof cmd, "curl -sS --max-time 60 %s/index.html", url);
    curl = popen(cmd, "r");
    CHECK(curl != NULL);
    if (curl) {
      n = fread(body, 1, sizeof body - 1, curl);
      body[n] = 0;
      pclose(curl);
      CHECK(strcmp(body, "hello from the guest\n") == 0);
    }
  }
  airlock_free(url);
  airlock_free(again);
  CHECK_RC(airlock_process_destroy(httpd), AIRLOCK_OK);
}

static int remove_entry(const char* path, const struct stat* st, int flag, struct FTW* ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

/* Storage through the C ABI: the Debian root image (python3 is not in the initramfs) and a
 * volume in a store under the cwd (the build tree: the nested runner shares it; its /tmp is its
 * own). A file written in one sandbox is read in the next; a second writer is refused before
 * anything boots. Two boots. */
static void storage(void) {
  char store[4096];
  airlock_volume_mount vol;
  airlock_exec_result r;
  airlock_sandbox *sb = NULL, *second = NULL;
  const char* write_argv[] = {"python3", "-c", "open('/data/f', 'w').write('from C')"};
  char* list = NULL;
  size_t list_len = 0;
  int round;

  CHECK(getcwd(store, sizeof store - 64) != NULL);
  snprintf(store + strlen(store), 64, "/capi-vm-store-%d", (int)getpid());
  CHECK(mkdir(store, 0700) == 0);
  CHECK_RC(airlock_volume_create(store, "data", 64u << 20), AIRLOCK_OK);
  vol.name = "data";
  vol.path = "/data";
  vol.read_only = 0;
  for (round = 0; round < 2; round++) {
    airlock_sandbox_options o;
    int rc;
    airlock_sandbox_options_init(&o);
    o.boot_timeout_ms = 240000;
    o.root_image = "default";
    o.storage_dir = store;
    o.volumes = &vol;
    o.volumes_count = 1;
    sb = NULL;
    rc = airlock_sandbox_create(&o, &sb);
    CHECK_RC(rc, AIRLOCK_OK);
    if (rc != AIRLOCK_OK) break;
    airlock_exec_result_init(&r);
    if (round == 0) {
      CHECK_RC(airlock_sandbox_exec(sb, write_argv, 3, NULL, &r), AIRLOCK_OK);
      CHECK(r.exit_code == 0);
      if (r.exit_code != 0) fprintf(stderr, "python3: %.*s\n", (int)r.stderr_len, r.stderr_data);
      airlock_exec_result_free(&r);
      /* One writer at a time: refused while this sandbox holds the volume. */
      CHECK_RC(airlock_sandbox_create(&o, &second), AIRLOCK_E_UNAVAILABLE);
      CHECK(strstr(airlock_last_error(), "volume data") != NULL);
      CHECK(second == NULL);
      CHECK_RC(airlock_volume_list(store, &list, &list_len), AIRLOCK_OK);
      /* "data 67108864 ALLOCATED 1\n": in use. */
      CHECK(list != NULL && strncmp(list, "data 67108864 ", 14) == 0 && list_len >= 3 &&
            strcmp(list + list_len - 3, " 1\n") == 0);
      airlock_free(list);
    } else {
      CHECK_RC(airlock_sandbox_sh(sb, "cat /data/f && test -f /etc/debian_version", NULL, &r),
               AIRLOCK_OK);
      CHECK(r.exit_code == 0);
      CHECK(r.stdout_len == 6 && memcmp(r.stdout_data, "from C", 6) == 0);
      if (r.stdout_len != 6) fprintf(stderr, "read back: %.*s\n", (int)r.stdout_len, r.stdout_data);
      airlock_exec_result_free(&r);
    }
    CHECK_RC(airlock_sandbox_close(sb), AIRLOCK_OK);
    CHECK_RC(airlock_sandbox_destroy(sb), AIRLOCK_OK);
  }
  CHECK_RC(airlock_volume_remove(store, "data"), AIRLOCK_OK);
  nftw(store, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void) {
  airlock_sandbox* sb;
  pthread_t threads[6];
  const char* yes[] = {"sh", "-c", "while :; do echo y; done"};
  airlock_spawn_options so;
  airlock_process* p = NULL;
  struct after_destroy a;
  airlock_exec_result r;
  int i;

  sb = boot();
  CHECK_RC(airlock_sandbox_status(sb), AIRLOCK_OK);
  CHECK_RC(airlock_sandbox_ping(sb, 30000), AIRLOCK_OK);
  commands(sb);
  processes(sb);
  files_and_env(sb);
  lifecycle(sb);
  for (i = 0; i < 4; i++) pthread_create(&threads[i], NULL, many_sh, sb);
  for (i = 0; i < 4; i++) pthread_join(threads[i], NULL);

  /* Callbacks stop at destroy; destroy from inside a callback is refused. */
  memset(&a, 0, sizeof a);
  pthread_mutex_init(&a.lock, NULL);
  a.sb = sb;
  a.destroy_rc_inside = 1;
  airlock_spawn_options_init(&so);
  so.on_stdout = count_late;
  so.user_data = &a;
  CHECK_RC(airlock_sandbox_spawn(sb, yes, 3, &so, &p), AIRLOCK_OK);
  for (i = 0; i < 6; i++) pthread_create(&threads[i], NULL, doomed_sh, sb);
  usleep(1500 * 1000);
  CHECK_RC(airlock_sandbox_close(sb), AIRLOCK_OK);
  CHECK(airlock_sandbox_status(sb) == AIRLOCK_E_CLOSED);
  airlock_exec_result_init(&r);
  CHECK_RC(airlock_sandbox_sh(sb, "true", NULL, &r), AIRLOCK_E_CLOSED); /* use after close */
  CHECK_RC(airlock_sandbox_destroy(sb), AIRLOCK_OK);
  pthread_mutex_lock(&a.lock);
  a.destroyed = 1;
  pthread_mutex_unlock(&a.lock);
  for (i = 0; i < 6; i++) pthread_join(threads[i], NULL);
  usleep(300 * 1000);
  CHECK(a.late_calls == 0);
  CHECK(a.destroy_rc_inside == AIRLOCK_E_INVALID_ARGUMENT);
  /* The process handle outlives its sandbox: calls fail cleanly. */
  CHECK(airlock_process_wait(p, 1000, &r) != AIRLOCK_OK);
  CHECK_RC(airlock_process_destroy(p), AIRLOCK_OK);
  /* Use after destroy: refused. */
  CHECK_RC(airlock_sandbox_sh(sb, "true", NULL, &r), AIRLOCK_E_INVALID_ARGUMENT);
  CHECK_RC(airlock_sandbox_destroy(sb), AIRLOCK_E_INVALID_ARGUMENT);

  /* A second sandbox destroyed (without close) while calls run on other threads. */
  sb = boot();
  for (i = 0; i < 3; i++) pthread_create(&threads[i], NULL, doomed_sh, sb);
  usleep(1500 * 1000);
  CHECK_RC(airlock_sandbox_destroy(sb), AIRLOCK_OK);
  for (i = 0; i < 3; i++) pthread_join(threads[i], NULL);

  /* A third one with a 2 s timeout: it ends by itself (AIRLOCK_E_TIMEOUT); kill is then a no-op. */
  {
    airlock_sandbox_options o;
    airlock_sandbox_stats st;
    airlock_sandbox_options_init(&o);
    o.boot_timeout_ms = 240000;
    o.timeout_ms = 2000;
    o.max_lifetime_ms = 60000;
    sb = NULL;
    CHECK_RC(airlock_sandbox_create(&o, &sb), AIRLOCK_OK);
    if (sb) {
      CHECK_RC(airlock_sandbox_extend(sb, 120000), AIRLOCK_E_RESOURCE_EXHAUSTED);
      CHECK_RC(airlock_sandbox_sh(sb, "sleep 600", NULL, &r), AIRLOCK_E_TIMEOUT);
      CHECK(strstr(airlock_last_error(), "timed out") != NULL);
      CHECK_RC(airlock_sandbox_status(sb), AIRLOCK_E_TIMEOUT);
      airlock_sandbox_stats_init(&st);
      CHECK_RC(airlock_sandbox_stats_get(sb, &st), AIRLOCK_OK);
      CHECK(st.running == 0 && st.time_left_ms == -1 && st.commands == 1);
      CHECK_RC(airlock_sandbox_kill(sb), AIRLOCK_OK);
      CHECK_RC(airlock_sandbox_status(sb), AIRLOCK_E_TIMEOUT);
      CHECK_RC(airlock_sandbox_destroy(sb), AIRLOCK_OK);
    }
  }

  storage();

  if (failures) {
    fprintf(stderr, "%d checks failed\n", failures);
    return 1;
  }
  printf("vm ok\n");
  return 0;
}
