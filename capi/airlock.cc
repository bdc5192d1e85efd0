// The C ABI (capi/airlock.h) over airlock::Sandbox.
//
// Every entry point runs inside guard(): no exception leaves, errors become negative status codes
// and a thread-local message. Handles live in a registry of shared_ptrs, so a call holds its
// object alive for its whole duration, destroy only unregisters + closes, and a stale or foreign
// pointer is refused instead of dereferenced. Callbacks pass through Gates: destroy closes the
// gate and waits for callbacks already inside, so no user callback runs after destroy returns.
// Threads: any entry point from any thread.
#include "airlock.h"

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

#include "airlock/proxy.hpp"
#include "airlock/sandbox.hpp"

#ifndef AIRLOCK_VERSION_STRING
#define AIRLOCK_VERSION_STRING "0.0.0"
#endif

using airlock::Errc;
using airlock::Millis;
using airlock::Status;

namespace {

thread_local std::string t_last_error;

int fail(Errc code, std::string message) {
  t_last_error = std::move(message);
  return -static_cast<int>(code);
}

int fail(const Status& st) {
  if (st.ok()) return AIRLOCK_OK;
  return fail(st.code(), st.message());
}

template <class F>
int guard(F&& f) noexcept {
  try {
    t_last_error.clear();
    return f();
  } catch (const std::bad_alloc&) {
    try {
      return fail(Errc::resource_exhausted, "out of memory");
    } catch (...) {
      return -static_cast<int>(Errc::resource_exhausted);
    }
  } catch (...) {
    try {
      return fail(Errc::internal, "internal error in airlock (exception at the C boundary)");
    } catch (...) {
      return -static_cast<int>(Errc::internal);
    }
  }
}

// Lets callbacks in until close(); close() waits for those inside (except the caller's own).
class Gate {
 public:
  bool enter() {
    std::lock_guard lock(mutex_);
    if (!open_) return false;
    ++active_;
    held().push_back(this);
    return true;
  }
  void leave() {
    auto& h = held();
    auto it = std::find(h.rbegin(), h.rend(), this);
    if (it != h.rend()) h.erase(std::next(it).base());
    std::lock_guard lock(mutex_);
    --active_;
    cv_.notify_all();
  }
  bool held_by_this_thread() const {
    auto& h = held();
    return std::find(h.begin(), h.end(), this) != h.end();
  }
  void close() {
    std::unique_lock lock(mutex_);
    open_ = false;
    cv_.wait(lock, [&] { return active_ == 0; });
  }

 private:
  static std::vector<const Gate*>& held() {
    thread_local std::vector<const Gate*> gates;
    return gates;
  }
  std::mutex mutex_;
  std::condition_variable cv_;
  bool open_ = true;
  int active_ = 0;
};

// Runs fn only while every gate is open; swallows anything fn throws (C callbacks don't, but a
// C++ caller's might).
template <class F>
void through_gates(std::initializer_list<Gate*> gates, F&& fn) {
  std::vector<Gate*> entered;
  for (Gate* g : gates) {
    if (!g->enter()) {
      for (Gate* e : entered) e->leave();
      return;
    }
    entered.push_back(g);
  }
  try {
    fn();
  } catch (...) {
  }
  for (auto it = entered.rbegin(); it != entered.rend(); ++it) (*it)->leave();
}

// Bounds of what the C structs may claim as their size.
constexpr size_t kMaxStructSize = 64 * 1024;

// Size of each struct's version 1; fields appended since then read as zero for callers built
// against version 1. A struct that never grew is its own version 1.
template <class T>
constexpr size_t kVersion1Size = sizeof(T);
template <>
constexpr size_t kVersion1Size<airlock_sandbox_options> =
    offsetof(airlock_sandbox_options, max_lifetime_ms) +
    sizeof(airlock_sandbox_options::max_lifetime_ms);

// Copies a caller's struct of a possibly different version into `out` (which the caller has
// initialised with the struct's _init function: an older caller's missing fields keep those
// defaults).
template <class T>
int read_struct(const T* in, T* out, const char* what) {
  if (in == nullptr) return fail(Errc::invalid_argument, std::string(what) + " is NULL");
  size_t size = in->struct_size;
  if (size < kVersion1Size<T>)
    return fail(Errc::invalid_argument,
                std::string(what) + ".struct_size is smaller than this library's version 1 (" +
                    std::to_string(size) + " < " + std::to_string(kVersion1Size<T>) +
                    "): initialise it with its _init function");
  if (size < sizeof(T)) {  // an older caller: copy what it has
    std::memcpy(static_cast<void*>(out), in, size);
    out->struct_size = sizeof(T);
    return AIRLOCK_OK;
  }
  if (size > kMaxStructSize)
    return fail(Errc::invalid_argument, std::string(what) + ".struct_size is implausible");
  const unsigned char* bytes = reinterpret_cast<const unsigned char*>(in);
  for (size_t i = sizeof(T); i < size; ++i) {
    if (bytes[i] != 0)
      return fail(Errc::invalid_argument,
                  std::string(what) + " sets fields this library version does not know");
  }
  std::memcpy(out, in, sizeof(T));
  return AIRLOCK_OK;
}

template <class T>
int check_out_struct(T* out, const char* what) {
  if (out == nullptr) return fail(Errc::invalid_argument, std::string(what) + " is NULL");
  if (out->struct_size < sizeof(T) || out->struct_size > kMaxStructSize)
    return fail(Errc::invalid_argument, std::string(what) +
                                            ".struct_size is wrong: initialise it with its _init "
                                            "function");
  return AIRLOCK_OK;
}

int need(const void* p, const char* what) {
  if (p == nullptr) return fail(Errc::invalid_argument, std::string(what) + " is NULL");
  return AIRLOCK_OK;
}

Millis clamp_ms(uint64_t ms) {
  constexpr uint64_t kMax = 30ull * 24 * 3600 * 1000;  // 30 days: "forever" without overflow
  return Millis(static_cast<int64_t>(std::min(ms, kMax)));
}

int env_map(const airlock_env_var* vars, size_t count, std::map<std::string, std::string>* out,
            const char* what) {
  if (count > 0 && vars == nullptr)
    return fail(Errc::invalid_argument, std::string(what) + " is NULL with a non-zero count");
  for (size_t i = 0; i < count; ++i) {
    if (vars[i].name == nullptr || vars[i].value == nullptr)
      return fail(Errc::invalid_argument, std::string(what) + " has a NULL name or value");
    (*out)[vars[i].name] = vars[i].value;
  }
  return AIRLOCK_OK;
}

int string_list(const char* const* items, size_t count, std::vector<std::string>* out,
                const char* what) {
  if (count > 0 && items == nullptr)
    return fail(Errc::invalid_argument, std::string(what) + " is NULL with a non-zero count");
  for (size_t i = 0; i < count; ++i) {
    if (items[i] == nullptr)
      return fail(Errc::invalid_argument, std::string(what) + " has a NULL entry");
    out->emplace_back(items[i]);
  }
  return AIRLOCK_OK;
}

char* dup_bytes(const std::string& s) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (p == nullptr) throw std::bad_alloc();
  if (!s.empty()) std::memcpy(p, s.data(), s.size());
  p[s.size()] = '\0';
  return p;
}

