/*
 * airlock C ABI: run untrusted commands in a Linux microVM, from C or any language with a C FFI.
 *
 *   airlock_sandbox_options o;
 *   airlock_sandbox *sb;
 *   airlock_exec_result r;
 *   airlock_sandbox_options_init(&o);
 *   if (airlock_sandbox_create(&o, &sb) != AIRLOCK_OK) puts(airlock_last_error());
 *   airlock_exec_result_init(&r);
 *   airlock_sandbox_sh(sb, "ls -lh /", NULL, &r);   r.exit_code, r.stdout_data, r.stdout_len
 *   airlock_exec_result_free(&r);
 *   airlock_sandbox_destroy(sb);
 *
 * Conventions (all functions):
 *  - Every function that can fail returns an int status: AIRLOCK_OK (0) or a negative
 *    AIRLOCK_E_* code (the negated airlock::Errc). On failure airlock_last_error() holds a message
 *    for the calling thread; out parameters are left zeroed/NULL.
 *  - Handles are opaque. A destroyed or never-created handle is detected (AIRLOCK_E_INVALID_ARGUMENT)
 *    as long as its address was not reused by a later handle; NULL handles always are.
 *  - Option and result structs begin with `size_t struct_size`: set it with the *_init function
 *    (or sizeof). A size smaller than version 1 of the struct is refused; fields added later go
 *    at the end, so a smaller size from an older caller is accepted down to version 1 and the
 *    fields it lacks read as zero (their default); a larger one is accepted when the bytes this
 *    library does not know are zero (else AIRLOCK_E_INVALID_ARGUMENT).
 *  - Strings are NUL-terminated UTF-8 unless a length is given. Input pointers are borrowed for
 *    the duration of the call only; the library copies what it keeps.
 *  - Memory the library returns (char ** out parameters, result buffers) is owned by the caller
 *    and freed with airlock_free() / airlock_exec_result_free().
 *  - Threads: every function may be called from any thread, concurrently, unless noted. Blocking
 *    calls (create, sh, exec, wait, fs, env) block only the calling thread.
 *  - Callbacks receive the `user_data` given with them and run on internal library threads (noted
 *    per callback). They must not block for long and must not destroy the object whose callback
 *    they are running (that call fails with AIRLOCK_E_INVALID_ARGUMENT instead of deadlocking).
 *    No callback of a sandbox or process runs after airlock_sandbox_destroy() /
 *    airlock_process_destroy() returns: destroy waits for callbacks already running.
 *  - Nothing throws, exits or aborts: internal failures are AIRLOCK_E_INTERNAL.
 */
#ifndef AIRLOCK_H
#define AIRLOCK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && defined(AIRLOCK_BUILDING_LIBRARY)
#define AIRLOCK_API __attribute__((visibility("default")))
#else
#define AIRLOCK_API
#endif

/* The ABI version this header describes; bumped only on incompatible changes. */
#define AIRLOCK_ABI_VERSION 1

/* ---- Status codes (negated airlock::Errc) ---- */
#define AIRLOCK_OK 0
#define AIRLOCK_E_INVALID_ARGUMENT (-1)
#define AIRLOCK_E_NOT_FOUND (-2)
#define AIRLOCK_E_PERMISSION_DENIED (-3)
#define AIRLOCK_E_UNAVAILABLE (-4)
#define AIRLOCK_E_IO (-5)
#define AIRLOCK_E_TIMEOUT (-6)
#define AIRLOCK_E_CLOSED (-7)
#define AIRLOCK_E_PROTOCOL (-8)
#define AIRLOCK_E_RESOURCE_EXHAUSTED (-9)
#define AIRLOCK_E_DENIED (-10)
#define AIRLOCK_E_BAD_IMAGE (-11)
#define AIRLOCK_E_INTERNAL (-12)
#define AIRLOCK_E_CANCELLED (-13)

typedef struct airlock_sandbox airlock_sandbox;
typedef struct airlock_process airlock_process;
typedef struct airlock_hook_decision airlock_hook_decision;

/* ---- Library ---- */

