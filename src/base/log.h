// Library logging. Messages go to one process-wide sink that the host application may replace;
// by default warnings and errors go to stderr. Never log a secret value: Secret (secret.h) has no
// formatter on purpose. Thread-safety: every function may be called from any thread.
#pragma once

#include <fmt/format.h>

#include <functional>
#include <string_view>

namespace airlock {

enum class LogLevel { debug = 0, info = 1, warn = 2, error = 3, off = 4 };

using LogSink = std::function<void(LogLevel, std::string_view component, std::string_view msg)>;

void set_log_sink(LogSink sink);   // empty sink restores the stderr default
void set_log_level(LogLevel level);
bool log_enabled(LogLevel level) noexcept;
void log_message(LogLevel level, std::string_view component, std::string_view msg) noexcept;

template <class... Args>
void log(LogLevel level, std::string_view component, fmt::format_string<Args...> f,
         Args&&... args) noexcept {
  if (!log_enabled(level)) return;
  try {
    log_message(level, component, fmt::format(f, std::forward<Args>(args)...));
  } catch (...) {
  }
}

}  // namespace airlock

#define AIRLOCK_LOG_DEBUG(comp, ...) ::airlock::log(::airlock::LogLevel::debug, comp, __VA_ARGS__)
#define AIRLOCK_LOG_INFO(comp, ...) ::airlock::log(::airlock::LogLevel::info, comp, __VA_ARGS__)
#define AIRLOCK_LOG_WARN(comp, ...) ::airlock::log(::airlock::LogLevel::warn, comp, __VA_ARGS__)
#define AIRLOCK_LOG_ERROR(comp, ...) ::airlock::log(::airlock::LogLevel::error, comp, __VA_ARGS__)
