#include "amqp/channel.h"

#include <algorithm>

#include "log.h"

namespace warren::amqp {
namespace {

constexpr int kReplySuccess = 200;
const Result kConnectionGone{Outcome::connection_lost, 0, "connection closed"};

// A method's `arguments` table from JSON (null: an empty table), or the problem with it.
std::optional<std::string> arguments_problem(const nlohmann::json& arguments, amqp_pool_t* pool,
                                             amqp_table_t* out) {
  *out = amqp_empty_table;
  std::string error;
  if (arguments.is_null() || json_to_table(arguments, pool, out, &error)) return std::nullopt;
  return "arguments: " + error;
}

// For the calls whose caller wants the outcome only, not the reply's fields.
MethodCallback outcome_only(ResultCallback cb) {
  return [cb = std::move(cb)](const Result& r, const amqp_method_t*) {
    if (cb) cb(r);
  };
}

// Calls a Channel member with a method's decoded arguments, as the type it takes.
template <typename Method>
struct DecodedArgument;
template <typename Method>
struct DecodedArgument<void (Channel::*)(const Method&)> {
  using type = Method;
};
template <auto Handle>
void with_decoded(Channel& channel, const void* decoded) {
  using Method = typename DecodedArgument<decltype(Handle)>::type;
  (channel.*Handle)(*static_cast<const Method*>(decoded));
}

}  // namespace

Channel::Channel(Connection* conn, uint16_t id, bool confirms)
    : conn_(conn), loop_(conn->loop()), id_(id), confirms_(confirms) {
  deadline_timer_.reset(evtimer_new(loop_.base(), on_deadline, this));
  if (!deadline_timer_) abort();  // no memory
}

Channel::~Channel() = default;

// ---- plumbing --------------------------------------------------------------------------------

void Channel::fail_later(ResultCallback cb, Result r) {
  if (cb) loop_.defer([cb = std::move(cb), r = std::move(r)] { cb(r); });
}

void Channel::send_method(amqp_method_number_t id, void* decoded) {
  if (!conn_) return;
  std::string out, error;
  if (!encode_method(out, id_, id, decoded, conn_->frame_max(), &error)) {
    log_error("amqp: channel {}: {}", id_, error);
    return;
  }
  if (state_ == State::pending) held_ += out;
  else conn_->send(out);
}

void Channel::enqueue_call(amqp_method_number_t id, void* decoded, MethodCallback cb) {
  auto fail = [&](Result r) {
    if (cb) loop_.defer([cb = std::move(cb), r = std::move(r)] { cb(r, nullptr); });
  };
  if (!is_open() || !conn_) {
    fail(close_reason_.ok() ? kConnectionGone : close_reason_);
    return;
  }
  amqp_method_number_t reply = expected_reply(id);
  std::string out, error;
  if (reply == 0) {
    fail({Outcome::invalid, 0, method_name(id) + " is not a synchronous method"});
    return;
  }
  if (!encode_method(out, id_, id, decoded, conn_->frame_max(), &error)) {
    fail({Outcome::invalid, 0, error});
    return;
  }
  auto deadline = call_timeout_ > 0 ? Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                         std::chrono::duration<double>(call_timeout_))
                                    : Clock::time_point::max();
  calls_.push_back({reply, std::move(cb), deadline});
  if (state_ == State::pending) held_ += out;
  else conn_->send(out);
  if (deadline < armed_for_) arm_deadline();
}

void Channel::connection_open() {
  if (state_ != State::pending || !conn_) return;
  // channel.open and confirm.select go first: put their replies ahead of calls made meanwhile
  if (confirms_) calls_.push_front({AMQP_CONFIRM_SELECT_OK_METHOD, nullptr});
  calls_.push_front({AMQP_CHANNEL_OPEN_OK_METHOD, nullptr});
  state_ = State::open;
  amqp_channel_open_t open{amqp_empty_bytes};
  std::string out, error;
  if (!encode_method(out, id_, AMQP_CHANNEL_OPEN_METHOD, &open, conn_->frame_max(), &error)) abort();
  if (confirms_) {
    amqp_confirm_select_t select{0};
    if (!encode_method(out, id_, AMQP_CONFIRM_SELECT_METHOD, &select, conn_->frame_max(), &error))
      abort();
  }
  out += held_;
  held_.clear();
  conn_->send(std::move(out));
  flush_waiting();
}

