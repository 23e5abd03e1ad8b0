#include "log.h"

#include <syslog.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <unordered_map>

namespace warren {
namespace {

struct Facility {
  std::string_view name;
  int value;
};
constexpr std::array kFacilities{
    Facility{"daemon", LOG_DAEMON}, Facility{"user", LOG_USER},     Facility{"local0", LOG_LOCAL0},
    Facility{"local1", LOG_LOCAL1}, Facility{"local2", LOG_LOCAL2}, Facility{"local3", LOG_LOCAL3},
    Facility{"local4", LOG_LOCAL4}, Facility{"local5", LOG_LOCAL5}, Facility{"local6", LOG_LOCAL6},
    Facility{"local7", LOG_LOCAL7},
};
constexpr std::array<std::string_view, 4> kLevelNames{"debug", "info", "warning", "error"};

// A call site writes at most kBurst lines per kWindow seconds: a flood (a failed login per
// request, a broker that keeps refusing) costs a few lines and a count, not a write per event.
constexpr double kWindow = 5;
constexpr int kBurst = 50;

struct CallSite {
  double window_start = 0;
  int written = 0;
  uint64_t suppressed = 0;
  LogLevel level = LogLevel::info;
  std::string_view format;
};
// Keyed by the address of the format string: one entry per call site, so the map is bounded by
// the code, never by what clients send.
std::unordered_map<const char*, CallSite> g_sites;
size_t g_sites_suppressing = 0;

LogLevel g_level = LogLevel::info;
int g_facility = -1;  // -1: stderr
std::string g_role = "warrend";

}  // namespace

bool log_configure(std::string_view level, std::string_view facility) {
  int found_level = -1;
  for (size_t i = 0; i < kLevelNames.size(); ++i)
    if (kLevelNames[i] == level) found_level = static_cast<int>(i);
  int found_facility = -1;
  for (const auto& f : kFacilities)
    if (f.name == facility) found_facility = f.value;
  if (found_level < 0 || (!facility.empty() && found_facility < 0)) return false;
  g_level = static_cast<LogLevel>(found_level);
  if (g_facility >= 0) closelog();
  g_facility = found_facility;
  if (g_facility >= 0) openlog("warrend", LOG_PID | LOG_NDELAY, g_facility);
  return true;
}

void log_set_role(std::string role) { g_role = std::move(role); }

void log_reopen() {
  // stderr is whatever the service manager gave us; only the syslog socket can be reopened.
  if (g_facility >= 0) {
    closelog();
    openlog("warrend", LOG_PID | LOG_NDELAY, g_facility);
  }
}

bool log_enabled(LogLevel level) { return level >= g_level; }

namespace {

double monotonic_now() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

// CR, LF and every other control byte as \r, \n, \xNN: nothing in a line can start another.
std::string escape_controls(std::string_view line) {
  std::string out;
  out.reserve(line.size());
  for (unsigned char c : line) {
    if (c == '\r') out += "\\r";
    else if (c == '\n') out += "\\n";
    else if (c == '\t') out += '\t';
    else if (c < 0x20 || c == 0x7f) out += fmt::format("\\x{:02x}", c);
    else out += static_cast<char>(c);
  }
  return out;
}

void emit(LogLevel level, std::string_view raw_line) {
  const std::string line = escape_controls(raw_line);
  auto name = kLevelNames[static_cast<size_t>(level)];
  if (g_facility >= 0) {
    constexpr std::array kPriorities{LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR};
    syslog(kPriorities[static_cast<size_t>(level)], "%s: %.*s", g_role.c_str(),
           static_cast<int>(line.size()), line.data());
    return;
  }
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm local{};
  localtime_r(&ts.tv_sec, &local);
  char stamp[32];
  strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &local);
  // One write per line so lines from several processes do not interleave.
  auto out = fmt::format("{}.{:03d} [{}] {} {}: {}\n", stamp, ts.tv_nsec / 1000000, getpid(), name,
                         g_role, line);
  [[maybe_unused]] auto n = ::write(STDERR_FILENO, out.data(), out.size());
}

// Closes a site's window, first saying how many of its lines it left out.
void restart_window(CallSite& site, double now) {
  if (site.suppressed > 0) {
    emit(site.level, fmt::format("{} similar lines suppressed in the last {:.0f} s: \"{}\"",
                                 site.suppressed, now - site.window_start, site.format));
    site.suppressed = 0;
    --g_sites_suppressing;
  }
  site.window_start = now;
  site.written = 0;
}

}  // namespace

void log_write(LogLevel level, std::string_view format, std::string_view line) {
  const double now = monotonic_now();
  if (g_sites_suppressing > 0)  // any line is a chance to report what other sites left out
    for (auto& [key, site] : g_sites)
      if (site.suppressed > 0 && now - site.window_start >= kWindow) restart_window(site, now);
  CallSite& site = g_sites[format.data()];
  if (now - site.window_start >= kWindow) restart_window(site, now);
  if (site.written >= kBurst) {
    if (site.suppressed++ == 0) ++g_sites_suppressing;
    site.level = level;
    site.format = format;
    return;
  }
  ++site.written;
  emit(level, line);
}

std::string errno_text(int err) {
  char buf[256];
  return strerror_r(err, buf, sizeof buf);
}

}  // namespace warren
