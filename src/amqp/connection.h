// One AMQP 0-9-1 connection driven on a worker's loop: non-blocking connect (plain or
// TLS) through a bufferevent, the handshake as a state machine, heartbeats on timers,
// connection.blocked, and the demultiplexing of frames to channels. librabbitmq is only the
// codec (codec.h): nothing here ever waits on the broker.
//
// A Connection lives once: start() → open → closed. Reconnecting is amqp::Link's (link.h), the
// only maker of Connections in the daemon.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "amqp/codec.h"
#include "amqp/types.h"
#include "handles.h"
#include "loop.h"

namespace warren::amqp {

class Channel;

enum class ConnectionState {
  idle,        // not started
  connecting,  // TCP, TLS, handshake
  open,
  blocked,     // open, but the broker sent connection.blocked: publishes wait
  closing,     // connection.close sent, waiting for close-ok
  closed,      // final; close_reason() says why
};
const char* state_name(ConnectionState s);

using Clock = Loop::Clock;

class Connection : NonCopyable {
 public:
  // Called on every change: open, blocked, open again (unblocked), closed (with why).
  using StateCallback = std::function<void(ConnectionState, const Result&)>;

  // stats may be null; else it must outlive the connection (a worker's totals).
  Connection(Loop& loop, ConnectionOptions options, Stats* stats = nullptr);
  // Figures shared with an owner (amqp::Link): they live as long as the owner or the connection,
  // so a connection let go, which closes and is freed a loop pass later, never counts into
  // freed memory.
  Connection(Loop& loop, ConnectionOptions options, std::shared_ptr<Stats> stats);
  // Pending callbacks are still called, with connection_lost, from the loop (deferred).
  ~Connection();

  void set_state_callback(StateCallback cb) { on_state_ = std::move(cb); }
  // Starts connecting to hosts in turn. The outcome comes through the state callback.
  void start();
  // Graceful close (connection.close, bounded by close_timeout); pending work fails with
  // connection_lost. The state callback reports closed.
  void close();

  ConnectionState state() const { return state_; }
  bool is_open() const { return state_ == ConnectionState::open || state_ == ConnectionState::blocked; }
  bool blocked() const { return state_ == ConnectionState::blocked; }
  // Why the connection closed: refused (401), connection_lost with code/text, ok after close().
  const Result& close_reason() const { return close_reason_; }
  // Bytes written but not yet taken by the kernel; bound in-flight work with it.
  size_t write_buffer_size() const;
  bool busy() const { return write_buffer_size() > options_.high_water; }

  // A channel on this connection. May be called while connecting: the channel opens with the
  // connection. confirms: put the channel in publisher-confirm mode (needed for publish()).
  // When the last copy of the handle goes, the channel is closed on the wire (channel.close);
  // its number is given out again only after the broker's close-ok.
  std::shared_ptr<Channel> open_channel(bool confirms = true);
  // Channels holding a number, open or closing; open_channel fails at channel_max().
  size_t channel_count() const { return channels_.size(); }
  // The negotiated channel_max (before the handshake: the one warren asks for).
  int channel_max() const { return channel_max_ > 0 ? channel_max_ : options_.channel_max; }

  Loop& loop() const { return loop_; }
  const ConnectionOptions& options() const { return options_; }
  size_t frame_max() const { return frame_max_; }
  int heartbeat() const { return heartbeat_; }
  // "host:port" of the broker connected to (or being tried).
  std::string peer() const;
  // Its index in options.hosts (the last one tried once all failed).
  size_t host_position() const {
    const size_t n = options_.hosts.size();
    return n == 0 ? 0 : (options_.first_host + std::min(hosts_tried_, n - 1)) % n;
  }
  Stats& stats() { return *stats_; }

 private:
  friend class Channel;
  enum class Phase { idle, tcp, start, tune, open_ok, open, closing, closed };

  // C trampolines
  static void on_read(bufferevent* bev, void* arg);
  static void on_event(bufferevent* bev, short what, void* arg);
  static void on_connect_timeout(evutil_socket_t, short, void* arg);
  static void on_heartbeat_timer(evutil_socket_t, short, void* arg);
  static void on_close_timeout(evutil_socket_t, short, void* arg);

  void try_host();
  void host_failed(const std::string& why);
  [[nodiscard]] bool make_bufferevent(const BrokerHost& host, std::string* why);
  void handle_input();
  void handle_frame(const amqp_frame_t& frame);
  void handle_connection_method(const amqp_method_t& m);
  void handle_start(const amqp_connection_start_t& start);
  void handle_broker_close(const amqp_connection_close_t& close);
  void handle_blocked(const amqp_connection_blocked_t& blocked);
  void handle_unblocked();
  void send_start_ok(const amqp_connection_start_t& start);
  void send_tune_ok(const amqp_connection_tune_t& tune);
  void became_open();
  // Everything fails with `why`; state closed; the state callback runs. Idempotent.
  void teardown(Result why);
  // Protocol violation: connection.close with `code`, then teardown.
  void protocol_error(int code, const std::string& text);
  void set_state(ConnectionState s, const Result& why);

  // used by Channel
  void send(std::string_view bytes);
  // Large frames (a big body) are handed to the output buffer without another copy.
  void send(std::string&& bytes);
  void send_method(uint16_t channel, amqp_method_number_t id, void* decoded);
  void channel_gone(uint16_t id);
  bool can_send() const { return phase_ == Phase::open; }

  Loop& loop_;
  ConnectionOptions options_;
  Stats own_stats_;
  std::shared_ptr<Stats> shared_stats_;
  Stats* stats_;
  StateCallback on_state_;
  ConnectionState state_ = ConnectionState::idle;
  Phase phase_ = Phase::idle;
  Result close_reason_;
  size_t hosts_tried_ = 0;  // the current host is hosts[(first_host + hosts_tried_) % size]
  std::string last_host_error_;

  BuffereventPtr bev_;
  SslCtxPtr ssl_ctx_;  // a reference to the loop's context for these options
  EventPtr connect_timer_, heartbeat_timer_, close_timer_;
  Decoder decoder_;
  size_t frame_max_ = kInitialFrameMax;
  int channel_max_ = 0;
  int heartbeat_ = 0;
  Clock::time_point last_send_, last_recv_;

  std::map<uint16_t, std::shared_ptr<Channel>> channels_;
  // Lets deferred work and callbacks notice the connection was destroyed meanwhile.
  LifeToken life_;
};

}  // namespace warren::amqp
