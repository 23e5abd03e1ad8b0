// Counters: one X-macro list generates the struct, the merge, the JSON and the Prometheus names.
// Workers bump plain integers and send snapshots to the master, which sums them (stats.cc).
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

// One response.NNN counter per status warren answers (src/http/status_codes.h).
#define WARREN_RESPONSE_COUNTER(X, code, reason, note) \
  X(response_##code, requests, "response." #code, "responses " #code " " reason note)

// X(member, group, json key, help). `group` is the statelessd /stats object the key lives in.
#define WORKER_COUNTERS(X)                                                                     \
  X(method_get, requests, "method.GET", "HTTP GET requests")                                  \
  X(method_post, requests, "method.POST", "HTTP POST requests")                               \
  X(method_other, requests, "method.other", "HTTP requests with another method")              \
  WARREN_HTTP_STATUSES(WARREN_RESPONSE_COUNTER, X)                                            \
  X(response_other, requests, "response.other", "responses with another status")              \
  X(processing_time_us, requests, "processing_time_us", "time spent answering, microseconds") \
  X(publish_confirmed, publish, "confirmed", "messages confirmed by the broker")              \
  X(publish_nacked, publish, "nacked", "messages nacked by the broker")                       \
  X(publish_returned, publish, "returned", "mandatory messages returned unroutable")          \
  X(publish_failed, publish, "failed", "messages refused, timed out or lost with the link")   \
  X(publish_blocked, publish, "blocked", "of failed: refused while the broker blocked us")    \
  X(publish_busy, publish, "busy", "of failed: refused over broker.max_output_buffer unsent") \
  X(rpc_calls, rpc, "calls", "RPC calls received")                                           \
  X(rpc_casts, rpc, "casts", "RPC casts and fanouts received")                                \
  X(rpc_results, rpc, "results", "RPC calls answered with a result")                          \
  X(rpc_failures, rpc, "failures", "RPC calls answered with a remote failure")               \
  X(rpc_timeouts, rpc, "timeouts", "RPC calls with no reply in time")                         \
  X(rpc_heartbeats, rpc, "heartbeats", "RPC heartbeats (interim replies) received")          \
  X(rpc_replies_late, rpc, "replies_late", "RPC replies for no waiting call, dropped")        \
  X(rpc_replies_invalid, rpc, "replies_invalid", "unreadable messages on the reply queue")    \
  X(broker_connects, broker, "connects", "broker connections opened")                         \
  X(broker_disconnects, broker, "disconnects", "broker connections closed or lost")           \
  X(broker_login_refused, broker, "login_refused", "broker logins refused")                   \
  X(sse_streams, events, "streams_opened", "event streams opened")                            \
  X(sse_streams_closed, events, "streams_closed", "event streams closed")                     \
  X(sse_events, events, "events", "events sent to stream clients")                            \
  X(sse_slow_clients, events, "slow_clients_cut", "stream clients cut off over sse_max_buffer") \
  X(accept_paused, limits, "accept_paused", "accepting paused: out of file descriptors")      \
  X(header_too_large, limits, "header_too_large", "requests over http.max_header_size (431)")  \
  X(request_timeouts, limits, "request_timeouts", "requests not sent whole in http.request_timeout (408)") \
  X(bad_framing, limits, "bad_framing", "requests refused for ambiguous framing, RFC 9112 6.3 (400)") \
  X(event_streams_refused, limits, "event_streams_refused", "/events streams over http.max_event_streams (503)") \
  X(rpc_calls_refused, limits, "rpc_calls_refused", "RPC calls over rpc.max_pending_calls (503)") \
  X(broker_connections_evicted, limits, "broker_connections_evicted",                        \
    "idle broker connections closed to stay within broker.max_connections")                   \
  X(broker_connections_refused, limits, "broker_connections_refused",                        \
    "publishes refused (503): broker.max_connections reached, every connection busy")         \
  X(signals_received, process, "signals_received", "signals received by the process")

struct Counters {
#define WARREN_COUNTER_MEMBER(member, group, key, help) uint64_t member = 0;
  WORKER_COUNTERS(WARREN_COUNTER_MEMBER)
#undef WARREN_COUNTER_MEMBER

  void merge(const Counters& other);
  nlohmann::json to_json() const;  // flat: {"method_get": n, ...}
  // Per-second rates of every counter between an earlier total and this one.
  nlohmann::json rates_since(const Counters& earlier, double seconds) const;
  static Counters from_json(const nlohmann::json& j);
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

// Per forwarder (AMQP -> HTTP), summed over the workers of its queue set. X(member, help).
#define FORWARDER_COUNTERS(X)                                                                  \
  X(consumed, "messages delivered to the forwarder by the broker")                             \
  X(acked, "messages acked after a final 2xx/3xx answer")                                      \
  X(retried, "backend attempts that failed (5xx, error, timeout) and were retried")            \
  X(dead_lettered, "messages dead-lettered, or rejected without requeue when no dead_letter_exchange") \
  X(dead_letter_failed, "dead-letter publishes not confirmed and routed (message kept or rejected to its queue's DLX)") \
  X(replied, "replies published to reply_to, confirmed and routed")                            \
  X(reply_failed, "replies the broker did not confirm or could not route")                     \
  X(requeued, "messages handed back to the queue (nack requeue) while stopping")               \
  X(invalid, "messages that could not be translated into a request")                          \
  X(status_2xx, "backend answers 2xx")                                                         \
  X(status_3xx, "backend answers 3xx")                                                         \
  X(status_4xx, "backend answers 4xx")                                                         \
  X(status_5xx, "backend answers 5xx")                                                         \
  X(status_error, "backend attempts without an answer (connect error, timeout, reset)")        \
  X(latency_us, "time spent waiting for backends, microseconds")                               \
  X(duplicates, "oslo requests dropped as duplicates of one seen lately (_unique_id)")          \
  X(heartbeats, "oslo heartbeat replies published while a backend worked on a call")

struct ForwarderCounters {
#define WARREN_FORWARDER_MEMBER(member, help) uint64_t member = 0;
  FORWARDER_COUNTERS(WARREN_FORWARDER_MEMBER)
#undef WARREN_FORWARDER_MEMBER

  void merge(const ForwarderCounters& other);
  nlohmann::json to_json() const;  // flat: {"consumed": n, ...}
  static ForwarderCounters from_json(const nlohmann::json& j);
  bool operator==(const ForwarderCounters&) const = default;
};

// Per broker connection pool entry, keyed "vhost:user" as statelessd does.
struct ConnectionStats {
  uint64_t connections_opened = 0, connections_closed = 0;
  uint64_t channels_opened = 0, channels_closed = 0;
  bool connected = false;
  uint64_t publishes = 0;
  uint64_t queue_size = 0;

  void merge(const ConnectionStats& other);
  nlohmann::json to_json() const;  // the statelessd shape
  static ConnectionStats from_json(const nlohmann::json& j);
};

// getrusage(RUSAGE_SELF) of one process, in the statelessd shape when rendered.
struct ProcessUsage {
  double cpu_user = 0, cpu_system = 0;
  uint64_t max_rss_bytes = 0, page_faults_major = 0, page_faults_minor = 0;
  uint64_t context_switches = 0, swap_outs = 0, block_input = 0, block_output = 0;

  static ProcessUsage current();
  void merge(const ProcessUsage& other);
  nlohmann::json to_json() const;
  static ProcessUsage from_json(const nlohmann::json& j);
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

// The master's own counters: X(member, json key, help). Each is a top-level key of /stats and
// warren_<member>_total in /metrics.
#define MASTER_COUNTERS(X)                                                                   \
  X(worker_respawns, "respawns", "workers that died and were replaced (not reload replacements)") \
  X(worker_frames_refused, "worker_frames_refused",                                          \
    "frames from workers that did not decode, dropped (a malformed stream also kills the worker)")

struct MasterCounters {
#define WARREN_MASTER_MEMBER(member, key, help) uint64_t member = 0;
  MASTER_COUNTERS(WARREN_MASTER_MEMBER)
#undef WARREN_MASTER_MEMBER
};

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
