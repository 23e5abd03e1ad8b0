#include "stats.h"

#include <sys/resource.h>
#include <unistd.h>

#include <ctime>
#include <stdexcept>

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

json Counters::rates_since(const Counters& earlier, double seconds) const {
  json j = json::object();
  if (seconds <= 0) return j;
#define WARREN_COUNTER_RATE(member, group, key, help) \
  j[#member] = member >= earlier.member ? (member - earlier.member) / seconds : 0.0;
  WORKER_COUNTERS(WARREN_COUNTER_RATE)
#undef WARREN_COUNTER_RATE
  return j;
}

Counters Counters::from_json(const json& j) {
  Counters c;
#define WARREN_COUNTER_FROM(member, group, key, help) c.member = j.value(#member, uint64_t{0});
  WORKER_COUNTERS(WARREN_COUNTER_FROM)
#undef WARREN_COUNTER_FROM
  return c;
}

void Histogram::observe(double seconds) {
  size_t i = 0;
  while (i < kBounds.size() && seconds > kBounds[i]) ++i;
  ++buckets[i];
  ++count;
  sum += seconds;
}

void Histogram::merge(const Histogram& o) {
  for (size_t i = 0; i < buckets.size(); ++i) buckets[i] += o.buckets[i];
  count += o.count;
  sum += o.sum;
}

json Histogram::to_json() const { return {{"buckets", buckets}, {"count", count}, {"sum", sum}}; }

Histogram Histogram::from_json(const json& j) {
  Histogram h;
  if (j.is_object() && j.value("buckets", json::array()).size() == h.buckets.size())
    h.buckets = j.at("buckets").get<decltype(h.buckets)>();
  h.count = j.value("count", uint64_t{0});
  h.sum = j.value("sum", 0.0);
  return h;
}

void Histograms::merge(const Histograms& o) {
#define WARREN_HISTOGRAM_MERGE(member, help) member.merge(o.member);
  WORKER_HISTOGRAMS(WARREN_HISTOGRAM_MERGE)
#undef WARREN_HISTOGRAM_MERGE
}

json Histograms::to_json() const {
  json j = json::object();
#define WARREN_HISTOGRAM_JSON(member, help) j[#member] = member.to_json();
  WORKER_HISTOGRAMS(WARREN_HISTOGRAM_JSON)
#undef WARREN_HISTOGRAM_JSON
  return j;
}

Histograms Histograms::from_json(const json& j) {
  Histograms h;
#define WARREN_HISTOGRAM_FROM(member, help) \
  if (j.contains(#member)) h.member = Histogram::from_json(j.at(#member));
  WORKER_HISTOGRAMS(WARREN_HISTOGRAM_FROM)
#undef WARREN_HISTOGRAM_FROM
  return h;
}

void ForwarderCounters::merge(const ForwarderCounters& other) {
#define WARREN_FORWARDER_MERGE(member, help) member += other.member;
  FORWARDER_COUNTERS(WARREN_FORWARDER_MERGE)
#undef WARREN_FORWARDER_MERGE
}

json ForwarderCounters::to_json() const {
  json j = json::object();
#define WARREN_FORWARDER_JSON(member, help) j[#member] = member;
  FORWARDER_COUNTERS(WARREN_FORWARDER_JSON)
#undef WARREN_FORWARDER_JSON
  return j;
}

ForwarderCounters ForwarderCounters::from_json(const json& j) {
  ForwarderCounters c;
#define WARREN_FORWARDER_FROM(member, help) c.member = j.value(#member, uint64_t{0});
  FORWARDER_COUNTERS(WARREN_FORWARDER_FROM)
#undef WARREN_FORWARDER_FROM
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
  json fwd = json::object();
  for (const auto& [name, c] : forwarders) fwd[name] = c.to_json();
  return {{"pid", pid},         {"slot", slot},       {"kind", process_kind_name(kind)},
          {"port", port},       {"started", started}, {"counters", counters.to_json()},
          {"histograms", histograms.to_json()},
          {"connections", conns}, {"usage", usage.to_json()}, {"queue_set", queue_set},
          {"forwarders", fwd}};
}

Snapshot Snapshot::from_json(const json& j) {
  Snapshot s;
  s.pid = j.at("pid").get<int>();
  s.slot = j.at("slot").get<int>();
  const auto kind = j.at("kind").get<std::string>();
  if (auto known = process_kind_from_name(kind))
    s.kind = *known;
  else
    throw std::invalid_argument(fmt::format("unknown worker kind \"{}\"", kind));
  s.port = j.value("port", 0);
  s.started = j.value("started", 0.0);
  s.counters = Counters::from_json(j.at("counters"));
  s.histograms = Histograms::from_json(j.value("histograms", json::object()));
  for (const auto& [name, c] : j.at("connections").items())
    s.connections[name] = ConnectionStats::from_json(c);
  s.usage = ProcessUsage::from_json(j.at("usage"));
  s.queue_set = j.value("queue_set", "");
  if (auto it = j.find("forwarders"); it != j.end() && it->is_object())
    for (const auto& [name, c] : it->items()) s.forwarders[name] = ForwarderCounters::from_json(c);
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
  // Each group is an object of /stats ("requests", "publish", ...); statelessd keeps
  // signals_received at the top level.
  for (auto& [name, group] : groups.items())
    if (name != "process") j[name] = group;
  j["signals_received"] = c.signals_received;
  return j;
}

}  // namespace

void Retired::add(const Snapshot& last) {
  counters.merge(last.counters);
  histograms.merge(last.histograms);
  for (const auto& [name, c] : last.forwarders) forwarders[name].merge(c);
}

std::map<std::string, ForwarderCounters> stats_forwarders(const std::map<int, Snapshot>& workers,
                                                          const Retired& retired) {
  std::map<std::string, ForwarderCounters> sum = retired.forwarders;
  for (const auto& [pid, w] : workers)
    for (const auto& [name, c] : w.forwarders) sum[name].merge(c);
  return sum;
}

Counters stats_total(const std::map<int, Snapshot>& workers, const Retired& retired) {
  Counters total = retired.counters;
  for (const auto& [pid, w] : workers) total.merge(w.counters);
  return total;
}

json stats_render(const std::map<int, Snapshot>& workers, const Retired& retired,
                  const ProcessUsage& master_usage, double uptime, const MasterCounters& master) {
  Counters total = retired.counters;
  Histograms latency = retired.histograms;
  ProcessUsage usage = master_usage;
  std::map<std::string, ConnectionStats> connections;
  json rows = json::array();
  json ports = json::array();
  for (const auto& [slot, w] : workers) {
    total.merge(w.counters);
    latency.merge(w.histograms);
    usage.merge(w.usage);
    for (const auto& [name, c] : w.connections) connections[name].merge(c);
    json row = render_figures(w.counters, w.connections, w.usage);
    row["pid"] = w.pid;
    row["slot"] = w.slot;
    row["kind"] = process_kind_name(w.kind);
    row["port"] = w.port;
    row["started"] = w.started;
    if (!w.queue_set.empty()) row["queue_set"] = w.queue_set;
    rows.push_back(std::move(row));
    if (w.port && std::find(ports.begin(), ports.end(), w.port) == ports.end()) ports.push_back(w.port);
  }
  json j = render_figures(total, connections, usage);
  j["timestamp"] = static_cast<int64_t>(time(nullptr));
  j["uptime"] = uptime;
  j["port"] = ports;
  j["workers"] = rows;
  j["latency"] = latency.to_json();
  json fwd = json::object();
  for (const auto& [name, c] : stats_forwarders(workers, retired)) fwd[name] = c.to_json();
  j["forwarders"] = fwd;
#define WARREN_MASTER_JSON(member, key, help) j[key] = master.member;
  MASTER_COUNTERS(WARREN_MASTER_JSON)
#undef WARREN_MASTER_JSON
  return j;
}

namespace {

// A label value in the exposition format: backslash, double quote and newline escaped.
std::string prometheus_label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

// The labels of one worker's series.
std::string worker_labels(const Snapshot& w) {
  return fmt::format("slot=\"{}\",pid=\"{}\",kind=\"{}\",port=\"{}\"", w.slot, w.pid,
                     process_kind_name(w.kind), w.port);
}

void render_master_counters(std::string& out, const MasterCounters& master) {
#define WARREN_MASTER_PROM(member, key, help)                                                    \
  out += fmt::format("# HELP warren_{0}_total {1}\n# TYPE warren_{0}_total counter\nwarren_{0}_total {2}\n", \
                     #member, help, master.member);
  MASTER_COUNTERS(WARREN_MASTER_PROM)
#undef WARREN_MASTER_PROM
}

// Per worker, and one series for the workers that exited.
void render_worker_counters(std::string& out, const std::map<int, Snapshot>& workers,
                            const Retired& retired) {
#define WARREN_COUNTER_PROM(member, group, key, help)                                      \
  out += fmt::format("# HELP warren_{0}_total {1}\n# TYPE warren_{0}_total counter\n", #member, \
                     help);                                                                \
  for (const auto& [pid, w] : workers)                                                     \
    out += fmt::format("warren_{}_total{{{}}} {}\n", #member, worker_labels(w), w.counters.member); \
  out += fmt::format("warren_{}_total{{slot=\"retired\"}} {}\n", #member, retired.counters.member);
  WORKER_COUNTERS(WARREN_COUNTER_PROM)
#undef WARREN_COUNTER_PROM
}

void render_histogram(std::string& out, const char* name, const std::string& label,
                      const Histogram& h) {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < h.buckets.size(); ++i) {
    cumulative += h.buckets[i];
    const std::string le =
        i < Histogram::kBounds.size() ? fmt::format("{}", Histogram::kBounds[i]) : "+Inf";
    out += fmt::format("warren_{}_bucket{{{},le=\"{}\"}} {}\n", name, label, le, cumulative);
  }
  out += fmt::format("warren_{}_sum{{{}}} {}\nwarren_{}_count{{{}}} {}\n", name, label, h.sum,
                     name, label, h.count);
}

void render_worker_histograms(std::string& out, const std::map<int, Snapshot>& workers,
                              const Retired& retired) {
#define WARREN_HISTOGRAM_PROM(member, help)                                                    \
  out += fmt::format("# HELP warren_{0} {1}\n# TYPE warren_{0} histogram\n", #member, help); \
  for (const auto& [pid, w] : workers)                                                         \
    render_histogram(out, #member, worker_labels(w), w.histograms.member);                     \
  render_histogram(out, #member, "slot=\"retired\"", retired.histograms.member);
  WORKER_HISTOGRAMS(WARREN_HISTOGRAM_PROM)
#undef WARREN_HISTOGRAM_PROM
}

void render_connections_open(std::string& out, const std::map<int, Snapshot>& workers) {
  out += "# HELP warren_broker_connections_open broker connections open now\n"
         "# TYPE warren_broker_connections_open gauge\n";
  for (const auto& [pid, w] : workers) {
    int open = 0;
    for (const auto& [name, c] : w.connections) open += c.connected;
    out += fmt::format("warren_broker_connections_open{{{}}} {}\n", worker_labels(w), open);
  }
}

// One series per forwarder, summed over its workers (and the retired ones).
void render_forwarders(std::string& out, const std::map<int, Snapshot>& workers,
                       const Retired& retired) {
  const auto forwarders = stats_forwarders(workers, retired);
  if (forwarders.empty()) return;
#define WARREN_FORWARDER_PROM(member, help)                                                   \
  out += fmt::format(                                                                         \
      "# HELP warren_forwarder_{0}_total {1}\n# TYPE warren_forwarder_{0}_total counter\n", \
      #member, help);                                                                         \
  for (const auto& [name, c] : forwarders)                                                    \
    out += fmt::format("warren_forwarder_{}_total{{forwarder=\"{}\"}} {}\n", #member,              \
                       prometheus_label(name), c.member);
  FORWARDER_COUNTERS(WARREN_FORWARDER_PROM)
#undef WARREN_FORWARDER_PROM
}

}  // namespace

std::string stats_render_prometheus(const std::map<int, Snapshot>& workers, const Retired& retired,
                                    const MasterCounters& master) {
  std::string out;
  render_master_counters(out, master);
  render_worker_counters(out, workers, retired);
  render_worker_histograms(out, workers, retired);
  render_connections_open(out, workers);
  render_forwarders(out, workers, retired);
  return out;
}

void add_broker_counters(Counters& c, const amqp::Stats& a) {
  c.broker_connects += a.connections_opened;
  c.broker_disconnects += a.connections_closed;
  c.broker_login_refused += a.logins_refused;
}

void add_link_figures(ConnectionStats& s, Counters& c, const amqp::Stats& a) {
  s.connections_opened += a.connections_opened;
  s.connections_closed += a.connections_closed;
  s.channels_opened += a.channels_opened;
  s.channels_closed += a.channels_closed;
  add_broker_counters(c, a);
}

}  // namespace warren