void fill_result(airlock_exec_result* out, airlock::ExecResult& r) {
  char* so = dup_bytes(r.stdout);
  char* se = nullptr;
  try {
    se = dup_bytes(r.stderr);
  } catch (...) {
    std::free(so);
    throw;
  }
  out->exit_code = r.exit_code;
  out->signal = r.signal;
  out->timed_out = r.timed_out ? 1 : 0;
  out->stdout_data = so;
  out->stdout_len = r.stdout.size();
  out->stderr_data = se;
  out->stderr_len = r.stderr.size();
}

void reset_result(airlock_exec_result* r) {
  size_t size = r->struct_size;
  std::memset(reinterpret_cast<char*>(r) + sizeof(size_t), 0, sizeof(*r) - sizeof(size_t));
  r->struct_size = size;
  r->exit_code = -1;
}

}  // namespace

struct airlock_hook_decision {
  airlock::HookDecision decision;
};

struct airlock_sandbox {
  std::unique_ptr<airlock::Sandbox> sandbox;
  // Console, audit and hook callbacks pass it; so do process callbacks. Shared with the
  // callbacks so it outlives whichever of them runs last.
  std::shared_ptr<Gate> gate = std::make_shared<Gate>();
};

struct airlock_process {
  std::shared_ptr<airlock_sandbox> owner;  // keeps the C++ Sandbox alive as long as the Process
  std::shared_ptr<Gate> gate = std::make_shared<Gate>();
  std::unique_ptr<airlock::Process> process;
};

namespace {

// Live handles. Lookups copy the shared_ptr so an object outlives the calls using it.
template <class T>
class Registry {
 public:
  void add(const std::shared_ptr<T>& obj) {
    std::lock_guard lock(mutex_);
    items_[obj.get()] = obj;
  }
  std::shared_ptr<T> find(const T* p) {
    std::lock_guard lock(mutex_);
    auto it = items_.find(p);
    return it == items_.end() ? nullptr : it->second;
  }
  std::shared_ptr<T> take(const T* p) {
    std::lock_guard lock(mutex_);
    auto it = items_.find(p);
    if (it == items_.end()) return nullptr;
    auto obj = std::move(it->second);
    items_.erase(it);
    return obj;
  }

