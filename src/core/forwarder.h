// Forwarding's consume loop (AMQP -> a backend), for every egress binding: one forwarder
// consumes the queues of its plan and hands each message to a Backend (core/backend.h). It owns
// its broker link (service identity, the forwarder's vhost), a consume channel and a confirm
// channel for replies, heartbeats and dead letters, the declarations (again after every
// reconnect), the messages in flight (at most `prefetch`), their retry timers, duplicate
// suppression by the sender's request id, and the ack / reply / dead-letter steps the rules in
// core/forwarding.h decide.
//
// A delivery is acked only on the channel it came from: when that channel or the connection
// dies, the broker requeues it, so what was in flight is dropped here (its backend job
// abandoned), never acked on a later channel. Acks are batched (amqp/ack_batch.h): decided as
// the messages finish, sent once per loop pass, a run of them as one ack-multiple; nacks and
// rejects go out at once.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "amqp/ack_batch.h"
#include "amqp/channel.h"
#include "amqp/link.h"
#include "core/backend.h"
#include "core/forwarding.h"
#include "core/recent_ids.h"
#include "handles.h"
#include "loop.h"
#include "stats.h"

namespace warren::core {

// One queue a forwarder consumes, and what it declares for it first (when `declare`).
struct ConsumeQueue {
  std::string queue;
  bool declare = false;
  std::string exchange;  // "" : no exchange to declare
  std::string exchange_type = "topic";
  bool exchange_durable = false, exchange_auto_delete = false;
  bool durable = false, auto_delete = false;
  nlohmann::json arguments = nlohmann::json::object();
  std::vector<std::string> bindings;  // routing keys binding the queue to `exchange`
};

// One forwarder's settings (made from a forwarders[] entry by options.cc).
struct ForwarderOptions {
  std::string name;                // forwarders[].name, for logs and dead-letter headers
  amqp::ConnectionOptions broker;  // hosts, TLS, the service identity, the forwarder's vhost
  std::vector<ConsumeQueue> plan;  // what is declared and consumed, in order
  int prefetch = 64;
  RetryPolicy retry;
  std::string dead_letter_exchange;  // "" : dead letters are rejected without requeue
  // The queue was declared with its own x-dead-letter-exchange: a dead letter that
  // dead_letter_exchange did not take is rejected to it rather than kept in the queue.
  bool queue_dead_letter_exchange = false;
  std::string queue;  // forwarders[].queue, for x-warren-queue ("" : the routing key)
  double confirm_timeout = 5;  // replies, heartbeats and dead letters
  // A request's unique id is remembered this long (and at most this many) to drop redelivered
  // duplicates (oslo's own servers remember the last 16).
  double duplicate_seconds = 600;
  size_t duplicate_capacity = 10000;
};

class Forwarder : NonCopyable {
 public:
  // `backend`, `counters` and `latency` (the backend's answer times) must outlive the forwarder.
  Forwarder(Loop& loop, ForwarderOptions options, Backend& backend, ForwarderCounters& counters,
            Histogram& latency);
  ~Forwarder();

  const std::string& name() const { return options_.name; }
  // Connects, declares and consumes; reconnects with backoff for as long as it lives.
  void start();
  // Stops consuming: messages waiting for a retry are requeued at once, backend jobs under way
  // finish (acked, replied or dead-lettered as usual). `done` runs (from the loop) once
  // nothing is in flight.
  void drain(std::function<void()> done);
  // Gives up on what is still in flight: its jobs are abandoned and its messages requeued.
  void requeue_all();
  // Closes the broker connection politely.
  void close();
  size_t in_flight() const { return flights_.size(); }
  bool consuming() const;
  const amqp::Stats& broker_stats() const { return link_.stats(); }
  std::string broker_node() const { return link_.node(); }

 private:
  struct Flight;

  void on_state(amqp::ConnectionState state, const amqp::Result& why);
  void declare_and_consume();
  void consume(size_t index);
  void on_delivery(amqp::Delivery&& message);
  void on_consumer_end(size_t index, const amqp::Result& why);
  bool any_consumer() const;
  void cancel_consumers();
  Disposition disposition(const Flight& f, int status) const;
  void start_heartbeats(Flight& f);
  static void on_heartbeat_timer(evutil_socket_t, short, void* arg);
  void restart(const std::string& why);
  void attempt(Flight& f);
  void on_answer(uint64_t key, BackendAnswer&& answer);
  void finish(Flight& f, Disposition disposition);
  void settle(uint64_t key, Disposition disposition);
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
  const ForwarderOptions options_;
  Backend& backend_;
  ForwarderCounters& counters_;
  Histogram& latency_;  // backend answer times, the worker's forward_seconds

  amqp::Link link_;
  std::shared_ptr<amqp::Channel> consume_channel_, publish_channel_;
  std::vector<std::string> consumer_tags_;  // per options_.plan entry; "" until its consume-ok
  std::string queues_;                      // the plan's queue names, for logs
  RecentIds recent_ids_;                    // unique ids of requests seen lately
  amqp::AckBatch acks_;  // for consume_channel_'s deliveries; flushed before it changes
  EventPtr ack_flush_;   // made active when an ack is waiting
  std::map<uint64_t, std::unique_ptr<Flight>> flights_;  // by our own key (tags repeat per channel)
  uint64_t next_key_ = 1;
  bool draining_ = false;
  std::function<void()> on_drained_;
  LifeToken life_;
};

}  // namespace warren::core
