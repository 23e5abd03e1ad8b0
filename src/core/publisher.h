// The bridge's publish operation, for every binding: one broker connection per (vhost, user,
// password digest) per worker, opened lazily, reused, closed when idle; one channel per
// exchange on it, so a broker error on one exchange (404, 403) fails only the messages sent
// there; publisher confirms; a bounded wait while the broker is away.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "amqp/channel.h"
#include "amqp/link.h"
#include "context.h"
#include "handles.h"

namespace warren::core {

struct Credentials {
  std::string vhost, username, password;
};

struct Message {
  std::string exchange, routing_key;
  bool mandatory = false;
  amqp::Properties properties;
  std::string body;
};

// How a publish ended, in the bridge's terms; bindings map it to their own status codes.
enum class PublishStatus {
  confirmed,    // the broker has it (basic.ack)
  unroutable,   // mandatory and no queue took it (basic.return)
  refused,      // login refused: bad credentials or no access to the vhost
  forbidden,    // the broker refused the operation (403 on the channel)
  not_found,    // no such vhost or exchange (404)
  rejected,     // a nack (the broker refused the message: x-overflow reject-publish, a queue
                // unavailable), or another broker error on the channel (505, 541 ...)
  invalid,      // the message cannot be encoded (a header value too large, ...) or the broker
                // refused it as such (406 PRECONDITION_FAILED: user_id not the login's, ...)
  unavailable,  // broker unreachable or blocking publishers, or too many messages waiting
  over_limit,   // a new broker connection was needed and broker.max_connections are all busy
  timeout,      // sent, and the outcome unknown: no confirm within confirm_timeout, or the
                // connection lost before the confirm (and the copy sent again not confirmed)
};

struct PublishResult {
  PublishStatus status;
  std::string detail;  // the broker's reply text or what went wrong
};
using PublishCallback = std::function<void(const PublishResult&)>;

// What a broker outcome means to a client; link_open tells a slow broker from an absent one.
PublishResult publish_result(const amqp::Result& r, bool link_open);

struct PublishOptions {
  amqp::ConnectionOptions broker;  // vhost and login: each client's own
  int max_connections = 64;        // broker.max_connections
  double confirm_timeout = 5;      // http.confirm_timeout
  int max_in_flight = 10000;       // http.max_in_flight, per broker connection
  double idle_connection_timeout = 300;
};

class Publisher : NonCopyable {
 public:
  Publisher(Context& context, PublishOptions options);
  ~Publisher();

  // `done` is called exactly once, from the loop, never inside this call.
  void publish(const Credentials& who, Message message, PublishCallback done);
  // The broker's word on `who`'s login, on the link their messages will use: confirmed once it
  // is open, else what publishing would have answered (refused, not_found, unavailable ...).
  // `done` as for publish.
  void login(const Credentials& who, PublishCallback done);
  // Per "vhost:user" figures and broker counters for /stats.
  void fill(Snapshot& snapshot) const;
  // Closes every broker connection gracefully (the worker is draining, nothing is in flight).
  void close_all();

 private:
  struct LoginLink;
  using Clock = Loop::Clock;

  LoginLink& link_for(const Credentials& who);
  // links_' key for `who`: vhost, user and the password's digest.
  const std::string& key_of(const Credentials& who);
  // Under broker.max_connections, a link about to connect may: true once there is room (the
  // least recently used idle link closed if need be), false when every other link is busy.
  [[nodiscard]] bool make_room(const LoginLink& link);
  // Connects a link that is not connected or connecting; false when broker.max_connections
  // leaves no room (counted).
  [[nodiscard]] bool ensure_connection(LoginLink& link);
  std::string no_room() const;  // why ensure_connection said no
  void connect(LoginLink& link);
  void on_link_state(LoginLink& link, amqp::ConnectionState state, const amqp::Result& why);
  // Why `link` cannot take a message now (too many waiting, no room for a connection, the
  // broker blocked or not reading), or nothing.
  std::optional<PublishResult> admit(LoginLink& link);
  // The exchange's channel on `link`, opened if need be; null when every channel number is busy.
  std::shared_ptr<amqp::Channel> channel_for(LoginLink& link, const std::string& exchange);
  // Lets go of the retired channels whose messages are all settled (closed on the wire).
  static void close_settled_retirees(LoginLink& link);
  // `alone`: the message was displaced by another's channel error (amqp::Channel::publish).
  void send(LoginLink& link, Message message, Clock::time_point deadline, PublishCallback done,
            bool alone = false);
  void retire_channel(const std::string& key, const std::string& exchange,
                      std::shared_ptr<amqp::Channel> channel);
  // The broker's word on a message sent on the link `key`: sent again, or answered.
  void settle(const std::string& key, Message&& message, Clock::time_point deadline,
              PublishCallback done, const amqp::Result& r);
  // Answers `done` (from the loop) with a refusal before anything was sent; counts it failed.
  void refuse(PublishCallback done, PublishStatus status, std::string detail);
  void sweep_idle();
  // A link forgotten by sweep_idle: its figures kept in retired_counters_ and retired_.
  void retire(const LoginLink& link);
  static void on_sweep(evutil_socket_t, short, void* arg);

  Loop& loop_;
  const PublishOptions options_;
  Counters& counters_;
  Histograms& histograms_;
  std::map<std::string, std::unique_ptr<LoginLink>> links_;  // by vhost, user and password digest
  // The last credentials key_of saw, and their key: a batch's messages, and a client's next
  // request, come with the same login, and the digest per message was a tenth of a worker's
  // CPU in batches.
  Credentials last_who_;
  std::string last_key_;
  EventPtr sweep_timer_;
  // Figures of links already forgotten, so /stats never goes backwards: totals for all, by
  // "vhost:user" for at most broker.max_connections names the broker accepted.
  std::map<std::string, ConnectionStats> retired_;
  Counters retired_counters_;
};

}  // namespace warren::core
