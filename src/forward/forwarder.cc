#include "forward/forwarder.h"

#include <unistd.h>

#include <chrono>

#include "log.h"

namespace warren::forward {
namespace {

using nlohmann::json;

void count_status(ForwarderCounters& c, int status) {
  const std::string_view cls = core::status_class(status);
  if (cls == "2xx") ++c.status_2xx;
  else if (cls == "3xx") ++c.status_3xx;
  else if (cls == "4xx") ++c.status_4xx;
  else if (cls == "5xx") ++c.status_5xx;
  else ++c.status_error;
}

}  // namespace

struct Forwarder::Flight {
  enum class Stage { http, waiting, replying, settling };
  uint64_t key = 0;
  std::shared_ptr<amqp::Channel> channel;  // the channel the message came on
  amqp::Delivery message;
  Translation translation;
  Stage stage = Stage::http;
  int attempt = 0;
  uint64_t http_id = 0;
  BackendResponse last;  // the latest answer (or failure), for dead-letter headers
  EventPtr retry_timer;
  EventPtr heartbeat_timer;  // oslo calls: heartbeat replies while the backend works
  bool settled = false;      // acked, rejected or dead-lettered (not going back to the queue)
  int dead_letter_tries = 0;  // dead-letter publishes not routed so far: the retry timer publishes again
  Forwarder* owner = nullptr;
};

namespace {

amqp::ConnectionOptions forwarder_options(amqp::ConnectionOptions options, const ForwarderConfig& forwarder) {
  options.vhost = forwarder.vhost;
  options.connection_name = fmt::format("warren forwarder {} pid {}", forwarder.name, getpid());
  return options;
}

}  // namespace

Forwarder::Forwarder(Loop& loop, const amqp::ConnectionOptions& broker, double confirm_timeout,
                     const ForwarderConfig& forwarder, HttpClient& http, ForwarderCounters& counters,
                     Histogram& latency)
    : loop_(loop),
      confirm_timeout_(confirm_timeout),
      config_(forwarder),
      http_(http),
      counters_(counters),
      latency_(latency),
      format_(make_format(forwarder)),
      link_(loop, forwarder_options(broker, forwarder), "forwarder " + forwarder.name) {
  link_.set_state_callback([this](amqp::ConnectionState s, const amqp::Result& why) { on_state(s, why); });
  ack_flush_.reset(event_new(loop_.base(), -1, 0, on_ack_flush, this));
  plan_ = format_->consume_plan();
  consumer_tags_.assign(plan_.size(), "");
  for (const auto& q : plan_) queues_ += (queues_.empty() ? "" : ", ") + q.queue;
}

bool Forwarder::consuming() const {
  return std::none_of(consumer_tags_.begin(), consumer_tags_.end(), [](const std::string& t) { return t.empty(); });
}

bool Forwarder::any_consumer() const {
  if (!consume_channel_ || !consume_channel_->is_open()) return false;
  return std::any_of(consumer_tags_.begin(), consumer_tags_.end(), [](const std::string& t) { return !t.empty(); });
}

void Forwarder::cancel_consumers() {
  if (!consume_channel_ || !consume_channel_->is_open()) return;
  for (const auto& tag : consumer_tags_)
    if (!tag.empty()) consume_channel_->cancel(tag, [](const amqp::Result&) {});
}

Forwarder::~Forwarder() {
  for (auto& [key, f] : flights_)
    if (f->stage == Flight::Stage::http) http_.cancel(f->http_id);
  flights_.clear();
}

void Forwarder::start() { link_.connect(); }

void Forwarder::on_state(amqp::ConnectionState state, const amqp::Result& why) {
  using amqp::ConnectionState;
  // open again after connection.unblocked keeps what is declared and consuming
  if (state == ConnectionState::open && !consume_channel_) return declare_and_consume();
  if (state != ConnectionState::closed) return;
  drop_channel_flights();
  consume_channel_.reset();
  publish_channel_.reset();
  consumer_tags_.assign(plan_.size(), "");
  if (draining_) return check_drained();
  restart(why.text.empty() ? "broker connection closed" : why.text);
}

// The channels queue their methods until the connection is open: declarations, qos and
// basic.consume go in one go and the consume's answer says whether all of them worked (a
// failed declaration closes the channel, which fails everything after it).
void Forwarder::declare_and_consume() {
  flush_acks();
  consume_channel_ = link_.open_channel(false);
  publish_channel_ = link_.open_channel(true);
  acks_.reset();  // a new channel numbers its deliveries from 1 again
  auto& ch = *consume_channel_;
  auto report = [this](const char* what) {
    return [this, what, alive = life_.watch()](const amqp::Result& r) {
      if (!alive.expired() && !r.ok() && r.outcome != amqp::Outcome::connection_lost)
        log_error("forwarder {}: {} failed: {}", config_.name, what, r.text);
    };
  };
  for (const ConsumeQueue& q : plan_) {
    if (!q.declare) continue;
    if (!q.exchange.empty())
      ch.declare_exchange(q.exchange, q.exchange_type, q.exchange_durable, q.exchange_auto_delete,
                          json::object(), report("exchange.declare"));
    ch.declare_queue(q.queue, q.durable, false, q.auto_delete, q.arguments,
                     [cb = report("queue.declare")](const amqp::Result& r, const std::string&, uint32_t, uint32_t) { cb(r); });
    for (const auto& key : q.bindings) ch.bind_queue(q.queue, q.exchange, key, json::object(), report("queue.bind"));
  }
  consume(0);
}

// One basic.consume at a time, each after the previous one's consume-ok: RabbitMQ sends a
// consume-ok from the queue's process, so it may overtake (or be overtaken by) the replies to
// methods sent after it on the channel, and the channel matches replies in order.
void Forwarder::consume(size_t index) {
  if (index >= plan_.size() || !consume_channel_) return;
  std::weak_ptr<amqp::Channel> weak = consume_channel_;
  auto alive = life_.watch();
  consume_channel_->consume(
      plan_[index].queue, static_cast<uint16_t>(config_.prefetch), false, false,
      [this, alive](amqp::Delivery&& m) {
        if (!alive.expired()) on_delivery(std::move(m));
      },
      [this, alive, index](const amqp::Result& why) {
        if (!alive.expired()) on_consumer_end(index, why);
      },
      [this, alive, weak, index](const amqp::Result& r, const std::string& tag) {
        if (alive.expired() || weak.lock() != consume_channel_) return;
        if (!r.ok()) {
          if (r.outcome != amqp::Outcome::connection_lost)
            restart(fmt::format("basic.consume on {} failed: {}", plan_[index].queue, r.text));
          return;
        }
        consumer_tags_[index] = tag;
        if (draining_) return consume_channel_->cancel(tag, [](const amqp::Result&) {});
        if (index + 1 < plan_.size()) return consume(index + 1);
        link_.ready();
        log_info("forwarder {}: consuming {} (prefetch {}) for {}", config_.name, queues_,
                 config_.prefetch, display_url(config_.backend.url));
      });
}

void Forwarder::on_consumer_end(size_t index, const amqp::Result& why) {
  if (index < consumer_tags_.size()) consumer_tags_[index].clear();
  if (draining_) return check_drained();
  if (why.ok()) return;
  // consumer_cancel_notify (queue deleted, its node gone) or the channel closed: start over
  // with a new connection, which declares the queues again.
  restart(why.text.empty() ? "consumer ended" : why.text);
}

void Forwarder::restart(const std::string& why) {
  if (draining_ || link_.reconnecting()) return;
  flush_acks();  // what finished on a channel still open is acked before it closes
  drop_channel_flights();
  log_warning("forwarder {}: {}; reconnecting", config_.name, why);
  // Closing fails the channels and reports closed, which lands here again: a no-op then.
  link_.reconnect();
}

bool Forwarder::valid(const Flight& f) const {
  return f.channel && f.channel == consume_channel_ && f.channel->is_open();
}

// The channel is gone: the broker requeues whatever it had delivered on it. Requests still
// under way are cancelled (their answer could not be acked anyway).
void Forwarder::drop_channel_flights() {
  std::vector<uint64_t> gone;
  for (auto& [key, f] : flights_)
    if (!f->channel || !f->channel->is_open() || f->channel != consume_channel_) gone.push_back(key);
  if (!gone.empty())
    log_warning("forwarder {}: {} message(s) in flight go back to the queue with the channel",
                config_.name, gone.size());
  for (uint64_t key : gone) forget(key);
}

void Forwarder::forget(uint64_t key) {
  auto it = flights_.find(key);
  if (it == flights_.end()) return;
  if (it->second->stage == Flight::Stage::http) http_.cancel(it->second->http_id);
  // Back to the queue unprocessed: its redelivery is not a duplicate.
  const auto& oslo = it->second->translation.oslo;
  if (!it->second->settled && oslo && !oslo->unique_id.empty()) recent_ids_.forget(oslo->unique_id);
  flights_.erase(it);
  if (draining_) check_drained();
}

void Forwarder::on_delivery(amqp::Delivery&& message) {
  ++counters_.consumed;
  auto f = std::make_unique<Flight>();
  f->key = next_key_++;
  f->owner = this;
  f->channel = consume_channel_;
  f->message = std::move(message);
  acks_.delivered(f->message.delivery_tag);
  Flight& flight = *f;
  flights_.emplace(f->key, std::move(f));
  if (draining_) {  // sent before our basic.cancel reached the broker
    requeue(flight);
    return;
  }
  flight.translation = format_->translate(flight.message);
  if (const auto& oslo = flight.translation.oslo;
      oslo && !oslo->unique_id.empty() && recent_ids_.seen(oslo->unique_id, Loop::now())) {
    // Delivered twice (a publisher retry): the first copy is, or was, being answered.
    ++counters_.duplicates;
    log_debug("forwarder {}: dropping a duplicate request {}", config_.name, oslo->unique_id);
    return ack(flight);
  }
  if (flight.translation.kind == Translation::Kind::answer) {
    if (flight.translation.invalid) {
      ++counters_.invalid;
      log_warning("forwarder {}: message {} cannot be forwarded: {}", config_.name,
                  flight.message.properties.message_id.value_or("(no message_id)"), flight.translation.error);
    }
    flight.last = flight.translation.answer;
    finish(flight, flight.translation.answer, disposition(flight, flight.translation.answer.status));
    return;
  }
  attempt(flight);
}

void Forwarder::attempt(Flight& f) {
  ++f.attempt;
  f.stage = Flight::Stage::http;
  const uint64_t key = f.key;
  f.http_id = http_.start(config_.backend, f.translation.request,
                          [this, key, alive = life_.watch()](BackendResponse&& r, double seconds) {
                            if (!alive.expired()) on_response(key, std::move(r), seconds);
                          });
  start_heartbeats(f);
}

// A caller waiting for the answer (an oslo call) gets it whatever it is; everything else goes
// by the forwarding rules.
core::Disposition Forwarder::disposition(const Flight& f, int status) const {
  if (f.translation.final_answer) return core::Disposition::ack;
  return core::forward_disposition(status, f.attempt, config_.retry.max_attempts);
}

// oslo calls with a _timeout: a heartbeat reply every _timeout/2 s while the backend works, so
// a caller with a call monitor keeps waiting. Best effort: a lost heartbeat is not retried.
void Forwarder::start_heartbeats(Flight& f) {
  if (!f.translation.oslo || f.translation.oslo->heartbeat <= 0) return;
  f.heartbeat_timer.reset(event_new(loop_.base(), -1, EV_PERSIST, on_heartbeat_timer, &f));
  timeval tv = to_timeval(f.translation.oslo->heartbeat);
  evtimer_add(f.heartbeat_timer.get(), &tv);
}

void Forwarder::on_heartbeat_timer(evutil_socket_t, short, void* arg) {
  auto* f = static_cast<Flight*>(arg);
  Forwarder* self = f->owner;
  auto beat = self->format_->heartbeat(f->translation);
  if (!beat || !self->link_.connection()) return;
  self->publish_channel()->publish(
      beat->exchange, beat->routing_key, beat->mandatory, beat->properties, std::move(beat->body),
      f->translation.oslo->heartbeat, [self, alive = self->life_.watch()](const amqp::Result& r) {
        if (alive.expired()) return;
        if (r.ok()) ++self->counters_.heartbeats;
        else log_debug("forwarder {}: heartbeat not published: {}", self->config_.name, r.text);
      });
}

void Forwarder::on_response(uint64_t key, BackendResponse&& response, double seconds) {
  auto it = flights_.find(key);
  if (it == flights_.end()) return;
  Flight& f = *it->second;
  counters_.latency_us += static_cast<uint64_t>(seconds * 1e6);
  latency_.observe(seconds);
  count_status(counters_, response.status);
  f.last = response;
  f.heartbeat_timer.reset();
  const auto d = disposition(f, response.status);
  if (d != core::Disposition::retry) return finish(f, response, d);
  ++counters_.retried;
  if (draining_ || !valid(f)) {
    // Stopping: another worker (or this one's successor) gets the message from the queue.
    requeue(f);
    return;
  }
  const double delay = core::retry_delay(config_.retry, f.attempt);
  log_debug("forwarder {}: attempt {} of {} got {}; retrying in {:.2f} s", config_.name, f.attempt,
            config_.retry.max_attempts, response.status ? std::to_string(response.status) : response.error, delay);
  wait_then_retry(f, delay);
}

// The message stays unacked while its retry timer runs; on_retry_timer calls the backend again,
// or publishes the dead-letter copy again when that is what failed.
void Forwarder::wait_then_retry(Flight& f, double delay) {
  f.stage = Flight::Stage::waiting;
  f.retry_timer.reset(evtimer_new(loop_.base(), on_retry_timer, &f));
  timeval tv = to_timeval(delay);
  evtimer_add(f.retry_timer.get(), &tv);
}

void Forwarder::on_retry_timer(evutil_socket_t, short, void* arg) {
  auto* f = static_cast<Flight*>(arg);
  Forwarder* self = f->owner;
  if (!self->valid(*f)) return self->forget(f->key);
  // The timer is not freed here (we are inside its callback); attempt() leaves it be.
  if (f->dead_letter_tries > 0) return self->dead_letter(*f);
  self->attempt(*f);
}

// A final answer: reply first when the message asks for one, then ack or dead-letter. The reply
// is published mandatory with confirms: once it is confirmed and routed it is the answer (a 4xx
// or a failure answered to reply_to is handled: acked, not also dead-lettered). A reply that
// failed (unroutable, nacked, its channel closed) answered nobody: the message is acked only if
// the backend did the work (2xx), and dead-lettered otherwise.
void Forwarder::finish(Flight& f, const BackendResponse& response, core::Disposition disposition) {
  auto reply = format_->reply(f.message, f.translation, response);
  if (!reply) return settle(f.key, disposition);
  f.stage = Flight::Stage::replying;
  const uint64_t key = f.key;
  const bool done = core::status_class(response.status) == std::string_view("2xx");
  publish_channel()->publish(
      reply->exchange, reply->routing_key, true, reply->properties, std::move(reply->body),
      confirm_timeout_,
      [this, key, done, to = reply->routing_key, alive = life_.watch()](const amqp::Result& r) {
        if (alive.expired()) return;
        if (r.ok()) {
          ++counters_.replied;
          return settle(key, core::Disposition::ack);
        }
        ++counters_.reply_failed;
        log_warning("forwarder {}: reply to {} not delivered ({}: {}); {}", config_.name, to,
                    amqp::outcome_name(r.outcome), r.text,
                    done ? "acking the message: the backend answered 2xx" : "dead-lettering the message");
        settle(key, done ? core::Disposition::ack : core::Disposition::dead_letter);
      });
}

void Forwarder::settle(uint64_t key, core::Disposition disposition) {
  auto it = flights_.find(key);
  if (it == flights_.end()) return;
  Flight& f = *it->second;
  if (!valid(f)) return forget(key);
  if (disposition == core::Disposition::ack) return ack(f);
  dead_letter(f);
}

void Forwarder::ack(Flight& f) {
  ++counters_.acked;
  settle_by_ack(f);
}

void Forwarder::settle_by_ack(Flight& f) {
  f.settled = true;
  if (f.channel == consume_channel_) {
    // Sent with whatever else finishes in this loop pass (on_ack_flush).
    if (!acks_.pending()) event_active(ack_flush_.get(), EV_TIMEOUT, 0);
    acks_.ack(f.message.delivery_tag);
  } else {
    f.channel->ack(f.message.delivery_tag);
  }
  forget(f.key);
}

// A nack or reject went out at once: a later ack-multiple must not count on the tag.
void Forwarder::settled_otherwise(const Flight& f) {
  if (f.channel == consume_channel_) acks_.settled(f.message.delivery_tag);
}

void Forwarder::flush_acks() {
  if (!acks_.pending()) return;
  for (const auto& a : acks_.flush())
    consume_channel_->ack(a.tag, a.multiple);
}

void Forwarder::on_ack_flush(evutil_socket_t, short, void* arg) {
  static_cast<Forwarder*>(arg)->flush_acks();
}

void Forwarder::requeue(Flight& f) {
  if (valid(f)) {
    f.channel->nack(f.message.delivery_tag, false, true);
    settled_otherwise(f);
    ++counters_.requeued;
  }
  forget(f.key);
}

// Without dead_letter_exchange the message is rejected without requeue: RabbitMQ then applies
// the queue's own dead-letter exchange (x-dead-letter-exchange) if it has one, and drops it
// otherwise. Counted as dead-lettered and logged either way.
void Forwarder::reject(Flight& f) {
  f.settled = true;
  f.channel->reject(f.message.delivery_tag, false);
  settled_otherwise(f);
  ++counters_.dead_lettered;
  forget(f.key);
}

// Published to dead_letter_exchange with the original routing key and properties, plus headers
// saying why, mandatory: acked once the broker confirmed and routed it. A copy the broker did
// not take (no binding for the key, the exchange missing or refused, a nack) leaves the
// original where a person will find it: rejected to the queue's own dead-letter exchange when
// the forwarder declared one, else kept unacked in the queue while the publish is tried again
// (retry's delays; at drain or a lost channel the broker has it back). Never requeued to go
// round the backend again, never acked into the void.
void Forwarder::dead_letter(Flight& f) {
  if (f.dead_letter_tries == 0) {
    const std::string why = f.last.status ? fmt::format("HTTP {}", f.last.status)
                            : f.last.error.empty() ? f.translation.error : f.last.error;
    log_warning("forwarder {}: dead-lettering a message after {} attempt(s): {}{}", config_.name, f.attempt,
                why, f.translation.error.empty() || f.last.status == 0 ? "" : " (" + f.translation.error + ")");
  }
  if (config_.dead_letter_exchange.empty()) return reject(f);
  f.stage = Flight::Stage::settling;
  amqp::Properties p = f.message.properties;
  if (!p.headers || !p.headers->is_object()) p.headers = json::object();
  auto& h = *p.headers;
  h["x-warren-forwarder"] = config_.name;
  h["x-warren-queue"] = config_.queue.empty() ? f.message.routing_key : config_.queue;
  h["x-warren-attempts"] = f.attempt;
  h["x-warren-status"] = f.last.status;
  h["x-warren-error"] = f.last.status ? (f.translation.error.empty() ? f.last.body.substr(0, 200) : f.translation.error)
                                      : (f.last.error.empty() ? f.translation.error : f.last.error);
  h["x-warren-original-exchange"] = f.message.exchange;
  h["x-warren-original-routing-key"] = f.message.routing_key;
  const uint64_t key = f.key;
  publish_channel()->publish(
      config_.dead_letter_exchange, f.message.routing_key, true, p, f.message.body,
      confirm_timeout_, [this, key, alive = life_.watch()](const amqp::Result& r) {
        if (alive.expired()) return;
        auto it = flights_.find(key);
        if (it == flights_.end()) return;
        Flight& fl = *it->second;
        if (!valid(fl)) return forget(key);
        if (r.ok()) {
          ++counters_.dead_lettered;
          return settle_by_ack(fl);
        }
        ++counters_.dead_letter_failed;
        dead_letter_failed(fl, r);
      });
}

void Forwarder::dead_letter_failed(Flight& f, const amqp::Result& why) {
  const bool own_dlx = config_.declare.enabled && config_.declare.queue_arguments.count("x-dead-letter-exchange");
  const std::string failure = fmt::format("publishing to dead_letter_exchange {} with routing key {} failed ({}: {})",
                                          config_.dead_letter_exchange, f.message.routing_key,
                                          amqp::outcome_name(why.outcome), why.text);
  if (own_dlx) {
    log_error("forwarder {}: {}; rejecting the message to the queue's own x-dead-letter-exchange", config_.name,
              failure);
    return reject(f);
  }
  const double delay = core::retry_delay(config_.retry, ++f.dead_letter_tries);
  if (draining_) return requeue(f);
  if (f.dead_letter_tries == 1)
    log_error("forwarder {}: {}; the message stays in the queue, publishing it again every {:.1f} s at most",
              config_.name, failure, config_.retry.max_delay);
  else
    log_debug("forwarder {}: {} (try {}); again in {:.2f} s", config_.name, failure, f.dead_letter_tries, delay);
  wait_then_retry(f, delay);
}

std::shared_ptr<amqp::Channel> Forwarder::publish_channel() {
  // A reply to a missing exchange closes the confirm channel (404): open another for the next.
  if (!publish_channel_ || !publish_channel_->is_open()) publish_channel_ = link_.open_channel(true);
  return publish_channel_;
}

void Forwarder::drain(std::function<void()> done) {
  draining_ = true;
  if (link_.reconnecting()) link_.close();  // no new connection: nothing more to consume
  cancel_consumers();
  std::vector<Flight*> waiting;
  for (auto& [key, f] : flights_)
    if (f->stage == Flight::Stage::waiting) waiting.push_back(f.get());
  for (Flight* f : waiting) requeue(*f);
  log_info("forwarder {}: stopping; {} message(s) waiting for a retry requeued, {} in flight",
           config_.name, waiting.size(), flights_.size());
  on_drained_ = std::move(done);  // set only now: `done` never runs inside this call
  loop_.defer([this, alive = life_.watch()] {
    if (!alive.expired()) check_drained();
  });
}

void Forwarder::check_drained() {
  if (!draining_ || !on_drained_ || !flights_.empty()) return;
  // The consumer must be gone too, or the broker could still deliver to it.
  if (any_consumer()) return;
  flush_acks();
  auto done = std::move(on_drained_);
  on_drained_ = nullptr;
  done();
}

void Forwarder::requeue_all() {
  flush_acks();
  std::vector<Flight*> all;
  for (auto& [key, f] : flights_) all.push_back(f.get());
  for (Flight* f : all) requeue(*f);
  consumer_tags_.assign(plan_.size(), "");
  if (draining_) check_drained();
}

void Forwarder::close() {
  flush_acks();
  link_.close();
}

}  // namespace warren::forward
