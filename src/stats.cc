#include "stats.h"

#include <sys/resource.h>
#include <unistd.h>

#include <ctime>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

namespace warren {

using nlohmann::json;

namespace {

// Where a row's figure stands in its struct's JSON: below the group, "a/b" nested.
template <class Row>
json::json_pointer json_place(const Row& row) {
  return json::json_pointer(*row.group ? fmt::format("/{}/{}", row.group, row.key)
                                       : fmt::format("/{}", row.key));
}

}  // namespace

template <class Self>
void Figures<Self>::merge(const Self& other) {
  auto& self = static_cast<Self&>(*this);
  Self::for_each_row([&](auto row) {
    decltype(row)::type::merge(self.*row.member, other.*row.member);
  });
}

template <class Self>
json Figures<Self>::to_json() const {
  const auto& self = static_cast<const Self&>(*this);
  json j = json::object();
  Self::for_each_row([&](auto row) { j[json_place(row)] = self.*row.member; });
  return j;
}

// Missing figures read as zero; a JSON that is not an object, or a figure of the wrong type,
// throws (the master drops the frame).
template <class Self>
Self Figures<Self>::from_json(const json& j) {
  Self s;
  Self::for_each_row([&](auto row) {
    s.*row.member = j.value(json_place(row), typename decltype(row)::type::value{});
  });
  return s;
}

template struct Figures<Counters>;
template struct Figures<ForwarderCounters>;
template struct Figures<ConnectionStats>;
template struct Figures<ProcessUsage>;
template struct Figures<MasterCounters>;

json Counters::rates_since(const Counters& earlier, double seconds) const {
  json j = json::object();
  if (seconds <= 0) return j;
  for_each_row([&](auto row) {
    const auto now = this->*row.member, before = earlier.*row.member;
    j[row.name] = now >= before ? (now - before) / seconds : 0.0;
  });
  return j;
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

ProcessUsage ProcessUsage::current() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto seconds = [](const timeval& tv) { return tv.tv_sec + tv.tv_usec / 1e6; };
  ProcessUsage u;
  u.cpu_user_seconds = seconds(ru.ru_utime);
  u.cpu_system_seconds = seconds(ru.ru_stime);
  u.max_rss_bytes = static_cast<uint64_t>(ru.ru_maxrss) * 1024;  // Linux reports KiB
  u.page_faults_major = ru.ru_majflt;
  u.page_faults_minor = ru.ru_minflt;
  u.context_switches = ru.ru_nvcsw + ru.ru_nivcsw;
  u.swap_outs = ru.ru_nswap;
  u.block_input = ru.ru_inblock;
  u.block_output = ru.ru_oublock;
  return u;
}

namespace {

// Figures by name (connections, forwarders) as one JSON object, and back.
template <class Figures>
json named_to_json(const std::map<std::string, Figures>& named) {
  json j = json::object();
  for (const auto& [name, figures] : named) j[name] = figures.to_json();
  return j;
}

template <class Figures>
std::map<std::string, Figures> named_from_json(const json& j) {
  if (!j.is_object()) throw std::invalid_argument("figures by name: not an object");
  std::map<std::string, Figures> named;
  for (const auto& [name, figures] : j.items()) named[name] = Figures::from_json(figures);
  return named;
}

}  // namespace

json Snapshot::to_json() const {
  return {{"pid", pid},         {"slot", slot},       {"kind", process_kind_name(kind)},
          {"port", port},       {"started", started}, {"counters", counters.to_json()},
          {"histograms", histograms.to_json()},
          {"connections", named_to_json(connections)}, {"broker_nodes", broker_nodes},
          {"usage", usage.to_json()},
          {"queue_set", queue_set}, {"forwarders", named_to_json(forwarders)}};
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
  s.connections = named_from_json<ConnectionStats>(j.at("connections"));
  s.broker_nodes = j.value("broker_nodes", std::map<std::string, std::string>{});
  s.usage = ProcessUsage::from_json(j.at("usage"));
  s.queue_set = j.value("queue_set", "");
  s.forwarders = named_from_json<ForwarderCounters>(j.value("forwarders", json::object()));
  return s;
}

namespace {

// The statelessd shape of one process or of a sum: rusage fields, connections, the counters'
// groups ("requests", "publish", ...) and signals_received.
json render_figures(const Counters& c, const std::map<std::string, ConnectionStats>& connections,
                    const ProcessUsage& usage) {
  json j = usage.to_json();
  j["page_size"] = sysconf(_SC_PAGESIZE);
  j["connections"] = named_to_json(connections);
  j.update(c.to_json());
  // statelessd shows the time spent answering in seconds
  j["requests"].erase("processing_time_us");
  j["requests"]["processing_time"] = c.processing_time_us / 1e6;
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
  std::map<std::string, int> links_by_node;
  json rows = json::array();
  json ports = json::array();
  for (const auto& [slot, w] : workers) {
    total.merge(w.counters);
    latency.merge(w.histograms);
    usage.merge(w.usage);
    for (const auto& [name, c] : w.connections) connections[name].merge(c);
    for (const auto& [link, node] : w.broker_nodes) ++links_by_node[node];
    json row = render_figures(w.counters, w.connections, w.usage);
    row["broker_nodes"] = w.broker_nodes;
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
  j["broker_nodes"] = links_by_node;  // node -> how many open links are on it
  j["workers"] = rows;
  j["latency"] = latency.to_json();
  j["forwarders"] = named_to_json(stats_forwarders(workers, retired));
  j.update(master.to_json());
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

// Sets of figures with the labels of their series ("" for none).
template <class Figures>
using Labelled = std::vector<std::pair<std::string, const Figures*>>;

// A family per row: HELP, TYPE (a counter's name ends in `_total`), a sample per labelled set.
template <class Figures>
void render_families(std::string& out, std::string_view prefix, const Labelled<Figures>& sets) {
  Figures::for_each_row([&](auto row) {
    constexpr bool counter = decltype(row)::type::monotonic;
    const auto name = fmt::format("warren_{}{}{}", prefix, row.name, counter ? "_total" : "");
    out += fmt::format("# HELP {0} {1}\n# TYPE {0} {2}\n", name, row.help,
                       counter ? "counter" : "gauge");
    for (const auto& [labels, figures] : sets) {
      const auto value = +(figures->*row.member);  // unary +: a flag as 1 or 0
      out += labels.empty() ? fmt::format("{} {}\n", name, value)
                            : fmt::format("{}{{{}}} {}\n", name, labels, value);
    }
  });
}

// One set per worker: the figures a member of its snapshot holds.
template <class Figures>
Labelled<Figures> per_worker(const std::map<int, Snapshot>& workers, Figures Snapshot::*figures) {
  Labelled<Figures> sets;
  for (const auto& [pid, w] : workers) sets.emplace_back(worker_labels(w), &(w.*figures));
  return sets;
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
  out += "# HELP warren_broker_link_node an open broker link and the node it is connected to\n"
         "# TYPE warren_broker_link_node gauge\n";
  for (const auto& [pid, w] : workers)
    for (const auto& [link, node] : w.broker_nodes)
      out += fmt::format("warren_broker_link_node{{{},link=\"{}\",node=\"{}\"}} 1\n",
                         worker_labels(w), prometheus_label(link), prometheus_label(node));
}

// One series per forwarder, summed over its workers (and the retired ones).
void render_forwarders(std::string& out, const std::map<int, Snapshot>& workers,
                       const Retired& retired) {
  const auto forwarders = stats_forwarders(workers, retired);
  if (forwarders.empty()) return;
  Labelled<ForwarderCounters> sets;
  for (const auto& [name, c] : forwarders)
    sets.emplace_back(fmt::format("forwarder=\"{}\"", prometheus_label(name)), &c);
  render_families(out, "forwarder_", sets);
}

}  // namespace

std::string stats_render_prometheus(const std::map<int, Snapshot>& workers, const Retired& retired,
                                    const MasterCounters& master) {
  std::string out;
  render_families<MasterCounters>(out, "", {{"", &master}});
  // Per worker, and one series for the workers that exited.
  auto counters = per_worker(workers, &Snapshot::counters);
  counters.emplace_back("slot=\"retired\"", &retired.counters);
  render_families(out, "", counters);
  render_worker_histograms(out, workers, retired);
  render_connections_open(out, workers);
  render_families(out, "process_", per_worker(workers, &Snapshot::usage));
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
