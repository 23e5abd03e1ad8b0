#include "core/subscriber.h"

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
                           std::function<void(Event&&)> on_event,
                           std::function<void(const std::string&)> on_end)
    : link_(context.loop, subscriber_options(broker, who), fmt::format("events {}:{}", who.vhost, who.username)),
      exchange_(std::move(exchange)),
      binding_key_(std::move(binding_key)),
      on_ready_(std::move(on_ready)),
      on_event_(std::move(on_event)),
      on_end_(std::move(on_end)) {
  link_.set_state_callback([this](amqp::ConnectionState state, const amqp::Result& why) {
    if (state == amqp::ConnectionState::closed) fail(why);
  });
  link_.connect();
  channel_ = link_.open_channel(false);
  // Server-named, exclusive, auto-delete: nobody else sees it and it dies with the connection.
  channel_->declare_queue("", false, true, true, nullptr,
                          [this, alive = life_.watch()](const amqp::Result& r, const std::string& queue, uint32_t, uint32_t) {
    if (!alive.expired()) bind(r, queue);
  });
}

void Subscription::bind(const amqp::Result& declared, const std::string& queue) {
  if (!declared.ok()) return fail(declared);
  channel_->bind_queue(queue, exchange_, binding_key_, nullptr, [this, alive = life_.watch(), queue](const amqp::Result& b) {
    if (!alive.expired()) consume(b, queue);
  });
}

void Subscription::consume(const amqp::Result& bound, const std::string& queue) {
  if (!bound.ok()) return fail(bound);
  channel_->consume(
      queue, 0, true, true,
      [this, alive = life_.watch()](amqp::Delivery&& d) {
        if (!alive.expired())
          on_event_({d.properties.message_id.value_or(""), d.properties.type.value_or(""), std::move(d.body)});
      },
      [this, alive = life_.watch()](const amqp::Result& end) {
        if (!alive.expired()) fail(end);
      },
      [this, alive = life_.watch()](const amqp::Result& c, const std::string&) {
        if (alive.expired()) return;
        if (!c.ok()) return fail(c);
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
