#include "core/subscriber.h"

#include <utility>

#include "log.h"

namespace warren::core {

namespace {

amqp::ConnectionOptions subscriber_options(amqp::ConnectionOptions options, const Credentials& who) {
  options.vhost = who.vhost;
  options.username = who.username;
  options.password = who.password;
  options.connection_name = fmt::format("warren events {}:{} pid {}", who.vhost, who.username, getpid());
  return options;
}

}  // namespace

Subscription::Subscription(Context& context, const amqp::ConnectionOptions& broker, const Credentials& who,
                           std::string exchange, std::string binding_key,
                           std::function<void(const PublishResult&)> on_ready,
                           std::function<void(Event&&)> on_event, std::function<void()> on_resumed,
                           std::function<void(const std::string&)> on_end)
    : link_(context.loop, subscriber_options(broker, who), fmt::format("events {}:{}", who.vhost, who.username)),
      exchange_(std::move(exchange)),
      binding_key_(std::move(binding_key)),
      on_ready_(std::move(on_ready)),
      on_event_(std::move(on_event)),
      on_resumed_(std::move(on_resumed)),
      on_end_(std::move(on_end)) {
  link_.set_state_callback([this](amqp::ConnectionState state, const amqp::Result& why) {
    if (state == amqp::ConnectionState::closed) lost(why);
  });
  link_.connect();
  subscribe();
}

// The channel queues its methods until the connection is open. Its callbacks may still run
// after we are gone (they watch life_). A loss of the connection is lost()'s, not theirs.
void Subscription::subscribe() {
  channel_ = link_.open_channel(false);
  // Server-named, exclusive, auto-delete: nobody else sees it and it dies with the connection.
  channel_->declare_queue("", false, true, true, nullptr,
                          [this, alive = life_.watch()](const amqp::Result& r, const std::string& queue, uint32_t, uint32_t) {
    if (!alive.expired()) bind(r, queue);
  });
}

// Once subscribed, a lost connection is made again (the queue died with it): a stream outlives
// a node of a cluster. Before that, or when the login is refused now, the subscription ends.
void Subscription::lost(const amqp::Result& why) {
  channel_.reset();
  if (!ready_ || ended_ || why.outcome == amqp::Outcome::refused) return fail(why);
  if (!resuming_) log_info("event stream {}: {}; subscribing again", link_.name(), why.text);
  resuming_ = true;
  link_.connect();
  subscribe();
}

void Subscription::bind(const amqp::Result& declared, const std::string& queue) {
  if (declared.outcome == amqp::Outcome::connection_lost) return;
  if (!declared.ok()) return fail(declared);
  channel_->bind_queue(queue, exchange_, binding_key_, nullptr, [this, alive = life_.watch(), queue](const amqp::Result& b) {
    if (!alive.expired()) consume(b, queue);
  });
}

void Subscription::consume(const amqp::Result& bound, const std::string& queue) {
  if (bound.outcome == amqp::Outcome::connection_lost) return;
  if (!bound.ok()) return fail(bound);
  channel_->consume(
      queue, 0, true, true,
      [this, alive = life_.watch()](amqp::Delivery&& d) {
        if (!alive.expired())
          on_event_({d.properties.message_id.value_or(""), d.properties.type.value_or(""), std::move(d.body)});
      },
      [this, alive = life_.watch()](const amqp::Result& end) {
        if (!alive.expired() && end.outcome != amqp::Outcome::connection_lost) fail(end);
      },
      [this, alive = life_.watch()](const amqp::Result& c, const std::string&) {
        if (alive.expired() || c.outcome == amqp::Outcome::connection_lost) return;
        if (!c.ok()) return fail(c);
        if (std::exchange(resuming_, false)) return on_resumed_();
        ready_ = true;
        on_ready_({PublishStatus::confirmed, {}});
      });
}

// The link closes its connection and frees it on a later loop pass: we may be inside one of its
// callbacks.
Subscription::~Subscription() = default;

void Subscription::fail(const amqp::Result& r) {
  if (ended_) return;  // the first reason is the one that counts
  ended_ = true;
  if (!ready_) return on_ready_(publish_result(r, link_.is_open()));
  on_end_(r.text.empty() ? "the broker ended the subscription" : r.text);
}

}  // namespace warren::core
