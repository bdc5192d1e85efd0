// Node addon over the C ABI (capi/airlock.h), plain node_api.h. index.js is the public API.
//
// Every blocking call runs as napi_async_work on libuv's pool and settles a Promise, so nothing
// blocks the event loop. Output callbacks arrive on library threads and reach JS through a
// thread-safe function; when a call streams, its completion goes through the same thread-safe
// function after the data, so every chunk is delivered before the Promise settles. A JS callback
// that throws does not crash: the error is kept and the call's Promise rejects with it.
// Threads: JS entry points run on the main thread; Job::work runs on pool threads.
#include <node_api.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <dlfcn.h>

#include "airlock.h"

namespace {

// libairlock is opened with RTLD_DEEPBIND instead of being linked: node exports its own
// (OpenSSL) libcrypto symbols, which would otherwise be bound in place of BoringSSL's inside
// libairlock's dependencies and crash. These pointers shadow the header's functions in this
// namespace, so the code below reads like plain C ABI calls.
#define AIRLOCK_FUNCTIONS(X)      \
  X(airlock_abi_version)          \
  X(airlock_env_get)              \
  X(airlock_env_list)             \
  X(airlock_env_set)              \
  X(airlock_env_unset)            \
  X(airlock_exec_options_init)    \
  X(airlock_exec_result_free)     \
  X(airlock_exec_result_init)     \
  X(airlock_file_stat_init)       \
  X(airlock_free)                 \
  X(airlock_fs_download)          \
  X(airlock_fs_mkdir)             \
  X(airlock_fs_read)              \
  X(airlock_fs_remove)            \
  X(airlock_fs_stat)              \
  X(airlock_fs_upload)            \
  X(airlock_fs_write)             \
  X(airlock_hook_deny)            \
  X(airlock_hook_remove_header)   \
  X(airlock_hook_set_header)      \
  X(airlock_last_error)           \
  X(airlock_process_close_stdin)  \
  X(airlock_process_destroy)      \
  X(airlock_process_kill)         \
  X(airlock_process_pid)          \
  X(airlock_process_wait)         \
  X(airlock_process_write_stdin)  \
  X(airlock_sandbox_close)        \
  X(airlock_sandbox_console)      \
  X(airlock_sandbox_create)       \
  X(airlock_sandbox_destroy)      \
  X(airlock_sandbox_exec)         \
  X(airlock_sandbox_expose_http)  \
  X(airlock_sandbox_expose_port)  \
  X(airlock_sandbox_extend)       \
  X(airlock_sandbox_kill)         \
  X(airlock_sandbox_options_init) \
  X(airlock_sandbox_ping)         \
  X(airlock_sandbox_set_timeout)  \
  X(airlock_sandbox_sh)           \
  X(airlock_sandbox_snapshot)     \
  X(airlock_sandbox_spawn)        \
  X(airlock_sandbox_stats_get)    \
  X(airlock_sandbox_stats_init)   \
  X(airlock_sandbox_status)       \
  X(airlock_snapshot_list)        \
  X(airlock_snapshot_remove)      \
  X(airlock_spawn_options_init)   \
  X(airlock_status_name)          \
  X(airlock_version)              \
  X(airlock_volume_create)        \
  X(airlock_volume_from_snapshot) \
  X(airlock_volume_list)          \
  X(airlock_volume_remove)        \
  X(airlock_volume_snapshot)
#define AIRLOCK_DECLARE(name) decltype(&::name) name = nullptr;
AIRLOCK_FUNCTIONS(AIRLOCK_DECLARE)

#ifndef AIRLOCK_DEFAULT_LIBRARY
#define AIRLOCK_DEFAULT_LIBRARY "libairlock.so.0"
#endif

// "" on success, else why not.
std::string load_library() {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("AIRLOCK_LIBRARY"); env && *env) {
    candidates.push_back(env);
  } else {
    candidates.push_back(AIRLOCK_DEFAULT_LIBRARY);
    candidates.push_back("libairlock.so.0");
  }
  std::string errors;
  for (const auto& path : candidates) {
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (h == nullptr) {
      const char* e = dlerror();
      errors += path + ": " + (e ? e : "dlopen failed") + "; ";
      continue;
    }
#define AIRLOCK_LOAD(name)                                  \
  name = reinterpret_cast<decltype(name)>(dlsym(h, #name)); \
  if (name == nullptr) return path + ": missing symbol " #name;
    AIRLOCK_FUNCTIONS(AIRLOCK_LOAD)
    if (airlock_abi_version() != AIRLOCK_ABI_VERSION)
      return path + ": ABI version " + std::to_string(airlock_abi_version()) + ", expected " +
             std::to_string(AIRLOCK_ABI_VERSION);
    return "";
  }
  return "cannot load libairlock (set AIRLOCK_LIBRARY): " + errors;
}

#define NAPI_OK(call)                                     \
  do {                                                    \
    if ((call) != napi_ok) return throw_napi(env, #call); \
  } while (0)

napi_value throw_napi(napi_env env, const char* what) {
  const napi_extended_error_info* info = nullptr;
  napi_get_last_error_info(env, &info);
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) {
    std::string msg = std::string("airlock addon: ") + what + ": " +
                      (info && info->error_message ? info->error_message : "napi error");
    napi_throw_error(env, nullptr, msg.c_str());
  }
  return nullptr;
}

napi_value make_error(napi_env env, int rc, const std::string& message) {
  napi_value msg, err, code, status;
  napi_create_string_utf8(env, message.c_str(), message.size(), &msg);
  napi_create_error(env, nullptr, msg, &err);
  napi_create_string_utf8(env, airlock_status_name(rc), NAPI_AUTO_LENGTH, &code);
  napi_set_named_property(env, err, "code", code);
  napi_create_int32(env, rc, &status);
  napi_set_named_property(env, err, "status", status);
  return err;
}

napi_value throw_airlock(napi_env env, int rc, const std::string& message) {
  napi_throw(env, make_error(env, rc, message));
  return nullptr;
}

// ---- argument helpers ----

bool get_string(napi_env env, napi_value v, std::string* out) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, nullptr, 0, &len) != napi_ok) return false;
  out->resize(len + 1);
  size_t copied = 0;
  napi_get_value_string_utf8(env, v, out->data(), len + 1, &copied);
  out->resize(copied);
  return true;
}

napi_valuetype type_of(napi_env env, napi_value v) {
  napi_valuetype t = napi_undefined;
  napi_typeof(env, v, &t);
  return t;
}

napi_value prop(napi_env env, napi_value obj, const char* name) {
  if (obj == nullptr || type_of(env, obj) != napi_object) return nullptr;
  napi_value v;
  if (napi_get_named_property(env, obj, name, &v) != napi_ok) return nullptr;
  napi_valuetype t = type_of(env, v);
  if (t == napi_undefined || t == napi_null) return nullptr;
  return v;
}

bool opt_string(napi_env env, napi_value obj, const char* name, std::string* out, bool* present) {
  napi_value v = prop(env, obj, name);
  *present = v != nullptr;
  if (!v) return true;
  return get_string(env, v, out);
}

bool opt_number(napi_env env, napi_value obj, const char* name, double* out) {
  napi_value v = prop(env, obj, name);
  if (!v) return true;
  return napi_get_value_double(env, v, out) == napi_ok && *out >= 0;
}

// Buffer, TypedArray or string -> bytes.
bool get_bytes(napi_env env, napi_value v, std::string* out) {
  bool is_buffer = false;
  napi_is_buffer(env, v, &is_buffer);
  if (is_buffer) {
    void* data;
    size_t len;
    if (napi_get_buffer_info(env, v, &data, &len) != napi_ok) return false;
    out->assign(static_cast<const char*>(data), len);
    return true;
  }
  bool is_typed = false;
  napi_is_typedarray(env, v, &is_typed);
  if (is_typed) {
    napi_typedarray_type t;
    size_t length, offset;
    void* data;
    napi_value ab;
    if (napi_get_typedarray_info(env, v, &t, &length, &data, &ab, &offset) != napi_ok) return false;
    size_t elem =
        (t == napi_uint8_array || t == napi_int8_array || t == napi_uint8_clamped_array) ? 1 : 0;
    if (elem == 0) return false;
    out->assign(static_cast<const char*>(data), length);
    return true;
  }
  return get_string(env, v, out);
}

bool string_array(napi_env env, napi_value v, std::vector<std::string>* out) {
  bool is_array = false;
  if (!v || napi_is_array(env, v, &is_array) != napi_ok || !is_array) return false;
  uint32_t n = 0;
  napi_get_array_length(env, v, &n);
  for (uint32_t i = 0; i < n; ++i) {
    napi_value e;
    napi_get_element(env, v, i, &e);
    std::string s;
    if (!get_string(env, e, &s)) return false;
    out->push_back(std::move(s));
  }
  return true;
}

