// Channel: the message side. Publishing with confirms (tags, deadlines, waiting while the
// connection is not writable) and consuming (consume, cancel, ack, nack, reject).
#include <algorithm>

#include "amqp/channel.h"
#include "log.h"

namespace warren::amqp {
namespace {

const Result kConnectionGone{Outcome::connection_lost, 0, "connection closed"};
constexpr size_t kMaxShortString = 255;

}  // namespace

bool Channel::can_publish() const {
  return conn_ && state_ == State::open && conn_->state() == ConnectionState::open &&
         conn_->can_send();
}

void Channel::publish(const std::string& exchange, const std::string& routing_key, bool mandatory,
                      const Properties& properties, std::string_view body, double timeout,
                      ResultCallback cb, bool alone) {
  if (!is_open() || !conn_)
    return fail_later(std::move(cb), close_reason_.ok() ? kConnectionGone : close_reason_);
  if (!confirms_)
    return fail_later(std::move(cb), {Outcome::invalid, 0, "channel opened without confirms"});
  if (exchange.size() > kMaxShortString || routing_key.size() > kMaxShortString)
    return fail_later(std::move(cb),
                      {Outcome::invalid, 0, "exchange or routing key longer than 255 bytes"});
  const auto deadline = timeout > 0 ? Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                         std::chrono::duration<double>(timeout))
                                    : Clock::time_point::max();
  if (waiting_.empty() && may_send(mandatory, alone)) {
    if (send_publish(exchange, routing_key, mandatory, properties, body, deadline, cb, alone) &&
        deadline < armed_for_)
      arm_deadline();
    return;
  }
  // not writable now (connecting, blocked, another mandatory message in flight): check it
  // encodes, then hold a copy of it unsent
  auto pool = make_amqp_pool();
  amqp_basic_properties_t props;
  std::string error;
  if (!properties_to_amqp(properties, pool.get(), &props, &error))
    return fail_later(std::move(cb), {Outcome::invalid, 0, error});
  waiting_.push_back(
      Publish{exchange, routing_key, mandatory, properties, std::string(body), deadline, std::move(cb), alone});
  if (deadline < armed_for_) arm_deadline();
}

bool Channel::send_publish(const std::string& exchange, const std::string& routing_key, bool mandatory,
                           const Properties& properties, std::string_view body,
                           Clock::time_point deadline, ResultCallback& cb, bool alone) {
  auto pool = make_amqp_pool();
  amqp_basic_properties_t props;
  amqp_basic_publish_t method{};
  method.exchange = amqp_view(exchange);
  method.routing_key = amqp_view(routing_key);
  method.mandatory = mandatory;
  std::string frames, error;
  // The frames of a small message in one allocation: a method frame's head, class and method,
  // names and flags, the header frame's head and fixed fields, a body frame's head, and room
  // for the usual properties.
  frames.reserve(64 + exchange.size() + routing_key.size() + 128 + body.size());
  if (!properties_to_amqp(properties, pool.get(), &props, &error) ||
      !encode_method(frames, id_, AMQP_BASIC_PUBLISH_METHOD, &method, conn_->frame_max(), &error) ||
      !encode_content(frames, id_, props, body, conn_->frame_max(), &error)) {
    fail_later(std::move(cb), {Outcome::invalid, 0, error});
    return false;
  }
  conn_->send(std::move(frames));
  ++conn_->stats().publishes_sent;
  if (mandatory) mandatory_tag_ = next_tag_;
  if (alone) alone_tag_ = next_tag_;
  unconfirmed_.emplace(next_tag_++, Sent{exchange, deadline, std::move(cb), std::nullopt});
  return true;
}

void Channel::flush_waiting() {
  // bounded by the queue's length; stops as soon as the connection blocks again
  while (!waiting_.empty() && may_send(waiting_.front().mandatory, waiting_.front().alone)) {
    Publish p = std::move(waiting_.front());
    waiting_.pop_front();
    send_publish(p.exchange, p.routing_key, p.mandatory, p.properties, p.body, p.deadline, p.cb, p.alone);
  }
}