/* "0.1.0". Static storage; any thread. */
AIRLOCK_API const char *airlock_version(void);
/* AIRLOCK_ABI_VERSION of the loaded library. Any thread. */
AIRLOCK_API int airlock_abi_version(void);
/* The calling thread's last error message ("" if none). Valid until the thread's next airlock
 * call; never NULL. Messages never contain secret values. */
AIRLOCK_API const char *airlock_last_error(void);
/* "timeout", "closed", ... for a status code ("unknown" otherwise). Static storage. */
AIRLOCK_API const char *airlock_status_name(int status);
/* Frees memory returned by this library. NULL is ignored. */
AIRLOCK_API void airlock_free(void *ptr);

/* ---- Options ---- */

typedef struct airlock_env_var {
  const char *name;
  const char *value;
} airlock_env_var;

/* A real credential. The guest gets environment variable `name` holding a placeholder; the egress
 * proxy replaces the placeholder by `value` only on requests to `hosts` (allow_net patterns). */
typedef struct airlock_secret {
  const char *name;
  const char *value;
  const char *const *hosts;
  size_t hosts_count;
} airlock_secret;

typedef struct airlock_header {
  const char *name;
  const char *value;
} airlock_header;

#define AIRLOCK_DECISION_ALLOWED 0
#define AIRLOCK_DECISION_DENIED 1
#define AIRLOCK_DECISION_ERROR 2

/* One request through the egress proxy. All pointers are valid only during the callback. */
typedef struct airlock_audit_event {
  size_t struct_size;
  int64_t time_unix_ns;
  uint64_t connection_id;
  const char *client;
  const char *method;
  const char *scheme;
  const char *host;
  uint32_t port;
  const char *path; /* secrets redacted to placeholders */
  int status;       /* HTTP status sent to the guest, 0 if none */
  uint64_t bytes_up;
  uint64_t bytes_down;
  int64_t duration_us;
  int decision; /* AIRLOCK_DECISION_* */
  const char *reason;
  const char *const *secrets_substituted; /* names only */
  size_t secrets_substituted_count;
  int exfiltration_attempt;
} airlock_audit_event;

/* A request about to go upstream (after policy, before secret substitution). Pointers are valid
 * only during the hook. */
typedef struct airlock_hook_request {
  size_t struct_size;
  const char *method;
  const char *scheme;
  const char *host;
  uint32_t port;
  const char *target;
  const airlock_header *headers;
  size_t headers_count;
} airlock_hook_request;

/* Runs on an internal library thread (console reader). `data` is not NUL-terminated. */
typedef void (*airlock_output_fn)(const char *data, size_t len, void *user_data);
/* Runs on a proxy worker thread. */
typedef void (*airlock_audit_fn)(const airlock_audit_event *event, void *user_data);
/* Runs on a proxy worker thread. Allow by leaving `decision` alone (optionally adding or removing
 * headers), deny with airlock_hook_deny(). A non-zero return denies the request (fail closed). */
typedef int (*airlock_hook_fn)(const airlock_hook_request *request,
                               airlock_hook_decision *decision, void *user_data);

/* Hook helpers: only valid on the `decision` passed to a running hook, from the hook's thread.
 * Strings are copied. */
AIRLOCK_API int airlock_hook_deny(airlock_hook_decision *decision, int http_status,
                                  const char *message);
AIRLOCK_API int airlock_hook_set_header(airlock_hook_decision *decision, const char *name,
                                        const char *value);
AIRLOCK_API int airlock_hook_remove_header(airlock_hook_decision *decision, const char *name);

/* A volume of the store mounted in the guest (airlock_sandbox_options.volumes). */
typedef struct airlock_volume_mount {
  const char *name;  /* the volume (airlock_volume_create) */
  const char *path;  /* absolute guest path; created if missing */
  int read_only;     /* nonzero: read-only, may be shared; else one writer at a time */
} airlock_volume_mount;