bool string_map(napi_env env, napi_value v, std::vector<std::pair<std::string, std::string>>* out) {
  if (!v) return true;
  if (type_of(env, v) != napi_object) return false;
  napi_value keys;
  if (napi_get_property_names(env, v, &keys) != napi_ok) return false;
  uint32_t n = 0;
  napi_get_array_length(env, keys, &n);
  for (uint32_t i = 0; i < n; ++i) {
    napi_value k, val;
    napi_get_element(env, keys, i, &k);
    napi_get_property(env, v, k, &val);
    std::string ks, vs;
    if (!get_string(env, k, &ks)) return false;
    napi_value sv;
    if (napi_coerce_to_string(env, val, &sv) != napi_ok || !get_string(env, sv, &vs)) return false;
    out->emplace_back(std::move(ks), std::move(vs));
  }
  return true;
}

// ---- handles ----

struct Stream;

struct SandboxRef {
  airlock_sandbox* sb = nullptr;
  std::atomic<bool> destroyed{false};
  Stream* console = nullptr;  // released after destroy
};

struct ProcessRef {
  airlock_process* p = nullptr;
  std::atomic<bool> destroyed{false};
  Stream* stream = nullptr;
  napi_threadsafe_function tsfn = nullptr;
};

// ---- thread-safe delivery of output and completions ----

struct Job;

// One request hook call: the proxy thread waits (bounded) for the JS answer.
struct HookCall {
  std::mutex mutex;
  std::condition_variable cv;
  bool done = false;
  bool allow = false;  // stays "deny" unless JS answered
  int status = 403;
  std::string message = "denied by the request hook";
  std::vector<std::pair<std::string, std::string>> set_headers;
  std::vector<std::string> remove_headers;
  // the request
  std::string method, scheme, host, target;
  uint32_t port = 0;
  std::vector<std::pair<std::string, std::string>> headers;

  void finish() {
    std::lock_guard lock(mutex);
    done = true;
    cv.notify_all();
  }
};

struct Item {
  enum Kind { out, err, console, done, audit, hook } kind;
  std::string data;
  Job* job = nullptr;
  // audit events
  std::vector<std::pair<const char*, std::string>> strings;
  std::vector<std::pair<const char*, double>> numbers;
  std::vector<std::string> names;
  bool flag = false;
  std::shared_ptr<HookCall> hook_call;
};

// What a thread-safe function delivers to: JS callbacks and the error one of them threw.
struct Stream {
  napi_ref on_stdout = nullptr;
  napi_ref on_stderr = nullptr;
  napi_ref on_console = nullptr;
  napi_ref on_audit = nullptr;
  napi_ref on_hook = nullptr;
  napi_ref callback_error = nullptr;  // first exception a callback threw
  napi_threadsafe_function tsfn = nullptr;
  // How long a proxy thread waits for requestHook's answer (hookDeadline, else 10 s); the proxy
  // itself refuses the request once its own hook deadline passes.
  std::chrono::milliseconds hook_wait{10000};
};

void settle(napi_env env, Job* job);

void call_hook(napi_env env, Stream* s, HookCall& h);

void call_js(napi_env env, napi_value, void* context, void* data) {
  std::unique_ptr<Item> item(static_cast<Item*>(data));
  auto* s = static_cast<Stream*>(context);
  if (item->kind == Item::hook) {
    if (env != nullptr && s->on_hook != nullptr) call_hook(env, s, *item->hook_call);
    item->hook_call->finish();  // answered, or denied when the environment is going away
    return;
  }
  if (env == nullptr) return;  // environment is going away
  if (item->kind == Item::done) {
    settle(env, item->job);
    return;
  }
  napi_ref ref = item->kind == Item::out     ? s->on_stdout
                 : item->kind == Item::err   ? s->on_stderr
                 : item->kind == Item::audit ? s->on_audit
                                             : s->on_console;
  if (ref == nullptr) return;
  napi_value fn, buf, global, ignored;
  napi_get_reference_value(env, ref, &fn);
  if (item->kind == Item::audit) {
    napi_create_object(env, &buf);
    for (auto& [k, v] : item->strings) {
      napi_value sv;
      napi_create_string_utf8(env, v.data(), v.size(), &sv);
      napi_set_named_property(env, buf, k, sv);
    }
    for (auto& [k, v] : item->numbers) {
      napi_value nv;
      napi_create_double(env, v, &nv);
      napi_set_named_property(env, buf, k, nv);
    }
    napi_value arr, b;
    napi_create_array_with_length(env, item->names.size(), &arr);
    for (size_t i = 0; i < item->names.size(); ++i) {
      napi_value sv;
      napi_create_string_utf8(env, item->names[i].data(), item->names[i].size(), &sv);
      napi_set_element(env, arr, static_cast<uint32_t>(i), sv);
    }
    napi_set_named_property(env, buf, "secretsSubstituted", arr);
    napi_get_boolean(env, item->flag, &b);
    napi_set_named_property(env, buf, "exfiltrationAttempt", b);
  } else {
    void* copy;
    napi_create_buffer_copy(env, item->data.size(), item->data.data(), &copy, &buf);
  }
  napi_get_global(env, &global);
  if (napi_call_function(env, global, fn, 1, &buf, &ignored) != napi_ok) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
      if (s->callback_error == nullptr) napi_create_reference(env, exc, 1, &s->callback_error);
    }
  }
}

void stream_finalize(napi_env env, void* data, void*) {
  auto* s = static_cast<Stream*>(data);
  if (env != nullptr) {
    for (napi_ref r :
         {s->on_stdout, s->on_stderr, s->on_console, s->on_audit, s->on_hook, s->callback_error})
      if (r) napi_delete_reference(env, r);
  }
  delete s;
}

Stream* make_stream(napi_env env, napi_value on_stdout, napi_value on_stderr, napi_value on_console,
                    napi_value on_audit = nullptr, napi_value on_hook = nullptr) {
  auto* s = new Stream();
  if (on_hook) napi_create_reference(env, on_hook, 1, &s->on_hook);
  if (on_audit) napi_create_reference(env, on_audit, 1, &s->on_audit);
  if (on_stdout) napi_create_reference(env, on_stdout, 1, &s->on_stdout);
  if (on_stderr) napi_create_reference(env, on_stderr, 1, &s->on_stderr);
  if (on_console) napi_create_reference(env, on_console, 1, &s->on_console);
  napi_value name;
  napi_create_string_utf8(env, "airlock.stream", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, nullptr, nullptr, name, 0, 1, s, stream_finalize, s,
                                      call_js, &s->tsfn) != napi_ok) {
    stream_finalize(env, s, nullptr);
    return nullptr;
  }
  return s;
}

void post(Stream* s, Item::Kind kind, const char* data, size_t len) {
  auto* item = new Item{kind, std::string(data, len), nullptr};
  if (napi_call_threadsafe_function(s->tsfn, item, napi_tsfn_blocking) != napi_ok) delete item;
}

void on_out(const char* data, size_t len, void* user) {
  post(static_cast<Stream*>(user), Item::out, data, len);
}
void on_err(const char* data, size_t len, void* user) {
  post(static_cast<Stream*>(user), Item::err, data, len);
}
void on_console(const char* data, size_t len, void* user) {
  post(static_cast<Stream*>(user), Item::console, data, len);
}
void on_audit(const airlock_audit_event* e, void* user) {
  auto* item = new Item{Item::audit, {}, nullptr};
  auto str = [](const char* p) { return std::string(p ? p : ""); };
  item->strings = {{"client", str(e->client)},
                   {"method", str(e->method)},
                   {"scheme", str(e->scheme)},
                   {"host", str(e->host)},
                   {"path", str(e->path)},
                   {"reason", str(e->reason)},
                   {"decision", e->decision == AIRLOCK_DECISION_ALLOWED  ? "allowed"
                                : e->decision == AIRLOCK_DECISION_DENIED ? "denied"
                                                                         : "error"}};
  item->numbers = {{"timeMs", static_cast<double>(e->time_unix_ns) / 1e6},
                   {"connectionId", static_cast<double>(e->connection_id)},
                   {"port", static_cast<double>(e->port)},
                   {"status", static_cast<double>(e->status)},
                   {"bytesUp", static_cast<double>(e->bytes_up)},
                   {"bytesDown", static_cast<double>(e->bytes_down)},
                   {"durationUs", static_cast<double>(e->duration_us)}};
  for (size_t i = 0; i < e->secrets_substituted_count; ++i)
    item->names.push_back(str(e->secrets_substituted[i]));
  item->flag = e->exfiltration_attempt != 0;
  auto* s = static_cast<Stream*>(user);
  if (napi_call_threadsafe_function(s->tsfn, item, napi_tsfn_blocking) != napi_ok) delete item;
}

