#include "core/publisher.h"

#include <openssl/evp.h>

#include "handles.h"
#include "log.h"

namespace warren::core {
namespace {

constexpr timeval kSweepInterval{1, 0};
constexpr auto kRetirementInterval = std::chrono::seconds(1);
constexpr size_t kMaxChannelsPerLink = 64;  // one per exchange; idle ones go first beyond this

// The raw digest: part of a map key only, never shown. (Hex through fmt, 32 calls a request,
// was 4% of a worker's CPU at c=64 in perf.) The algorithm is fetched once: with EVP_sha256()
// every digest looked its implementation up in the provider again, and libcrypto was 5% of a
// worker's CPU in batches.
std::string sha256(std::string_view data) {
  static const std::unique_ptr<EVP_MD, Deleter<EVP_MD_free>> md(EVP_MD_fetch(nullptr, "SHA256", nullptr));
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, md ? md.get() : EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<const char*>(digest), len);
}

constexpr const char* kOutcomeUnknown =
    "the broker connection was lost after the message was sent, before its confirm: the broker "
    "may or may not have it";

// A message the broker may already have. A later attempt's answer stands when it is about the
// message itself (confirmed, returned, refused as invalid, forbidden or not found: the first
// copy fared the same); when it is about the moment (the broker away, a nack, a login refused
// on the next connection), the client must hear that the outcome is unknown (504), never that
// the message was not sent (503, safe to send again).
PublishCallback outcome_unknown(PublishCallback done) {
  return [done = std::move(done)](const PublishResult& r) {
    switch (r.status) {
      case PublishStatus::unavailable:
      case PublishStatus::over_limit:
      case PublishStatus::rejected:
      case PublishStatus::refused:
        return done({PublishStatus::timeout, kOutcomeUnknown});
      default:
        return done(r);
    }
  };
}

}  // namespace

PublishResult publish_result(const amqp::Result& r, bool link_open) {
  using amqp::Outcome;
  switch (r.outcome) {
    case Outcome::ok: return {PublishStatus::confirmed, {}};
    case Outcome::returned: return {PublishStatus::unroutable, r.text};
    case Outcome::nacked: return {PublishStatus::rejected, "the broker nacked the message"};
    case Outcome::refused: return {PublishStatus::refused, r.text};
    case Outcome::invalid: return {PublishStatus::invalid, r.text};
    case Outcome::channel_error:
      if (r.code == 404) return {PublishStatus::not_found, r.text};
      if (r.code == 403) return {PublishStatus::forbidden, r.text};
      // 406 PRECONDITION_FAILED on a publish is the message's fault (a user_id other than the
      // login's, a body over the broker's max_message_size): sending it again cannot help.
      if (r.code == 406) return {PublishStatus::invalid, r.text};
      return {PublishStatus::rejected, r.text};
    case Outcome::timeout:
      // Waiting for a connection that never came is the broker being away, not slow.
      if (!link_open) return {PublishStatus::unavailable, "broker unreachable"};
      return {PublishStatus::timeout, "no confirm from the broker within confirm_timeout"};
    case Outcome::displaced:
    case Outcome::connection_lost:
      if (r.sent) return {PublishStatus::timeout, kOutcomeUnknown};
      // connection.open refused: RabbitMQ says 530 NOT_ALLOWED for a missing vhost and for a
      // user without access to it; only the text tells them apart.
      if (r.code == 530)
        return {r.text.find("not found") != std::string::npos ? PublishStatus::not_found
                                                              : PublishStatus::forbidden,
                r.text};
      break;
  }
  return {PublishStatus::unavailable, r.text.empty() ? "broker connection lost" : r.text};
}

// A client login's broker link, and what the publisher keeps about it.
struct Publisher::LoginLink {
  LoginLink(Loop& loop, amqp::ConnectionOptions options, std::string key, std::string name)
      : key(std::move(key)), name(name), broker(loop, std::move(options), std::move(name)) {}

  std::string key;   // vhost, user and password digest
  std::string name;  // "vhost:user", as statelessd names its connections
  amqp::Link broker;
  std::map<std::string, std::shared_ptr<amqp::Channel>> channels;  // by exchange
  // Channels a nack took out of `channels`, closed once their other messages are settled.
  std::vector<std::shared_ptr<amqp::Channel>> retiring;
  Clock::time_point last_retirement;  // at most one a kRetirementInterval
  size_t in_flight = 0;
  uint64_t publishes = 0;
  Clock::time_point last_used = Clock::now();
  bool refused = false;
  std::string blocked_reason;  // the broker's, from connection.blocked
  bool evicted = false;  // closed to make room; Connection::close() takes effect a pass later
  std::vector<PublishCallback> login_waiters;  // login(): until the connection opens or closes

