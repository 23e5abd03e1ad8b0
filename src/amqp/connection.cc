#include "amqp/connection.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "amqp/channel.h"
#include "buildinfo.h"
#include "log.h"

namespace warren::amqp {
namespace {

constexpr int kReplySuccess = 200;
constexpr int kAccessRefused = 403;

}  // namespace

const char* state_name(ConnectionState s) {
  switch (s) {
    case ConnectionState::idle: return "idle";
    case ConnectionState::connecting: return "connecting";
    case ConnectionState::open: return "open";
    case ConnectionState::blocked: return "blocked";
    case ConnectionState::closing: return "closing";
    case ConnectionState::closed: return "closed";
  }
  return "?";
}

Connection::Connection(Loop& loop, ConnectionOptions options, Stats* stats)
    : loop_(loop), options_(std::move(options)), stats_(stats ? stats : &own_stats_) {
  connect_timer_.reset(evtimer_new(loop_.base(), on_connect_timeout, this));
  heartbeat_timer_.reset(event_new(loop_.base(), -1, EV_PERSIST, on_heartbeat_timer, this));
  close_timer_.reset(evtimer_new(loop_.base(), on_close_timeout, this));
  if (!connect_timer_ || !heartbeat_timer_ || !close_timer_) abort();  // no memory
}

Connection::Connection(Loop& loop, ConnectionOptions options, std::shared_ptr<Stats> stats)
    : Connection(loop, std::move(options), stats.get()) {
  shared_stats_ = std::move(stats);
}

Connection::~Connection() {
  life_.end();
  // Pending work still hears back (deferred): nothing registered is silently dropped.
  auto channels = std::move(channels_);
  for (auto& [id, ch] : channels) ch->detach();
  bev_.reset();  // a pending lookup of the loop's resolver is cancelled with it
}

std::string Connection::peer() const {
  if (options_.hosts.empty()) return "(no host)";
  const auto& h = options_.hosts[host_position()];
  return fmt::format("{}:{}", h.host, h.port);
}

size_t Connection::write_buffer_size() const {
  return bev_ ? evbuffer_get_length(bufferevent_get_output(bev_.get())) : 0;
}

void Connection::on_read(bufferevent*, void* arg) { static_cast<Connection*>(arg)->handle_input(); }

void Connection::on_heartbeat_timer(evutil_socket_t, short, void* arg) {
  auto* c = static_cast<Connection*>(arg);
  if (c->heartbeat_ <= 0 || !c->is_open()) return;
  if (Loop::seconds_since(c->last_recv_) > 2.0 * c->heartbeat_) {
    ++c->stats_->heartbeat_timeouts;
    c->teardown({Outcome::connection_lost, 0,
                 fmt::format("no heartbeat from {} for {}s", c->peer(), 2 * c->heartbeat_)});
    return;
  }
  // the timer ticks every heartbeat/2: send when nothing else went out since the last tick
  if (Loop::seconds_since(c->last_send_) >= c->heartbeat_ / 2.0 * 0.9) {
    std::string frame;
    encode_heartbeat(frame);
    c->send(frame);
  }
}

void Connection::on_close_timeout(evutil_socket_t, short, void* arg) {
  auto* c = static_cast<Connection*>(arg);
  if (c->phase_ == Phase::closing) {
    c->teardown(c->close_reason_);
  } else {
    c->bev_.reset();  // the lingering close-ok never drained
  }
}

void Connection::send(std::string_view bytes) {
  if (!bev_ || bytes.empty()) return;
  if (evbuffer_add(bufferevent_get_output(bev_.get()), bytes.data(), bytes.size()) != 0)
    abort();  // no memory
  stats_->bytes_sent += bytes.size();
  last_send_ = Clock::now();
}

void Connection::send(std::string&& bytes) {
  constexpr size_t kZeroCopyFrom = 64 * 1024;  // below this a copy is cheaper than a chain
  if (bytes.size() < kZeroCopyFrom || !bev_) return send(std::string_view(bytes));
  auto* owned = new std::string(std::move(bytes));
  auto release = [](const void*, size_t, void* arg) { delete static_cast<std::string*>(arg); };
  if (evbuffer_add_reference(bufferevent_get_output(bev_.get()), owned->data(), owned->size(),
                             release, owned) != 0)
    abort();  // no memory
  stats_->bytes_sent += owned->size();
  last_send_ = Clock::now();
}

void Connection::send_method(uint16_t channel, amqp_method_number_t id, void* decoded) {
  std::string out, error;
  if (!encode_method(out, channel, id, decoded, frame_max_, &error)) {
    log_error("amqp: {}", error);
    return;
  }
  send(out);
}

void Connection::handle_input() {
  const auto guard = life_.watch();
  last_recv_ = Clock::now();
  // bounded: every pass consumes bytes from a buffer that only the loop refills
  while (bev_) {
    evbuffer* in = bufferevent_get_input(bev_.get());
    evbuffer_iovec v;
    if (phase_ == Phase::start && evbuffer_get_length(in) >= 4 &&
        std::memcmp(evbuffer_pullup(in, 4), "AMQP", 4) == 0) {
      // the broker answered our protocol header with its own: it wants another version
      host_failed(fmt::format("{} does not speak AMQP 0-9-1", peer()));
      return;
    }
    if (evbuffer_get_length(in) == 0 || evbuffer_peek(in, -1, nullptr, &v, 1) < 1) break;
    amqp_frame_t frame;
    int n = decoder_.feed(v.iov_base, v.iov_len, &frame);
    if (n < 0) {
      protocol_error(AMQP_FRAME_ERROR, fmt::format("bad frame from the broker: {}", amqp_error_string2(n)));
      return;
    }
    evbuffer_drain(in, static_cast<size_t>(n));
    stats_->bytes_received += static_cast<size_t>(n);
    if (frame.frame_type == 0) continue;
    uint16_t channel = frame.channel;
    handle_frame(frame);
    if (guard.expired()) return;
    decoder_.release(channel);
  }
}

void Connection::handle_frame(const amqp_frame_t& frame) {
  if (frame.frame_type == AMQP_FRAME_HEARTBEAT) return;
  if (frame.channel == 0) {
    if (frame.frame_type != AMQP_FRAME_METHOD) {
      protocol_error(AMQP_UNEXPECTED_FRAME, "content frame on channel 0");
      return;
    }
    handle_connection_method(frame.payload.method);
    return;
  }
  if (phase_ != Phase::open) return;  // closing: the spec says discard
  auto it = channels_.find(frame.channel);
  if (it == channels_.end()) return;  // a channel we already let go of
  auto ch = it->second;               // keeps it alive through its callbacks
  std::string error;
  if (!ch->handle_frame(frame, &error)) protocol_error(AMQP_UNEXPECTED_FRAME, error);
}

void Connection::handle_connection_method(const amqp_method_t& m) {
  switch (m.id) {
    case AMQP_CONNECTION_START_METHOD:
      if (phase_ != Phase::start) break;
      handle_start(*static_cast<amqp_connection_start_t*>(m.decoded));
      return;
    case AMQP_CONNECTION_TUNE_METHOD:
      if (phase_ != Phase::tune) break;
      send_tune_ok(*static_cast<amqp_connection_tune_t*>(m.decoded));
      return;
    case AMQP_CONNECTION_OPEN_OK_METHOD:
      if (phase_ != Phase::open_ok) break;
      became_open();
      return;
    case AMQP_CONNECTION_CLOSE_METHOD:
      handle_broker_close(*static_cast<amqp_connection_close_t*>(m.decoded));
      return;
    case AMQP_CONNECTION_CLOSE_OK_METHOD:
      if (phase_ == Phase::closing) teardown(close_reason_);
      return;
    case AMQP_CONNECTION_BLOCKED_METHOD:
      if (state_ == ConnectionState::open)
        handle_blocked(*static_cast<amqp_connection_blocked_t*>(m.decoded));
      return;
    case AMQP_CONNECTION_UNBLOCKED_METHOD:
      if (state_ == ConnectionState::blocked) handle_unblocked();
      return;
    default:
      log_debug("amqp: ignoring {} from {}", method_name(m.id), peer());
      return;
  }
  protocol_error(AMQP_COMMAND_INVALID, fmt::format("unexpected {}", method_name(m.id)));
}

void Connection::handle_start(const amqp_connection_start_t& start) {
  if (amqp_string(start.mechanisms).find("PLAIN") == std::string::npos) {
    host_failed(fmt::format("{} does not offer PLAIN authentication", peer()));
    return;
  }
  send_start_ok(start);
  phase_ = Phase::tune;
}

void Connection::handle_broker_close(const amqp_connection_close_t& close) {
  amqp_connection_close_ok_t ok{};
  send_method(0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
  Result why{Outcome::connection_lost, close.reply_code,
             fmt::format("broker closed the connection: {}", amqp_string(close.reply_text))};
  if (phase_ == Phase::closing) {
    why = close_reason_;
  } else if (phase_ != Phase::open && close.reply_code == kAccessRefused) {
    // authentication_failure_close: a bad login is a 403 during the handshake
    why.outcome = Outcome::refused;
    why.text = amqp_string(close.reply_text);
    ++stats_->logins_refused;
  }
  if (why.outcome != Outcome::refused && phase_ != Phase::closing)
    log_warning("amqp: {}: {} {}", peer(), why.code, why.text);
  teardown(why);
}

void Connection::handle_blocked(const amqp_connection_blocked_t& blocked) {
  log_warning("amqp: {} blocked publishers: {}", peer(), amqp_string(blocked.reason));
  set_state(ConnectionState::blocked, {Outcome::ok, 0, amqp_string(blocked.reason)});
}

void Connection::handle_unblocked() {
  const auto guard = life_.watch();
  set_state(ConnectionState::open, {});
  if (guard.expired()) return;
  std::vector<std::shared_ptr<Channel>> chans;
  for (auto& [id, ch] : channels_) chans.push_back(ch);
  for (auto& ch : chans) ch->connection_unblocked();
}

void Connection::send_start_ok(const amqp_connection_start_t&) {
  nlohmann::json properties = {
      {"product", "warren"},
      {"version", PACKAGE_VERSION},
      {"platform", "C++/libevent"},
      {"capabilities",
       {{"publisher_confirms", true},
        {"consumer_cancel_notify", true},
        {"connection.blocked", true},
        {"basic.nack", true},
        {"authentication_failure_close", true},
        {"exchange_exchange_bindings", true}}},
  };
  if (!options_.connection_name.empty()) properties["connection_name"] = options_.connection_name;
  auto pool = make_amqp_pool();
  amqp_connection_start_ok_t ok{};
  std::string error;
  if (!json_to_table(properties, pool.get(), &ok.client_properties, &error)) abort();  // constant
  std::string response;
  response.push_back('\0');
  response += options_.username;
  response.push_back('\0');
  response += options_.password;
  ok.mechanism = amqp_cstring_bytes("PLAIN");
  ok.response = amqp_view(response);
  ok.locale = amqp_cstring_bytes("en_US");
  send_method(0, AMQP_CONNECTION_START_OK_METHOD, &ok);
}

void Connection::send_tune_ok(const amqp_connection_tune_t& tune) {
  int channel_max = options_.channel_max;
  if (tune.channel_max != 0) channel_max = std::min<int>(channel_max, tune.channel_max);
  size_t frame_max = options_.frame_max;
  if (tune.frame_max != 0) frame_max = std::min<size_t>(frame_max, tune.frame_max);
  frame_max = std::max<size_t>(frame_max, AMQP_FRAME_MIN_SIZE);
  int heartbeat = options_.heartbeat;
  if (heartbeat > 0 && tune.heartbeat > 0) heartbeat = std::min<int>(heartbeat, tune.heartbeat);
  amqp_connection_tune_ok_t ok{static_cast<uint16_t>(channel_max), static_cast<uint32_t>(frame_max),
                               static_cast<uint16_t>(std::max(heartbeat, 0))};
  send_method(0, AMQP_CONNECTION_TUNE_OK_METHOD, &ok);
  if (!decoder_.tune(channel_max, frame_max)) {
    protocol_error(AMQP_INTERNAL_ERROR, "cannot apply the negotiated frame size");
    return;
  }
  frame_max_ = frame_max;
  channel_max_ = channel_max;
  heartbeat_ = heartbeat;
  amqp_connection_open_t open{};
  open.virtual_host = amqp_view(options_.vhost);
  open.capabilities = amqp_empty_bytes;
  send_method(0, AMQP_CONNECTION_OPEN_METHOD, &open);
  phase_ = Phase::open_ok;
}

void Connection::became_open() {
  phase_ = Phase::open;
  evtimer_del(connect_timer_.get());
  ++stats_->connections_opened;
  last_recv_ = last_send_ = Clock::now();
  if (heartbeat_ > 0) {
    timeval tv = to_timeval(heartbeat_ / 2.0);
    event_add(heartbeat_timer_.get(), &tv);
  }
  log_info("amqp: connected to {} vhost {} as {}", peer(), options_.vhost, options_.username);
  state_ = ConnectionState::open;  // channels check it before sending what waited
  std::vector<std::shared_ptr<Channel>> chans;
  for (auto& [id, ch] : channels_) chans.push_back(ch);
  for (auto& ch : chans) ch->connection_open();
  set_state(ConnectionState::open, {});
}

void Connection::close() {
  loop_.defer([this, guard = life_.watch()] {
    if (guard.expired()) return;
    switch (phase_) {
      case Phase::open: {
        close_reason_ = {Outcome::ok, kReplySuccess, "closed by warren"};
        amqp_connection_close_t close{};
        close.reply_code = kReplySuccess;
        close.reply_text = amqp_cstring_bytes("closing");
        send_method(0, AMQP_CONNECTION_CLOSE_METHOD, &close);
        phase_ = Phase::closing;
        timeval tv = to_timeval(options_.close_timeout);
        evtimer_add(close_timer_.get(), &tv);
        set_state(ConnectionState::closing, close_reason_);
        return;
      }
      case Phase::closing:
      case Phase::closed: return;
      default: teardown({Outcome::ok, kReplySuccess, "closed by warren"});
    }
  });
}

void Connection::protocol_error(int code, const std::string& text) {
  log_error("amqp: protocol error with {}: {}", peer(), text);
  amqp_connection_close_t close{};
  close.reply_code = static_cast<uint16_t>(code);
  close.reply_text = amqp_view(text.substr(0, 255));
  send_method(0, AMQP_CONNECTION_CLOSE_METHOD, &close);
  teardown({Outcome::connection_lost, code, "protocol error: " + text});
}

void Connection::teardown(Result why) {
  if (phase_ == Phase::closed) return;
  bool was_open = phase_ == Phase::open || phase_ == Phase::closing;
  phase_ = Phase::closed;
  close_reason_ = why;
  evtimer_del(connect_timer_.get());
  event_del(heartbeat_timer_.get());
  evtimer_del(close_timer_.get());
  if (was_open) ++stats_->connections_closed;
  if (bev_ && evbuffer_get_length(bufferevent_get_output(bev_.get())) > 0) {
    // let a last close/close-ok drain, bounded by close_timeout; reads are over
    bufferevent_disable(bev_.get(), EV_READ);
    bufferevent_setcb(
        bev_.get(), nullptr,
        [](bufferevent*, void* arg) { static_cast<Connection*>(arg)->bev_.reset(); }, on_event,
        this);
    timeval tv = to_timeval(std::min(options_.close_timeout, 1.0));
    evtimer_add(close_timer_.get(), &tv);
  } else {
    bev_.reset();
  }
  Result pending = why.ok() ? Result{Outcome::connection_lost, 0, "connection closed"} : why;
  if (pending.outcome == Outcome::refused) pending.text = "login refused: " + pending.text;
  const auto guard = life_.watch();
  auto channels = channels_;
  for (auto& [id, ch] : channels)
    if (ch->state() != Channel::State::closed) ++stats_->channels_closed;
  for (auto& [id, ch] : channels) {
    ch->connection_lost(pending);
    if (guard.expired()) return;
  }
  set_state(ConnectionState::closed, why);
}

void Connection::set_state(ConnectionState s, const Result& why) {
  state_ = s;
  if (auto cb = on_state_) cb(s, why);  // a copy: the callback may replace itself
}

std::shared_ptr<Channel> Connection::open_channel(bool confirms) {
  // The lowest free number: librabbitmq keeps a decoding pool per channel number for the life of
  // the connection, so numbers handed out round-robin would cost a pool each, up to channel_max
  // (about 68 KB a number). A number is free again only after the broker's close-ok.
  const int limit = channel_max();
  uint16_t id = 0;
  if (phase_ != Phase::closing && phase_ != Phase::closed) {
    int candidate = 1;
    for (auto it = channels_.begin(); it != channels_.end() && it->first == candidate; ++it)
      ++candidate;
    if (candidate <= limit) id = static_cast<uint16_t>(candidate);
  }
  auto ch = std::make_shared<Channel>(this, id, confirms);
  if (id == 0) {
    ch->connection_lost(phase_ == Phase::closing || phase_ == Phase::closed
                            ? Result{Outcome::connection_lost, 0, "connection closed"}
                            : Result{Outcome::channel_error, 0, "no free channel id"});
    ch->detach();
    return ch;
  }
  channels_[id] = ch;
  ++stats_->channels_opened;
  if (phase_ == Phase::open) ch->connection_open();
  // The owner's handle shares no count with ours: a pool that lets the channel go closes it.
  return std::shared_ptr<Channel>(ch.get(), [ch](Channel*) { ch->close(); });
}

void Connection::channel_gone(uint16_t id) {
  auto it = channels_.find(id);
  if (it == channels_.end()) return;
  it->second->detach();
  channels_.erase(it);
  ++stats_->channels_closed;
}

}  // namespace warren::amqp