// Main thread: hook(request) -> undefined/null (allow) | {allow:false, status, message} |
// {setHeaders:{}, removeHeaders:[]}. Throwing (or a bad answer) denies.
void call_hook(napi_env env, Stream* s, HookCall& h) {
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value req, v, fn, global, answer;
  napi_create_object(env, &req);
  for (auto [k, val] : {std::pair<const char*, std::string*>{"method", &h.method},
                        {"scheme", &h.scheme},
                        {"host", &h.host},
                        {"target", &h.target}}) {
    napi_create_string_utf8(env, val->data(), val->size(), &v);
    napi_set_named_property(env, req, k, v);
  }
  napi_create_uint32(env, h.port, &v);
  napi_set_named_property(env, req, "port", v);
  napi_value headers;
  napi_create_array_with_length(env, h.headers.size(), &headers);
  for (size_t i = 0; i < h.headers.size(); ++i) {
    napi_value pair, k, val;
    napi_create_array_with_length(env, 2, &pair);
    napi_create_string_utf8(env, h.headers[i].first.data(), h.headers[i].first.size(), &k);
    napi_create_string_utf8(env, h.headers[i].second.data(), h.headers[i].second.size(), &val);
    napi_set_element(env, pair, 0, k);
    napi_set_element(env, pair, 1, val);
    napi_set_element(env, headers, static_cast<uint32_t>(i), pair);
  }
  napi_set_named_property(env, req, "headers", headers);
  napi_get_reference_value(env, s->on_hook, &fn);
  napi_get_global(env, &global);
  if (napi_call_function(env, global, fn, 1, &req, &answer) != napi_ok) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
      if (s->callback_error == nullptr) napi_create_reference(env, exc, 1, &s->callback_error);
    }
    napi_close_handle_scope(env, scope);
    return;  // deny
  }
  std::lock_guard lock(h.mutex);
  napi_valuetype t = type_of(env, answer);
  if (t == napi_undefined || t == napi_null) {
    h.allow = true;
  } else if (t == napi_object) {
    h.allow = true;
    if (napi_value a = prop(env, answer, "allow")) {
      bool allow = true;
      napi_get_value_bool(env, a, &allow);
      h.allow = allow;
    }
    if (napi_value st = prop(env, answer, "status")) napi_get_value_int32(env, st, &h.status);
    if (napi_value m = prop(env, answer, "message")) get_string(env, m, &h.message);
    string_map(env, prop(env, answer, "setHeaders"), &h.set_headers);
    if (napi_value r = prop(env, answer, "removeHeaders")) string_array(env, r, &h.remove_headers);
  }
  napi_close_handle_scope(env, scope);
}

int on_hook(const airlock_hook_request* r, airlock_hook_decision* d, void* user) {
  auto* s = static_cast<Stream*>(user);
  auto h = std::make_shared<HookCall>();
  auto str = [](const char* p) { return std::string(p ? p : ""); };
  h->method = str(r->method);
  h->scheme = str(r->scheme);
  h->host = str(r->host);
  h->target = str(r->target);
  h->port = r->port;
  for (size_t i = 0; i < r->headers_count; ++i)
    h->headers.emplace_back(str(r->headers[i].name), str(r->headers[i].value));
  auto* item = new Item{Item::hook, {}, nullptr};
  item->hook_call = h;
  if (napi_call_threadsafe_function(s->tsfn, item, napi_tsfn_blocking) != napi_ok) {
    delete item;
    return 1;
  }
  std::unique_lock lock(h->mutex);
  // Bounded: a busy event loop must not hold a proxy worker forever (the proxy has its own
  // deadline too); no answer in time denies.
  if (!h->cv.wait_for(lock, s->hook_wait, [&] { return h->done; })) return 1;
  if (!h->allow) return airlock_hook_deny(d, h->status, h->message.c_str()) == 0 ? 0 : 1;
  for (auto& [k, v] : h->set_headers) airlock_hook_set_header(d, k.c_str(), v.c_str());
  for (auto& k : h->remove_headers) airlock_hook_remove_header(d, k.c_str());
  return 0;
}

// ---- jobs: work on the pool, settle on the main thread ----

struct Job {
  napi_async_work work = nullptr;
  napi_deferred deferred = nullptr;
  std::function<int(Job&)> run;                       // pool thread
  std::function<napi_value(napi_env, Job&)> convert;  // main thread, when rc == 0
  int rc = 0;
  std::string error;
  Stream* stream = nullptr;  // set: completion goes through the stream after its data
  bool release_stream = false;
  // results
  airlock_exec_result result;
  std::string bytes;
  bool has_bytes = false;
  airlock_file_stat stat;
  airlock_sandbox* new_sandbox = nullptr;
  airlock_process* new_process = nullptr;
  std::shared_ptr<void> keep;  // inputs the work borrows; its deleter may clean up
  // settle() and job_complete() both run (main thread, either order) when streaming.
  int owners = 1;
  Job() {
    airlock_exec_result_init(&result);
    airlock_file_stat_init(&stat);
  }
  ~Job() { airlock_exec_result_free(&result); }
};

void release_job(Job* job) {
  if (--job->owners == 0) delete job;
}

void settle(napi_env env, Job* job) {
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  if (job->stream && job->stream->callback_error && job->rc == 0) {
    napi_value exc;
    napi_get_reference_value(env, job->stream->callback_error, &exc);
    napi_delete_reference(env, job->stream->callback_error);
    job->stream->callback_error = nullptr;
    napi_value msg;
    napi_create_string_utf8(env, "a callback threw", NAPI_AUTO_LENGTH, &msg);
    napi_value err;
    napi_create_error(env, nullptr, msg, &err);
    napi_value code;
    napi_create_string_utf8(env, "callback", NAPI_AUTO_LENGTH, &code);
    napi_set_named_property(env, err, "code", code);
    napi_set_named_property(env, err, "cause", exc);
    napi_reject_deferred(env, job->deferred, err);
  } else if (job->rc != 0) {
    napi_reject_deferred(env, job->deferred, make_error(env, job->rc, job->error));
  } else {
    napi_value v = job->convert ? job->convert(env, *job) : nullptr;
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
      napi_reject_deferred(env, job->deferred, exc);
    } else {
      if (v == nullptr) napi_get_undefined(env, &v);
      napi_resolve_deferred(env, job->deferred, v);
    }
  }
  napi_close_handle_scope(env, scope);
  release_job(job);
}

void job_execute(napi_env, void* data) {
  auto* job = static_cast<Job*>(data);
  job->rc = job->run(*job);
  if (job->rc != 0) job->error = airlock_last_error();
  if (job->stream) {
    // After every chunk this call produced: the completion itself.
    auto* item = new Item{Item::done, {}, job};
    if (napi_call_threadsafe_function(job->stream->tsfn, item, napi_tsfn_blocking) != napi_ok) {
      delete item;  // cannot happen while we hold the tsfn; the Promise would stay pending
    }
    if (job->release_stream) napi_release_threadsafe_function(job->stream->tsfn, napi_tsfn_release);
  }
}

void job_complete(napi_env env, napi_status, void* data) {
  auto* job = static_cast<Job*>(data);
  napi_delete_async_work(env, job->work);
  job->work = nullptr;
  if (job->stream == nullptr) {
    settle(env, job);
  } else {
    release_job(job);
  }
}

napi_value start(napi_env env, std::unique_ptr<Job> job, const char* name) {
  napi_value promise, resource_name;
  if (job->stream) job->owners = 2;
  NAPI_OK(napi_create_promise(env, &job->deferred, &promise));
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource_name);
  NAPI_OK(napi_create_async_work(env, nullptr, resource_name, job_execute, job_complete, job.get(),
                                 &job->work));
  NAPI_OK(napi_queue_async_work(env, job->work));
  job.release();
  return promise;
}

// ---- result conversion ----

napi_value exec_result_js(napi_env env, Job& job) {
  napi_value obj, v;
  napi_create_object(env, &obj);
  napi_create_int32(env, job.result.exit_code, &v);
  napi_set_named_property(env, obj, "exitCode", v);
  napi_create_int32(env, job.result.signal, &v);
  napi_set_named_property(env, obj, "signal", v);
  napi_get_boolean(env, job.result.timed_out != 0, &v);
  napi_set_named_property(env, obj, "timedOut", v);
  void* copy;
  napi_create_buffer_copy(env, job.result.stdout_len,
                          job.result.stdout_data ? job.result.stdout_data : "", &copy, &v);
  napi_set_named_property(env, obj, "stdout", v);
  napi_create_buffer_copy(env, job.result.stderr_len,
                          job.result.stderr_data ? job.result.stderr_data : "", &copy, &v);
  napi_set_named_property(env, obj, "stderr", v);
  return obj;
}

// ---- handle unwrapping ----

void sandbox_finalize(napi_env env, void* data, void*) {
  auto* ref = static_cast<SandboxRef*>(data);
  // Collected without close(): destroy off the main thread (it stops a VM), then free.
  Stream* console = ref->console;
  if (!ref->destroyed.exchange(true) && ref->sb) {
    airlock_sandbox* sb = ref->sb;
    napi_threadsafe_function tsfn = console ? console->tsfn : nullptr;
    std::thread([sb, tsfn] {
      airlock_sandbox_destroy(sb);
      if (tsfn) napi_release_threadsafe_function(tsfn, napi_tsfn_release);
    }).detach();
  }
  delete ref;
}

void process_finalize(napi_env, void* data, void*) {
  auto* ref = static_cast<ProcessRef*>(data);
  if (!ref->destroyed.exchange(true) && ref->p) {
    airlock_process* p = ref->p;
    napi_threadsafe_function tsfn = ref->tsfn;
    std::thread([p, tsfn] {
      airlock_process_destroy(p);
      if (tsfn) napi_release_threadsafe_function(tsfn, napi_tsfn_release);
    }).detach();
  }
  delete ref;
}