  bool open() const { return broker.is_open(); }
  // Holds one of the worker's broker.max_connections: connected, connecting or about to.
  bool holds_connection() const {
    if (!broker.connection() || evicted) return false;
    const auto state = broker.state();
    return state != amqp::ConnectionState::closing && state != amqp::ConnectionState::closed;
  }
};

Publisher::Publisher(Context& context, PublishOptions options)
    : loop_(context.loop),
      options_(std::move(options)),
      counters_(context.counters),
      histograms_(context.histograms) {
  sweep_timer_.reset(event_new(loop_.base(), -1, EV_PERSIST, on_sweep, this));
  event_add(sweep_timer_.get(), &kSweepInterval);
}

Publisher::~Publisher() = default;

const std::string& Publisher::key_of(const Credentials& who) {
  if (last_key_.empty() || who.vhost != last_who_.vhost || who.username != last_who_.username ||
      who.password != last_who_.password) {
    last_who_ = who;
    last_key_ = who.vhost + '\0' + who.username + '\0' + sha256(who.password);
  }
  return last_key_;
}

Publisher::LoginLink& Publisher::link_for(const Credentials& who) {
  const std::string& key = key_of(who);
  auto& slot = links_[key];
  if (!slot) {
    std::string name = who.vhost + ":" + who.username;
    auto options = options_.broker;
    options.vhost = who.vhost;
    options.username = who.username;
    options.password = who.password;
    options.connection_name = fmt::format("warren {} pid {}", name, getpid());
    slot = std::make_unique<LoginLink>(loop_, std::move(options), key, std::move(name));
    slot->broker.set_state_callback([this, key](amqp::ConnectionState state, const amqp::Result& why) {
      if (auto it = links_.find(key); it != links_.end()) on_link_state(*it->second, state, why);
    });
  }
  return *slot;
}

bool Publisher::make_room(const LoginLink& link) {
  size_t held = 0;
  LoginLink* idlest = nullptr;
  for (auto& [key, other] : links_) {
    if (other.get() == &link || !other->holds_connection()) continue;
    ++held;
    if (other->in_flight == 0 && other->login_waiters.empty() &&
        (!idlest || other->last_used < idlest->last_used))
      idlest = other.get();
  }
  if (held < static_cast<size_t>(options_.max_connections)) return true;
  if (!idlest) return false;
  log_info("closing idle broker connection for {} (broker.max_connections {} reached)",
           idlest->name, options_.max_connections);
  ++counters_.broker_connections_evicted;
  idlest->evicted = true;
  idlest->broker.close();  // a connection waiting to retry does not start after all
  return true;
}

void Publisher::connect(LoginLink& link) {
  link.evicted = false;
  link.channels.clear();
  link.retiring.clear();
  // Messages wait in the channels while a reconnect waits its turn.
  link.broker.connect();
}

void Publisher::on_link_state(LoginLink& link, amqp::ConnectionState state, const amqp::Result& why) {
  using amqp::ConnectionState;
  if (state == ConnectionState::blocked) link.blocked_reason = why.text;
  // Never reused after a refusal: the link goes once its messages have failed.
  if (state == ConnectionState::closed && why.outcome == amqp::Outcome::refused) link.refused = true;
  if (link.login_waiters.empty() || state == ConnectionState::connecting) return;
  PublishResult result{PublishStatus::confirmed, {}};
  if (state == ConnectionState::closed || state == ConnectionState::closing)
    result = why.ok() ? PublishResult{PublishStatus::unavailable, "broker connection closed"}
                      : publish_result(why, false);
  for (auto& done : std::exchange(link.login_waiters, {}))
    loop_.defer([done = std::move(done), result] { done(result); });
}

void Publisher::login(const Credentials& who, PublishCallback done) {
  LoginLink& link = link_for(who);
  link.last_used = Clock::now();
  if (!ensure_connection(link))
    return loop_.defer([done = std::move(done), r = PublishResult{PublishStatus::over_limit, no_room()}] {
      done(r);
    });
  if (link.open())
    return loop_.defer([done = std::move(done)] { done({PublishStatus::confirmed, {}}); });
  link.login_waiters.push_back(std::move(done));
}

std::string Publisher::no_room() const {
  return fmt::format("broker.max_connections ({}) reached and every broker connection of this "
                     "worker has messages in flight",
                     options_.max_connections);
}

bool Publisher::ensure_connection(LoginLink& link) {
  // A closing connection (closed as idle a moment ago) takes no new channel: it would fail the
  // message at once, the retry would find it still closing, and so on until close-ok.
  const auto state = link.broker.state();
  if (!link.refused && !link.evicted && state != amqp::ConnectionState::closed &&
      state != amqp::ConnectionState::closing)
    return true;
  if (!make_room(link)) {
    ++counters_.broker_connections_refused;
    return false;
  }
  link.refused = false;
  connect(link);
  return true;
}

