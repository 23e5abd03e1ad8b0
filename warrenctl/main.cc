// warrenctl: talks to warrend's control socket. One command line out, one JSON document back.
// `call` is the exception: it goes to a worker's HTTP /rpc route (warrenctl/call.cc).
// Exit codes: 0 the daemon answered, 1 it answered with an error, 2 it could not be reached,
// 64 usage.
#include <getopt.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bus.h"
#include "call.h"
#include "handles.h"
#include "json.h"
#include "vcd.h"

namespace {

using nlohmann::json;
using warren::json_text;
constexpr const char* kDefaultSocket = "/run/warren/warrend.sock";
constexpr int kExitError = 1, kExitUnreachable = 2, kExitUsage = 64;

void usage(FILE* out) {
  fmt::print(out,
             "usage: warrenctl [-s SOCKET] [-t SECONDS] COMMAND [--json]\n"
             "commands:\n"
             "  status    the master's pid, uptime, configuration and worker count\n"
             "  stats     counters summed over all workers (statelessd's /stats shape)\n"
             "  metrics   the same figures in Prometheus text format\n"
             "  workers   one line per worker process\n"
             "  reload    re-read the configuration (as SIGHUP)\n"
             "  stop      drain the workers and stop (as SIGTERM)\n"
             "  call      an RPC call over a worker's HTTP /rpc route: warrenctl call -h\n"
             "  publish   publish one message through a worker: warrenctl publish -h\n"
             "  tail      print the events on an exchange: warrenctl tail -h\n"
             "  vcd       register vcd forwarders' extensions in vCloud Director: warrenctl vcd -h\n"
             "options: -s SOCKET (default {}), -t SECONDS to wait (default 10),\n"
             "         --json or -j indented JSON, -h or --help this help\n",
             kDefaultSocket);
}

// Sends one command and reads the answer until the daemon closes. Empty on failure.
std::string ask(const std::string& path, const std::string& command, int timeout_ms, std::string* error) {
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  if (path.size() >= sizeof sun.sun_path) {
    *error = "socket path too long";
    return {};
  }
  memcpy(sun.sun_path, path.c_str(), path.size() + 1);
  warren::Fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun) != 0) {
    *error = fmt::format("connect() to {} failed: {}", path, strerror(errno));
    return {};
  }
  std::string line = command + "\n";
  if (write(fd.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    *error = fmt::format("write() to {} failed: {}", path, strerror(errno));
    return {};
  }
  std::string out;
  char buf[65536];
  for (;;) {
    pollfd pfd{fd.get(), POLLIN, 0};
    if (poll(&pfd, 1, timeout_ms) <= 0) {
      *error = "no answer from warrend in time";
      return {};
    }
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      *error = fmt::format("read() failed: {}", strerror(errno));
      return {};
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

std::string mib(uint64_t bytes) { return fmt::format("{:.1f} MiB", bytes / 1048576.0); }

void print_stats(const json& s) {
  fmt::print("uptime {:.0f} s, {} worker(s), ports {}\n", s.value("uptime", 0.0),
             s["workers"].size(), json_text(s["port"]));
  fmt::print("requests:");
  for (const auto& [key, value] : s["requests"].items())
    if (!value.is_number() || value != 0) fmt::print("  {} {}", key, json_text(value));
  fmt::print("\npublish:");
  for (const auto& [key, value] : s["publish"].items()) fmt::print("  {} {}", key, json_text(value));
  fmt::print("\nbroker:");
  for (const auto& [key, value] : s["broker"].items()) fmt::print("  {} {}", key, json_text(value));
  fmt::print("\n");
  if (!s["connections"].empty()) fmt::print("connections:\n");
  for (const auto& [name, c] : s["connections"].items())
    fmt::print("  {:<24} {:<12} opened {} closed {}  publishes {}  queued {}\n", name,
               c.value("connected", false) ? "connected" : "disconnected",
               c["connections"].value("opened", 0), c["connections"].value("closed", 0),
               c.value("publishes", 0), c.value("queue_size", 0));
  if (s.contains("forwarders") && !s["forwarders"].empty()) fmt::print("forwarders:\n");
  const json forwarders = s.value("forwarders", json::object());
  for (const auto& [name, f] : forwarders.items()) {
    const uint64_t answers = f.value("status_2xx", uint64_t{0}) + f.value("status_3xx", uint64_t{0}) +
                             f.value("status_4xx", uint64_t{0}) + f.value("status_5xx", uint64_t{0}) +
                             f.value("status_error", uint64_t{0});
    fmt::print("  {:<20} consumed {} acked {} retried {} dead-lettered {} replied {} requeued {} invalid {}\n"
               "  {:<20} backend 2xx {} 3xx {} 4xx {} 5xx {} error {}  mean latency {:.1f} ms\n",
               name, f.value("consumed", 0), f.value("acked", 0), f.value("retried", 0),
               f.value("dead_lettered", 0), f.value("replied", 0), f.value("requeued", 0),
               f.value("invalid", 0), "", f.value("status_2xx", 0), f.value("status_3xx", 0),
               f.value("status_4xx", 0), f.value("status_5xx", 0), f.value("status_error", 0),
               answers ? f.value("latency_us", uint64_t{0}) / 1000.0 / answers : 0.0);
  }
  fmt::print("workers:\n");
  for (const auto& w : s["workers"])
    fmt::print("  pid {:<7} slot {:<3} {:<7} port {:<6} POST {:<8} GET {:<8} rss {}\n",
               w.value("pid", 0), w.value("slot", 0), w.value("kind", ""), w.value("port", 0),
               w["requests"].value("method.POST", 0), w["requests"].value("method.GET", 0),
               mib(w.value("memory_usage", uint64_t{0})));
}

void print_workers(const json& rows) {
  fmt::print("{:<8} {:<5} {:<8} {:<6} {:<12} {:<4} {}\n", "PID", "SLOT", "KIND", "PORT", "QUEUE_SET",
             "GEN", "STATE");
  for (const auto& w : rows)
    fmt::print("{:<8} {:<5} {:<8} {:<6} {:<12} {:<4} {}\n", w.value("pid", 0), w.value("slot", 0),
               w.value("kind", ""), w.value("port", 0),
               w.value("queue_set", "").empty() ? "-" : w.value("queue_set", ""), w.value("generation", 0),
               w.value("quitting", false) ? "draining" : w.value("ready", false) ? "serving" : "starting");
}

}  // namespace

int main(int argc, char** argv) {
  std::string socket_path = kDefaultSocket;
  int timeout_ms = 10000;
  bool as_json = false;
  static const option kLong[] = {{"json", no_argument, nullptr, 'j'},
                                 {"help", no_argument, nullptr, 'h'},
                                 {nullptr, 0, nullptr, 0}};
  int opt;
  while ((opt = getopt_long(argc, argv, "+s:t:jh", kLong, nullptr)) != -1) {
    switch (opt) {
      case 's': socket_path = optarg; break;
      case 't': timeout_ms = static_cast<int>(atof(optarg) * 1000); break;
      case 'j': as_json = true; break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return kExitUsage;
    }
  }
  // Commands that act on the bus talk HTTP to a worker and have options of their own.
  static const std::pair<std::string_view, int (*)(int, char**)> kHttpCommands[] = {
      {"call", warrenctl::call_command},
      {"publish", warrenctl::publish_command},
      {"tail", warrenctl::tail_command},
      {"vcd", warrenctl::vcd_command}};
  for (const auto& [name, run] : kHttpCommands)
    if (optind < argc && argv[optind] == name) return run(argc - optind, argv + optind);
  std::vector<std::string> args(argv + optind, argv + argc);
  std::erase_if(args, [&](const std::string& a) { return a == "--json" && (as_json = true); });
  static const std::vector<std::string> kCommands{"status", "stats", "metrics", "workers", "reload", "stop"};
  if (args.size() != 1 || std::find(kCommands.begin(), kCommands.end(), args[0]) == kCommands.end()) {
    usage(stderr);
    return kExitUsage;
  }
  const std::string& command = args[0];
  std::string error;
  std::string answer = ask(socket_path, command, timeout_ms, &error);
  if (answer.empty()) {
    fmt::print(stderr, "warrenctl: {}\n", error.empty() ? "empty answer" : error);
    return kExitUnreachable;
  }
  json j = json::parse(answer, nullptr, false);
  if (j.is_discarded()) {
    fmt::print(stderr, "warrenctl: unreadable answer: {}\n", answer);
    return kExitError;
  }
  if (j.is_object() && j.contains("error")) {
    fmt::print(stderr, "warrenctl: {}: {}\n", j["error"].get<std::string>(), j.value("detail", ""));
    return kExitError;
  }
  if (command == "metrics") fmt::print("{}", j.get<std::string>());
  else if (as_json) fmt::print("{}\n", json_text(j, 2));
  else if (command == "stats") print_stats(j);
  else if (command == "workers") print_workers(j);
  else if (command == "status")
    fmt::print("warrend pid {} running {:.0f} s, {} worker(s), {} respawn(s), generation {}, config {}\n",
               j.value("pid", 0), j.value("uptime", 0.0), j.value("workers", 0),
               j.value("respawns", 0), j.value("generation", 0), j.value("config", ""));
  else fmt::print("{}\n", j.value("result", json_text(j)));
  return 0;
}