typedef struct airlock_sandbox_options {
  size_t struct_size;
  const char *kernel_path;    /* NULL: the cached default */
  const char *initramfs_path; /* NULL: the cached default */
  uint64_t memory_bytes;      /* 0: default (512 MiB) */
  uint32_t vcpus;             /* 0: default (2) */
  uint32_t boot_timeout_ms;   /* 0: default (30 s) */
  const airlock_env_var *env; /* default environment of every command */
  size_t env_count;
  /* Egress: hosts the guest may reach ("api.example.com", "*.example.com", "host:port").
   * Empty: no network. */
  const char *const *allow_net;
  size_t allow_net_count;
  const airlock_secret *secrets;
  size_t secrets_count;
  airlock_output_fn on_console; /* guest console output; internal VMM thread */
  void *console_user_data;
  airlock_audit_fn on_audit; /* one event per proxied request */
  void *audit_user_data;
  airlock_hook_fn request_hook;
  void *hook_user_data;
  /* How long the proxy waits for request_hook's decision; past it the request is refused with
   * 403 and the late decision is dropped. 0: default (2000 ms). */
  uint32_t hook_deadline_ms;
  /* Upstream name overrides, like curl --resolve: name "host" or "host:port", value an IP
   * literal. Mostly for tests against local upstreams. */
  const airlock_env_var *resolve_override;
  size_t resolve_override_count;
  /* PEM files of extra CAs trusted for upstream TLS (tests with local upstreams). */
  const char *const *extra_ca_files;
  size_t extra_ca_files_count;
  /* ---- storage (volumes and snapshots: the functions under "Storage" below) ---- */
  /* Root filesystem: NULL root_image and root_snapshot keep the initramfs as the root. "default":
   * the cached Debian image (scripts/build-rootfs.sh); else an ext4 image path. root_snapshot: a
   * root snapshot (airlock_sandbox_snapshot) to boot from. */
  const char *root_image;
  const char *root_snapshot;
  /* Nonzero: the root's writable layer is a disk (root_upper_bytes, 0: 4 GiB) instead of memory,
   * so airlock_sandbox_snapshot works. */
  int snapshottable_root;
  uint64_t root_upper_bytes;
  const airlock_volume_mount *volumes;
  size_t volumes_count;
  const char *storage_dir; /* the store of volumes and snapshots; NULL: the default */
  /* ---- lifecycle ---- */
  /* The sandbox is killed, and everything it holds freed, this long after create returns; its
   * status is then AIRLOCK_E_TIMEOUT. 0: no timeout. airlock_sandbox_set_timeout/extend move it. */
  uint64_t timeout_ms;
  /* Hard cap no set_timeout/extend may pass (AIRLOCK_E_RESOURCE_EXHAUSTED). 0: none. */
  uint64_t max_lifetime_ms;
  /* ---- added after version 1: a version 1 caller's smaller struct_size leaves them 0 ---- */
  /* Caller-tap networking (README "Network privileges"). has_tap_fd 0 (the default): airlock
   * makes a network namespace and a tap itself, which needs root. Nonzero: tap_fd is a tap the
   * caller opened with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR (fd 0 is a valid value, hence the
   * flag), e.g. from a privileged helper; its host side must be up with 10.213.0.1/30 in the
   * network namespace of the thread calling airlock_sandbox_create. create needs no privilege
   * then. Ownership: borrowed; airlock duplicates the fd and never closes the caller's (close it
   * whenever you like after create returns). Needs allow_net; an fd that is not such a tap is
   * AIRLOCK_E_INVALID_ARGUMENT naming tap_fd, checked before anything boots. */
  int has_tap_fd;
  int tap_fd;
} airlock_sandbox_options;

typedef struct airlock_exec_options {
  size_t struct_size;
  const airlock_env_var *env; /* over the sandbox's defaults */
  size_t env_count;
  const char *cwd;          /* NULL: "/" */
  uint64_t timeout_ms;      /* enforced in the guest (process group SIGKILLed); 0: none */
  uint64_t wait_timeout_ms; /* host side wait; 0: timeout + 10 s, or 1 hour */
  const void *stdin_data;   /* piped to stdin, which is then closed */
  size_t stdin_len;
  /* Optional streaming: output is delivered here as it arrives (on an internal thread) instead
   * of being collected into the result. */
  airlock_output_fn on_stdout;
  airlock_output_fn on_stderr;
  void *user_data;
} airlock_exec_options;