 private:
  std::mutex mutex_;
  std::unordered_map<const T*, std::shared_ptr<T>> items_;
};

// Leaked on purpose: handles may still be destroyed from other static destructors.
Registry<airlock_sandbox>& sandboxes() {
  static auto* r = new Registry<airlock_sandbox>();
  return *r;
}
Registry<airlock_process>& processes() {
  static auto* r = new Registry<airlock_process>();
  return *r;
}

int lookup(airlock_sandbox* handle, std::shared_ptr<airlock_sandbox>* out) {
  if (handle == nullptr) return fail(Errc::invalid_argument, "sandbox handle is NULL");
  *out = sandboxes().find(handle);
  if (!*out) return fail(Errc::invalid_argument, "not a live sandbox handle (destroyed?)");
  return AIRLOCK_OK;
}

int lookup(airlock_process* handle, std::shared_ptr<airlock_process>* out) {
  if (handle == nullptr) return fail(Errc::invalid_argument, "process handle is NULL");
  *out = processes().find(handle);
  if (!*out) return fail(Errc::invalid_argument, "not a live process handle (destroyed?)");
  return AIRLOCK_OK;
}

airlock::OutputCallback output_trampoline(airlock_output_fn fn, void* user_data,
                                          std::shared_ptr<Gate> first,
                                          std::shared_ptr<Gate> second = nullptr) {
  if (fn == nullptr) return nullptr;
  return [fn, user_data, first, second](std::string_view data) {
    if (second) {
      through_gates({first.get(), second.get()}, [&] { fn(data.data(), data.size(), user_data); });
    } else {
      through_gates({first.get()}, [&] { fn(data.data(), data.size(), user_data); });
    }
  };
}

// ---- networking options: wired through when SandboxOptions has the fields ----

void audit_to_c(const airlock::AuditEvent& e, airlock_audit_fn fn, void* user_data) {
  std::vector<const char*> names;
  for (const auto& n : e.secrets_substituted) names.push_back(n.c_str());
  airlock_audit_event c;
  std::memset(&c, 0, sizeof(c));
  c.struct_size = sizeof(c);
  c.time_unix_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(e.time.time_since_epoch()).count();
  c.connection_id = e.connection_id;
  c.client = e.client.c_str();
  c.method = e.method.c_str();
  c.scheme = e.scheme.c_str();
  c.host = e.host.c_str();
  c.port = e.port;
  c.path = e.path.c_str();
  c.status = e.status;
  c.bytes_up = e.bytes_up;
  c.bytes_down = e.bytes_down;
  c.duration_us = e.duration.count();
  c.decision = e.decision == airlock::AuditEvent::Decision::allowed  ? AIRLOCK_DECISION_ALLOWED
               : e.decision == airlock::AuditEvent::Decision::denied ? AIRLOCK_DECISION_DENIED
                                                                     : AIRLOCK_DECISION_ERROR;
  c.reason = e.reason.c_str();
  c.secrets_substituted = names.empty() ? nullptr : names.data();
  c.secrets_substituted_count = names.size();
  c.exfiltration_attempt = e.exfiltration_attempt ? 1 : 0;
  fn(&c, user_data);
}

airlock::HookDecision hook_to_c(const airlock::HookRequest& r, airlock_hook_fn fn,
                                void* user_data) {
  std::vector<airlock_header> headers;
  for (const auto& [k, v] : r.headers) headers.push_back({k.c_str(), v.c_str()});
  airlock_hook_request c;
  std::memset(&c, 0, sizeof(c));
  c.struct_size = sizeof(c);
  c.method = r.method.c_str();
  c.scheme = r.scheme.c_str();
  c.host = r.host.c_str();
  c.port = r.port;
  c.target = r.target.c_str();
  c.headers = headers.empty() ? nullptr : headers.data();
  c.headers_count = headers.size();
  airlock_hook_decision d;
  int rc = fn(&c, &d, user_data);
  if (rc != 0) {
    airlock::HookDecision deny;
    deny.action = airlock::HookDecision::Action::deny;
    deny.status = 403;
    deny.message = "denied by the request hook";
    return deny;
  }
  return std::move(d.decision);
}

template <class O>
int apply_network(O& o, const airlock_sandbox_options& c, airlock_sandbox* handle) {
  bool wants_net = c.allow_net_count > 0;
  bool wants_secrets = c.secrets_count > 0;
  bool wants_audit = c.on_audit != nullptr;
  bool wants_hook = c.request_hook != nullptr;
  constexpr bool has_net = requires {
    o.allow_net;
  };
  constexpr bool has_secrets = requires {
    o.secrets;
  };
  if ((wants_net && !has_net) || (wants_secrets && !has_secrets))
    return fail(Errc::unavailable, "networking not built yet");

  if constexpr (has_net) {
    std::vector<std::string> hosts;
    if (int rc = string_list(c.allow_net, c.allow_net_count, &hosts, "options.allow_net"))
      return rc;
    o.allow_net = std::move(hosts);
  }
  if constexpr (has_secrets) {
    if (c.secrets_count > 0 && c.secrets == nullptr)
      return fail(Errc::invalid_argument, "options.secrets is NULL with a non-zero count");
    for (size_t i = 0; i < c.secrets_count; ++i) {
      const airlock_secret& s = c.secrets[i];
      if (s.name == nullptr || s.value == nullptr)
        return fail(Errc::invalid_argument, "options.secrets has a NULL name or value");
      airlock::SecretSpec spec;
      spec.name = s.name;
      spec.value = s.value;
      if (int rc = string_list(s.hosts, s.hosts_count, &spec.hosts, "options.secrets[].hosts"))
        return rc;
      o.secrets.push_back(std::move(spec));
    }
  }
  if (c.resolve_override_count > 0 || c.extra_ca_files_count > 0) {
    if constexpr (requires {
                    o.resolve_override;
                    o.extra_ca_files;
                  }) {
      if (int rc = env_map(c.resolve_override, c.resolve_override_count, &o.resolve_override,
                           "options.resolve_override"))
        return rc;
      if (int rc = string_list(c.extra_ca_files, c.extra_ca_files_count, &o.extra_ca_files,
                               "options.extra_ca_files"))
        return rc;
    } else {
      return fail(Errc::unavailable, "networking not built yet (no upstream overrides)");
    }
  }
  if (wants_audit) {
    if constexpr (requires { o.on_audit = airlock::AuditCallback(); }) {
      std::shared_ptr<Gate> gate = handle->gate;
      o.on_audit = [fn = c.on_audit, ud = c.audit_user_data, gate](const airlock::AuditEvent& e) {
        through_gates({gate.get()}, [&] { audit_to_c(e, fn, ud); });
      };
    } else {
      return fail(Errc::unavailable, "networking not built yet (no audit events)");
    }
  }
  if (wants_hook) {
    std::shared_ptr<Gate> gate = handle->gate;
    airlock::RequestHook hook = [fn = c.request_hook, ud = c.hook_user_data,
                                 gate](const airlock::HookRequest& r) {
      airlock::HookDecision d;
      d.action = airlock::HookDecision::Action::deny;
      d.status = 403;
      d.message = "sandbox is shutting down";
      through_gates({gate.get()}, [&] { d = hook_to_c(r, fn, ud); });
      return d;
    };
    if constexpr (requires { o.request_hook = airlock::RequestHook(); }) {
      o.request_hook = std::move(hook);
    } else if constexpr (requires { o.hook = airlock::RequestHook(); }) {
      o.hook = std::move(hook);
    } else {
      return fail(Errc::unavailable, "networking not built yet (no request hook)");
    }
    if (c.hook_deadline_ms > 0) {
      if constexpr (requires { o.hook_deadline = Millis(1); }) {
        o.hook_deadline = Millis(c.hook_deadline_ms);
      }
    }
  }
  return AIRLOCK_OK;
}

int apply_storage(airlock::SandboxOptions& o, const airlock_sandbox_options& c) {
  if (c.root_image) o.root_image = c.root_image;
  if (c.root_snapshot) o.root_snapshot = c.root_snapshot;
  o.snapshottable_root = c.snapshottable_root != 0;
  if (c.root_upper_bytes) o.root_upper_bytes = c.root_upper_bytes;
  if (c.storage_dir) o.storage_dir = c.storage_dir;
  if (c.volumes_count > 0 && c.volumes == nullptr)
    return fail(Errc::invalid_argument, "options.volumes is NULL with a non-zero count");
  for (size_t i = 0; i < c.volumes_count; ++i) {
    const airlock_volume_mount& v = c.volumes[i];
    if (v.name == nullptr || v.path == nullptr)
      return fail(Errc::invalid_argument, "options.volumes has a NULL name or path");
    o.volumes.push_back({v.name, v.path, v.read_only != 0});
  }
  return AIRLOCK_OK;
}

}  // namespace