void Channel::detach() {
  if (state_ != State::closed) connection_lost({Outcome::connection_lost, 0, "connection destroyed"});
  conn_ = nullptr;
}

void Channel::connection_lost(const Result& why) {
  if (state_ == State::closed) return;
  state_ = State::closed;
  close_reason_ = why;
  fail_all(why);
  fail_later(std::move(on_close_), why);
  on_close_ = nullptr;
}

void Channel::fail_all(const Result& why) {
  std::vector<std::function<void()>> todo;
  for (auto& c : calls_)
    if (c.cb) todo.push_back([cb = std::move(c.cb), why] { cb(why, nullptr); });
  for (auto& p : waiting_) todo.push_back([cb = std::move(p.cb), why] { cb(why); });
  Result sent_why = why;
  sent_why.sent = true;
  for (auto& [tag, p] : unconfirmed_)
    if (p.cb) todo.push_back([cb = std::move(p.cb), sent_why] { cb(sent_why); });
  for (auto& [tag, c] : consumers_)
    if (c.on_end) todo.push_back([cb = std::move(c.on_end), why] { cb(why); });
  if (on_closed_by_owner_)
    todo.push_back([cb = std::move(on_closed_by_owner_), why] { cb(why); });
  calls_.clear();
  waiting_.clear();
  unconfirmed_.clear();
  mandatory_tag_ = 0;
  alone_tag_ = 0;
  consumers_.clear();
  on_closed_by_owner_ = nullptr;
  incoming_.reset();
  held_.clear();
  evtimer_del(deadline_timer_.get());
  if (!todo.empty())
    loop_.defer([todo = std::move(todo)] {
      for (auto& f : todo) f();
    });
}

// ---- incoming frames -------------------------------------------------------------------------

bool Channel::handle_frame(const amqp_frame_t& frame, std::string* error) {
  if (state_ == State::closed) return true;
  switch (frame.frame_type) {
    case AMQP_FRAME_METHOD:
      if (incoming_) {
        *error = fmt::format("channel {}: {} in the middle of a message", id_,
                             method_name(frame.payload.method.id));
        return false;
      }
      return handle_method(frame.payload.method, error);
    case AMQP_FRAME_HEADER: {
      if (!incoming_ || incoming_->have_header) {
        *error = fmt::format("channel {}: unexpected content header", id_);
        return false;
      }
      incoming_->have_header = true;
      incoming_->body_size = frame.payload.properties.body_size;
      incoming_->delivery.properties = properties_from_amqp(
          *static_cast<amqp_basic_properties_t*>(frame.payload.properties.decoded));
      if (incoming_->body_size < (64u << 20)) incoming_->delivery.body.reserve(incoming_->body_size);
      break;
    }
    case AMQP_FRAME_BODY: {
      if (!incoming_ || !incoming_->have_header) {
        *error = fmt::format("channel {}: unexpected content body", id_);
        return false;
      }
      const auto& b = frame.payload.body_fragment;
      incoming_->delivery.body.append(static_cast<const char*>(b.bytes), b.len);
      if (incoming_->delivery.body.size() > incoming_->body_size) {
        *error = fmt::format("channel {}: message body longer than announced", id_);
        return false;
      }
      break;
    }
    default: return true;
  }
  if (incoming_->have_header && incoming_->delivery.body.size() == incoming_->body_size) {
    Incoming in = std::move(*incoming_);
    incoming_.reset();
    auto self = shared_from_this();
    if (in.is_return) handle_return_complete(std::move(in));
    else handle_delivery_complete(std::move(in));
  }
  return true;
}