// The Ref behind a handle from this addon; throws (and returns null) for anything else. `what`
// names the handle in the error ("sandbox handle", "process handle").
template <typename Ref>
Ref* external_ref(napi_env env, napi_value v, const char* what) {
  if (!v || type_of(env, v) != napi_external) {
    throw_airlock(env, AIRLOCK_E_INVALID_ARGUMENT, std::string("not a ") + what);
    return nullptr;
  }
  void* p;
  napi_get_value_external(env, v, &p);
  return static_cast<Ref*>(p);
}

// As external_ref, and also throws `closed` (returning false) for a handle already closed.
template <typename Ref>
bool unwrap_handle(napi_env env, napi_value v, const char* what, const char* closed, Ref** out) {
  *out = external_ref<Ref>(env, v, what);
  if (*out == nullptr) return false;
  if ((*out)->destroyed) {
    throw_airlock(env, AIRLOCK_E_CLOSED, closed);
    return false;
  }
  return true;
}

bool unwrap_sandbox(napi_env env, napi_value v, SandboxRef** out) {
  return unwrap_handle(env, v, "sandbox handle", "the sandbox is closed", out);
}

bool unwrap_process(napi_env env, napi_value v, ProcessRef** out) {
  return unwrap_handle(env, v, "process handle", "the process handle is closed", out);
}

std::vector<napi_value> args(napi_env env, napi_callback_info info, size_t n) {
  std::vector<napi_value> a(n, nullptr);
  size_t argc = n;
  napi_get_cb_info(env, info, &argc, a.data(), nullptr, nullptr);
  for (size_t i = argc; i < n; ++i) a[i] = nullptr;
  for (auto& v : a) {
    if (v && (type_of(env, v) == napi_undefined || type_of(env, v) == napi_null)) v = nullptr;
  }
  return a;
}

// ---- create ----

struct CreateInputs {
  std::string kernel, initramfs;
  bool has_kernel = false, has_initramfs = false;
  std::vector<std::pair<std::string, std::string>> env;
  std::vector<std::string> allow_net;
  struct Secret {
    std::string name, value;
    std::vector<std::string> hosts;
  };
  std::vector<Secret> secrets;
  std::vector<std::pair<std::string, std::string>> resolve_override;
  std::vector<std::string> extra_ca_files;
  double memory_mb = 0, vcpus = 0, boot_timeout_ms = 0, hook_deadline_ms = 0;
  double timeout_ms = 0, max_lifetime_ms = 0;
  // storage
  std::string root_image, root_snapshot, storage_dir;
  bool has_root_image = false, has_root_snapshot = false, has_storage_dir = false;
  bool snapshottable_root = false;
  double root_upper_bytes = 0;
  struct Volume {
    std::string name, path;
    bool read_only = false;
  };
  std::vector<Volume> volumes;
  // caller-opened tap (tapFd); the library checks it
  bool has_tap_fd = false;
  int32_t tap_fd = -1;
};

// rootImage, rootSnapshot, snapshottableRoot, rootUpperBytes, storageDir, volumes:
// [{name, path, readOnly}]. False: malformed.
bool storage_inputs(napi_env env, napi_value o, CreateInputs* in) {
  if (!opt_string(env, o, "rootImage", &in->root_image, &in->has_root_image) ||
      !opt_string(env, o, "rootSnapshot", &in->root_snapshot, &in->has_root_snapshot) ||
      !opt_string(env, o, "storageDir", &in->storage_dir, &in->has_storage_dir) ||
      !opt_number(env, o, "rootUpperBytes", &in->root_upper_bytes))
    return false;
  if (napi_value v = prop(env, o, "snapshottableRoot")) {
    if (type_of(env, v) != napi_boolean) return false;
    napi_get_value_bool(env, v, &in->snapshottable_root);
  }
  napi_value vols = prop(env, o, "volumes");
  if (!vols) return true;
  bool is_array = false;
  napi_is_array(env, vols, &is_array);
  if (!is_array) return false;
  uint32_t n = 0;
  napi_get_array_length(env, vols, &n);
  for (uint32_t i = 0; i < n; ++i) {
    napi_value e;
    napi_get_element(env, vols, i, &e);
    CreateInputs::Volume v;
    bool p1 = false, p2 = false;
    if (!opt_string(env, e, "name", &v.name, &p1) || !opt_string(env, e, "path", &v.path, &p2) ||
        !p1 || !p2)
      return false;
    if (napi_value ro = prop(env, e, "readOnly")) {
      if (type_of(env, ro) != napi_boolean) return false;
      napi_get_value_bool(env, ro, &v.read_only);
    }
    in->volumes.push_back(std::move(v));
  }
  return true;
}

napi_value Create(napi_env env, napi_callback_info info) {
  auto a = args(env, info, 1);
  napi_value o = a[0];
  auto in = std::make_shared<CreateInputs>();
  if (!opt_string(env, o, "kernel", &in->kernel, &in->has_kernel) ||
      !opt_string(env, o, "initramfs", &in->initramfs, &in->has_initramfs) ||
      !opt_number(env, o, "memoryMb", &in->memory_mb) || !opt_number(env, o, "vcpus", &in->vcpus) ||
      !opt_number(env, o, "bootTimeoutMs", &in->boot_timeout_ms) ||
      !opt_number(env, o, "hookDeadlineMs", &in->hook_deadline_ms) ||
      !opt_number(env, o, "timeoutMs", &in->timeout_ms) ||
      !opt_number(env, o, "maxLifetimeMs", &in->max_lifetime_ms) ||
      !string_map(env, prop(env, o, "env"), &in->env) ||
      !string_map(env, prop(env, o, "resolveOverride"), &in->resolve_override))
    return throw_airlock(env, AIRLOCK_E_INVALID_ARGUMENT, "bad sandbox options");
  if (!storage_inputs(env, o, in.get()))
    return throw_airlock(env, AIRLOCK_E_INVALID_ARGUMENT,
                         "bad storage options (volumes: [{name, path, readOnly}])");
  if (napi_value fd = prop(env, o, "tapFd")) {
    double d = 0;
    if (type_of(env, fd) != napi_number || napi_get_value_double(env, fd, &d) != napi_ok ||
        d != static_cast<double>(static_cast<int32_t>(d)))
      return throw_airlock(env, AIRLOCK_E_INVALID_ARGUMENT, "tapFd must be an integer fd");
    in->has_tap_fd = true;
    in->tap_fd = static_cast<int32_t>(d);
  }
  if (napi_value ca = prop(env, o, "extraCaFiles")) {
    if (!string_array(env, ca, &in->extra_ca_files))
      return throw_airlock(env, AIRLOCK_E_INVALID_ARGUMENT, "extraCaFiles must be a string array");
  }
  if (napi_value an = prop(env, o, "allowNet")) {
    if (!string_array(env, an, &in->allow_net))
      return throw_airlock(env, AIRLOCK_E_INVALID_ARGUMENT, "allowNet must be an array of strings");
  }
  if (napi_value sec = prop(env, o, "secrets")) {
    // [{name, value, hosts}] (index.js normalises the object forms).
    bool is_array = false;
    napi_is_array(env, sec, &is_array);
    if (!is_array) return throw_airlock(env, AIRLOCK_E_INVALID_ARGUMENT, "bad secrets");
    uint32_t n = 0;
    napi_get_array_length(env, sec, &n);
    for (uint32_t i = 0; i < n; ++i) {
      napi_value e;
      napi_get_element(env, sec, i, &e);
      CreateInputs::Secret s;
      bool p1 = false, p2 = false;
      if (!opt_string(env, e, "name", &s.name, &p1) ||
          !opt_string(env, e, "value", &s.value, &p2) || !p1 || !p2 ||
          !string_array(env, prop(env, e, "hosts"), &s.hosts))
        return throw_airlock(env, AIRLOCK_E_INVALID_ARGUMENT,
                             "each secret needs a name, a value and hosts");
      in->secrets.push_back(std::move(s));
    }
  }
  auto* ref = new SandboxRef();
  napi_value cb_console = prop(env, o, "onConsole"), cb_audit = prop(env, o, "onAudit");
  napi_value cb_hook = prop(env, o, "requestHook");
  if (cb_console || cb_audit || cb_hook) {
    ref->console = make_stream(env, nullptr, nullptr, cb_console, cb_audit, cb_hook);
    if (ref->console) napi_unref_threadsafe_function(env, ref->console->tsfn);
    if (ref->console && in->hook_deadline_ms >= 1)
      ref->console->hook_wait =
          std::chrono::milliseconds(static_cast<int64_t>(std::min(in->hook_deadline_ms, 6e5)));
  }
  auto job = std::make_unique<Job>();
  job->keep = in;
  job->run = [in, ref](Job& j) {
    std::vector<airlock_env_var> envv;
    for (auto& [k, v] : in->env) envv.push_back({k.c_str(), v.c_str()});
    std::vector<const char*> allow;
    for (auto& h : in->allow_net) allow.push_back(h.c_str());
    std::vector<std::vector<const char*>> hosts(in->secrets.size());
    std::vector<airlock_secret> secrets;
    for (size_t i = 0; i < in->secrets.size(); ++i) {
      for (auto& h : in->secrets[i].hosts) hosts[i].push_back(h.c_str());
      secrets.push_back({in->secrets[i].name.c_str(), in->secrets[i].value.c_str(), hosts[i].data(),
                         hosts[i].size()});
    }
    std::vector<airlock_env_var> overrides;
    for (auto& [k, v] : in->resolve_override) overrides.push_back({k.c_str(), v.c_str()});
    std::vector<const char*> cas;
    for (auto& c : in->extra_ca_files) cas.push_back(c.c_str());
    std::vector<airlock_volume_mount> vols;
    for (auto& v : in->volumes) vols.push_back({v.name.c_str(), v.path.c_str(), v.read_only});
    airlock_sandbox_options o;
    airlock_sandbox_options_init(&o);
    o.root_image = in->has_root_image ? in->root_image.c_str() : nullptr;
    o.root_snapshot = in->has_root_snapshot ? in->root_snapshot.c_str() : nullptr;
    o.storage_dir = in->has_storage_dir ? in->storage_dir.c_str() : nullptr;
    o.snapshottable_root = in->snapshottable_root ? 1 : 0;
    o.root_upper_bytes = static_cast<uint64_t>(in->root_upper_bytes);
    o.volumes = vols.data();
    o.volumes_count = vols.size();
    o.has_tap_fd = in->has_tap_fd ? 1 : 0;
    o.tap_fd = in->tap_fd;
    o.resolve_override = overrides.data();
    o.resolve_override_count = overrides.size();
    o.extra_ca_files = cas.data();
    o.extra_ca_files_count = cas.size();
    o.kernel_path = in->has_kernel ? in->kernel.c_str() : nullptr;
    o.initramfs_path = in->has_initramfs ? in->initramfs.c_str() : nullptr;
    o.memory_bytes = static_cast<uint64_t>(in->memory_mb) << 20;
    o.vcpus = static_cast<uint32_t>(in->vcpus);
    o.boot_timeout_ms = static_cast<uint32_t>(in->boot_timeout_ms);
    o.timeout_ms = static_cast<uint64_t>(std::max(0.0, in->timeout_ms));
    o.max_lifetime_ms = static_cast<uint64_t>(std::max(0.0, in->max_lifetime_ms));
    o.env = envv.data();
    o.env_count = envv.size();
    o.allow_net = allow.data();
    o.allow_net_count = allow.size();
    o.secrets = secrets.data();
    o.secrets_count = secrets.size();
    if (ref->console && ref->console->on_console) {
      o.on_console = on_console;
      o.console_user_data = ref->console;
    }
    if (ref->console && ref->console->on_audit) {
      o.on_audit = on_audit;
      o.audit_user_data = ref->console;
    }
    if (ref->console && ref->console->on_hook) {
      o.request_hook = on_hook;
      o.hook_user_data = ref->console;
      o.hook_deadline_ms = static_cast<uint32_t>(std::min(in->hook_deadline_ms, 6e5));
    }
    return airlock_sandbox_create(&o, &j.new_sandbox);
  };
  job->convert = [ref](napi_env env, Job& j) -> napi_value {
    ref->sb = j.new_sandbox;
    napi_value ext;
    napi_create_external(env, ref, sandbox_finalize, nullptr, &ext);
    return ext;
  };
  // On failure nothing owns ref: free it (and the console stream) when the job goes.
  job->keep = std::shared_ptr<void>(new int(0), [ref, in](int* p) {
    delete p;
    if (ref->sb == nullptr) {
      if (ref->console) napi_release_threadsafe_function(ref->console->tsfn, napi_tsfn_release);
      delete ref;
    }
  });
  return start(env, std::move(job), "airlock.create");
}