extern "C" {

const char* airlock_version(void) {
  return AIRLOCK_VERSION_STRING;
}

int airlock_abi_version(void) {
  return AIRLOCK_ABI_VERSION;
}

const char* airlock_last_error(void) {
  try {
    return t_last_error.c_str();
  } catch (...) {
    return "";
  }
}

const char* airlock_status_name(int status) {
  if (status == 0) return "ok";
  if (status < -13 || status > 0) return "unknown";
  return airlock::errc_name(static_cast<Errc>(-status));
}

void airlock_free(void* ptr) {
  std::free(ptr);
}

void airlock_sandbox_options_init(airlock_sandbox_options* o) {
  if (o == nullptr) return;
  std::memset(o, 0, sizeof(*o));
  o->struct_size = sizeof(*o);
}
void airlock_exec_options_init(airlock_exec_options* o) {
  if (o == nullptr) return;
  std::memset(o, 0, sizeof(*o));
  o->struct_size = sizeof(*o);
}
void airlock_spawn_options_init(airlock_spawn_options* o) {
  if (o == nullptr) return;
  std::memset(o, 0, sizeof(*o));
  o->struct_size = sizeof(*o);
}
void airlock_exec_result_init(airlock_exec_result* r) {
  if (r == nullptr) return;
  std::memset(r, 0, sizeof(*r));
  r->struct_size = sizeof(*r);
  r->exit_code = -1;
}
void airlock_file_stat_init(airlock_file_stat* s) {
  if (s == nullptr) return;
  std::memset(s, 0, sizeof(*s));
  s->struct_size = sizeof(*s);
}
void airlock_exec_result_free(airlock_exec_result* r) {
  if (r == nullptr) return;
  std::free(r->stdout_data);
  std::free(r->stderr_data);
  size_t size = r->struct_size;
  std::memset(r, 0, sizeof(*r));
  r->struct_size = size;
  r->exit_code = -1;
}

int airlock_hook_deny(airlock_hook_decision* d, int http_status, const char* message) {
  return guard([&] {
    if (int rc = need(d, "decision")) return rc;
    if (http_status < 100 || http_status > 599)
      return fail(Errc::invalid_argument, "http_status must be 100..599");
    d->decision.action = airlock::HookDecision::Action::deny;
    d->decision.status = http_status;
    d->decision.message = message ? message : "";
    return AIRLOCK_OK;
  });
}

int airlock_hook_set_header(airlock_hook_decision* d, const char* name, const char* value) {
  return guard([&] {
    if (int rc = need(d, "decision")) return rc;
    if (name == nullptr || value == nullptr || *name == '\0')
      return fail(Errc::invalid_argument, "header name and value are required");
    d->decision.set_headers.emplace_back(name, value);
    return AIRLOCK_OK;
  });
}

int airlock_hook_remove_header(airlock_hook_decision* d, const char* name) {
  return guard([&] {
    if (int rc = need(d, "decision")) return rc;
    if (name == nullptr || *name == '\0')
      return fail(Errc::invalid_argument, "header name is required");
    d->decision.remove_headers.emplace_back(name);
    return AIRLOCK_OK;
  });
}

int airlock_sandbox_create(const airlock_sandbox_options* options, airlock_sandbox** out) {
  return guard([&] {
    if (int rc = need(out, "out")) return rc;
    *out = nullptr;
    airlock_sandbox_options c;
    airlock_sandbox_options_init(&c);
    if (int rc = read_struct(options, &c, "options")) return rc;

    auto handle = std::make_shared<airlock_sandbox>();
    airlock::SandboxOptions o;
    if (c.kernel_path) o.kernel_path = c.kernel_path;
    if (c.initramfs_path) o.initramfs_path = c.initramfs_path;
    if (c.memory_bytes) o.memory_bytes = c.memory_bytes;
    if (c.vcpus) o.vcpus = c.vcpus;
    if (c.boot_timeout_ms) o.boot_timeout = Millis(c.boot_timeout_ms);
    if (int rc = env_map(c.env, c.env_count, &o.env, "options.env")) return rc;
    if (int rc = apply_network(o, c, handle.get())) return rc;
    if (int rc = apply_storage(o, c)) return rc;
    if (c.has_tap_fd) {
      // Sandbox::create dup()s it; the caller's fd stays the caller's.
      if (c.tap_fd < 0)
        return fail(Errc::invalid_argument, "options.tap_fd is negative (with has_tap_fd set)");
      o.tap_fd = c.tap_fd;
    }
    o.timeout = clamp_ms(c.timeout_ms);
    o.max_lifetime = clamp_ms(c.max_lifetime_ms);
    if (c.on_console) {
      o.on_console = output_trampoline(c.on_console, c.console_user_data, handle->gate);
    }
    auto sb = airlock::Sandbox::create(std::move(o));
    if (!sb.ok()) {
      handle->gate->close();  // a console callback may still be finishing on a dying VMM thread
      return fail(sb.status());
    }
    handle->sandbox = std::move(sb).value();
    sandboxes().add(handle);
    *out = handle.get();
    return AIRLOCK_OK;
  });
}

int airlock_sandbox_close(airlock_sandbox* sandbox) {
  return guard([&] {
    std::shared_ptr<airlock_sandbox> h;
    if (int rc = lookup(sandbox, &h)) return rc;
    h->sandbox->close();
    return AIRLOCK_OK;
  });
}

int airlock_sandbox_destroy(airlock_sandbox* sandbox) {
  return guard([&] {
    if (sandbox == nullptr) return AIRLOCK_OK;
    std::shared_ptr<airlock_sandbox> h = sandboxes().find(sandbox);
    if (!h) return fail(Errc::invalid_argument, "not a live sandbox handle (destroyed?)");
    if (h->gate->held_by_this_thread())
      return fail(Errc::invalid_argument,
                  "airlock_sandbox_destroy called from one of the sandbox's own callbacks");
    if (!sandboxes().take(sandbox)) return AIRLOCK_OK;  // another thread destroyed it meanwhile
    h->gate->close();
    h->sandbox->close();
    return AIRLOCK_OK;  // the object goes when the last running call drops its reference
  });
}

int airlock_sandbox_status(airlock_sandbox* sandbox) {
  return guard([&] {
    std::shared_ptr<airlock_sandbox> h;
    if (int rc = lookup(sandbox, &h)) return rc;
    return fail(h->sandbox->status());
  });
}

int airlock_sandbox_ping(airlock_sandbox* sandbox, uint64_t timeout_ms) {
  return guard([&] {
    std::shared_ptr<airlock_sandbox> h;
    if (int rc = lookup(sandbox, &h)) return rc;
    auto r = h->sandbox->ping("airlock", timeout_ms ? clamp_ms(timeout_ms) : Millis(5000));
    if (!r.ok()) return fail(r.status());
    return AIRLOCK_OK;
  });
}

int airlock_sandbox_console(airlock_sandbox* sandbox, char** out, size_t* out_len) {
  return guard([&] {
    if (int rc = need(out, "out")) return rc;
    *out = nullptr;
    if (out_len) *out_len = 0;
    std::shared_ptr<airlock_sandbox> h;
    if (int rc = lookup(sandbox, &h)) return rc;
    std::string s = h->sandbox->console_output();
    *out = dup_bytes(s);
    if (out_len) *out_len = s.size();
    return AIRLOCK_OK;
  });
}

}  // extern "C"