typedef struct airlock_spawn_options {
  size_t struct_size;
  const airlock_env_var *env;
  size_t env_count;
  const char *cwd;
  uint64_t timeout_ms;
  /* Output goes to the callbacks (internal thread) as it arrives; a stream without one is
   * collected for airlock_process_wait(). */
  airlock_output_fn on_stdout;
  airlock_output_fn on_stderr;
  void *user_data;
} airlock_spawn_options;

/* Library-owned buffers: free with airlock_exec_result_free(). */
typedef struct airlock_exec_result {
  size_t struct_size;
  int exit_code; /* -1 when killed by a signal */
  int signal;
  int timed_out;
  char *stdout_data; /* NUL-terminated for convenience; may contain NULs (use the length) */
  size_t stdout_len;
  char *stderr_data;
  size_t stderr_len;
} airlock_exec_result;

#define AIRLOCK_FILE_OTHER 0
#define AIRLOCK_FILE_REGULAR 1
#define AIRLOCK_FILE_DIRECTORY 2
#define AIRLOCK_FILE_SYMLINK 3

typedef struct airlock_file_stat {
  size_t struct_size;
  int type; /* AIRLOCK_FILE_* */
  uint32_t mode;
  uint64_t size;
  int64_t mtime_ns;
} airlock_file_stat;

/* Zero the struct and set struct_size (and nothing else: zero means "default" everywhere). */
AIRLOCK_API void airlock_sandbox_options_init(airlock_sandbox_options *options);
AIRLOCK_API void airlock_exec_options_init(airlock_exec_options *options);
AIRLOCK_API void airlock_spawn_options_init(airlock_spawn_options *options);
AIRLOCK_API void airlock_exec_result_init(airlock_exec_result *result);
AIRLOCK_API void airlock_file_stat_init(airlock_file_stat *stat);
/* Frees the buffers and re-initialises the result. NULL is ignored. */
AIRLOCK_API void airlock_exec_result_free(airlock_exec_result *result);

/* ---- Sandbox ---- */

/* Boots a microVM and waits for its agent. On success *out owns a sandbox: destroy it with
 * airlock_sandbox_destroy(). Callbacks in `options` may run from now until destroy returns. */
AIRLOCK_API int airlock_sandbox_create(const airlock_sandbox_options *options,
                                       airlock_sandbox **out);
/* Stops the microVM: running and later calls fail with AIRLOCK_E_CLOSED. The handle stays valid
 * until destroyed. Idempotent. */
AIRLOCK_API int airlock_sandbox_close(airlock_sandbox *sandbox);
/* Closes (if needed), waits for running callbacks, releases the handle. Processes spawned from it
 * stay valid handles but fail with AIRLOCK_E_CLOSED. NULL is ignored (returns AIRLOCK_OK).
 * Calls still running on other threads fail and return normally. */
AIRLOCK_API int airlock_sandbox_destroy(airlock_sandbox *sandbox);
/* AIRLOCK_OK while running, else why it ended (message in airlock_last_error()). */
AIRLOCK_API int airlock_sandbox_status(airlock_sandbox *sandbox);
/* Round trip to the guest agent. */
AIRLOCK_API int airlock_sandbox_ping(airlock_sandbox *sandbox, uint64_t timeout_ms);
/* Guest console output so far (bounded). *out: airlock_free(). */
AIRLOCK_API int airlock_sandbox_console(airlock_sandbox *sandbox, char **out, size_t *out_len);

/* `/bin/sh -c command`. `options` may be NULL. `result` must be initialised
 * (airlock_exec_result_init); it is filled on AIRLOCK_OK, including for non-zero exit codes. */
AIRLOCK_API int airlock_sandbox_sh(airlock_sandbox *sandbox, const char *command,
                                   const airlock_exec_options *options,
                                   airlock_exec_result *result);
/* argv[0] is looked up in PATH (missing: exit code 127). argc >= 1. */
AIRLOCK_API int airlock_sandbox_exec(airlock_sandbox *sandbox, const char *const *argv,
                                     size_t argc, const airlock_exec_options *options,
                                     airlock_exec_result *result);