void Publisher::publish(const Credentials& who, Message message, PublishCallback done) {
  const auto deadline = Clock::now() + std::chrono::microseconds(
                                           static_cast<int64_t>(options_.confirm_timeout * 1e6));
  send(link_for(who), std::move(message), deadline,
       [this, start = Clock::now(), done = std::move(done)](const PublishResult& r) {
         if (r.status == PublishStatus::confirmed)
           histograms_.publish_seconds.observe(std::chrono::duration<double>(Clock::now() - start).count());
         done(r);
       });
}

void Publisher::refuse(PublishCallback done, PublishStatus status, std::string detail) {
  ++counters_.publish_failed;
  loop_.defer([done = std::move(done), status, detail = std::move(detail)] {
    done({status, detail});
  });
}

std::optional<PublishResult> Publisher::admit(LoginLink& link) {
  if (link.in_flight >= static_cast<size_t>(options_.max_in_flight))
    return PublishResult{PublishStatus::unavailable, "too many messages waiting for this broker connection"};
  if (!ensure_connection(link)) return PublishResult{PublishStatus::over_limit, no_room()};
  const amqp::Connection& conn = *link.broker.connection();
  // A resource alarm: the broker reads nothing more from this connection until it clears,
  // which takes as long as it takes. Refuse at once with 503 (never sent: safe to retry after
  // Retry-After) rather than hold the client until confirm_timeout for a certain 504.
  if (conn.state() == amqp::ConnectionState::blocked) {
    ++counters_.publish_blocked;
    return PublishResult{PublishStatus::unavailable,
                         fmt::format("the broker blocked publishing: {}", link.blocked_reason)};
  }
  // A broker that stops reading without connection.blocked: what it has not read stays here.
  // Past broker.max_output_buffer (Connection::busy), refuse at once with 503 (never sent).
  if (conn.busy()) {
    ++counters_.publish_busy;
    return PublishResult{PublishStatus::unavailable,
                         fmt::format("the broker is not reading: {} bytes wait to be sent to it",
                                     conn.write_buffer_size())};
  }
  return std::nullopt;
}

void Publisher::close_settled_retirees(LoginLink& link) {
  std::erase_if(link.retiring, [](const auto& ch) { return ch->in_flight() == 0; });
}

std::shared_ptr<amqp::Channel> Publisher::channel_for(LoginLink& link, const std::string& exchange) {
  close_settled_retirees(link);
  auto found = link.channels.find(exchange);
  if (found != link.channels.end() && found->second->is_open()) return found->second;
  // Idle channels go beyond the limit; this exchange's own entry may be among them, so no
  // reference into the map is held across the erase. A channel let go here is closed on the
  // wire (Connection::open_channel's handle).
  if (link.channels.size() >= kMaxChannelsPerLink)
    std::erase_if(link.channels, [](const auto& e) { return e.second->in_flight() == 0; });
  amqp::Connection& conn = *link.broker.connection();
  // Every number up to the broker's channel_max is busy (or still closing): nothing was sent.
  if (conn.channel_count() >= static_cast<size_t>(conn.channel_max())) return nullptr;
  return link.channels[exchange] = conn.open_channel(true);
}

void Publisher::send(LoginLink& link, Message message, Clock::time_point deadline, PublishCallback done,
                     bool alone) {
  const auto now = Clock::now();
  link.last_used = now;
  if (auto refusal = admit(link)) return refuse(std::move(done), refusal->status, std::move(refusal->detail));
  auto channel = channel_for(link, message.exchange);
  if (!channel)
    return refuse(std::move(done), PublishStatus::unavailable,
                  fmt::format("all {} channels of this broker connection are busy",
                              link.broker.connection()->channel_max()));
  ++link.in_flight;
  const double remaining = std::chrono::duration<double>(deadline - now).count();
  auto held = std::make_shared<Message>(std::move(message));
  const auto& m = *held;
  channel->publish(
      m.exchange, m.routing_key, m.mandatory, m.properties, m.body, remaining,
      [this, key = link.key, held, deadline, done = std::move(done),
       on = std::weak_ptr<amqp::Channel>(channel)](const amqp::Result& r) mutable {
        if (r.outcome == amqp::Outcome::nacked) retire_channel(key, held->exchange, on.lock());
        settle(key, std::move(*held), deadline, std::move(done), r);
      },
      alone);
}