namespace {

int run_exec(airlock_sandbox* sandbox, std::vector<std::string> argv,
             const airlock_exec_options* options, airlock_exec_result* result) {
  if (int rc = check_out_struct(result, "result")) return rc;
  reset_result(result);
  airlock_exec_options c;
  airlock_exec_options_init(&c);
  if (options != nullptr) {
    if (int rc = read_struct(options, &c, "options")) return rc;
  }
  std::shared_ptr<airlock_sandbox> h;
  if (int rc = lookup(sandbox, &h)) return rc;
  std::map<std::string, std::string> env;
  if (int rc = env_map(c.env, c.env_count, &env, "options.env")) return rc;
  if (c.stdin_len > 0 && c.stdin_data == nullptr)
    return fail(Errc::invalid_argument, "options.stdin_data is NULL with a non-zero length");
  std::string stdin_data =
      c.stdin_len ? std::string(static_cast<const char*>(c.stdin_data), c.stdin_len) : "";

  if (c.on_stdout == nullptr && c.on_stderr == nullptr) {
    airlock::ExecOptions o;
    o.env = std::move(env);
    if (c.cwd) o.cwd = c.cwd;
    o.timeout = clamp_ms(c.timeout_ms);
    o.wait_timeout = clamp_ms(c.wait_timeout_ms);
    o.stdin_data = std::move(stdin_data);
    auto r = h->sandbox->exec(argv, o);
    if (!r.ok()) return fail(r.status());
    fill_result(result, r.value());
    return AIRLOCK_OK;
  }

  // Streaming: a spawned process whose callbacks stop (gate) before this call returns.
  auto call_gate = std::make_shared<Gate>();
  airlock::SpawnOptions so;
  so.env = std::move(env);
  if (c.cwd) so.cwd = c.cwd;
  so.timeout = clamp_ms(c.timeout_ms);
  so.on_stdout = output_trampoline(c.on_stdout, c.user_data, h->gate, call_gate);
  so.on_stderr = output_trampoline(c.on_stderr, c.user_data, h->gate, call_gate);
  Millis wait = clamp_ms(c.wait_timeout_ms);
  if (wait.count() == 0) wait = c.timeout_ms ? so.timeout + Millis(10000) : Millis(3600000);
  auto deadline = std::chrono::steady_clock::now() + wait;
  auto p = h->sandbox->spawn(argv, std::move(so));
  if (!p.ok()) return fail(p.status());
  auto& proc = *p.value();
  auto left = [&] {
    return std::max(
        Millis(1), std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now()));
  };
  if (!stdin_data.empty()) {
    Status st = proc.write_stdin(stdin_data, left());
    if (!st.ok() && st.code() != Errc::closed) {
      (void)proc.kill(SIGKILL);
      call_gate->close();
      return fail(st);
    }
  }
  (void)proc.close_stdin();
  auto r = proc.wait(left());
  if (!r.ok()) {
    (void)proc.kill(SIGKILL);
    call_gate->close();
    return fail(r.status());
  }
  call_gate->close();
  fill_result(result, r.value());
  return AIRLOCK_OK;
}

}  // namespace