/* ---- Processes ---- */

/* Starts a command; *out: destroy with airlock_process_destroy() (kills it if still running). */
AIRLOCK_API int airlock_sandbox_spawn(airlock_sandbox *sandbox, const char *const *argv,
                                      size_t argc, const airlock_spawn_options *options,
                                      airlock_process **out);
AIRLOCK_API int airlock_process_pid(airlock_process *process, int *pid);
/* Blocks while more than 1 MiB sent is not yet consumed; 0 timeout: 30 s. */
AIRLOCK_API int airlock_process_write_stdin(airlock_process *process, const void *data,
                                            size_t len, uint64_t timeout_ms);
AIRLOCK_API int airlock_process_close_stdin(airlock_process *process);
/* Signals the command's process group (signal 0: SIGKILL). */
AIRLOCK_API int airlock_process_kill(airlock_process *process, int signal);
/* AIRLOCK_E_TIMEOUT when still running after timeout_ms (it keeps running; wait again).
 * The result holds the collected output of streams without a callback. */
AIRLOCK_API int airlock_process_wait(airlock_process *process, uint64_t timeout_ms,
                                     airlock_exec_result *result);
/* Kills the command if running, waits for its running callbacks, releases the handle. NULL is
 * ignored. */
AIRLOCK_API int airlock_process_destroy(airlock_process *process);

/* ---- Files (guest paths) ---- */

/* Creates or truncates (parents created). mode 0: 0644. */
AIRLOCK_API int airlock_fs_write(airlock_sandbox *sandbox, const char *path, const void *data,
                                 size_t len, uint32_t mode);
/* *out (NUL-terminated, may contain NULs): airlock_free(). */
AIRLOCK_API int airlock_fs_read(airlock_sandbox *sandbox, const char *path, char **out,
                                size_t *out_len);
/* mode < 0: the host file's mode. */
AIRLOCK_API int airlock_fs_upload(airlock_sandbox *sandbox, const char *host_path,
                                  const char *guest_path, int mode);
AIRLOCK_API int airlock_fs_download(airlock_sandbox *sandbox, const char *guest_path,
                                    const char *host_path);
/* mode 0: 0755. */
AIRLOCK_API int airlock_fs_mkdir(airlock_sandbox *sandbox, const char *path, uint32_t mode,
                                 int parents);
AIRLOCK_API int airlock_fs_stat(airlock_sandbox *sandbox, const char *path,
                                airlock_file_stat *out);
AIRLOCK_API int airlock_fs_remove(airlock_sandbox *sandbox, const char *path, int recursive);

/* ---- Storage: volumes and snapshots ----
 * store_dir NULL: ${AIRLOCK_CACHE_DIR:-~/.cache/airlock}. Names: 1-64 of [A-Za-z0-9._-], not
 * starting with '.' or '-'. A volume attached read-write to a running sandbox cannot be attached
 * again, snapshotted or removed (AIRLOCK_E_UNAVAILABLE naming it). Lists are one line per entry,
 * "NAME SIZE_BYTES ALLOCATED_BYTES FLAG\n", FLAG 1 when a volume is in use / a snapshot is of a
 * sandbox root; *out: airlock_free(). */
AIRLOCK_API int airlock_volume_create(const char *store_dir, const char *name, uint64_t size_bytes);
AIRLOCK_API int airlock_volume_list(const char *store_dir, char **out, size_t *out_len);
AIRLOCK_API int airlock_volume_remove(const char *store_dir, const char *name);
/* A read-only snapshot of a volume no sandbox has attached. */
AIRLOCK_API int airlock_volume_snapshot(const char *store_dir, const char *volume,
                                        const char *snapshot);
/* A new volume holding a copy of a snapshot. */
AIRLOCK_API int airlock_volume_from_snapshot(const char *store_dir, const char *snapshot,
                                             const char *volume);
AIRLOCK_API int airlock_snapshot_list(const char *store_dir, char **out, size_t *out_len);
AIRLOCK_API int airlock_snapshot_remove(const char *store_dir, const char *name);
/* A snapshot of a running sandbox's root, into its options' store (needs snapshottable_root);
 * boot it with airlock_sandbox_options.root_snapshot. */
