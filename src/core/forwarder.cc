#include "core/forwarder.h"

#include <chrono>

#include "log.h"

namespace warren::core {
namespace {

using nlohmann::json;

void count_status(ForwarderCounters& c, int status) {
  const std::string_view cls = status_class(status);
  if (cls == "2xx") ++c.status_2xx;
  else if (cls == "3xx") ++c.status_3xx;
  else if (cls == "4xx") ++c.status_4xx;
  else if (cls == "5xx") ++c.status_5xx;
  else ++c.status_error;
}

}  // namespace

struct Forwarder::Flight {
  enum class Stage { calling, waiting, replying, settling };
  uint64_t key = 0;
  std::shared_ptr<amqp::Channel> channel;  // the channel the message came on
  amqp::Delivery message;
  std::unique_ptr<BackendJob> job;  // null for a message requeued at once (draining)
  Stage stage = Stage::calling;
  int attempt = 0;
  BackendAnswer last;  // the latest answer (or failure), for dead-letter headers
  EventPtr retry_timer;
  EventPtr heartbeat_timer;  // BackendJob::heartbeat replies while the backend works
  bool settled = false;      // acked, rejected or dead-lettered (not going back to the queue)
  int dead_letter_tries = 0;  // dead-letter publishes not routed so far: the retry timer publishes again
  Forwarder* owner = nullptr;
};

Forwarder::Forwarder(Loop& loop, ForwarderOptions options, Backend& backend, ForwarderCounters& counters,
                     Histogram& latency)
    : loop_(loop),
      options_(std::move(options)),
      backend_(backend),
      counters_(counters),
      latency_(latency),
      link_(loop, options_.broker, "forwarder " + options_.name),
      recent_ids_(options_.duplicate_capacity, options_.duplicate_seconds) {
  link_.set_state_callback([this](amqp::ConnectionState s, const amqp::Result& why) { on_state(s, why); });
  ack_flush_.reset(event_new(loop_.base(), -1, 0, on_ack_flush, this));
  consumer_tags_.assign(options_.plan.size(), "");
  for (const auto& q : options_.plan) queues_ += (queues_.empty() ? "" : ", ") + q.queue;
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

Forwarder::~Forwarder() { flights_.clear(); }

void Forwarder::start() { link_.connect(); }

void Forwarder::on_state(amqp::ConnectionState state, const amqp::Result& why) {
  using amqp::ConnectionState;
  // open again after connection.unblocked keeps what is declared and consuming
  if (state == ConnectionState::open && !consume_channel_) return declare_and_consume();
  if (state != ConnectionState::closed) return;
  drop_channel_flights();
  consume_channel_.reset();
  publish_channel_.reset();
  consumer_tags_.assign(options_.plan.size(), "");
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
        log_error("forwarder {}: {} failed: {}", options_.name, what, r.text);
    };
  };
  for (const ConsumeQueue& q : options_.plan) {
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
  if (index >= options_.plan.size() || !consume_channel_) return;
  std::weak_ptr<amqp::Channel> weak = consume_channel_;
  auto alive = life_.watch();
  consume_channel_->consume(
      options_.plan[index].queue, static_cast<uint16_t>(options_.prefetch), false, false,
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
            restart(fmt::format("basic.consume on {} failed: {}", options_.plan[index].queue, r.text));
          return;
        }
        consumer_tags_[index] = tag;
        if (draining_) return consume_channel_->cancel(tag, [](const amqp::Result&) {});
        if (index + 1 < options_.plan.size()) return consume(index + 1);
        link_.ready();
        log_info("forwarder {}: consuming {} (prefetch {}) for {}", options_.name, queues_,
                 options_.prefetch, backend_.describe());
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
  log_warning("forwarder {}: {}; reconnecting", options_.name, why);
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
                options_.name, gone.size());
  for (uint64_t key : gone) forget(key);
}

