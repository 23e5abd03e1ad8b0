#include "stats.h"

#include <sys/resource.h>
#include <unistd.h>

#include <ctime>

#include <fmt/format.h>

namespace warren {

using nlohmann::json;

void Counters::merge(const Counters& other) {
#define WARREN_COUNTER_MERGE(member, group, key, help) member += other.member;
  WORKER_COUNTERS(WARREN_COUNTER_MERGE)
#undef WARREN_COUNTER_MERGE
}

json Counters::to_json() const {
  json j = json::object();
#define WARREN_COUNTER_JSON(member, group, key, help) j[#member] = member;
  WORKER_COUNTERS(WARREN_COUNTER_JSON)
#undef WARREN_COUNTER_JSON
  return j;
}

Counters Counters::from_json(const json& j) {
  Counters c;
#define WARREN_COUNTER_FROM(member, group, key, help) c.member = j.value(#member, uint64_t{0});
  WORKER_COUNTERS(WARREN_COUNTER_FROM)
#undef WARREN_COUNTER_FROM
  return c;
}

void ConnectionStats::merge(const ConnectionStats& o) {
  connections_opened += o.connections_opened;
  connections_closed += o.connections_closed;
  channels_opened += o.channels_opened;
  channels_closed += o.channels_closed;
  connected = connected || o.connected;
  publishes += o.publishes;
  queue_size += o.queue_size;
}

json ConnectionStats::to_json() const {
  return {{"connections", {{"opened", connections_opened}, {"closed", connections_closed}}},
          {"channels", {{"opened", channels_opened}, {"closed", channels_closed}}},
          {"connected", connected},
          {"publishes", publishes},
          {"queue_size", queue_size}};
}

ConnectionStats ConnectionStats::from_json(const json& j) {
  ConnectionStats s;
  s.connections_opened = j.at("connections").value("opened", uint64_t{0});
  s.connections_closed = j.at("connections").value("closed", uint64_t{0});
  s.channels_opened = j.at("channels").value("opened", uint64_t{0});
  s.channels_closed = j.at("channels").value("closed", uint64_t{0});
  s.connected = j.value("connected", false);
  s.publishes = j.value("publishes", uint64_t{0});
  s.queue_size = j.value("queue_size", uint64_t{0});
  return s;
}

ProcessUsage ProcessUsage::current() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto seconds = [](const timeval& tv) { return tv.tv_sec + tv.tv_usec / 1e6; };
  ProcessUsage u;
  u.cpu_user = seconds(ru.ru_utime);
  u.cpu_system = seconds(ru.ru_stime);
  u.max_rss_bytes = static_cast<uint64_t>(ru.ru_maxrss) * 1024;  // Linux reports KiB
  u.page_faults_major = ru.ru_majflt;
  u.page_faults_minor = ru.ru_minflt;
  u.context_switches = ru.ru_nvcsw + ru.ru_nivcsw;
  u.swap_outs = ru.ru_nswap;
  u.block_input = ru.ru_inblock;
  u.block_output = ru.ru_oublock;
  return u;
}

void ProcessUsage::merge(const ProcessUsage& o) {
  cpu_user += o.cpu_user;
  cpu_system += o.cpu_system;
  max_rss_bytes += o.max_rss_bytes;
  page_faults_major += o.page_faults_major;
  page_faults_minor += o.page_faults_minor;
  context_switches += o.context_switches;
  swap_outs += o.swap_outs;
  block_input += o.block_input;
  block_output += o.block_output;
}

json ProcessUsage::to_json() const {
  return {{"page_faults", {{"major", page_faults_major}, {"minor", page_faults_minor}}},
          {"cpu_time", {{"user", cpu_user}, {"system", cpu_system}}},
          {"memory_usage", max_rss_bytes},
          {"context_switches", context_switches},
          {"swap_outs", swap_outs},
          {"page_size", sysconf(_SC_PAGESIZE)},
          {"block", {{"input", block_input}, {"output", block_output}}}};
}

ProcessUsage ProcessUsage::from_json(const json& j) {
  ProcessUsage u;
  u.page_faults_major = j.at("page_faults").value("major", uint64_t{0});
  u.page_faults_minor = j.at("page_faults").value("minor", uint64_t{0});
  u.cpu_user = j.at("cpu_time").value("user", 0.0);
  u.cpu_system = j.at("cpu_time").value("system", 0.0);
  u.max_rss_bytes = j.value("memory_usage", uint64_t{0});
  u.context_switches = j.value("context_switches", uint64_t{0});
  u.swap_outs = j.value("swap_outs", uint64_t{0});
  u.block_input = j.at("block").value("input", uint64_t{0});
  u.block_output = j.at("block").value("output", uint64_t{0});
  return u;
}

