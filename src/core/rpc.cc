#include "core/rpc.h"

#include <unistd.h>

#include <cmath>

#include "log.h"

namespace warren::core {
namespace {

// Replies are acked as they arrive, so this only bounds what one read may hand us at once.
constexpr uint16_t kReplyPrefetch = 256;

}  // namespace

struct Rpc::ReplyLink {
  ReplyLink(Loop& loop, amqp::ConnectionOptions options, std::string vhost)
      : vhost(vhost), queue("reply_" + oslo::new_id()), broker(loop, std::move(options), "rpc replies on vhost " + vhost) {}

  std::string vhost;
  std::string queue;  // reply_<uuid>: the same name for the worker's life, redeclared on reconnect
  amqp::Link broker;
  std::shared_ptr<amqp::Channel> channel;
  bool consuming = false;      // on the current connection
  bool declared_once = false;  // the queue exists: requests may go out, replies will wait there
  bool closing = false;        // close_all(): no reconnect
  std::vector<std::string> waiting;  // calls held until the first declare
};

struct Rpc::PendingCall {
  Rpc* owner = nullptr;
  std::string msg_id, unique_id, vhost;
  Credentials who;
  RpcTarget target;
  oslo::Call call;  // until the request is built, once the login was accepted
  std::optional<int> monitor;
  bool logged_in = false;
  Message message;  // until handed to the publisher
  RpcCallback done;
  EventPtr timer;
  double timeout = 0;  // between signs of life
  Clock::time_point started = Clock::now();
  Clock::time_point hard_deadline;
  bool sent = false, confirmed = false;
  nlohmann::json result;
  std::optional<oslo::Failure> failure;
};

Rpc::Rpc(Context& context, RpcOptions options, Publisher& publisher)
    : loop_(context.loop), options_(std::move(options)), publisher_(publisher), counters_(context.counters) {}

Rpc::~Rpc() = default;

Message Rpc::request(const RpcTarget& target, const nlohmann::json& message,
                     std::optional<double> expiration) {
  Message m;
  if (target.fanout) {
    m.exchange = target.topic + "_fanout";
    m.routing_key = target.topic;  // ignored by a fanout exchange
  } else {
    m.exchange = target.exchange;
    m.routing_key = target.server.empty() ? target.topic : target.topic + "." + target.server;
  }
  // Unlike oslo, a request nobody is bound to fails at once (404) instead of timing out.
  m.mandatory = true;
  m.properties = oslo::message_properties(expiration);
  m.body = oslo::envelope(message);
  return m;
}

void Rpc::cast(const Credentials& who, const RpcTarget& target, oslo::Call call, RpcCallback done) {
  ++counters_.rpc_casts;
  const std::string unique_id = oslo::new_id();
  auto message = request(target, oslo::request_message(call, "", "", std::nullopt, unique_id), std::nullopt);
  publisher_.publish(who, std::move(message),
                     [unique_id, done = std::move(done)](const PublishResult& r) {
                       RpcResult result;
                       result.unique_id = unique_id;
                       result.status = r.status == PublishStatus::confirmed ? RpcStatus::accepted
                                                                           : RpcStatus::publish_failed;
                       result.publish = r;
                       done(result);
                     });
}

void Rpc::call(const Credentials& who, const RpcTarget& target, oslo::Call call, double timeout,
               RpcCallback done) {
  ++counters_.rpc_calls;
  if (target.fanout) {
    return loop_.defer([done = std::move(done)] {
      RpcResult r;
      r.status = RpcStatus::publish_failed;
      r.publish = {PublishStatus::invalid, "a fanout cannot be called, only cast"};
      done(r);
    });
  }
  // Each waiting call holds its client's request for up to rpc.max_timeout.
  if (calls_.size() >= static_cast<size_t>(options_.max_pending_calls)) {
    ++counters_.rpc_calls_refused;
    return loop_.defer([done = std::move(done), max = options_.max_pending_calls] {
      RpcResult r;
      r.status = RpcStatus::too_many;
      r.publish = {PublishStatus::over_limit,
                   fmt::format("this worker holds rpc.max_pending_calls ({}) waiting for their "
                               "reply already",
                               max)};
      done(r);
    });
  }
  timeout = std::clamp(timeout, 0.001, options_.max_timeout);
  auto c = std::make_unique<PendingCall>();
  c->owner = this;
  c->msg_id = oslo::new_id();
  c->unique_id = oslo::new_id();
  c->vhost = who.vhost;
  c->who = who;
  c->done = std::move(done);
  c->timeout = timeout;
  c->hard_deadline = Clock::now() + std::chrono::microseconds(static_cast<int64_t>(options_.max_timeout * 1e6));
  // `_timeout` asks an oslo server for a heartbeat every _timeout/2 s; it must be a whole number
  // of at least 2 s (the server ignores, and warns about, anything less).
  const int whole = static_cast<int>(std::floor(timeout));
  c->monitor = whole >= 2 ? std::optional<int>(whole) : std::nullopt;
  c->target = target;
  c->call = std::move(call);
  arm(*c, timeout);
  PendingCall& pending = *c;
  calls_.emplace(c->msg_id, std::move(c));
  check_login(pending);
}

// The caller's login is the broker's to accept, on the link the request will go out on, before
// the service identity touches the vhost (a refused caller learns nothing of it).
void Rpc::check_login(PendingCall& c) {
  const auto alive = life_.watch();
  publisher_.login(c.who, [this, alive, msg_id = c.msg_id](const PublishResult& r) {
    if (alive.expired()) return;
    if (r.status == PublishStatus::confirmed) return proceed(msg_id);
    RpcResult result;
    result.status = RpcStatus::publish_failed;
    result.publish = r;
    finish(msg_id, result);
  });
}

void Rpc::proceed(const std::string& msg_id) {
  auto it = calls_.find(msg_id);
  if (it == calls_.end()) return;  // timed out meanwhile
  PendingCall& c = *it->second;
  c.logged_in = true;
  ReplyLink& link = reply_link(c.vhost);
  c.message = request(c.target, oslo::request_message(c.call, c.msg_id, link.queue, c.monitor, c.unique_id),
                      c.timeout);
  if (link.declared_once) return send_request(msg_id);
  link.waiting.push_back(msg_id);
}

void Rpc::send_request(const std::string& msg_id) {
  auto it = calls_.find(msg_id);
  if (it == calls_.end()) return;  // timed out while waiting for the reply queue
  PendingCall& c = *it->second;
  c.sent = true;
  const auto alive = life_.watch();
  publisher_.publish(c.who, std::move(c.message), [this, alive, msg_id](const PublishResult& r) {
    if (alive.expired()) return;
    auto it = calls_.find(msg_id);
    if (it == calls_.end()) return;  // answered already: a fast reply, or the timer
    if (r.status == PublishStatus::confirmed) {
      it->second->confirmed = true;
      return;
    }
    RpcResult result;
    result.status = RpcStatus::publish_failed;
    result.publish = r;
    finish(msg_id, std::move(result));
  });
}

void Rpc::arm(PendingCall& c, double seconds) {
  const double left = std::chrono::duration<double>(c.hard_deadline - Clock::now()).count();
  if (!c.timer)
    c.timer.reset(evtimer_new(
        loop_.base(),
        [](evutil_socket_t, short, void* arg) {
          auto* call = static_cast<PendingCall*>(arg);
          call->owner->expire(call->msg_id);
        },
        &c));
  const timeval tv = to_timeval(std::min(seconds, left));
  evtimer_add(c.timer.get(), &tv);
}

void Rpc::expire(const std::string& msg_id) {
  auto it = calls_.find(msg_id);
  if (it == calls_.end()) return;
  PendingCall& c = *it->second;
  RpcResult result;
  if (!c.logged_in) {
    result.status = RpcStatus::publish_failed;
    result.publish = {PublishStatus::unavailable, "the broker did not answer the caller's login in time"};
  } else if (!c.sent) {
    auto link = links_.find(c.vhost);
    std::string why = "the broker is unreachable";
    if (const amqp::Connection* conn = link != links_.end() ? link->second->broker.connection() : nullptr;
        conn && !conn->close_reason().text.empty())
      why = conn->close_reason().text;
    result.status = RpcStatus::publish_failed;
    result.publish = {PublishStatus::unavailable, "the reply queue is not ready: " + why};
  } else {
    ++counters_.rpc_timeouts;
    result.status = RpcStatus::timeout;
  }
  finish(msg_id, std::move(result));
}

void Rpc::finish(const std::string& msg_id, RpcResult result) {
  auto it = calls_.find(msg_id);
  if (it == calls_.end()) return;
  std::unique_ptr<PendingCall> c = std::move(it->second);
  calls_.erase(it);
  if (c->timer) evtimer_del(c->timer.get());
  result.msg_id = c->msg_id;
  result.unique_id = c->unique_id;
  if (result.status == RpcStatus::result || result.status == RpcStatus::failure)
    latency_.observe(std::chrono::duration<double>(Clock::now() - c->started).count());
  auto done = std::move(c->done);
  // Never freed inside its own timer callback: the next loop pass does it.
  loop_.defer_delete(std::move(c));
  done(result);
}

void Rpc::on_reply(amqp::Delivery&& delivery) {
  auto parsed = oslo::parse_reply(delivery.body);
  if (auto* error = std::get_if<std::string>(&parsed)) {
    ++counters_.rpc_replies_invalid;
    log_warning("rpc: unreadable reply on {}: {}", delivery.routing_key, *error);
    return;
  }
  auto& reply = std::get<oslo::Reply>(parsed);
  auto it = calls_.find(reply.msg_id);
  if (it == calls_.end()) {
    ++counters_.rpc_replies_late;
    log_debug("rpc: reply to {} that no call waits for: dropped", reply.msg_id);
    return;
  }
  PendingCall& c = *it->second;
  // As oslo's ReplyWaiter: a result or a failure is kept, whatever `ending` says (old servers
  // sent the result first, then an empty `ending: true`); `ending` answers the call.
  if (reply.failure) c.failure = std::move(reply.failure);
  else if (!reply.result.is_null()) c.result = std::move(reply.result);
  if (!reply.ending) {
    if (reply.is_heartbeat()) ++counters_.rpc_heartbeats;
    return arm(c, c.timeout);
  }
  RpcResult result;
  if (c.failure) {
    ++counters_.rpc_failures;
    result.status = RpcStatus::failure;
    result.failure = std::move(c.failure);
  } else {
    ++counters_.rpc_results;
    result.status = RpcStatus::result;
    result.result = std::move(c.result);
  }
  finish(reply.msg_id, std::move(result));
}

Rpc::ReplyLink& Rpc::reply_link(const std::string& vhost) {
  auto& slot = links_[vhost];
  if (!slot) {
    auto options = options_.broker;
    options.vhost = vhost;
    options.connection_name = fmt::format("warren rpc replies {} pid {}", vhost, getpid());
    slot = std::make_unique<ReplyLink>(loop_, std::move(options), vhost);
    slot->broker.set_state_callback([this, vhost](amqp::ConnectionState state, const amqp::Result& why) {
      if (auto it = links_.find(vhost); it != links_.end()) on_link_state(*it->second, state, why);
    });
    slot->broker.connect();
  }
  return *slot;
}

void Rpc::on_link_state(ReplyLink& link, amqp::ConnectionState state, const amqp::Result& why) {
  using amqp::ConnectionState;
  if (state == ConnectionState::open && !link.consuming && !link.channel) return declare_and_consume(link);
  if (state != ConnectionState::closed) return;
  link.consuming = false;
  link.channel.reset();
  if (link.closing) return;
  // The service identity cannot open this vhost (no such vhost, no permission, bad password):
  // fail what waits rather than retrying a door that stays shut.
  if (!link.declared_once && (why.outcome == amqp::Outcome::refused || why.code == 530)) {
    PublishResult r{PublishStatus::unavailable,
                    fmt::format("the reply queue cannot be declared with the service identity "
                                "(broker.username): {}", why.text)};
    if (amqp::vhost_not_found(why)) r = {PublishStatus::not_found, why.text};
    return link_failed(link, r);
  }
  link.broker.connect();
}

void Rpc::declare_and_consume(ReplyLink& link) {
  link.channel = link.broker.open_channel(false);
  const std::string vhost = link.vhost;
  const amqp::Channel* current = link.channel.get();
  // A failure of this channel (not of a later one, nor of the connection, which on_link_state
  // handles) closes the connection; it comes back through on_link_state, which redeclares.
  auto restart = [this, vhost, current](const std::string& what, const amqp::Result& r) {
    auto it = links_.find(vhost);
    if (it == links_.end() || it->second->closing || it->second->channel.get() != current) return;
    if (r.outcome == amqp::Outcome::connection_lost) return;
    log_warning("rpc: {} on reply queue {} failed: {}", what, it->second->queue, r.text);
    it->second->broker.reconnect();
  };
  link.channel->set_close_callback([restart](const amqp::Result& r) { restart("channel", r); });
  // As oslo declares its reply queues: not durable, not exclusive (replies survive our
  // reconnects), not auto-delete, gone after 30 minutes unused.
  link.channel->declare_queue(
      link.queue, false, false, false, {{"x-expires", oslo::kTransientQueueTtlMs}},
      [this, vhost, restart](const amqp::Result& r, const std::string&, uint32_t, uint32_t) {
        if (!r.ok()) return restart("queue.declare", r);
        auto it = links_.find(vhost);
        if (it == links_.end() || !it->second->channel) return;
        ReplyLink& l = *it->second;
        std::weak_ptr<amqp::Channel> weak = l.channel;
        l.channel->consume(
            l.queue, kReplyPrefetch, false, true,
            [this, weak](amqp::Delivery&& d) {
              if (auto ch = weak.lock()) ch->ack(d.delivery_tag);
              on_reply(std::move(d));
            },
            [restart](const amqp::Result& end) {
              // Cancelled by the broker (the queue was deleted): declare it again.
              if (end.outcome == amqp::Outcome::channel_error && end.code == 0)
                restart("consumer", {amqp::Outcome::channel_error, 0, "cancelled by the broker"});
            },
            [this, vhost, restart](const amqp::Result& started, const std::string&) {
              if (!started.ok()) return restart("basic.consume", started);
              if (auto it = links_.find(vhost); it != links_.end()) link_ready(*it->second);
            });
      });
}

void Rpc::link_ready(ReplyLink& link) {
  link.consuming = true;
  link.broker.ready();
  link.declared_once = true;
  for (const auto& msg_id : std::exchange(link.waiting, {})) send_request(msg_id);
}

void Rpc::link_failed(ReplyLink& link, const PublishResult& why) {
  log_warning("rpc: reply link for vhost {}: {}", link.vhost, why.detail);
  const std::string vhost = link.vhost;
  const auto waiting = std::exchange(link.waiting, {});
  // We are inside the connection's own callback: the link (and the connection, which counts
  // into the link's stats) goes on the next loop pass. The next call tries again, new queue.
  loop_.defer_delete(std::move(links_[vhost]));
  links_.erase(vhost);
  for (const auto& msg_id : waiting) {
    RpcResult result;
    result.status = RpcStatus::publish_failed;
    result.publish = why;
    finish(msg_id, std::move(result));
  }
}

void Rpc::fill(Snapshot& snapshot) const {
  snapshot.histograms.rpc_seconds.merge(latency_);
  for (const auto& [vhost, link] : links_) {
    auto& s = snapshot.connections[vhost + ":" + options_.broker.username];
    add_link_figures(s, snapshot.counters, link->broker.stats());
    s.connected = s.connected || link->consuming;
    if (link->broker.is_open()) snapshot.broker_nodes["rpc replies " + vhost] = link->broker.node();
  }
}

void Rpc::close_all() {
  for (auto& [vhost, link] : links_) {
    link->closing = true;
    link->broker.close();
  }
}

}  // namespace warren::core
