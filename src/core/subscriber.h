// The bridge's subscribe operation: what flows through an exchange, delivered to one client.
// Each subscription has its own broker connection, so the broker itself deletes the exclusive,
// server-named queue the moment the subscriber goes, even if this process dies.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "amqp/channel.h"
#include "amqp/link.h"
#include "core/publisher.h"
#include "handles.h"

namespace warren::core {

struct Event {
  std::string id;    // message_id
  std::string type;  // type
  std::string data;  // body
};

class Subscription : NonCopyable {
 public:
  // on_ready: the queue is bound and consuming (ok), or why it could not be (refused, 404 ...).
  // on_event: each message. on_resumed: the broker connection was lost and the subscription
  // is made again (on another node of a cluster, say); what flowed in between is missing.
  // on_end: the subscription ended from the broker's side (once).
  // `broker`: hosts, TLS, heartbeat; the vhost and login are `who`'s.
  Subscription(Context& context, const amqp::ConnectionOptions& broker, const Credentials& who,
               std::string exchange, std::string binding_key, std::function<void(const PublishResult&)> on_ready,
               std::function<void(Event&&)> on_event, std::function<void()> on_resumed,
               std::function<void(const std::string& why)> on_end);
  ~Subscription();

 private:
  void subscribe();
  void lost(const amqp::Result& why);
  void bind(const amqp::Result& declared, const std::string& queue);
  void consume(const amqp::Result& bound, const std::string& queue);
  void fail(const amqp::Result& r);

  amqp::Link link_;
  std::shared_ptr<amqp::Channel> channel_;
  std::string exchange_, binding_key_;
  std::function<void(const PublishResult&)> on_ready_;
  std::function<void(Event&&)> on_event_;
  std::function<void()> on_resumed_;
  std::function<void(const std::string&)> on_end_;
  bool ready_ = false;
  bool resuming_ = false;  // subscribing again after a lost connection
  bool ended_ = false;
  LifeToken life_;  // last: the first to go, for the channel's callbacks that may run after us
};

}  // namespace warren::core