// ---- sh / exec ----

struct ExecInputs {
  std::string command;
  std::vector<std::string> argv;
  std::vector<std::pair<std::string, std::string>> env;
  std::string cwd, stdin_data;
  bool has_cwd = false, has_stdin = false;
  double timeout_ms = 0, wait_timeout_ms = 0;
};

napi_value run_command(napi_env env, napi_callback_info info, bool shell) {
  auto a = args(env, info, 3);
  SandboxRef* ref;
  if (!unwrap_sandbox(env, a[0], &ref)) return nullptr;
  auto in = std::make_shared<ExecInputs>();
  if (shell) {
    if (!a[1] || !get_string(env, a[1], &in->command))
      return throw_airlock(env, AIRLOCK_E_INVALID_ARGUMENT, "command must be a string");
  } else if (!string_array(env, a[1], &in->argv) || in->argv.empty()) {
    return throw_airlock(env, AIRLOCK_E_INVALID_ARGUMENT, "argv must be a non-empty string array");
  }
  napi_value o = a[2];
  if (!string_map(env, prop(env, o, "env"), &in->env) ||
      !opt_string(env, o, "cwd", &in->cwd, &in->has_cwd) ||
      !opt_number(env, o, "timeoutMs", &in->timeout_ms) ||
      !opt_number(env, o, "waitTimeoutMs", &in->wait_timeout_ms))
    return throw_airlock(env, AIRLOCK_E_INVALID_ARGUMENT, "bad exec options");
  if (napi_value s = prop(env, o, "stdin")) {
    if (!get_bytes(env, s, &in->stdin_data))
      return throw_airlock(env, AIRLOCK_E_INVALID_ARGUMENT, "stdin must be a Buffer or string");
    in->has_stdin = true;
  }
  napi_value cb_out = prop(env, o, "onStdout"), cb_err = prop(env, o, "onStderr");
  auto job = std::make_unique<Job>();
  if (cb_out || cb_err) {
    job->stream = make_stream(env, cb_out, cb_err, nullptr);
    if (!job->stream) return throw_napi(env, "thread-safe function");
    job->release_stream = true;
  }
  airlock_sandbox* sb = ref->sb;
  Stream* stream = job->stream;
  job->run = [in, sb, shell, stream](Job& j) {
    std::vector<airlock_env_var> envv;
    for (auto& [k, v] : in->env) envv.push_back({k.c_str(), v.c_str()});
    airlock_exec_options o;
    airlock_exec_options_init(&o);
    o.env = envv.data();
    o.env_count = envv.size();
    o.cwd = in->has_cwd ? in->cwd.c_str() : nullptr;
    o.timeout_ms = static_cast<uint64_t>(in->timeout_ms);
    o.wait_timeout_ms = static_cast<uint64_t>(in->wait_timeout_ms);
    o.stdin_data = in->stdin_data.data();
    o.stdin_len = in->stdin_data.size();
    if (stream) {
      o.on_stdout = stream->on_stdout ? on_out : nullptr;
      o.on_stderr = stream->on_stderr ? on_err : nullptr;
      o.user_data = stream;
    }
    if (shell) return airlock_sandbox_sh(sb, in->command.c_str(), &o, &j.result);
    std::vector<const char*> argv;
    for (auto& s : in->argv) argv.push_back(s.c_str());
    return airlock_sandbox_exec(sb, argv.data(), argv.size(), &o, &j.result);
  };
  job->convert = exec_result_js;
  return start(env, std::move(job), shell ? "airlock.sh" : "airlock.exec");
}

napi_value Sh(napi_env env, napi_callback_info info) {
  return run_command(env, info, true);
}
napi_value Exec(napi_env env, napi_callback_info info) {
  return run_command(env, info, false);
}

// ---- spawn and processes ----

napi_value Spawn(napi_env env, napi_callback_info info) {
  auto a = args(env, info, 3);
  SandboxRef* ref;
  if (!unwrap_sandbox(env, a[0], &ref)) return nullptr;
  auto in = std::make_shared<ExecInputs>();
  if (!string_array(env, a[1], &in->argv) || in->argv.empty())
    return throw_airlock(env, AIRLOCK_E_INVALID_ARGUMENT, "argv must be a non-empty string array");
  napi_value o = a[2];
  if (!string_map(env, prop(env, o, "env"), &in->env) ||
      !opt_string(env, o, "cwd", &in->cwd, &in->has_cwd) ||
      !opt_number(env, o, "timeoutMs", &in->timeout_ms))
    return throw_airlock(env, AIRLOCK_E_INVALID_ARGUMENT, "bad spawn options");
  napi_value cb_out = prop(env, o, "onStdout"), cb_err = prop(env, o, "onStderr");
  auto* pref = new ProcessRef();
  if (cb_out || cb_err) {
    pref->stream = make_stream(env, cb_out, cb_err, nullptr);
    if (!pref->stream) {
      delete pref;
      return throw_napi(env, "thread-safe function");
    }
    pref->tsfn = pref->stream->tsfn;
    napi_unref_threadsafe_function(env, pref->tsfn);  // wait() keeps the loop alive instead
  }
  auto job = std::make_unique<Job>();
  airlock_sandbox* sb = ref->sb;
  Stream* stream = pref->stream;
  job->run = [in, sb, stream](Job& j) {
    std::vector<airlock_env_var> envv;
    for (auto& [k, v] : in->env) envv.push_back({k.c_str(), v.c_str()});
    std::vector<const char*> argv;
    for (auto& s : in->argv) argv.push_back(s.c_str());
    airlock_spawn_options o;
    airlock_spawn_options_init(&o);
    o.env = envv.data();
    o.env_count = envv.size();
    o.cwd = in->has_cwd ? in->cwd.c_str() : nullptr;
    o.timeout_ms = static_cast<uint64_t>(in->timeout_ms);
    if (stream) {
      o.on_stdout = stream->on_stdout ? on_out : nullptr;
      o.on_stderr = stream->on_stderr ? on_err : nullptr;
      o.user_data = stream;
    }
    return airlock_sandbox_spawn(sb, argv.data(), argv.size(), &o, &j.new_process);
  };
  job->convert = [pref](napi_env env, Job& j) -> napi_value {
    pref->p = j.new_process;
    napi_value ext;
    napi_create_external(env, pref, process_finalize, nullptr, &ext);
    return ext;
  };
  job->keep = std::shared_ptr<void>(new int(0), [pref](int* p) {
    delete p;
    if (pref->p == nullptr) {
      if (pref->tsfn) napi_release_threadsafe_function(pref->tsfn, napi_tsfn_release);
      delete pref;
    }
  });
  return start(env, std::move(job), "airlock.spawn");
}

