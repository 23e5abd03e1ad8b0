// Logging: one line per event, fmt-formatted, to stderr or syslog; reopened on SIGUSR1.
#pragma once

#include <fmt/format.h>

#include <string>
#include <string_view>

namespace warren {

enum class LogLevel { debug, info, warning, error };

// level: debug|info|warning|error; facility: "" for stderr, else a syslog facility name.
// Returns false (and leaves the old settings) when a name is unknown.
[[nodiscard]] bool log_configure(std::string_view level, std::string_view facility);
// Called in every process after fork so each line names its role ("master", "worker 8000").
void log_set_role(std::string role);
void log_reopen();
bool log_enabled(LogLevel level);
// `format` names the call site: each site writes at most a burst of lines per window, then
// counts what it leaves out and says so once the window is over. Control characters in `line`
// (a client's CR/LF among them) are escaped: one event, one line.
void log_write(LogLevel level, std::string_view format, std::string_view line);

template <typename... Args>
void log_at(LogLevel level, fmt::format_string<Args...> f, Args&&... args) {
  if (!log_enabled(level)) return;
  const fmt::string_view format = f;
  log_write(level, {format.data(), format.size()}, fmt::format(f, std::forward<Args>(args)...));
}
// log_debug("...", args), log_info, log_warning, log_error: log_at with the level fixed.
template <LogLevel Level>
struct LogAtLevel {
  template <typename... Args>
  void operator()(fmt::format_string<Args...> f, Args&&... args) const {
    log_at(Level, f, std::forward<Args>(args)...);
  }
};
inline constexpr LogAtLevel<LogLevel::debug> log_debug;
inline constexpr LogAtLevel<LogLevel::info> log_info;
inline constexpr LogAtLevel<LogLevel::warning> log_warning;
inline constexpr LogAtLevel<LogLevel::error> log_error;

// "strerror(errno)" for messages like "connect() to 127.0.0.1:5672 failed: Connection refused".
std::string errno_text(int err);

}  // namespace warren