void Channel::arm_deadline() {
  auto earliest = Clock::time_point::max();
  for (const auto& p : waiting_) earliest = std::min(earliest, p.deadline);
  for (const auto& [tag, p] : unconfirmed_) earliest = std::min(earliest, p.deadline);
  for (const auto& c : calls_)
    if (c.cb) earliest = std::min(earliest, c.deadline);
  armed_for_ = earliest;
  if (earliest == Clock::time_point::max()) {
    evtimer_del(deadline_timer_.get());
    return;
  }
  auto wait = std::max(Clock::duration::zero(), earliest - Clock::now());
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(wait).count();
  timeval tv{static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
  evtimer_add(deadline_timer_.get(), &tv);
}

void Channel::on_deadline(evutil_socket_t, short, void* arg) {
  auto* ch = static_cast<Channel*>(arg);
  auto self = ch->shared_from_this();
  ch->armed_for_ = Clock::time_point::max();
  ch->expire(Clock::now());
}

void Channel::expire(Clock::time_point now) {
  std::vector<ResultCallback> expired;
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if (it->deadline <= now) {
      expired.push_back(std::move(it->cb));
      it = waiting_.erase(it);
    } else {
      ++it;
    }
  }
  // answered now, but kept until the broker settles the tag: a basic.return before that
  // confirm belongs to this message and must not be pinned on another (attach_return)
  for (auto& [tag, p] : unconfirmed_) {
    if (p.cb && p.deadline <= now) {
      expired.push_back(std::move(p.cb));
      p.cb = nullptr;
      p.deadline = Clock::time_point::max();
    }
  }
  if (conn_) conn_->stats().publish_timeouts += expired.size();
  // an expired call keeps its place: its reply still comes, in order, and is dropped
  std::vector<MethodCallback> expired_calls;
  for (auto& c : calls_)
    if (c.cb && c.deadline <= now) expired_calls.push_back(std::move(c.cb)), c.cb = nullptr;
  if (state_ != State::closed) arm_deadline();
  Result r{Outcome::timeout, 0, "no confirm from the broker in time"};
  for (auto& cb : expired)
    if (cb) cb(r);
  Result rc{Outcome::timeout, 0, "no reply from the broker in time"};
  for (auto& cb : expired_calls) cb(rc, nullptr);
}

// ---- consuming -------------------------------------------------------------------------------

void Channel::consume(const std::string& queue, uint16_t prefetch, bool no_ack, bool exclusive,
                      DeliveryCallback on_delivery, ResultCallback on_end,
                      ConsumeCallback on_started) {
  if (!is_open() || !conn_) {
    Result r = close_reason_.ok() ? kConnectionGone : close_reason_;
    if (on_started) loop_.defer([cb = std::move(on_started), r] { cb(r, ""); });
    return;
  }
  if (prefetch > 0) {
    amqp_basic_qos_t q{0, prefetch, 0};
    // a failed qos closes the channel, which fails the consume below too
    enqueue_call(AMQP_BASIC_QOS_METHOD, &q, nullptr);
  }
  amqp_basic_consume_t c{};
  c.queue = amqp_view(queue);
  c.consumer_tag = amqp_empty_bytes;
  c.no_ack = no_ack;
  c.exclusive = exclusive;
  c.arguments = amqp_empty_table;
  std::weak_ptr<Channel> weak = weak_from_this();
  enqueue_call(AMQP_BASIC_CONSUME_METHOD, &c,
               [weak, on_delivery = std::move(on_delivery), on_end = std::move(on_end),
                on_started = std::move(on_started)](const Result& r, const amqp_method_t* m) mutable {
                 if (!r.ok()) {
                   if (on_started) on_started(r, "");
                   return;
                 }
                 auto* ok = static_cast<amqp_basic_consume_ok_t*>(m->decoded);
                 std::string tag = amqp_string(ok->consumer_tag);
                 if (auto self = weak.lock())
                   self->consumers_[tag] = Consumer{std::move(on_delivery), std::move(on_end)};
                 if (on_started) on_started(r, tag);
               });
}

void Channel::cancel(const std::string& consumer_tag, ResultCallback cb) {
  if (!consumers_.count(consumer_tag))
    return fail_later(std::move(cb), {Outcome::invalid, 0, "no such consumer: " + consumer_tag});
  amqp_basic_cancel_t c{};
  c.consumer_tag = amqp_view(consumer_tag);
  std::weak_ptr<Channel> weak = weak_from_this();
  enqueue_call(AMQP_BASIC_CANCEL_METHOD, &c,
               [weak, consumer_tag, cb = std::move(cb)](const Result& r, const amqp_method_t*) {
                 // on failure the channel is gone and fail_all ended the consumer already
                 if (r.ok())
                   if (auto self = weak.lock()) {
                     auto it = self->consumers_.find(consumer_tag);
                     if (it != self->consumers_.end()) {
                       auto on_end = std::move(it->second.on_end);
                       self->consumers_.erase(it);
                       if (on_end) on_end(r);
                     }
                   }
                 if (cb) cb(r);
               });
}

void Channel::ack(uint64_t delivery_tag, bool multiple) {
  if (state_ != State::open || !conn_) return;  // tags die with the channel: nothing to ack
  amqp_basic_ack_t a{delivery_tag, multiple};
  send_method(AMQP_BASIC_ACK_METHOD, &a);
  ++conn_->stats().acks_sent;
}

void Channel::nack(uint64_t delivery_tag, bool multiple, bool requeue) {
  if (state_ != State::open || !conn_) return;
  amqp_basic_nack_t n{delivery_tag, multiple, requeue};
  send_method(AMQP_BASIC_NACK_METHOD, &n);
}

void Channel::reject(uint64_t delivery_tag, bool requeue) {
  if (state_ != State::open || !conn_) return;
  amqp_basic_reject_t r{delivery_tag, requeue};
  send_method(AMQP_BASIC_REJECT_METHOD, &r);
}

}  // namespace warren::amqp