AIRLOCK_API int airlock_sandbox_snapshot(airlock_sandbox *sandbox, const char *name);

/* ---- Lifecycle, metering, exposed ports ----
 * memory_bytes must be 256 MiB to 4 GiB in whole MiB and vcpus 1 to 64, else create fails with
 * AIRLOCK_E_INVALID_ARGUMENT. */

/* Metering figures (airlock_sandbox_stats); frozen at their final values once the sandbox ended. */
typedef struct airlock_sandbox_stats {
  size_t struct_size;
  uint64_t uptime_ms;             /* since create was called, until now or the end */
  uint64_t vcpu_time_ns;          /* CPU time of the vCPU threads, summed */
  uint64_t memory_bytes;          /* guest RAM configured */
  uint64_t memory_resident_bytes; /* guest RAM the host actually backs */
  uint64_t net_bytes_up;          /* through the egress proxy, to upstreams */
  uint64_t net_bytes_down;        /* through the egress proxy, back to the guest */
  uint64_t net_requests;          /* requests the proxy handled */
  uint64_t commands;              /* commands started (sh, exec, spawn) */
  int64_t time_left_ms;           /* until the timeout or max lifetime; -1: no limit or ended */
  int running;                    /* nonzero while the sandbox runs */
} airlock_sandbox_stats;
AIRLOCK_API void airlock_sandbox_stats_init(airlock_sandbox_stats *stats);

/* The sandbox is killed timeout_ms from now (0: no timeout; max_lifetime_ms still applies).
 * AIRLOCK_E_RESOURCE_EXHAUSTED when that passes max_lifetime_ms. */
AIRLOCK_API int airlock_sandbox_set_timeout(airlock_sandbox *sandbox, uint64_t timeout_ms);
/* Pushes the current timeout back by more_ms (> 0). AIRLOCK_E_INVALID_ARGUMENT without a
 * timeout; AIRLOCK_E_RESOURCE_EXHAUSTED past max_lifetime_ms (the timeout is then unchanged). */
AIRLOCK_API int airlock_sandbox_extend(airlock_sandbox *sandbox, uint64_t more_ms);
/* Ends the sandbox at once (no graceful flush, unlike close) and frees what it holds; running
 * calls fail with AIRLOCK_E_CLOSED. The handle stays valid until destroyed. Idempotent. */
AIRLOCK_API int airlock_sandbox_kill(airlock_sandbox *sandbox);
/* `stats` must be initialised (airlock_sandbox_stats_init). Works after the sandbox ended. */
AIRLOCK_API int airlock_sandbox_stats_get(airlock_sandbox *sandbox, airlock_sandbox_stats *stats);
/* Forwards a new host listener on 127.0.0.1 (ephemeral port) to TCP port guest_port (1-65535)
 * on the guest's loopback; *address: "127.0.0.1:PORT", airlock_free(). The same address for the
 * same port again. Connections close when the sandbox ends. */
AIRLOCK_API int airlock_sandbox_expose_port(airlock_sandbox *sandbox, uint32_t guest_port,
                                            char **address);
/* As expose_port; *url: "http://127.0.0.1:PORT", airlock_free(). */
AIRLOCK_API int airlock_sandbox_expose_http(airlock_sandbox *sandbox, uint32_t guest_port,
                                            char **url);

/* ---- Default environment of later commands ---- */

/* *value: airlock_free(); NULL (with AIRLOCK_OK) when the variable is not set. */
AIRLOCK_API int airlock_env_get(airlock_sandbox *sandbox, const char *name, char **value);
/* All variables as "NAME=VALUE\0NAME=VALUE\0" (out_len counts every byte). *out: airlock_free(). */
AIRLOCK_API int airlock_env_list(airlock_sandbox *sandbox, char **out, size_t *out_len);
AIRLOCK_API int airlock_env_set(airlock_sandbox *sandbox, const char *name, const char *value);
AIRLOCK_API int airlock_env_unset(airlock_sandbox *sandbox, const char *name);

#ifdef __cplusplus
}
#endif

#endif /* AIRLOCK_H */