extern "C" {

int airlock_sandbox_sh(airlock_sandbox* sandbox, const char* command,
                       const airlock_exec_options* options, airlock_exec_result* result) {
  return guard([&] {
    if (int rc = need(command, "command")) return rc;
    return run_exec(sandbox, {"/bin/sh", "-c", command}, options, result);
  });
}

int airlock_sandbox_exec(airlock_sandbox* sandbox, const char* const* argv, size_t argc,
                         const airlock_exec_options* options, airlock_exec_result* result) {
  return guard([&] {
    if (argc == 0) return fail(Errc::invalid_argument, "argv is empty");
    std::vector<std::string> args;
    if (int rc = string_list(argv, argc, &args, "argv")) return rc;
    return run_exec(sandbox, std::move(args), options, result);
  });
}

int airlock_sandbox_spawn(airlock_sandbox* sandbox, const char* const* argv, size_t argc,
                          const airlock_spawn_options* options, airlock_process** out) {
  return guard([&] {
    if (int rc = need(out, "out")) return rc;
    *out = nullptr;
    if (argc == 0) return fail(Errc::invalid_argument, "argv is empty");
    std::vector<std::string> args;
    if (int rc = string_list(argv, argc, &args, "argv")) return rc;
    airlock_spawn_options c;
    airlock_spawn_options_init(&c);
    if (options != nullptr) {
      if (int rc = read_struct(options, &c, "options")) return rc;
    }
    std::shared_ptr<airlock_sandbox> h;
    if (int rc = lookup(sandbox, &h)) return rc;
    auto handle = std::make_shared<airlock_process>();
    handle->owner = h;
    airlock::SpawnOptions so;
    if (int rc = env_map(c.env, c.env_count, &so.env, "options.env")) return rc;
    if (c.cwd) so.cwd = c.cwd;
    so.timeout = clamp_ms(c.timeout_ms);
    so.on_stdout = output_trampoline(c.on_stdout, c.user_data, h->gate, handle->gate);
    so.on_stderr = output_trampoline(c.on_stderr, c.user_data, h->gate, handle->gate);
    auto p = h->sandbox->spawn(args, std::move(so));
    if (!p.ok()) return fail(p.status());
    handle->process = std::move(p).value();
    processes().add(handle);
    *out = handle.get();
    return AIRLOCK_OK;
  });
}

int airlock_process_pid(airlock_process* process, int* pid) {
  return guard([&] {
    if (int rc = need(pid, "pid")) return rc;
    std::shared_ptr<airlock_process> h;
    if (int rc = lookup(process, &h)) return rc;
    *pid = h->process->pid();
    return AIRLOCK_OK;
  });
}

int airlock_process_write_stdin(airlock_process* process, const void* data, size_t len,
                                uint64_t timeout_ms) {
  return guard([&] {
    if (len > 0 && data == nullptr)
      return fail(Errc::invalid_argument, "data is NULL with a non-zero length");
    std::shared_ptr<airlock_process> h;
    if (int rc = lookup(process, &h)) return rc;
    std::string_view bytes(static_cast<const char*>(data), data ? len : 0);
    return fail(h->process->write_stdin(bytes, timeout_ms ? clamp_ms(timeout_ms) : Millis(30000)));
  });
}

int airlock_process_close_stdin(airlock_process* process) {
  return guard([&] {
    std::shared_ptr<airlock_process> h;
    if (int rc = lookup(process, &h)) return rc;
    return fail(h->process->close_stdin());
  });
}

int airlock_process_kill(airlock_process* process, int signal) {
  return guard([&] {
    if (signal < 0 || signal > 64) return fail(Errc::invalid_argument, "bad signal number");
    std::shared_ptr<airlock_process> h;
    if (int rc = lookup(process, &h)) return rc;
    return fail(h->process->kill(signal == 0 ? SIGKILL : signal));
  });
}

int airlock_process_wait(airlock_process* process, uint64_t timeout_ms,
                         airlock_exec_result* result) {
  return guard([&] {
    if (int rc = check_out_struct(result, "result")) return rc;
    reset_result(result);
    std::shared_ptr<airlock_process> h;
    if (int rc = lookup(process, &h)) return rc;
    auto r = h->process->wait(clamp_ms(timeout_ms));
    if (!r.ok()) return fail(r.status());
    fill_result(result, r.value());
    return AIRLOCK_OK;
  });
}

int airlock_process_destroy(airlock_process* process) {
  return guard([&] {
    if (process == nullptr) return AIRLOCK_OK;
    std::shared_ptr<airlock_process> h = processes().find(process);
    if (!h) return fail(Errc::invalid_argument, "not a live process handle (destroyed?)");
    if (h->gate->held_by_this_thread() || h->owner->gate->held_by_this_thread())
      return fail(Errc::invalid_argument,
                  "airlock_process_destroy called from a callback of the same sandbox");
    if (!processes().take(process)) return AIRLOCK_OK;
    h->gate->close();
    (void)h->process->kill(SIGKILL);
    return AIRLOCK_OK;
  });
}

// ---- files ----

int airlock_fs_write(airlock_sandbox* sandbox, const char* path, const void* data, size_t len,
                     uint32_t mode) {
  return guard([&] {
    if (int rc = need(path, "path")) return rc;
    if (len > 0 && data == nullptr)
      return fail(Errc::invalid_argument, "data is NULL with a non-zero length");
    std::shared_ptr<airlock_sandbox> h;
    if (int rc = lookup(sandbox, &h)) return rc;
    std::string_view bytes(static_cast<const char*>(data), data ? len : 0);
    return fail(h->sandbox->fs().write(path, bytes, mode ? mode : 0644));
  });
}

int airlock_fs_read(airlock_sandbox* sandbox, const char* path, char** out, size_t* out_len) {
  return guard([&] {
    if (int rc = need(out, "out")) return rc;
    *out = nullptr;
    if (out_len) *out_len = 0;
    if (int rc = need(path, "path")) return rc;
    std::shared_ptr<airlock_sandbox> h;
    if (int rc = lookup(sandbox, &h)) return rc;
    auto r = h->sandbox->fs().read(path);
    if (!r.ok()) return fail(r.status());
    *out = dup_bytes(r.value());
    if (out_len) *out_len = r.value().size();
    return AIRLOCK_OK;
  });
}

int airlock_fs_upload(airlock_sandbox* sandbox, const char* host_path, const char* guest_path,
                      int mode) {
  return guard([&] {
    if (int rc = need(host_path, "host_path")) return rc;
    if (int rc = need(guest_path, "guest_path")) return rc;
    std::shared_ptr<airlock_sandbox> h;
    if (int rc = lookup(sandbox, &h)) return rc;
    std::optional<uint32_t> m;
    if (mode >= 0) m = static_cast<uint32_t>(mode);
    return fail(h->sandbox->fs().upload(host_path, guest_path, m));
  });
}

int airlock_fs_download(airlock_sandbox* sandbox, const char* guest_path, const char* host_path) {
  return guard([&] {
    if (int rc = need(host_path, "host_path")) return rc;
    if (int rc = need(guest_path, "guest_path")) return rc;
    std::shared_ptr<airlock_sandbox> h;
    if (int rc = lookup(sandbox, &h)) return rc;
    return fail(h->sandbox->fs().download(guest_path, host_path));
  });
}

int airlock_fs_mkdir(airlock_sandbox* sandbox, const char* path, uint32_t mode, int parents) {
  return guard([&] {
    if (int rc = need(path, "path")) return rc;
    std::shared_ptr<airlock_sandbox> h;
    if (int rc = lookup(sandbox, &h)) return rc;
    return fail(h->sandbox->fs().mkdir(path, mode ? mode : 0755, parents != 0));
  });
}

int airlock_fs_stat(airlock_sandbox* sandbox, const char* path, airlock_file_stat* out) {
  return guard([&] {
    if (int rc = check_out_struct(out, "out")) return rc;
    if (int rc = need(path, "path")) return rc;
    std::shared_ptr<airlock_sandbox> h;
    if (int rc = lookup(sandbox, &h)) return rc;
    auto r = h->sandbox->fs().stat(path);
    if (!r.ok()) return fail(r.status());
    using T = airlock::FileStat::Type;
    out->type = r->type == T::regular     ? AIRLOCK_FILE_REGULAR
                : r->type == T::directory ? AIRLOCK_FILE_DIRECTORY
                : r->type == T::symlink   ? AIRLOCK_FILE_SYMLINK
                                          : AIRLOCK_FILE_OTHER;
    out->mode = r->mode;
    out->size = r->size;
    out->mtime_ns = r->mtime_ns;
    return AIRLOCK_OK;
  });
}

int airlock_fs_remove(airlock_sandbox* sandbox, const char* path, int recursive) {
  return guard([&] {
    if (int rc = need(path, "path")) return rc;
    std::shared_ptr<airlock_sandbox> h;
    if (int rc = lookup(sandbox, &h)) return rc;
    return fail(h->sandbox->fs().remove(path, recursive != 0));
  });
}

// ---- environment ----

int airlock_env_get(airlock_sandbox* sandbox, const char* name, char** value) {
  return guard([&] {
    if (int rc = need(value, "value")) return rc;
    *value = nullptr;
    if (int rc = need(name, "name")) return rc;
    std::shared_ptr<airlock_sandbox> h;
    if (int rc = lookup(sandbox, &h)) return rc;
    auto r = h->sandbox->env().get(std::string(name));
    if (!r.ok()) return fail(r.status());
    if (r.value()) *value = dup_bytes(*r.value());
    return AIRLOCK_OK;
  });
}

int airlock_env_list(airlock_sandbox* sandbox, char** out, size_t* out_len) {
  return guard([&] {
    if (int rc = need(out, "out")) return rc;
    *out = nullptr;
    if (out_len) *out_len = 0;
    std::shared_ptr<airlock_sandbox> h;
    if (int rc = lookup(sandbox, &h)) return rc;
    auto r = h->sandbox->env().get();
    if (!r.ok()) return fail(r.status());
    std::string block;
    for (const auto& [k, v] : r.value()) {
      block += k;
      block += '=';
      block += v;
      block += '\0';
    }
    *out = dup_bytes(block);
    if (out_len) *out_len = block.size();
    return AIRLOCK_OK;
  });
}

int airlock_env_set(airlock_sandbox* sandbox, const char* name, const char* value) {
  return guard([&] {
    if (int rc = need(name, "name")) return rc;
    if (int rc = need(value, "value")) return rc;
    std::shared_ptr<airlock_sandbox> h;
    if (int rc = lookup(sandbox, &h)) return rc;
    return fail(h->sandbox->env().set(std::string(name), std::string(value)));
  });
}

int airlock_env_unset(airlock_sandbox* sandbox, const char* name) {
  return guard([&] {
    if (int rc = need(name, "name")) return rc;
    std::shared_ptr<airlock_sandbox> h;
    if (int rc = lookup(sandbox, &h)) return rc;
    return fail(h->sandbox->env().unset(std::string(name)));
  });
}

}  // extern "C"

