// What the broker link hands its callers: outcomes, deliveries, options and counters.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "amqp/codec.h"
#include "tls_config.h"

namespace warren::amqp {

// How an operation ended. Callers map these to HTTP: refused→401, channel_error by code
// (403/404/...), returned→422, connection_lost→503, timeout→504, nacked→503,
// invalid→400.
enum class Outcome {
  ok,               // publish confirmed (basic.ack) or the method's -ok arrived
  nacked,           // basic.nack from the broker
  returned,         // mandatory and unroutable: basic.return (code/text set), then confirmed
  channel_error,    // the broker closed the channel: code/text from channel.close
  connection_lost,  // socket closed, connect failed, heartbeats missed, connection.close
  timeout,          // the caller's deadline passed first
  refused,          // login refused (403 ACCESS_REFUSED during the handshake)
  invalid,          // the request cannot be encoded (bad header value, name too long): not sent
  displaced,        // the broker closed the channel for another message: this one did nothing
                    // wrong and may be sent again (`sent`: the broker may have it already)
};
const char* outcome_name(Outcome o);

struct Result {
  Outcome outcome = Outcome::ok;
  int code = 0;      // AMQP reply code when the broker gave one (404, 403, 312, 320, ...)
  std::string text;  // reply text or a description of the failure
  // A publish that failed after it was written to the connection: the broker may have it.
  bool sent = false;
  bool ok() const { return outcome == Outcome::ok; }
};

struct Delivery {
  std::string consumer_tag;
  uint64_t delivery_tag = 0;
  bool redelivered = false;
  std::string exchange;
  std::string routing_key;
  Properties properties;
  std::string body;
};

using ResultCallback = std::function<void(const Result&)>;
// The decoded -ok method is valid only during the callback (null unless result.ok()).
using MethodCallback = std::function<void(const Result&, const amqp_method_t* reply)>;
using DeliveryCallback = std::function<void(Delivery&&)>;
using QueueCallback = std::function<void(const Result&, const std::string& queue,
                                         uint32_t message_count, uint32_t consumer_count)>;
using ConsumeCallback = std::function<void(const Result&, const std::string& consumer_tag)>;

struct BrokerHost {
  std::string host;
  int port = 5672;
  bool operator==(const BrokerHost&) const = default;
};

using warren::TlsConfig;

struct ConnectionOptions {
  std::vector<BrokerHost> hosts{{"127.0.0.1", 5672}};  // tried in turn
  size_t first_host = 0;         // where in `hosts` a connection starts (then on, wrapping round)
  std::string vhost = "/";
  std::string username = "guest";
  std::string password = "guest";
  int heartbeat = 30;            // seconds; 0 disables
  double connect_timeout = 5;    // per host: TCP, TLS and the AMQP handshake
  double close_timeout = 2;      // wait this long for close-ok
  TlsConfig tls;
  std::string connection_name;   // shown in the management UI
  size_t high_water = 4 << 20;   // output buffer size above which busy() is true
  int channel_max = 2047;
  size_t frame_max = kDefaultFrameMax;
};

// Counters a worker sums over its connections (one struct passed to every connection).
#define WARREN_AMQP_COUNTERS(X) \
  X(connections_opened)         \
  X(connections_closed)         \
  X(connect_failures)           \
  X(logins_refused)             \
  X(heartbeat_timeouts)         \
  X(channels_opened)            \
  X(channels_closed)            \
  X(channel_errors)             \
  X(publishes_sent)             \
  X(publish_confirmed)          \
  X(publish_nacked)             \
  X(publish_returned)           \
  X(publish_timeouts)           \
  X(deliveries)                 \
  X(acks_sent)                  \
  X(bytes_sent)                 \
  X(bytes_received)

struct Stats {
#define X(name) uint64_t name = 0;
  WARREN_AMQP_COUNTERS(X)
#undef X
};

// Capped exponential backoff with jitter for reconnects: initial, 2x each time up to max,
// each delay drawn uniformly from [d/2, d] so a fleet of workers does not reconnect in step.
class Backoff {
 public:
  explicit Backoff(double initial = 0.1, double max = 30);
  double next_delay();
  void reset() { attempt_ = 0; }
  int attempts() const { return attempt_; }

 private:
  double initial_, max_;
  int attempt_ = 0;
  uint64_t seed_;
};

}  // namespace warren::amqp