bool Channel::handle_method(const amqp_method_t& m, std::string* error) {
  auto self = shared_from_this();  // callbacks below may drop the owner's reference
  // What the broker sends of its own accord; any other method answers the oldest call.
  using Handler = void (*)(Channel&, const void* decoded);
  static constexpr std::pair<amqp_method_number_t, Handler> kUnasked[] = {
      {AMQP_BASIC_DELIVER_METHOD, with_decoded<&Channel::start_delivery>},
      {AMQP_BASIC_RETURN_METHOD, with_decoded<&Channel::start_return>},
      {AMQP_BASIC_ACK_METHOD, with_decoded<&Channel::handle_ack>},
      {AMQP_BASIC_NACK_METHOD, with_decoded<&Channel::handle_nack>},
      {AMQP_BASIC_CANCEL_METHOD, with_decoded<&Channel::handle_broker_cancel>},
      {AMQP_CHANNEL_CLOSE_METHOD, with_decoded<&Channel::broker_closed>},
      {AMQP_CHANNEL_CLOSE_OK_METHOD, with_decoded<&Channel::handle_close_ok>},
      {AMQP_CHANNEL_FLOW_METHOD, with_decoded<&Channel::handle_flow>},
  };
  for (const auto& [id, handle] : kUnasked)
    if (id == m.id) {
      handle(*this, m.decoded);
      return true;
    }
  return handle_reply(m, error);
}

void Channel::handle_ack(const amqp_basic_ack_t& a) {
  handle_confirm(a.delivery_tag, a.multiple != 0, true);
}

void Channel::handle_nack(const amqp_basic_nack_t& n) {
  handle_confirm(n.delivery_tag, n.multiple != 0, false);
}

void Channel::handle_close_ok(const amqp_channel_close_ok_t&) {
  if (state_ == State::closing) finish_close({Outcome::channel_error, kReplySuccess, "channel closed"});
}

void Channel::handle_flow(const amqp_channel_flow_t& f) {
  amqp_channel_flow_ok_t ok{f.active};
  send_method(AMQP_CHANNEL_FLOW_OK_METHOD, &ok);
}

void Channel::start_delivery(const amqp_basic_deliver_t& d) {
  incoming_.emplace();
  incoming_->delivery.consumer_tag = amqp_string(d.consumer_tag);
  incoming_->delivery.delivery_tag = d.delivery_tag;
  incoming_->delivery.redelivered = d.redelivered != 0;
  incoming_->delivery.exchange = amqp_string(d.exchange);
  incoming_->delivery.routing_key = amqp_string(d.routing_key);
}

void Channel::start_return(const amqp_basic_return_t& r) {
  incoming_.emplace();
  incoming_->is_return = true;
  incoming_->reply_code = r.reply_code;
  incoming_->reply_text = amqp_string(r.reply_text);
  incoming_->delivery.exchange = amqp_string(r.exchange);
  incoming_->delivery.routing_key = amqp_string(r.routing_key);
}

// consumer_cancel_notify: the queue went away (deleted, node down)
void Channel::handle_broker_cancel(const amqp_basic_cancel_t& c) {
  std::string tag = amqp_string(c.consumer_tag);
  if (!c.nowait) {
    amqp_basic_cancel_ok_t ok{c.consumer_tag};
    send_method(AMQP_BASIC_CANCEL_OK_METHOD, &ok);
  }
  auto it = consumers_.find(tag);
  if (it == consumers_.end()) return;
  auto on_end = std::move(it->second.on_end);
  consumers_.erase(it);
  log_warning("amqp: channel {}: the broker cancelled consumer {}", id_, tag);
  if (on_end) on_end({Outcome::channel_error, 0, "consumer cancelled by the broker"});
}

// Any other method answers the oldest call, or the broker is out of step with us.
bool Channel::handle_reply(const amqp_method_t& m, std::string* error) {
  if (calls_.empty() || calls_.front().reply != m.id) {
    *error = fmt::format("channel {}: unexpected {} (waiting for {}, {} calls)", id_, method_name(m.id), calls_.empty() ? "nothing" : method_name(calls_.front().reply), calls_.size());
    return false;
  }
  auto call = std::move(calls_.front());
  calls_.pop_front();
  if (call.cb) call.cb(Result{}, &m);
  return true;
}