// A channel whose message was nacked is not used again: after a quorum queue's leader moved,
// RabbitMQ nacked every later publish on such a channel for as long as it stayed open, while a
// new channel on the same connection was acked. But a full queue (x-overflow: reject-publish)
// nacks every message on any channel: one retirement a second per link bounds that churn
// (a new channel per nack was 721 channels for 2400 publishes) and still leaves a poisoned
// channel within a second.
void Publisher::retire_channel(const std::string& key, const std::string& exchange,
                               std::shared_ptr<amqp::Channel> channel) {
  auto it = links_.find(key);
  if (it == links_.end() || !channel) return;
  LoginLink& link = *it->second;
  auto found = link.channels.find(exchange);
  if (found == link.channels.end() || found->second != channel) return;
  const auto now = Clock::now();
  if (now - link.last_retirement < kRetirementInterval) return;
  link.last_retirement = now;
  link.channels.erase(found);
  link.retiring.push_back(std::move(channel));
}

void Publisher::settle(const std::string& key, Message&& message, Clock::time_point deadline,
                       PublishCallback done, const amqp::Result& r) {
  auto it = links_.find(key);
  if (it == links_.end()) return done(publish_result(r, false));
  LoginLink& link = *it->second;
  --link.in_flight;
  // The connection died before the confirm, or the channel was closed for another message:
  // the broker may or may not have this one. Send it again while time is left
  // (at-least-once; a 2xx always means confirmed), alone after a channel error so that
  // only its own error can end it.
  const bool displaced = r.outcome == amqp::Outcome::displaced;
  if ((displaced || (r.outcome == amqp::Outcome::connection_lost && r.code != 530)) &&
      !link.refused && Clock::now() < deadline) {
    if (r.sent) done = outcome_unknown(std::move(done));
    return send(link, std::move(message), deadline, std::move(done), displaced);
  }
  auto result = publish_result(r, link.open());
  if (result.status == PublishStatus::confirmed) {
    ++counters_.publish_confirmed;
    ++link.publishes;
  } else if (result.status == PublishStatus::unroutable) {
    ++counters_.publish_returned;
  } else {
    ++(r.outcome == amqp::Outcome::nacked ? counters_.publish_nacked : counters_.publish_failed);
  }
  done(result);
}

void Publisher::fill(Snapshot& snapshot) const {
  for (const auto& [name, s] : retired_) snapshot.connections[name].merge(s);
  snapshot.counters.merge(retired_counters_);
  for (const auto& [key, link] : links_) {
    // A name the broker never accepted (a refused or pending login) is no entry of its own: an
    // unauthenticated client must not grow /stats.
    ConnectionStats unnamed;
    auto& s = link->broker.stats().connections_opened > 0 ? snapshot.connections[link->name] : unnamed;
    add_link_figures(s, snapshot.counters, link->broker.stats());
    s.connected = s.connected || link->open();
    if (link->open()) snapshot.broker_nodes[link->name] = link->broker.node();
    s.publishes += link->publishes;
    s.queue_size += link->in_flight;
  }
}

void Publisher::close_all() {
  for (auto& [key, link] : links_) link->broker.close();
}

void Publisher::sweep_idle() {
  const auto idle = std::chrono::duration<double>(options_.idle_connection_timeout);
  const auto now = Clock::now();
  std::erase_if(links_, [&](auto& entry) {
    LoginLink& link = *entry.second;
    close_settled_retirees(link);
    if (link.in_flight > 0) return false;
    if (link.open() && now - link.last_used > idle) {
      log_info("closing idle broker connection for {}", link.name);
      link.broker.close();
      return false;
    }
    // A refused or long-closed link is forgotten (its figures kept), so that credentials tried
    // once, or never again, hold no memory; so is one that never got a connection
    // (broker.max_connections was reached).
    const bool never = !link.broker.connection();
    if (link.broker.state() != amqp::ConnectionState::closed ||
        !(never || link.refused || now - link.last_used > idle))
      return false;
    retire(link);  // the link lets its connection go on a later loop pass
    return true;
  });
}

void Publisher::retire(const LoginLink& link) {
  ConnectionStats figures;
  add_link_figures(figures, retired_counters_, link.broker.stats());
  figures.publishes = link.publishes;
  // Totals are in retired_counters_ for good; by name only what the broker once accepted, and
  // at most broker.max_connections names (the first in order makes room).
  if (link.broker.stats().connections_opened == 0) return;
  auto it = retired_.find(link.name);
  if (it == retired_.end()) {
    if (retired_.size() >= static_cast<size_t>(options_.max_connections) && !retired_.empty())
      retired_.erase(retired_.begin());
    it = retired_.emplace(link.name, ConnectionStats{}).first;
  }
  it->second.merge(figures);
}

void Publisher::on_sweep(evutil_socket_t, short, void* arg) { static_cast<Publisher*>(arg)->sweep_idle(); }

}  // namespace warren::core