napi_value ProcessPid(napi_env env, napi_callback_info info) {
  auto a = args(env, info, 1);
  ProcessRef* ref;
  if (!unwrap_process(env, a[0], &ref)) return nullptr;
  int pid = 0;
  int rc = airlock_process_pid(ref->p, &pid);  // no I/O: answers from memory
  if (rc != 0) return throw_airlock(env, rc, airlock_last_error());
  napi_value v;
  napi_create_int32(env, pid, &v);
  return v;
}

napi_value ProcessWrite(napi_env env, napi_callback_info info) {
  auto a = args(env, info, 3);
  ProcessRef* ref;
  if (!unwrap_process(env, a[0], &ref)) return nullptr;
  auto data = std::make_shared<std::string>();
  if (!a[1] || !get_bytes(env, a[1], data.get()))
    return throw_airlock(env, AIRLOCK_E_INVALID_ARGUMENT, "data must be a Buffer or string");
  double timeout = 0;
  if (a[2]) napi_get_value_double(env, a[2], &timeout);
  airlock_process* p = ref->p;
  auto job = std::make_unique<Job>();
  job->run = [p, data, timeout](Job&) {
    return airlock_process_write_stdin(p, data->data(), data->size(),
                                       static_cast<uint64_t>(timeout > 0 ? timeout : 0));
  };
  return start(env, std::move(job), "airlock.write");
}

napi_value ProcessCloseStdin(napi_env env, napi_callback_info info) {
  auto a = args(env, info, 1);
  ProcessRef* ref;
  if (!unwrap_process(env, a[0], &ref)) return nullptr;
  airlock_process* p = ref->p;
  auto job = std::make_unique<Job>();
  job->run = [p](Job&) { return airlock_process_close_stdin(p); };
  return start(env, std::move(job), "airlock.closeStdin");
}

napi_value ProcessKill(napi_env env, napi_callback_info info) {
  auto a = args(env, info, 2);
  ProcessRef* ref;
  if (!unwrap_process(env, a[0], &ref)) return nullptr;
  int32_t sig = 9;
  if (a[1]) napi_get_value_int32(env, a[1], &sig);
  airlock_process* p = ref->p;
  auto job = std::make_unique<Job>();
  job->run = [p, sig](Job&) { return airlock_process_kill(p, sig); };
  return start(env, std::move(job), "airlock.kill");
}

napi_value ProcessWait(napi_env env, napi_callback_info info) {
  auto a = args(env, info, 2);
  ProcessRef* ref;
  if (!unwrap_process(env, a[0], &ref)) return nullptr;
  double timeout = -1;
  if (a[1]) napi_get_value_double(env, a[1], &timeout);
  uint64_t ms = timeout < 0 ? (1ull << 62) : static_cast<uint64_t>(timeout);
  airlock_process* p = ref->p;
  auto job = std::make_unique<Job>();
  if (ref->stream) {
    // Settle after the data already queued; keep the loop alive while waiting.
    job->stream = ref->stream;
    job->release_stream = true;
    napi_acquire_threadsafe_function(ref->tsfn);
    napi_ref_threadsafe_function(env, ref->tsfn);
    napi_threadsafe_function tsfn = ref->tsfn;
    job->convert = [tsfn](napi_env env, Job& j) {
      napi_unref_threadsafe_function(env, tsfn);
      return exec_result_js(env, j);
    };
    job->keep = std::shared_ptr<void>(new int(0), [tsfn, env](int* p) {
      delete p;
      napi_unref_threadsafe_function(env, tsfn);  // also on failure (idempotent per ref count)
    });
  } else {
    job->convert = exec_result_js;
  }
  job->run = [p, ms](Job& j) { return airlock_process_wait(p, ms, &j.result); };
  return start(env, std::move(job), "airlock.wait");
}

napi_value ProcessDestroy(napi_env env, napi_callback_info info) {
  auto a = args(env, info, 1);
  auto* ref = external_ref<ProcessRef>(env, a[0], "process handle");
  if (ref == nullptr) return nullptr;
  auto job = std::make_unique<Job>();
  if (ref->destroyed.exchange(true)) return start(env, std::move(job), "airlock.destroy");
  airlock_process* p = ref->p;
  napi_threadsafe_function tsfn = ref->tsfn;
  job->run = [p, tsfn](Job&) {
    int rc = airlock_process_destroy(p);
    // No callback runs any more: the stream can go.
    if (tsfn) napi_release_threadsafe_function(tsfn, napi_tsfn_release);
    return rc;
  };
  return start(env, std::move(job), "airlock.destroy");
}

// ---- sandbox-level calls ----

using SbRun = std::function<int(airlock_sandbox*, Job&)>;

napi_value sandbox_job(napi_env env, napi_value handle, const char* name, SbRun run,
                       std::function<napi_value(napi_env, Job&)> convert = nullptr) {
  SandboxRef* ref;
  if (!unwrap_sandbox(env, handle, &ref)) return nullptr;
  airlock_sandbox* sb = ref->sb;
  auto job = std::make_unique<Job>();
  job->run = [sb, run = std::move(run)](Job& j) { return run(sb, j); };
  job->convert = std::move(convert);
  return start(env, std::move(job), name);
}

napi_value bytes_js(napi_env env, Job& j) {
  if (!j.has_bytes) {
    napi_value v;
    napi_get_null(env, &v);
    return v;
  }
  napi_value v;
  void* copy;
  napi_create_buffer_copy(env, j.bytes.size(), j.bytes.data(), &copy, &v);
  return v;
}

// Call the C function first, then take(): argument evaluation order is unspecified.
int take(Job& j, int rc, char* data, size_t len) {
  if (rc == 0 && data) {
    j.bytes.assign(data, len);
    j.has_bytes = true;
  }
  airlock_free(data);
  return rc;
}

napi_value Close(napi_env env, napi_callback_info info) {
  auto a = args(env, info, 1);
  return sandbox_job(env, a[0], "airlock.close",
                     [](airlock_sandbox* sb, Job&) { return airlock_sandbox_close(sb); });
}

napi_value Destroy(napi_env env, napi_callback_info info) {
  auto a = args(env, info, 1);
  auto* ref = external_ref<SandboxRef>(env, a[0], "sandbox handle");
  if (ref == nullptr) return nullptr;
  auto job = std::make_unique<Job>();
  if (ref->destroyed.exchange(true)) return start(env, std::move(job), "airlock.destroy");
  airlock_sandbox* sb = ref->sb;
  napi_threadsafe_function tsfn = ref->console ? ref->console->tsfn : nullptr;
  ref->console = nullptr;
  job->run = [sb, tsfn](Job&) {
    int rc = airlock_sandbox_destroy(sb);
    if (tsfn) napi_release_threadsafe_function(tsfn, napi_tsfn_release);
    return rc;
  };
  return start(env, std::move(job), "airlock.destroy");
}

napi_value Ping(napi_env env, napi_callback_info info) {
  auto a = args(env, info, 2);
  double timeout = 5000;
  if (a[1]) napi_get_value_double(env, a[1], &timeout);
  return sandbox_job(env, a[0], "airlock.ping", [timeout](airlock_sandbox* sb, Job&) {
    return airlock_sandbox_ping(sb, static_cast<uint64_t>(timeout));
  });
}

napi_value Status(napi_env env, napi_callback_info info) {
  auto a = args(env, info, 1);
  SandboxRef* ref;
  if (!unwrap_sandbox(env, a[0], &ref)) return nullptr;
  int rc = airlock_sandbox_status(ref->sb);  // no I/O
  if (rc == 0) {
    napi_value v;
    napi_get_null(env, &v);
    return v;
  }
  return make_error(env, rc, airlock_last_error());
}

napi_value Console(napi_env env, napi_callback_info info) {
  auto a = args(env, info, 1);
  return sandbox_job(
      env, a[0], "airlock.console",
      [](airlock_sandbox* sb, Job& j) {
        char* out = nullptr;
        size_t len = 0;
        int rc = airlock_sandbox_console(sb, &out, &len);
        return take(j, rc, out, len);
      },
      bytes_js);
}

// ---- lifecycle, stats, exposed ports ----

