#include "base/log.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace airlock {
namespace {

LogLevel initial_level() {
  const char* env = std::getenv("AIRLOCK_LOG");
  if (!env) return LogLevel::warn;
  std::string_view v(env);
  if (v == "debug") return LogLevel::debug;
  if (v == "info") return LogLevel::info;
  if (v == "error") return LogLevel::error;
  if (v == "off") return LogLevel::off;
  return LogLevel::warn;
}

std::atomic<int> g_level{static_cast<int>(initial_level())};
std::mutex g_mu;
LogSink& sink() {
  static LogSink s;
  return s;
}

const char* level_name(LogLevel l) {
  switch (l) {
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info";
    case LogLevel::warn: return "warn";
    case LogLevel::error: return "error";
    default: return "";
  }
}

}  // namespace

void set_log_sink(LogSink s) {
  std::lock_guard lk(g_mu);
  sink() = std::move(s);
}

void set_log_level(LogLevel level) { g_level.store(static_cast<int>(level)); }

bool log_enabled(LogLevel level) noexcept {
  return level != LogLevel::off && static_cast<int>(level) >= g_level.load();
}

void log_message(LogLevel level, std::string_view component, std::string_view msg) noexcept {
  try {
    std::lock_guard lk(g_mu);
    if (sink()) {
      sink()(level, component, msg);
      return;
    }
    std::fprintf(stderr, "airlock[%s] %.*s: %.*s\n", level_name(level),
                 static_cast<int>(component.size()), component.data(),
                 static_cast<int>(msg.size()), msg.data());
  } catch (...) {
  }
}

}  // namespace airlock
