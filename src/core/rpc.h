// The bridge's RPC call operation (oslo.messaging's protocol, core/oslo.h), for every binding.
// Requests go out through the Publisher with the caller's credentials (so the broker decides
// who may call what, as for publishing); replies come back on one reply queue per vhost per
// worker, `reply_<uuid>`, declared and consumed with the service identity (broker.username),
// redeclared after every reconnect. A call's credentials are checked first (a login of their
// own, remembered a while once accepted), so that what the service identity meets on a vhost
// never reaches a caller the broker refused. Replies are matched to calls by `_msg_id`; heartbeats
// restart a call's timer; a reply for a call no longer waiting is dropped and counted.
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
#include "core/oslo.h"
#include "core/publisher.h"
#include "handles.h"

namespace warren::core {

// Where a request goes: `exchange` (topic type) with routing key `topic` or `topic.server`;
// a fanout goes to the exchange `<topic>_fanout` instead, to every server on the topic.
struct RpcTarget {
  std::string exchange{oslo::kDefaultExchange};
  std::string topic;
  std::string server;
  bool fanout = false;
};

enum class RpcStatus {
  result,          // the server answered: `result`
  failure,         // the server raised: `failure`
  accepted,        // a cast (or fanout) the broker confirmed; no reply expected
  timeout,         // published, but no reply (nor heartbeat) in time
  too_many,        // rpc.max_pending_calls calls wait already: not sent (`publish.detail` says so)
  publish_failed,  // never reached the broker, or the broker refused it: `publish`
};

struct RpcResult {
  RpcStatus status = RpcStatus::result;
  nlohmann::json result;
  std::optional<oslo::Failure> failure;
  PublishResult publish{PublishStatus::confirmed, {}};
  std::string msg_id;     // calls
  std::string unique_id;  // every request
};
using RpcCallback = std::function<void(const RpcResult&)>;

struct RpcOptions {
  amqp::ConnectionOptions broker;  // the service identity, which owns the reply queues
  int max_pending_calls = 1000;   // rpc.max_pending_calls, per worker
  double max_timeout = 600;       // rpc.max_timeout: a call's whole wait, heartbeats included
};

class Rpc : NonCopyable {
 public:
  Rpc(Context& context, RpcOptions options, Publisher& publisher);
  ~Rpc();

  // A call: waits for the reply up to `timeout` seconds from the last sign of life (the request
  // being sent, a heartbeat), never more than rpc.max_timeout in all. `done` runs exactly once,
  // from the loop. A fanout target cannot be called (oslo refuses it too): use cast(). Beyond
  // rpc.max_pending_calls waiting, a call is refused at once (`too_many`).
  void call(const Credentials& who, const RpcTarget& target, oslo::Call call, double timeout,
            RpcCallback done);
  // A cast (or a fanout): answered `accepted` once the broker confirmed the request.
  void cast(const Credentials& who, const RpcTarget& target, oslo::Call call, RpcCallback done);

  size_t waiting() const { return calls_.size(); }
  // Reply-queue links in /stats (their broker counters and one connection row per vhost).
  void fill(Snapshot& snapshot) const;
  void close_all();

 private:
  struct ReplyLink;
  struct PendingCall;
  using Clock = Loop::Clock;

  // Calls `proceed(msg_id)` once the broker accepted the call's credentials, or fails the call
  // with the broker's refusal.
  void check_login(PendingCall& call);
  void proceed(const std::string& msg_id);

  ReplyLink& reply_link(const std::string& vhost);
  void on_link_state(ReplyLink& link, amqp::ConnectionState state, const amqp::Result& why);
  void declare_and_consume(ReplyLink& link);
  void link_ready(ReplyLink& link);
  void link_failed(ReplyLink& link, const PublishResult& why);
  void on_reply(amqp::Delivery&& delivery);
  void send_request(const std::string& msg_id);
  void arm(PendingCall& call, double seconds);
  void expire(const std::string& msg_id);
  void finish(const std::string& msg_id, RpcResult result);
  static Message request(const RpcTarget& target, const nlohmann::json& message,
                         std::optional<double> expiration);

  Loop& loop_;
  const RpcOptions options_;
  Publisher& publisher_;
  Counters& counters_;
  Histogram latency_;  // calls answered (result or failure), from request to reply
  std::map<std::string, std::unique_ptr<ReplyLink>> links_;   // by vhost
  std::map<std::string, std::unique_ptr<PendingCall>> calls_;  // by _msg_id
  LifeToken life_;
};

}  // namespace warren::core