// ---- storage ----

namespace {

airlock::Result<airlock::Storage> open_store(const char* dir) {
  return airlock::Storage::open(dir ? dir : "");
}

// "NAME SIZE ALLOCATED FLAG\n" per entry.
template <class T, class Flag>
int list_out(const std::vector<T>& items, Flag flag, char** out, size_t* out_len) {
  std::string text;
  for (const auto& i : items)
    text += i.name + " " + std::to_string(i.size_bytes) + " " + std::to_string(i.allocated_bytes) +
            (flag(i) ? " 1\n" : " 0\n");
  *out = dup_bytes(text);
  if (out_len) *out_len = text.size();
  return AIRLOCK_OK;
}

}  // namespace

extern "C" {

int airlock_volume_create(const char* store_dir, const char* name, uint64_t size_bytes) {
  return guard([&] {
    if (int rc = need(name, "name")) return rc;
    auto st = open_store(store_dir);
    if (!st.ok()) return fail(st.status());
    return fail(st->create_volume(name, size_bytes).status());
  });
}

int airlock_volume_list(const char* store_dir, char** out, size_t* out_len) {
  return guard([&] {
    if (int rc = need(out, "out")) return rc;
    *out = nullptr;
    if (out_len) *out_len = 0;
    auto st = open_store(store_dir);
    if (!st.ok()) return fail(st.status());
    auto all = st->list_volumes();
    if (!all.ok()) return fail(all.status());
    return list_out(*all, [](const airlock::VolumeInfo& v) { return v.in_use; }, out, out_len);
  });
}

int airlock_volume_remove(const char* store_dir, const char* name) {
  return guard([&] {
    if (int rc = need(name, "name")) return rc;
    auto st = open_store(store_dir);
    if (!st.ok()) return fail(st.status());
    return fail(st->remove_volume(name));
  });
}

int airlock_volume_snapshot(const char* store_dir, const char* volume, const char* snapshot) {
  return guard([&] {
    if (int rc = need(volume, "volume")) return rc;
    if (int rc = need(snapshot, "snapshot")) return rc;
    auto st = open_store(store_dir);
    if (!st.ok()) return fail(st.status());
    return fail(st->snapshot_volume(volume, snapshot).status());
  });
}

int airlock_volume_from_snapshot(const char* store_dir, const char* snapshot, const char* volume) {
  return guard([&] {
    if (int rc = need(snapshot, "snapshot")) return rc;
    if (int rc = need(volume, "volume")) return rc;
    auto st = open_store(store_dir);
    if (!st.ok()) return fail(st.status());
    return fail(st->volume_from_snapshot(snapshot, volume).status());
  });
}

int airlock_snapshot_list(const char* store_dir, char** out, size_t* out_len) {
  return guard([&] {
    if (int rc = need(out, "out")) return rc;
    *out = nullptr;
    if (out_len) *out_len = 0;
    auto st = open_store(store_dir);
    if (!st.ok()) return fail(st.status());
    auto all = st->list_snapshots();
    if (!all.ok()) return fail(all.status());
    return list_out(*all, [](const airlock::SnapshotInfo& s) { return s.is_root; }, out, out_len);
  });
}

int airlock_snapshot_remove(const char* store_dir, const char* name) {
  return guard([&] {
    if (int rc = need(name, "name")) return rc;
    auto st = open_store(store_dir);
    if (!st.ok()) return fail(st.status());
    return fail(st->remove_snapshot(name));
  });
}

void airlock_sandbox_stats_init(airlock_sandbox_stats* s) {
  if (!s) return;
  std::memset(s, 0, sizeof(*s));
  s->struct_size = sizeof(*s);
  s->time_left_ms = -1;
}

int airlock_sandbox_set_timeout(airlock_sandbox* sandbox, uint64_t timeout_ms) {
  return guard([&] {
    std::shared_ptr<airlock_sandbox> h;
    if (int rc = lookup(sandbox, &h)) return rc;
    return fail(h->sandbox->set_timeout(clamp_ms(timeout_ms)));
  });
}

int airlock_sandbox_extend(airlock_sandbox* sandbox, uint64_t more_ms) {
  return guard([&] {
    std::shared_ptr<airlock_sandbox> h;
    if (int rc = lookup(sandbox, &h)) return rc;
    return fail(h->sandbox->extend(clamp_ms(more_ms)));
  });
}

int airlock_sandbox_kill(airlock_sandbox* sandbox) {
  return guard([&] {
    std::shared_ptr<airlock_sandbox> h;
    if (int rc = lookup(sandbox, &h)) return rc;
    h->sandbox->kill();
    return AIRLOCK_OK;
  });
}

int airlock_sandbox_stats_get(airlock_sandbox* sandbox, airlock_sandbox_stats* out) {
  return guard([&] {
    if (int rc = check_out_struct(out, "stats")) return rc;
    std::shared_ptr<airlock_sandbox> h;
    if (int rc = lookup(sandbox, &h)) return rc;
    airlock::SandboxStats s = h->sandbox->stats();
    out->uptime_ms = static_cast<uint64_t>(s.uptime.count());
    out->vcpu_time_ns = static_cast<uint64_t>(s.vcpu_time.count());
    out->memory_bytes = s.memory_bytes;
    out->memory_resident_bytes = s.memory_resident_bytes;
    out->net_bytes_up = s.net_bytes_up;
    out->net_bytes_down = s.net_bytes_down;
    out->net_requests = s.net_requests;
    out->commands = s.commands;
    out->time_left_ms = s.time_left ? static_cast<int64_t>(s.time_left->count()) : -1;
    out->running = s.running ? 1 : 0;
    return AIRLOCK_OK;
  });
}

namespace {

int expose(airlock_sandbox* sandbox, uint32_t guest_port, bool http, char** out) {
  if (int rc = need(out, "out")) return rc;
  *out = nullptr;
  if (guest_port == 0 || guest_port > 65535)
    return fail(Errc::invalid_argument, "guest_port must be 1 to 65535");
  std::shared_ptr<airlock_sandbox> h;
  if (int rc = lookup(sandbox, &h)) return rc;
  auto port = static_cast<uint16_t>(guest_port);
  auto r = http ? h->sandbox->expose_http(port) : h->sandbox->expose_port(port);
  if (!r.ok()) return fail(r.status());
  *out = dup_bytes(*r);
  return AIRLOCK_OK;
}

}  // namespace

int airlock_sandbox_expose_port(airlock_sandbox* sandbox, uint32_t guest_port, char** address) {
  return guard([&] { return expose(sandbox, guest_port, false, address); });
}

int airlock_sandbox_expose_http(airlock_sandbox* sandbox, uint32_t guest_port, char** url) {
  return guard([&] { return expose(sandbox, guest_port, true, url); });
}

int airlock_sandbox_snapshot(airlock_sandbox* sandbox, const char* name) {
  return guard([&] {
    if (int rc = need(name, "name")) return rc;
    std::shared_ptr<airlock_sandbox> h;
    if (int rc = lookup(sandbox, &h)) return rc;
    return fail(h->sandbox->snapshot(name).status());
  });
}

}  // extern "C"
