// One forwarder: consumes one queue (an oslo forwarder: the queues of its topic, see
// forward/format_oslo.h) and calls one REST backend. Owns its broker connection
// (service identity, the forwarder's vhost), a consume channel and a confirm channel for
// replies and dead letters, the declarations (again after every reconnect), the messages in
// flight (at most `prefetch`), their retry timers, and the ack / reply / dead-letter steps the
// rules in core/forwarding.h decide.
//
// A delivery is acked only on the channel it came from: when that channel or the connection
// dies, the broker requeues it, so what was in flight is dropped here (HTTP cancelled), never
// acked on a later channel. Acks are batched (amqp/ack_batch.h): decided as the messages
// finish, sent once per loop pass, a run of them as one ack-multiple; nacks and rejects go out
// at once.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "amqp/ack_batch.h"
#include "amqp/channel.h"
#include "amqp/link.h"
#include "config.h"
#include "core/forwarding.h"
#include "core/recent_ids.h"
#include "forward/format.h"
#include "forward/format_oslo.h"
#include "forward/http_client.h"
#include "stats.h"

namespace warren::forward {

class Forwarder {
 public:
  // `broker`: hosts, TLS and the service identity (the vhost is the forwarder's);
  // `confirm_timeout` bounds the publishing of replies and dead letters. `forwarder` (an entry
  // of config.forwarders) must outlive the forwarder, as must `http`, `counters` and `latency`.
  Forwarder(Loop& loop, const amqp::ConnectionOptions& broker, double confirm_timeout,
            const ForwarderConfig& forwarder, HttpClient& http, ForwarderCounters& counters,
            Histogram& latency);
  ~Forwarder();
  Forwarder(const Forwarder&) = delete;
  Forwarder& operator=(const Forwarder&) = delete;

  const std::string& name() const { return config_.name; }
  // Connects, declares and consumes; reconnects with backoff for as long as it lives.
  void start();
  // Stops consuming: messages waiting for a retry are requeued at once, requests under way
  // finish (acked, replied or dead-lettered as usual). `done` runs (from the loop) once
  // nothing is in flight.
  void drain(std::function<void()> done);
  // Gives up on what is still in flight: its requests are cancelled and its messages requeued.
  void requeue_all();
  // Closes the broker connection politely.
  void close();
  size_t in_flight() const { return flights_.size(); }
  bool consuming() const;
  const amqp::Stats& broker_stats() const { return link_.stats(); }

 private:
  struct Flight;

  void on_state(amqp::ConnectionState state, const amqp::Result& why);
  void declare_and_consume();
  void consume(size_t index);
  void on_delivery(amqp::Delivery&& message);
  void on_consumer_end(size_t index, const amqp::Result& why);
  bool any_consumer() const;
  void cancel_consumers();
  core::Disposition disposition(const Flight& f, int status) const;
  void start_heartbeats(Flight& f);
  static void on_heartbeat_timer(evutil_socket_t, short, void* arg);
  void restart(const std::string& why);
  void attempt(Flight& f);
  void on_response(uint64_t key, BackendResponse&& response, double seconds);
  void finish(Flight& f, const BackendResponse& response, core::Disposition disposition);
  void settle(uint64_t key, core::Disposition disposition);
  void dead_letter(Flight& f);
  void dead_letter_failed(Flight& f, const amqp::Result& why);
  void wait_then_retry(Flight& f, double delay);
  void ack(Flight& f);
  void settle_by_ack(Flight& f);
  void settled_otherwise(const Flight& f);
  void flush_acks();
  static void on_ack_flush(evutil_socket_t, short, void* arg);
  void requeue(Flight& f);
  void reject(Flight& f);
  void forget(uint64_t key);
  void drop_channel_flights();
  void check_drained();
  std::shared_ptr<amqp::Channel> publish_channel();
  bool valid(const Flight& f) const;

  static void on_retry_timer(evutil_socket_t, short, void* arg);

  Loop& loop_;
  const double confirm_timeout_;
  const ForwarderConfig& config_;
  HttpClient& http_;
  ForwarderCounters& counters_;
  Histogram& latency_;  // backend answer times, the worker's forward_seconds
  std::unique_ptr<const Format> format_;  // forwarders[].format's, chosen once

  amqp::Link link_;
  std::shared_ptr<amqp::Channel> consume_channel_, publish_channel_;
  std::vector<ConsumeQueue> plan_;         // what is declared and consumed
  std::vector<std::string> consumer_tags_;  // per plan_ entry; "" until its consume-ok
  std::string queues_;                      // plan_'s queue names, for logs
  core::RecentIds recent_ids_{kOsloDuplicateCapacity, kOsloDuplicateSeconds};  // oslo _unique_id
  amqp::AckBatch acks_;  // for consume_channel_'s deliveries; flushed before it changes
  EventPtr ack_flush_;   // made active when an ack is waiting
  std::map<uint64_t, std::unique_ptr<Flight>> flights_;  // by our own key (tags repeat per channel)
  uint64_t next_key_ = 1;
  bool draining_ = false;
  std::function<void()> on_drained_;
  LifeToken life_;
};

}  // namespace warren::forward