void Channel::handle_confirm(uint64_t tag, bool multiple, bool acked) {
  std::vector<Sent> settled;
  // multiple=true: the broker settles every tag up to and including this one
  auto first = multiple ? unconfirmed_.begin() : unconfirmed_.find(tag);
  auto last = multiple ? unconfirmed_.upper_bound(tag)
                       : (first == unconfirmed_.end() ? first : std::next(first));
  for (auto it = first; it != last; ++it) {
    if (it->first == mandatory_tag_) mandatory_tag_ = 0;
    if (it->first == alone_tag_) alone_tag_ = 0;
    settled.push_back(std::move(it->second));
  }
  unconfirmed_.erase(first, last);
  Stats* stats = conn_ ? &conn_->stats() : nullptr;
  for (auto& p : settled) {
    if (!p.cb) continue;  // timed out and answered already
    Result r;
    if (!acked) {
      r = {Outcome::nacked, 0, "the broker could not take the message (basic.nack)"};
      if (stats) ++stats->publish_nacked;
    } else if (p.returned) {
      r = *p.returned;
      if (stats) ++stats->publish_returned;
    } else if (stats) {
      ++stats->publish_confirmed;
    }
    // keep going even if a callback destroyed the connection: these are already ours
    p.cb(r);
    if (!conn_) stats = nullptr;
  }
  flush_waiting();  // what waited for a mandatory or lone message to be settled
}

void Channel::handle_return_complete(Incoming&& in) {
  // RabbitMQ sends basic.return just before the confirm of the same message, but may confirm
  // other tags in between (single acks of earlier messages), and content says nothing (two
  // messages may differ only in the headers amq.match routes on). So one mandatory message at
  // a time is in flight (may_send): the return is for that one.
  auto it = unconfirmed_.find(mandatory_tag_);
  if (it == unconfirmed_.end()) {
    log_error("amqp: channel {}: basic.return with no mandatory message in flight", id_);
    return;
  }
  it->second.returned = Result{Outcome::returned, in.reply_code, in.reply_text};
}

void Channel::handle_delivery_complete(Incoming&& in) {
  if (conn_) ++conn_->stats().deliveries;
  if (state_ != State::open) return;  // closing: the broker requeues it
  auto it = consumers_.find(in.delivery.consumer_tag);
  if (it == consumers_.end() || !it->second.on_delivery) return;
  auto on_delivery = it->second.on_delivery;  // the consumer may be cancelled inside
  on_delivery(std::move(in.delivery));
}