void Forwarder::forget(uint64_t key) {
  auto it = flights_.find(key);
  if (it == flights_.end()) return;
  // Back to the queue unprocessed: its redelivery is not a duplicate.
  const auto& job = it->second->job;
  if (!it->second->settled && job && !job->unique_id.empty()) recent_ids_.forget(job->unique_id);
  flights_.erase(it);  // abandons the job's attempt under way, if any
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
  flight.job = backend_.prepare(flight.message);
  const BackendJob& job = *flight.job;
  if (!job.unique_id.empty() && recent_ids_.seen(job.unique_id, Loop::now())) {
    // Delivered twice (a publisher retry): the first copy is, or was, being answered.
    ++counters_.duplicates;
    log_debug("forwarder {}: dropping a duplicate request {}", options_.name, job.unique_id);
    return ack(flight);
  }
  if (job.answered) {
    if (job.invalid) {
      ++counters_.invalid;
      log_warning("forwarder {}: message {} cannot be forwarded: {}", options_.name,
                  flight.message.properties.message_id.value_or("(no message_id)"), job.note);
    }
    flight.last = *job.answered;
    finish(flight, disposition(flight, flight.last.status));
    return;
  }
  attempt(flight);
}

void Forwarder::attempt(Flight& f) {
  ++f.attempt;
  f.stage = Flight::Stage::calling;
  const uint64_t key = f.key;
  f.job->start([this, key, alive = life_.watch()](BackendAnswer&& answer) {
    if (!alive.expired()) on_answer(key, std::move(answer));
  });
  start_heartbeats(f);
}

// A caller waiting for the answer (an oslo call) gets it whatever it is; everything else goes
// by the forwarding rules.
Disposition Forwarder::disposition(const Flight& f, int status) const {
  if (f.job->final_answer) return Disposition::ack;
  return forward_disposition(status, f.attempt, options_.retry.max_attempts);
}

// A job with a heartbeat_interval (an oslo call with a _timeout: every _timeout/2 s) sends a
// heartbeat reply that often while the backend works, so a caller with a call monitor keeps
// waiting. Best effort: a lost heartbeat is not retried.
void Forwarder::start_heartbeats(Flight& f) {
  if (f.job->heartbeat_interval <= 0) return;
  f.heartbeat_timer.reset(event_new(loop_.base(), -1, EV_PERSIST, on_heartbeat_timer, &f));
  timeval tv = to_timeval(f.job->heartbeat_interval);
  evtimer_add(f.heartbeat_timer.get(), &tv);
}

void Forwarder::on_heartbeat_timer(evutil_socket_t, short, void* arg) {
  auto* f = static_cast<Flight*>(arg);
  Forwarder* self = f->owner;
  auto beat = f->job->heartbeat();
  if (!beat || !self->link_.connection()) return;
  self->publish_channel()->publish(
      beat->exchange, beat->routing_key, beat->mandatory, beat->properties, std::move(beat->body),
      f->job->heartbeat_interval, [self, alive = self->life_.watch()](const amqp::Result& r) {
        if (alive.expired()) return;
        if (r.ok()) ++self->counters_.heartbeats;
        else log_debug("forwarder {}: heartbeat not published: {}", self->options_.name, r.text);
      });
}