// lifecycle(op, handle, ms): "setTimeout" | "extend" | "kill"
napi_value Lifecycle(napi_env env, napi_callback_info info) {
  auto a = args(env, info, 3);
  std::string op;
  double ms = 0;
  if (!a[0] || !get_string(env, a[0], &op))
    return throw_airlock(env, AIRLOCK_E_INVALID_ARGUMENT, "bad lifecycle op");
  if (a[2] && type_of(env, a[2]) == napi_number) napi_get_value_double(env, a[2], &ms);
  if (!(ms >= 0)) return throw_airlock(env, AIRLOCK_E_INVALID_ARGUMENT, "negative duration");
  auto value = static_cast<uint64_t>(std::min(ms, 9e15));
  if (op == "setTimeout")
    return sandbox_job(env, a[1], "airlock.setTimeout", [value](airlock_sandbox* sb, Job&) {
      return airlock_sandbox_set_timeout(sb, value);
    });
  if (op == "extend")
    return sandbox_job(env, a[1], "airlock.extend", [value](airlock_sandbox* sb, Job&) {
      return airlock_sandbox_extend(sb, value);
    });
  if (op == "kill")
    return sandbox_job(env, a[1], "airlock.kill",
                       [](airlock_sandbox* sb, Job&) { return airlock_sandbox_kill(sb); });
  return throw_airlock(env, AIRLOCK_E_INVALID_ARGUMENT, "unknown lifecycle op " + op);
}

// stats(handle): synchronous (no I/O), numbers in ms/ns/bytes.
napi_value Stats(napi_env env, napi_callback_info info) {
  auto a = args(env, info, 1);
  SandboxRef* ref;
  if (!unwrap_sandbox(env, a[0], &ref)) return nullptr;
  airlock_sandbox_stats s;
  airlock_sandbox_stats_init(&s);
  int rc = airlock_sandbox_stats_get(ref->sb, &s);
  if (rc != 0) return throw_airlock(env, rc, airlock_last_error());
  napi_value obj;
  napi_create_object(env, &obj);
  auto set = [&](const char* name, double v) {
    napi_value n;
    napi_create_double(env, v, &n);
    napi_set_named_property(env, obj, name, n);
  };
  set("uptimeMs", static_cast<double>(s.uptime_ms));
  set("vcpuTimeNs", static_cast<double>(s.vcpu_time_ns));
  set("memoryBytes", static_cast<double>(s.memory_bytes));
  set("memoryResidentBytes", static_cast<double>(s.memory_resident_bytes));
  set("netBytesUp", static_cast<double>(s.net_bytes_up));
  set("netBytesDown", static_cast<double>(s.net_bytes_down));
  set("netRequests", static_cast<double>(s.net_requests));
  set("commands", static_cast<double>(s.commands));
  napi_value left, running;
  if (s.time_left_ms < 0)
    napi_get_null(env, &left);
  else
    napi_create_double(env, static_cast<double>(s.time_left_ms), &left);
  napi_set_named_property(env, obj, "timeLeftMs", left);
  napi_get_boolean(env, s.running != 0, &running);
  napi_set_named_property(env, obj, "running", running);
  return obj;
}

// expose(handle, port, http) -> Promise<string>
napi_value Expose(napi_env env, napi_callback_info info) {
  auto a = args(env, info, 3);
  double port = 0;
  bool http = false;
  if (!a[1] || type_of(env, a[1]) != napi_number || napi_get_value_double(env, a[1], &port) ||
      !(port >= 1 && port <= 65535) || port != static_cast<double>(static_cast<uint32_t>(port)))
    return throw_airlock(env, AIRLOCK_E_INVALID_ARGUMENT, "port must be an integer 1 to 65535");
  if (a[2]) napi_get_value_bool(env, a[2], &http);
  auto p = static_cast<uint32_t>(port);
  return sandbox_job(
      env, a[0], http ? "airlock.exposeHttp" : "airlock.exposePort",
      [p, http](airlock_sandbox* sb, Job& j) {
        char* out = nullptr;
        int rc = http ? airlock_sandbox_expose_http(sb, p, &out)
                      : airlock_sandbox_expose_port(sb, p, &out);
        return take(j, rc, out, out ? std::strlen(out) : 0);
      },
      [](napi_env env, Job& j) {
        napi_value v;
        napi_create_string_utf8(env, j.bytes.data(), j.bytes.size(), &v);
        return v;
      });
}

// fs(op, handle, a, b, c)
napi_value Fs(napi_env env, napi_callback_info info) {
  auto a = args(env, info, 5);
  std::string op;
  if (!a[0] || !get_string(env, a[0], &op))
    return throw_airlock(env, AIRLOCK_E_INVALID_ARGUMENT, "bad fs op");
  auto s1 = std::make_shared<std::string>(), s2 = std::make_shared<std::string>();
  if (!a[2] || !get_string(env, a[2], s1.get()))
    return throw_airlock(env, AIRLOCK_E_INVALID_ARGUMENT, "path must be a string");
  double num = -1;
  if (op == "write") {
    if (!a[3] || !get_bytes(env, a[3], s2.get()))
      return throw_airlock(env, AIRLOCK_E_INVALID_ARGUMENT, "data must be a Buffer or string");
    if (a[4]) napi_get_value_double(env, a[4], &num);
    return sandbox_job(env, a[1], "airlock.fs", [s1, s2, num](airlock_sandbox* sb, Job&) {
      return airlock_fs_write(sb, s1->c_str(), s2->data(), s2->size(),
                              num > 0 ? static_cast<uint32_t>(num) : 0);
    });
  }
  if (op == "read") {
    return sandbox_job(
        env, a[1], "airlock.fs",
        [s1](airlock_sandbox* sb, Job& j) {
          char* out = nullptr;
          size_t len = 0;
          int rc = airlock_fs_read(sb, s1->c_str(), &out, &len);
          return take(j, rc, out, len);
        },
        bytes_js);
  }
  if (op == "upload" || op == "download") {
    if (!a[3] || !get_string(env, a[3], s2.get()))
      return throw_airlock(env, AIRLOCK_E_INVALID_ARGUMENT, "path must be a string");
    if (a[4]) napi_get_value_double(env, a[4], &num);
    bool up = op == "upload";
    return sandbox_job(env, a[1], "airlock.fs", [s1, s2, num, up](airlock_sandbox* sb, Job&) {
      return up ? airlock_fs_upload(sb, s1->c_str(), s2->c_str(),
                                    num >= 0 ? static_cast<int>(num) : -1)
                : airlock_fs_download(sb, s1->c_str(), s2->c_str());
    });
  }
  if (op == "mkdir" || op == "remove") {
    bool flag = false;
    if (a[3]) napi_get_value_bool(env, a[3], &flag);
    if (a[4]) napi_get_value_double(env, a[4], &num);
    bool mk = op == "mkdir";
    return sandbox_job(env, a[1], "airlock.fs", [s1, flag, num, mk](airlock_sandbox* sb, Job&) {
      return mk ? airlock_fs_mkdir(sb, s1->c_str(), num > 0 ? static_cast<uint32_t>(num) : 0,
                                   flag ? 1 : 0)
                : airlock_fs_remove(sb, s1->c_str(), flag ? 1 : 0);
    });
  }
  if (op == "stat") {
    return sandbox_job(
        env, a[1], "airlock.fs",
        [s1](airlock_sandbox* sb, Job& j) { return airlock_fs_stat(sb, s1->c_str(), &j.stat); },
        [](napi_env env, Job& j) {
          napi_value obj, v;
          napi_create_object(env, &obj);
          const char* type = j.stat.type == AIRLOCK_FILE_REGULAR     ? "file"
                             : j.stat.type == AIRLOCK_FILE_DIRECTORY ? "directory"
                             : j.stat.type == AIRLOCK_FILE_SYMLINK   ? "symlink"
                                                                     : "other";
          napi_create_string_utf8(env, type, NAPI_AUTO_LENGTH, &v);
          napi_set_named_property(env, obj, "type", v);
          napi_create_uint32(env, j.stat.mode, &v);
          napi_set_named_property(env, obj, "mode", v);
          napi_create_double(env, static_cast<double>(j.stat.size), &v);
          napi_set_named_property(env, obj, "size", v);
          napi_create_double(env, static_cast<double>(j.stat.mtime_ns) / 1e6, &v);
          napi_set_named_property(env, obj, "mtimeMs", v);
          return obj;
        });
  }
  return throw_airlock(env, AIRLOCK_E_INVALID_ARGUMENT, "unknown fs op");
}