void Channel::broker_closed(const amqp_channel_close_t& close) {
  Result why{Outcome::channel_error, close.reply_code, amqp_string(close.reply_text)};
  amqp_channel_close_ok_t ok{};
  send_method(AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
  if (conn_) ++conn_->stats().channel_errors;
  log_warning("amqp: channel {} closed by the broker: {} {}", id_, why.code, why.text);
  fail_publishes_on_close(why);
  finish_close(why);
  fail_later(std::move(on_close_), why);
  on_close_ = nullptr;
}

// channel.close names no message. The error can only be the fault of a message the broker
// processed and did not settle: it is pinned on one when that one is the only message awaiting
// its confirm, or on all of them when it is about an exchange (404, 403) they all went to (the
// publisher's channel per exchange). Every other message did nothing wrong: it is displaced,
// for its owner to send again (alone, so that it cannot be displaced twice); messages never
// sent cannot have caused anything.
void Channel::fail_publishes_on_close(const Result& why) {
  auto same_exchange = [this] {
    const std::string* exchange = nullptr;
    for (const auto& [tag, p] : unconfirmed_) {
      if (exchange && p.exchange != *exchange) return false;
      exchange = &p.exchange;
    }
    return true;
  };
  const bool about_exchange = why.code == 404 || why.code == 403;
  const bool pinned = unconfirmed_.size() == 1 || (about_exchange && same_exchange());
  std::vector<std::function<void()>> todo;
  Result displaced{Outcome::displaced, why.code,
                   fmt::format("the broker closed the channel for another message ({} {})",
                               why.code, why.text)};
  for (auto& p : waiting_)
    if (p.cb) todo.push_back([cb = std::move(p.cb), displaced] { cb(displaced); });
  waiting_.clear();
  if (!pinned) {
    displaced.sent = true;
    for (auto& [tag, p] : unconfirmed_)
      if (p.cb) todo.push_back([cb = std::move(p.cb), displaced] { cb(displaced); });
    unconfirmed_.clear();
  }
  if (!todo.empty())
    loop_.defer([todo = std::move(todo)] {
      for (auto& f : todo) f();
    });
}

void Channel::finish_close(const Result& why) {
  auto self = shared_from_this();
  state_ = State::closed;
  close_reason_ = why;
  auto owner_cb = std::move(on_closed_by_owner_);
  on_closed_by_owner_ = nullptr;
  fail_all(why);
  fail_later(std::move(owner_cb), why.code == kReplySuccess ? Result{} : why);
  if (conn_) conn_->channel_gone(id_);  // detaches: conn_ is null from here
}

// ---- synchronous methods ---------------------------------------------------------------------

void Channel::call(amqp_method_number_t id, void* decoded, MethodCallback cb) {
  enqueue_call(id, decoded, std::move(cb));
}

void Channel::declare_exchange(const std::string& name, const std::string& type, bool durable,
                               bool auto_delete, const nlohmann::json& arguments, ResultCallback cb) {
  auto pool = make_amqp_pool();
  amqp_exchange_declare_t d{};
  d.exchange = amqp_view(name);
  d.type = amqp_view(type);
  d.durable = durable;
  d.auto_delete = auto_delete;
  if (auto problem = arguments_problem(arguments, pool.get(), &d.arguments))
    return fail_later(std::move(cb), {Outcome::invalid, 0, *problem});
  call(AMQP_EXCHANGE_DECLARE_METHOD, &d, outcome_only(std::move(cb)));
}

void Channel::declare_queue(const std::string& name, bool durable, bool exclusive,
                            bool auto_delete, const nlohmann::json& arguments, QueueCallback cb) {
  auto pool = make_amqp_pool();
  amqp_queue_declare_t d{};
  d.queue = amqp_view(name);
  d.durable = durable;
  d.exclusive = exclusive;
  d.auto_delete = auto_delete;
  if (auto problem = arguments_problem(arguments, pool.get(), &d.arguments)) {
    if (cb)
      loop_.defer([cb = std::move(cb), problem = std::move(*problem)] {
        cb({Outcome::invalid, 0, problem}, "", 0, 0);
      });
    return;
  }
  call(AMQP_QUEUE_DECLARE_METHOD, &d, [cb = std::move(cb)](const Result& r, const amqp_method_t* m) {
    if (!cb) return;
    if (!r.ok()) return cb(r, "", 0, 0);
    auto* ok = static_cast<amqp_queue_declare_ok_t*>(m->decoded);
    cb(r, amqp_string(ok->queue), ok->message_count, ok->consumer_count);
  });
}

void Channel::bind_queue(const std::string& queue, const std::string& exchange,
                         const std::string& routing_key, const nlohmann::json& arguments,
                         ResultCallback cb) {
  auto pool = make_amqp_pool();
  amqp_queue_bind_t b{};
  b.queue = amqp_view(queue);
  b.exchange = amqp_view(exchange);
  b.routing_key = amqp_view(routing_key);
  if (auto problem = arguments_problem(arguments, pool.get(), &b.arguments))
    return fail_later(std::move(cb), {Outcome::invalid, 0, *problem});
  call(AMQP_QUEUE_BIND_METHOD, &b, outcome_only(std::move(cb)));
}

void Channel::delete_queue(const std::string& queue, ResultCallback cb) {
  amqp_queue_delete_t d{};
  d.queue = amqp_view(queue);
  call(AMQP_QUEUE_DELETE_METHOD, &d, outcome_only(std::move(cb)));
}

void Channel::qos(uint16_t prefetch, ResultCallback cb) {
  amqp_basic_qos_t q{0, prefetch, 0};
  call(AMQP_BASIC_QOS_METHOD, &q, outcome_only(std::move(cb)));
}

void Channel::close(ResultCallback cb) {
  if (state_ == State::closed || state_ == State::closing || !conn_)
    return fail_later(std::move(cb), close_reason_.ok() ? kConnectionGone : close_reason_);
  on_closed_by_owner_ = std::move(cb);
  if (state_ == State::pending || !conn_->can_send()) {
    // never opened on the broker, or the connection is closing: nothing to say to it
    finish_close({Outcome::channel_error, kReplySuccess, "channel closed"});
    return;
  }
  amqp_channel_close_t close{};
  close.reply_code = kReplySuccess;
  close.reply_text = amqp_cstring_bytes("closing");
  send_method(AMQP_CHANNEL_CLOSE_METHOD, &close);
  state_ = State::closing;
}

}  // namespace warren::amqp