void Forwarder::on_answer(uint64_t key, BackendAnswer&& answer) {
  auto it = flights_.find(key);
  if (it == flights_.end()) return;
  Flight& f = *it->second;
  counters_.latency_us += static_cast<uint64_t>(answer.seconds * 1e6);
  latency_.observe(answer.seconds);
  count_status(counters_, answer.status);
  f.last = std::move(answer);
  f.heartbeat_timer.reset();
  const auto d = disposition(f, f.last.status);
  // A caller gets the failure as a status without the details (vcd: a tenant): they go here.
  if (f.job->final_answer && !f.last.status)
    log_warning("forwarder {}: backend failed: {}; answering the caller", options_.name, f.last.error);
  if (d != Disposition::retry) return finish(f, d);
  ++counters_.retried;
  if (draining_ || !valid(f)) {
    // Stopping: another worker (or this one's successor) gets the message from the queue.
    requeue(f);
    return;
  }
  const double delay = retry_delay(options_.retry, f.attempt);
  log_debug("forwarder {}: attempt {} of {} got {}; retrying in {:.2f} s", options_.name, f.attempt,
            options_.retry.max_attempts, f.last.status ? std::to_string(f.last.status) : f.last.error, delay);
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
void Forwarder::finish(Flight& f, Disposition disposition) {
  auto reply = f.job->reply(f.message);
  if (!reply) return settle(f.key, disposition);
  f.stage = Flight::Stage::replying;
  const uint64_t key = f.key;
  const bool done = status_class(f.last.status) == std::string_view("2xx");
  publish_channel()->publish(
      reply->exchange, reply->routing_key, true, reply->properties, std::move(reply->body),
      options_.confirm_timeout,
      [this, key, done, to = reply->routing_key, alive = life_.watch()](const amqp::Result& r) {
        if (alive.expired()) return;
        if (r.ok()) {
          ++counters_.replied;
          return settle(key, Disposition::ack);
        }
        ++counters_.reply_failed;
        log_warning("forwarder {}: reply to {} not delivered ({}: {}); {}", options_.name, to,
                    amqp::outcome_name(r.outcome), r.text,
                    done ? "acking the message: the backend answered 2xx" : "dead-lettering the message");
        settle(key, done ? Disposition::ack : Disposition::dead_letter);
      });
}

void Forwarder::settle(uint64_t key, Disposition disposition) {
  auto it = flights_.find(key);
  if (it == flights_.end()) return;
  Flight& f = *it->second;
  if (!valid(f)) return forget(key);
  if (disposition == Disposition::ack) return ack(f);
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
  const std::string& note = f.job->note;  // a message answered without a call: why
  if (f.dead_letter_tries == 0) {
    const std::string why = f.last.status ? fmt::format("HTTP {}", f.last.status)
                            : f.last.error.empty() ? note : f.last.error;
    log_warning("forwarder {}: dead-lettering a message after {} attempt(s): {}{}", options_.name, f.attempt,
                why, note.empty() || f.last.status == 0 ? "" : " (" + note + ")");
  }
  if (options_.dead_letter_exchange.empty()) return reject(f);
  f.stage = Flight::Stage::settling;
  amqp::Properties p = f.message.properties;
  if (!p.headers || !p.headers->is_object()) p.headers = json::object();
  auto& h = *p.headers;
  h["x-warren-forwarder"] = options_.name;
  h["x-warren-queue"] = options_.queue.empty() ? f.message.routing_key : options_.queue;
  h["x-warren-attempts"] = f.attempt;
  h["x-warren-status"] = f.last.status;
  h["x-warren-error"] = f.last.status ? (note.empty() ? f.last.excerpt : note) : (f.last.error.empty() ? note : f.last.error);
  h["x-warren-original-exchange"] = f.message.exchange;
  h["x-warren-original-routing-key"] = f.message.routing_key;
  const uint64_t key = f.key;
  publish_channel()->publish(
      options_.dead_letter_exchange, f.message.routing_key, true, p, f.message.body,
      options_.confirm_timeout, [this, key, alive = life_.watch()](const amqp::Result& r) {
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
  const std::string failure = fmt::format("publishing to dead_letter_exchange {} with routing key {} failed ({}: {})",
                                          options_.dead_letter_exchange, f.message.routing_key,
                                          amqp::outcome_name(why.outcome), why.text);
  if (options_.queue_dead_letter_exchange) {
    log_error("forwarder {}: {}; rejecting the message to the queue's own x-dead-letter-exchange", options_.name,
              failure);
    return reject(f);
  }
  const double delay = retry_delay(options_.retry, ++f.dead_letter_tries);
  if (draining_) return requeue(f);
  if (f.dead_letter_tries == 1)
    log_error("forwarder {}: {}; the message stays in the queue, publishing it again every {:.1f} s at most",
              options_.name, failure, options_.retry.max_delay);
  else
    log_debug("forwarder {}: {} (try {}); again in {:.2f} s", options_.name, failure, f.dead_letter_tries, delay);
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
           options_.name, waiting.size(), flights_.size());
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
  consumer_tags_.assign(options_.plan.size(), "");
  if (draining_) check_drained();
}

void Forwarder::close() {
  flush_acks();
  link_.close();
}

}  // namespace warren::core
