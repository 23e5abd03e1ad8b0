// Counters: one X-macro list per module, and each list generates its struct; one template each
// for merge, snapshot JSON, /stats and /metrics (stats.cc) serves every struct.
// Workers bump plain numbers and send snapshots to the master, which sums them.
//
// A row is X(member, TYPE, key, help):
//   member  the C++ member, the /metrics name (warren_<prefix><member>, plus `_total` for a
//           counter) and the key of /stats "rates";
//   TYPE    how the figure behaves: one of the types of namespace `metric` below;
//   key     where the figure stands in the /stats JSON, below the struct's group ("a/b" nests).
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <map>
#include <string>

#include "amqp/types.h"
#include "process_kind.h"
#include "http/status_codes.h"

namespace warren {

namespace metric {
// Monotonic (events, bytes, time spent in microseconds): summed over processes; in /metrics
// `# TYPE counter` and a name ending in `_total`.
struct counter {
  using value = uint64_t;
  static constexpr bool monotonic = true;
  static void merge(value& into, value from) { into += from; }
};
// A counter of fractional seconds (CPU time).
struct counter_seconds {
  using value = double;
  static constexpr bool monotonic = true;
  static void merge(value& into, value from) { into += from; }
};
// A level now (a queue's length, memory): summed over processes; in /metrics `# TYPE gauge`.
struct gauge {
  using value = uint64_t;
  static constexpr bool monotonic = false;
  static void merge(value& into, value from) { into += from; }
};
// A yes/no level (connected): true when any process says so; a gauge of 1 or 0 in /metrics.
struct gauge_flag {
  using value = bool;
  static constexpr bool monotonic = false;
  static void merge(value& into, value from) { into = into || from; }
};

// One row of a list, as the templates of stats.cc see it.
template <class Type, class Owner>
struct Row {
  using type = Type;
  typename Type::value Owner::*member;
  const char* name;
  const char* group;  // "" or the /stats object the struct's figures live in
  const char* key;
  const char* help;
};
}  // namespace metric

#define WARREN_STATS_MEMBER(member, type, key, help) metric::type::value member{};
#define WARREN_STATS_ROW(member, type, key, help) \
  visit(metric::Row<metric::type, Self>{&Self::member, #member, kGroup, key, help});

// The body of a struct generated from LIST: its members, and its rows for the templates.
#define WARREN_STATS_BODY(Name, group, LIST)                                   \
  using Self = Name;                                                           \
  static constexpr const char* kGroup = group;                                 \
  LIST(WARREN_STATS_MEMBER)                                                    \
  template <class Visit>                                                       \
  static void for_each_row(Visit&& visit) {                                    \
    LIST(WARREN_STATS_ROW)                                                     \
  }                                                                            \
  bool operator==(const Name&) const = default;

// merge, to_json (the /stats shape: each row at its key) and from_json for a struct with rows;
// stats.cc instantiates them for each such struct.
template <class Self>
struct Figures {
  void merge(const Self& other);
  nlohmann::json to_json() const;
  static Self from_json(const nlohmann::json& j);
  bool operator==(const Figures&) const = default;
};

// Several modules' structs as one: their members side by side, their rows in turn.
template <class... Modules>
struct ModuleSet : Modules... {
  template <class Visit>
  static void for_each_row(Visit&& visit) {
    (Modules::for_each_row(visit), ...);
  }
  bool operator==(const ModuleSet&) const = default;
};

// ---- A worker's counters, one list per module; the group is the /stats object of its keys.

// One response.NNN counter per status warren answers (src/http/status_codes.h).
#define WARREN_RESPONSE_COUNTER(X, code, reason, note) \
  X(response_##code, counter, "response." #code, "responses " #code " " reason note)

#define HTTP_REQUEST_COUNTERS(X)                                                              \
  X(method_get, counter, "method.GET", "HTTP GET requests")                                   \
  X(method_post, counter, "method.POST", "HTTP POST requests")                                \
  X(method_other, counter, "method.other", "HTTP requests with another method")               \
  WARREN_HTTP_STATUSES(WARREN_RESPONSE_COUNTER, X)                                             \
  X(response_other, counter, "response.other", "responses with another status")               \
  X(processing_time_us, counter, "processing_time_us", "time spent answering, microseconds")

#define PUBLISH_COUNTERS(X)                                                                    \
  X(publish_confirmed, counter, "confirmed", "messages confirmed by the broker")               \
  X(publish_nacked, counter, "nacked", "messages nacked by the broker")                       \
  X(publish_returned, counter, "returned", "mandatory messages returned unroutable")           \
  X(publish_failed, counter, "failed", "messages refused, timed out or lost with the link")    \
  X(publish_blocked, counter, "blocked", "of failed: refused while the broker blocked us")     \
  X(publish_busy, counter, "busy", "of failed: refused over broker.max_output_buffer unsent")

#define RPC_COUNTERS(X)                                                                        \
  X(rpc_calls, counter, "calls", "RPC calls received")                                        \
  X(rpc_casts, counter, "casts", "RPC casts and fanouts received")                             \
  X(rpc_results, counter, "results", "RPC calls answered with a result")                       \
  X(rpc_failures, counter, "failures", "RPC calls answered with a remote failure")            \
  X(rpc_timeouts, counter, "timeouts", "RPC calls with no reply in time")                      \
  X(rpc_heartbeats, counter, "heartbeats", "RPC heartbeats (interim replies) received")       \
  X(rpc_replies_late, counter, "replies_late", "RPC replies for no waiting call, dropped")     \
  X(rpc_replies_invalid, counter, "replies_invalid", "unreadable messages on the reply queue")

#define BROKER_COUNTERS(X)                                                                     \
  X(broker_connects, counter, "connects", "broker connections opened")                         \
  X(broker_disconnects, counter, "disconnects", "broker connections closed or lost")           \
  X(broker_login_refused, counter, "login_refused", "broker logins refused")

#define EVENT_COUNTERS(X)                                                                      \
  X(sse_streams, counter, "streams_opened", "event streams opened")                            \
  X(sse_streams_closed, counter, "streams_closed", "event streams closed")                     \
  X(sse_events, counter, "events", "events sent to stream clients")                            \
  X(sse_slow_clients, counter, "slow_clients_cut",                                             \
    "stream clients cut off, too slow (sse_max_buffer, full max_output_buffer)")

#define LIMIT_COUNTERS(X)                                                                      \
  X(accept_paused, counter, "accept_paused", "accepting paused: out of file descriptors")      \
  X(connections_full, counter, "connections_full",                                             \
    "accepting paused: http.max_connections client connections open")                         \
  X(header_too_large, counter, "header_too_large", "requests over http.max_header_size (431)") \
  X(request_timeouts, counter, "request_timeouts",                                             \
    "requests not sent whole in http.request_timeout (408)")                                  \
  X(body_buffer_full, counter, "body_buffer_full",                                             \
    "requests whose body found http.max_body_buffer full (503)")                               \
  X(output_buffer_full, counter, "output_buffer_full",                                         \
    "connections not read from: answers not taken fill http.max_output_buffer")               \
  X(bad_framing, counter, "bad_framing",                                                       \
    "requests refused for ambiguous framing, RFC 9112 6.3 (400)")                             \
  X(event_streams_refused, counter, "event_streams_refused",                                   \
    "/events streams over http.max_event_streams (503)")                                      \
  X(rpc_calls_refused, counter, "rpc_calls_refused", "RPC calls over rpc.max_pending_calls (503)") \
  X(broker_connections_evicted, counter, "broker_connections_evicted",                         \
    "idle broker connections closed to stay within broker.max_connections")                   \
  X(broker_connections_refused, counter, "broker_connections_refused",                         \
    "publishes refused (503): broker.max_connections reached, every connection busy")

// statelessd keeps these at the top level of /stats.
#define PROCESS_COUNTERS(X) \
  X(signals_received, counter, "signals_received", "signals received by the process")

struct HttpRequestCounters {
  WARREN_STATS_BODY(HttpRequestCounters, "requests", HTTP_REQUEST_COUNTERS)
};
struct PublishCounters { WARREN_STATS_BODY(PublishCounters, "publish", PUBLISH_COUNTERS) };
struct RpcCounters { WARREN_STATS_BODY(RpcCounters, "rpc", RPC_COUNTERS) };
struct BrokerCounters { WARREN_STATS_BODY(BrokerCounters, "broker", BROKER_COUNTERS) };
struct EventCounters { WARREN_STATS_BODY(EventCounters, "events", EVENT_COUNTERS) };
struct LimitCounters { WARREN_STATS_BODY(LimitCounters, "limits", LIMIT_COUNTERS) };
struct ProcessCounters { WARREN_STATS_BODY(ProcessCounters, "", PROCESS_COUNTERS) };

// Everything a worker counts, bumped by member name (counters.publish_confirmed).
struct Counters : ModuleSet<HttpRequestCounters, PublishCounters, RpcCounters, BrokerCounters,
                            EventCounters, LimitCounters, ProcessCounters>,
                  Figures<Counters> {
  // Per-second rates of every counter between an earlier total and this one, by member name.
  nlohmann::json rates_since(const Counters& earlier, double seconds) const;
  bool operator==(const Counters&) const = default;
};

// Latency histograms: X(member, help). Fixed buckets, in seconds, as Prometheus likes them.
#define WORKER_HISTOGRAMS(X)                                                       \
  X(publish_seconds, "time from an HTTP publish to the broker's confirm")          \
  X(forward_seconds, "time from a consumed message to its backend's answer")      \
  X(rpc_seconds, "time from an RPC call to its reply")

struct Histogram {
  static constexpr std::array<double, 13> kBounds{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                  0.1,    0.25,  0.5,    1,     2.5,  5};
  std::array<uint64_t, kBounds.size() + 1> buckets{};  // the last one is +Inf
  uint64_t count = 0;
  double sum = 0;

  void observe(double seconds);
  void merge(const Histogram& other);
  nlohmann::json to_json() const;
  static Histogram from_json(const nlohmann::json& j);
};

struct Histograms {
#define WARREN_HISTOGRAM_MEMBER(member, help) Histogram member;
  WORKER_HISTOGRAMS(WARREN_HISTOGRAM_MEMBER)
#undef WARREN_HISTOGRAM_MEMBER
  void merge(const Histograms& other);
  nlohmann::json to_json() const;
  static Histograms from_json(const nlohmann::json& j);
};

// Per forwarder (AMQP -> HTTP), summed over the workers of its queue set; warren_forwarder_*.
#define FORWARDER_COUNTERS(X)                                                                  \
  X(consumed, counter, "consumed", "messages delivered to the forwarder by the broker")         \
  X(acked, counter, "acked", "messages acked after a final 2xx/3xx answer")                    \
  X(retried, counter, "retried",                                                               \
    "backend attempts that failed (5xx, error, timeout) and were retried")                    \
  X(dead_lettered, counter, "dead_lettered",                                                   \
    "messages dead-lettered, or rejected without requeue when no dead_letter_exchange")       \
  X(dead_letter_failed, counter, "dead_letter_failed",                                         \
    "dead-letter publishes not confirmed and routed (message kept or rejected to its queue's DLX)") \
  X(replied, counter, "replied", "replies published to reply_to, confirmed and routed")        \
  X(reply_failed, counter, "reply_failed", "replies the broker did not confirm or could not route") \
  X(requeued, counter, "requeued", "messages handed back to the queue (nack requeue) while stopping") \
  X(invalid, counter, "invalid", "messages that could not be translated into a request")       \
  X(status_2xx, counter, "status_2xx", "backend answers 2xx")                                  \
  X(status_3xx, counter, "status_3xx", "backend answers 3xx")                                  \
  X(status_4xx, counter, "status_4xx", "backend answers 4xx")                                  \
  X(status_5xx, counter, "status_5xx", "backend answers 5xx")                                  \
  X(status_error, counter, "status_error",                                                     \
    "backend attempts without an answer (connect error, timeout, reset)")                     \
  X(latency_us, counter, "latency_us", "time spent waiting for backends, microseconds")        \
  X(duplicates, counter, "duplicates",                                                         \
    "oslo requests dropped as duplicates of one seen lately (_unique_id)")                    \
  X(heartbeats, counter, "heartbeats",                                                         \
    "oslo heartbeat replies published while a backend worked on a call")                      \
  X(vcd_refused, counter, "vcd_refused",                                                       \
    "vcd requests answered 403 by a check through the vCD API (right by name, org membership)") \
  X(vcd_api_unavailable, counter, "vcd_api_unavailable",                                       \
    "vcd requests answered 503 because the vCD API could not answer a check")

struct ForwarderCounters : Figures<ForwarderCounters> {
  WARREN_STATS_BODY(ForwarderCounters, "", FORWARDER_COUNTERS)
};

// Per broker connection pool entry, keyed "vhost:user" as statelessd does; only in /stats.
#define CONNECTION_STATS(X)                                                                    \
  X(connections_opened, counter, "connections/opened", "broker connections opened")           \
  X(connections_closed, counter, "connections/closed", "broker connections closed or lost")   \
  X(channels_opened, counter, "channels/opened", "channels opened")                           \
  X(channels_closed, counter, "channels/closed", "channels closed")                           \
  X(connected, gauge_flag, "connected", "a connection is open now")                            \
  X(publishes, counter, "publishes", "messages confirmed")                                     \
  X(queue_size, gauge, "queue_size", "messages sent and not yet settled by the broker")

struct ConnectionStats : Figures<ConnectionStats> {
  WARREN_STATS_BODY(ConnectionStats, "", CONNECTION_STATS)
};

// getrusage(RUSAGE_SELF) of one process: in /stats in the statelessd shape (summed over the
// processes), in /metrics as warren_process_* per worker.
#define PROCESS_USAGE(X)                                                                       \
  X(cpu_user_seconds, counter_seconds, "cpu_time/user", "CPU time in user mode")               \
  X(cpu_system_seconds, counter_seconds, "cpu_time/system", "CPU time in the kernel")          \
  X(max_rss_bytes, gauge, "memory_usage", "largest resident set size")                         \
  X(page_faults_major, counter, "page_faults/major", "page faults that read from disk")        \
  X(page_faults_minor, counter, "page_faults/minor", "page faults served without I/O")         \
  X(context_switches, counter, "context_switches", "context switches, voluntary or not")       \
  X(swap_outs, counter, "swap_outs", "times swapped out")                                      \
  X(block_input, counter, "block/input", "block input operations")                             \
  X(block_output, counter, "block/output", "block output operations")

struct ProcessUsage : Figures<ProcessUsage> {
  WARREN_STATS_BODY(ProcessUsage, "", PROCESS_USAGE)
  static ProcessUsage current();
};

// The master's own counters: top-level keys of /stats, warren_<member>_total in /metrics.
#define MASTER_COUNTERS(X)                                                                     \
  X(worker_respawns, counter, "respawns",                                                      \
    "workers that died and were replaced (not reload replacements)")                          \
  X(worker_frames_refused, counter, "worker_frames_refused",                                   \
    "frames from workers that did not decode, dropped (a malformed stream also kills the worker)")

struct MasterCounters : Figures<MasterCounters> {
  WARREN_STATS_BODY(MasterCounters, "", MASTER_COUNTERS)
};

// What one worker reports about itself.
struct Snapshot {
  int pid = 0;
  int slot = 0;
  ProcessKind kind = ProcessKind::http;
  int port = 0;      // http workers
  double started = 0;  // Unix time the worker started
  Counters counters;
  Histograms histograms;
  std::map<std::string, ConnectionStats> connections;
  // Each open broker link ("vhost:user", "rpc replies vhost", "forwarder NAME") -> the node
  // ("host:port" of broker.hosts) it is connected to: on a cluster, where the links are.
  std::map<std::string, std::string> broker_nodes;
  std::string queue_set;                                 // forward workers
  std::map<std::string, ForwarderCounters> forwarders;  // by forwarder name
  ProcessUsage usage;

  nlohmann::json to_json() const;
  static Snapshot from_json(const nlohmann::json& j);
};

// A broker link's figures (amqp::Link::stats) into the worker's counters, and into its
// connection row when there is one.
void add_broker_counters(Counters& c, const amqp::Stats& a);
void add_link_figures(ConnectionStats& s, Counters& c, const amqp::Stats& a);

// What workers that have exited counted, so that totals never go backwards.
struct Retired {
  Counters counters;
  Histograms histograms;
  std::map<std::string, ForwarderCounters> forwarders;
  void add(const Snapshot& last);
};

// The master's sum over workers: /stats in statelessd's shape plus `workers[]`.
nlohmann::json stats_render(const std::map<int, Snapshot>& workers, const Retired& retired,
                            const ProcessUsage& master_usage, double uptime,
                            const MasterCounters& master = {});
// Every counter summed over the workers and those that exited.
Counters stats_total(const std::map<int, Snapshot>& workers, const Retired& retired);

// Prometheus text exposition of the same figures, per worker as labels.
std::string stats_render_prometheus(const std::map<int, Snapshot>& workers, const Retired& retired,
                                    const MasterCounters& master = {});

// Forwarder counters summed by forwarder name over the workers (and the retired ones).
std::map<std::string, ForwarderCounters> stats_forwarders(const std::map<int, Snapshot>& workers,
                                                          const Retired& retired);

}  // namespace warren