json Snapshot::to_json() const {
  json conns = json::object();
  for (const auto& [name, c] : connections) conns[name] = c.to_json();
  return {{"pid", pid},         {"slot", slot},       {"kind", kind},
          {"port", port},       {"started", started}, {"counters", counters.to_json()},
          {"connections", conns}, {"usage", usage.to_json()}};
}

Snapshot Snapshot::from_json(const json& j) {
  Snapshot s;
  s.pid = j.at("pid").get<int>();
  s.slot = j.at("slot").get<int>();
  s.kind = j.at("kind").get<std::string>();
  s.port = j.value("port", 0);
  s.started = j.value("started", 0.0);
  s.counters = Counters::from_json(j.at("counters"));
  for (const auto& [name, c] : j.at("connections").items())
    s.connections[name] = ConnectionStats::from_json(c);
  s.usage = ProcessUsage::from_json(j.at("usage"));
  return s;
}

namespace {

// The statelessd shape of one process or of a sum: rusage fields, connections, requests.
json render_figures(const Counters& c, const std::map<std::string, ConnectionStats>& connections,
                    const ProcessUsage& usage) {
  json j = usage.to_json();
  json conns = json::object();
  for (const auto& [name, s] : connections) conns[name] = s.to_json();
  j["connections"] = conns;
  json groups = json::object();
#define WARREN_COUNTER_GROUP(member, group, key, help) groups[#group][key] = c.member;
  WORKER_COUNTERS(WARREN_COUNTER_GROUP)
#undef WARREN_COUNTER_GROUP
  groups["requests"].erase("processing_time_us");
  groups["requests"]["processing_time"] = c.processing_time_us / 1e6;
  j["requests"] = groups["requests"];
  j["publish"] = groups["publish"];
  j["broker"] = groups["broker"];
  j["rpc"] = groups["rpc"];
  j["signals_received"] = c.signals_received;
  return j;
}

}  // namespace

json stats_render(const std::map<int, Snapshot>& workers, const Counters& retired,
                  const ProcessUsage& master_usage, double uptime) {
  Counters total = retired;
  ProcessUsage usage = master_usage;
  std::map<std::string, ConnectionStats> connections;
  json rows = json::array();
  json ports = json::array();
  for (const auto& [slot, w] : workers) {
    total.merge(w.counters);
    usage.merge(w.usage);
    for (const auto& [name, c] : w.connections) connections[name].merge(c);
    json row = render_figures(w.counters, w.connections, w.usage);
    row["pid"] = w.pid;
    row["slot"] = w.slot;
    row["kind"] = w.kind;
    row["port"] = w.port;
    row["started"] = w.started;
    rows.push_back(std::move(row));
    if (w.port && std::find(ports.begin(), ports.end(), w.port) == ports.end()) ports.push_back(w.port);
  }
  json j = render_figures(total, connections, usage);
  j["timestamp"] = static_cast<int64_t>(time(nullptr));
  j["uptime"] = uptime;
  j["port"] = ports;
  j["workers"] = rows;
  return j;
}

std::string stats_render_prometheus(const std::map<int, Snapshot>& workers,
                                    const Counters& retired) {
  std::string out;
  auto labels = [](const Snapshot& w) {
    return fmt::format("slot=\"{}\",pid=\"{}\",kind=\"{}\",port=\"{}\"", w.slot, w.pid, w.kind,
                       w.port);
  };
#define WARREN_COUNTER_PROM(member, group, key, help)                                    \
  out += fmt::format("# HELP warren_{0}_total {1}\n# TYPE warren_{0}_total counter\n", \
                     #member, help);                                                     \
  for (const auto& [slot, w] : workers)                                                  \
    out += fmt::format("warren_{}_total{{{}}} {}\n", #member, labels(w), w.counters.member); \
  out += fmt::format("warren_{}_total{{slot=\"retired\"}} {}\n", #member, retired.member);
  WORKER_COUNTERS(WARREN_COUNTER_PROM)
#undef WARREN_COUNTER_PROM
  return out;
}

}  // namespace warren