// env(op, handle, name, value)
napi_value Env(napi_env env, napi_callback_info info) {
  auto a = args(env, info, 4);
  std::string op;
  if (!a[0] || !get_string(env, a[0], &op))
    return throw_airlock(env, AIRLOCK_E_INVALID_ARGUMENT, "bad env op");
  auto name = std::make_shared<std::string>(), value = std::make_shared<std::string>();
  if (op != "list" && (!a[2] || !get_string(env, a[2], name.get())))
    return throw_airlock(env, AIRLOCK_E_INVALID_ARGUMENT, "name must be a string");
  if (op == "get") {
    return sandbox_job(
        env, a[1], "airlock.env",
        [name](airlock_sandbox* sb, Job& j) {
          char* out = nullptr;
          int rc = airlock_env_get(sb, name->c_str(), &out);
          return take(j, rc, out, out ? std::strlen(out) : 0);
        },
        [](napi_env env, Job& j) {
          napi_value v;
          if (!j.has_bytes)
            napi_get_null(env, &v);
          else
            napi_create_string_utf8(env, j.bytes.data(), j.bytes.size(), &v);
          return v;
        });
  }
  if (op == "list") {
    return sandbox_job(
        env, a[1], "airlock.env",
        [](airlock_sandbox* sb, Job& j) {
          char* out = nullptr;
          size_t len = 0;
          int rc = airlock_env_list(sb, &out, &len);
          return take(j, rc, out, len);
        },
        [](napi_env env, Job& j) {
          napi_value obj;
          napi_create_object(env, &obj);
          size_t pos = 0;
          while (pos < j.bytes.size()) {
            size_t end = j.bytes.find('\0', pos);
            if (end == std::string::npos) end = j.bytes.size();
            std::string entry = j.bytes.substr(pos, end - pos);
            size_t eq = entry.find('=');
            napi_value v;
            std::string val = eq == std::string::npos ? "" : entry.substr(eq + 1);
            napi_create_string_utf8(env, val.data(), val.size(), &v);
            napi_set_named_property(env, obj, entry.substr(0, eq).c_str(), v);
            pos = end + 1;
          }
          return obj;
        });
  }
  if (op == "set") {
    if (!a[3] || !get_string(env, a[3], value.get()))
      return throw_airlock(env, AIRLOCK_E_INVALID_ARGUMENT, "value must be a string");
    return sandbox_job(env, a[1], "airlock.env", [name, value](airlock_sandbox* sb, Job&) {
      return airlock_env_set(sb, name->c_str(), value->c_str());
    });
  }
  if (op == "unset") {
    return sandbox_job(env, a[1], "airlock.env", [name](airlock_sandbox* sb, Job&) {
      return airlock_env_unset(sb, name->c_str());
    });
  }
  return throw_airlock(env, AIRLOCK_E_INVALID_ARGUMENT, "unknown env op");
}

napi_value Versions(napi_env env, napi_callback_info) {
  napi_value obj, v;
  napi_create_object(env, &obj);
  napi_create_string_utf8(env, airlock_version(), NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, obj, "version", v);
  napi_create_int32(env, airlock_abi_version(), &v);
  napi_set_named_property(env, obj, "abi", v);
  return obj;
}

// Internal, for bench/bindings only (index.js: Sandbox#_benchShLoop, not public API):
// sh("true") `n` times through the C ABI on this sandbox's own handle, on a pool thread like
// every other call, resolving to the round trips in nanoseconds. It is the C side of the
// benchmark's Node-versus-C comparison, measured on the same sandbox as the binding's sh.
napi_value BenchShLoop(napi_env env, napi_callback_info info) {
  auto a = args(env, info, 2);
  double n = 0;
  if (!a[1] || napi_get_value_double(env, a[1], &n) != napi_ok || !(n >= 1 && n <= 1e6))
    return throw_airlock(env, AIRLOCK_E_INVALID_ARGUMENT, "n must be a number from 1 to 1e6");
  auto samples = std::make_shared<std::vector<double>>();
  const int count = static_cast<int>(n);
  return sandbox_job(
      env, a[0], "airlock.benchShLoop",
      [samples, count](airlock_sandbox* sb, Job&) {
        airlock_exec_result r;
        airlock_exec_result_init(&r);
        for (int i = 0; i < count; ++i) {
          auto t0 = std::chrono::steady_clock::now();
          int rc = airlock_sandbox_sh(sb, "true", nullptr, &r);
          auto t1 = std::chrono::steady_clock::now();
          if (rc != AIRLOCK_OK) return rc;
          int code = r.exit_code;
          airlock_exec_result_free(&r);
          if (code != 0) return AIRLOCK_E_INTERNAL;  // `true` failed: nothing to measure
          samples->push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
        }
        return AIRLOCK_OK;
      },
      [samples](napi_env env, Job&) -> napi_value {
        napi_value arr, v;
        napi_create_array_with_length(env, samples->size(), &arr);
        for (size_t i = 0; i < samples->size(); ++i) {
          napi_create_double(env, (*samples)[i], &v);
          napi_set_element(env, arr, static_cast<uint32_t>(i), v);
        }
        return arr;
      });
}

// ---- storage ----

// storage(op, dir|null, a, b, sizeBytes): volumes and snapshots on the host, off the event loop
// (copies can be large). List ops resolve to the C ABI's text lines.
napi_value Storage(napi_env env, napi_callback_info info) {
  auto a = args(env, info, 5);
  std::string op, dir, x, y;
  bool has_dir = false;
  auto str = [&](napi_value v, std::string* out) {
    size_t n = 0;
    if (!v || type_of(env, v) != napi_string) return false;
    napi_get_value_string_utf8(env, v, nullptr, 0, &n);
    out->resize(n + 1);
    napi_get_value_string_utf8(env, v, out->data(), n + 1, &n);
    out->resize(n);
    return true;
  };
  if (!str(a[0], &op))
    return throw_airlock(env, AIRLOCK_E_INVALID_ARGUMENT, "bad storage operation");
  has_dir = str(a[1], &dir);
  bool has_x = str(a[2], &x), has_y = str(a[3], &y);
  double size = 0;
  if (a[4] && type_of(env, a[4]) == napi_number) napi_get_value_double(env, a[4], &size);
  auto in = std::make_shared<std::array<std::string, 3>>(std::array<std::string, 3>{dir, x, y});
  auto job = std::make_unique<Job>();
  job->keep = in;
  const char* d = has_dir ? (*in)[0].c_str() : nullptr;
  const char* p = has_x ? (*in)[1].c_str() : nullptr;
  const char* q = has_y ? (*in)[2].c_str() : nullptr;
  auto list = [](auto fn, const char* dir) {
    return [fn, dir](Job& j) {
      char* out = nullptr;
      size_t len = 0;
      int rc = fn(dir, &out, &len);
      return take(j, rc, out, len);
    };
  };
  if (op == "createVolume") {
    auto bytes = static_cast<uint64_t>(std::max(0.0, size));
    job->run = [d, p, bytes](Job&) { return airlock_volume_create(d, p, bytes); };
  } else if (op == "listVolumes") {
    job->run = list(airlock_volume_list, d);
  } else if (op == "removeVolume") {
    job->run = [d, p](Job&) { return airlock_volume_remove(d, p); };
  } else if (op == "snapshotVolume") {
    job->run = [d, p, q](Job&) { return airlock_volume_snapshot(d, p, q); };
  } else if (op == "volumeFromSnapshot") {
    job->run = [d, p, q](Job&) { return airlock_volume_from_snapshot(d, p, q); };
  } else if (op == "listSnapshots") {
    job->run = list(airlock_snapshot_list, d);
  } else if (op == "removeSnapshot") {
    job->run = [d, p](Job&) { return airlock_snapshot_remove(d, p); };
  } else {
    return throw_airlock(env, AIRLOCK_E_INVALID_ARGUMENT, "bad storage operation");
  }
  job->convert = [](napi_env env, Job& j) {
    napi_value v;
    if (!j.has_bytes)
      napi_get_null(env, &v);
    else
      napi_create_string_utf8(env, j.bytes.data(), j.bytes.size(), &v);
    return v;
  };
  return start(env, std::move(job), "airlock.storage");
}

napi_value Snapshot(napi_env env, napi_callback_info info) {
  auto a = args(env, info, 2);
  auto name = std::make_shared<std::string>();
  size_t n = 0;
  if (!a[1] || type_of(env, a[1]) != napi_string)
    return throw_airlock(env, AIRLOCK_E_INVALID_ARGUMENT, "snapshot name must be a string");
  napi_get_value_string_utf8(env, a[1], nullptr, 0, &n);
  name->resize(n + 1);
  napi_get_value_string_utf8(env, a[1], name->data(), n + 1, &n);
  name->resize(n);
  return sandbox_job(env, a[0], "airlock.snapshot", [name](airlock_sandbox* sb, Job&) {
    return airlock_sandbox_snapshot(sb, name->c_str());
  });
}

napi_value Init(napi_env env, napi_value exports) {
  static std::string load_error = load_library();  // once per process
  if (!load_error.empty()) {
    napi_throw_error(env, nullptr, load_error.c_str());
    return nullptr;
  }
  struct {
    const char* name;
    napi_callback fn;
  } fns[] = {
      {"create", Create},
      {"sh", Sh},
      {"exec", Exec},
      {"spawn", Spawn},
      {"pid", ProcessPid},
      {"write", ProcessWrite},
      {"closeStdin", ProcessCloseStdin},
      {"kill", ProcessKill},
      {"wait", ProcessWait},
      {"destroyProcess", ProcessDestroy},
      {"close", Close},
      {"destroy", Destroy},
      {"ping", Ping},
      {"status", Status},
      {"console", Console},
      {"fs", Fs},
      {"env", Env},
      {"lifecycle", Lifecycle},
      {"stats", Stats},
      {"expose", Expose},
      {"storage", Storage},
      {"snapshot", Snapshot},
      {"versions", Versions},
      {"_benchShLoop", BenchShLoop},
  };
  for (const auto& f : fns) {
    napi_value v;
    napi_create_function(env, f.name, NAPI_AUTO_LENGTH, f.fn, nullptr, &v);
    napi_set_named_property(env, exports, f.name, v);
  }
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
