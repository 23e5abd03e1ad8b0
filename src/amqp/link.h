// One broker link: the connection an owner (a publisher's login, the RPC reply queue, a
// forwarder, an event stream) keeps to the broker, across as many amqp::Connection lives as it
// takes. It is the only maker of Connections, so connecting, the backoff between failed
// attempts, the order the hosts are tried in, the logs and the disposal of a dead connection
// are written once (twemproxy's server_connect / server_failure).
//
// What to do after a loss is the owner's: the state callback reports every change of the
// current connection, and the owner calls connect() (at once, or after the backoff) or
// reconnect() (always after a pause). A link never calls back into a destroyed owner, nor
// reports the states of a connection it has let go.
#pragma once

#include <memory>
#include <string>

#include "amqp/connection.h"
#include "amqp/types.h"
#include "handles.h"

namespace warren::amqp {

class Link : NonCopyable {
 public:
  using StateCallback = Connection::StateCallback;

  // `name` says whose link it is in logs ("forwarder orders", "/:alice").
  Link(Loop& loop, ConnectionOptions options, std::string name);
  // The connection is closed (gracefully, if open) and freed on a later loop pass; its
  // pending callbacks run then with connection_lost.
  ~Link();

  // Every state of the current connection; called last, so the owner may destroy the link.
  void set_state_callback(StateCallback cb) { on_state_ = std::move(cb); }
  // A new connection, started at once if the last attempt opened (or there was none), else
  // after the backoff's next delay; the previous one is let go. A no-op while a reconnect
  // waits.
  void connect();
  // Closes the current connection (the owner hears closing and closed) and connects again
  // after the backoff's next delay, even if the connection was fine: for an owner whose
  // channel failed on an open connection, which must not retry in a tight loop. The pauses
  // keep growing across the connections that open until the owner calls ready().
  void reconnect();
  bool reconnecting() const;
  // The owner's set-up on the current connection worked (its queues declared, its consumer
  // started): after a reconnect(), an open connection is not a success until then.
  void ready();
  // Graceful close of the current connection; no reconnect until connect().
  void close();

  // closed when there is no connection yet.
  ConnectionState state() const;
  bool is_open() const { return conn_ && conn_->is_open(); }
  // The current connection: null before the first connect().
  Connection* connection() { return conn_.get(); }
  const Connection* connection() const { return conn_.get(); }
  // A channel on the current connection (which must exist): see Connection::open_channel.
  std::shared_ptr<Channel> open_channel(bool confirms);
  const std::string& name() const { return name_; }
  // "host:port" of the node the link is connected to; "" while it is not open.
  std::string node() const { return is_open() ? conn_->peer() : ""; }
  const ConnectionOptions& options() const { return options_; }
  // The figures of every connection this link has had.
  const Stats& stats() const { return *stats_; }

 private:
  static void on_reconnect_timer(evutil_socket_t, short, void* arg);
  void let_go();  // of the current connection
  void make_connection();
  void wait_then_connect();
  void start_now();
  void on_connection_state(ConnectionState state, const Result& why);

  Loop& loop_;
  ConnectionOptions options_;
  std::string name_;
  std::shared_ptr<Stats> stats_ = std::make_shared<Stats>();  // shared with its connections
  std::unique_ptr<Connection> conn_;
  Backoff backoff_;
  EventPtr reconnect_timer_;
  bool reconnect_when_closed_ = false;  // reconnect() closed the connection; the wait follows
  bool on_trial_ = false;  // since reconnect(): an open resets the backoff only with ready()
  StateCallback on_state_;
};

// True when a connection.open was refused because the vhost does not exist: RabbitMQ says 530
// NOT_ALLOWED both for that and for a user without access to it, and only the text differs.
bool vhost_not_found(const Result& r);

}  // namespace warren::amqp
