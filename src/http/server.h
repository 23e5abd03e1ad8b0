// The HTTP side of a worker: its own HTTP/1.1 connections (http/wire_connection.h) on the
// inherited listening socket, a route table, and the one reply path that keeps counters,
// processing time and the in-flight count right.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config.h"
#include "context.h"
#include "handles.h"
#include "http/exchange.h"

struct evconnlistener;
struct sockaddr;

namespace warren {
namespace http {
struct WireReply;
}

struct HttpError;

class HttpServer : NonCopyable {
 public:
  using Handler = std::function<void(Exchange* req, const std::string& path)>;

  HttpServer(Context& context, const HttpConfig& config);
  ~HttpServer();  // where ServerConnection is complete

  [[nodiscard]] bool accept_on(int listen_fd);
  // Exact paths first, then the longest matching prefix, then the fallback.
  void route(std::string path, Handler handler);
  void route_prefix(std::string prefix, Handler handler);
  void route_fallback(Handler handler);

  // Stop accepting; each connection answers the requests it has read (or, with none, the next
  // one), the last answer carrying `Connection: close`, and closes; connections idle a second
  // later are closed. `on_idle` runs (from the loop) once no request is in flight and no
  // connection is left.
  void drain(std::function<void()> on_idle);
  size_t in_flight() const { return started_.size(); }

  // A long response (Server-Sent Events): start, chunks, end. The request stays in flight,
  // and counted, until stream_end. Stopping the worker ends every stream through `on_drain`.
  void stream_start(Exchange* req, int code, std::string_view content_type);
  void stream_chunk(Exchange* req, std::string_view data);
  void stream_end(Exchange* req);
  // Ends the stream by cutting its client's connection, without a word: a client too slow.
  void stream_cut(Exchange* req);
  // Nothing the client pipelined behind `req` is read before its answer is over: for a route
  // whose answer may be a stream (WireConnection::answer_alone).
  static void answer_alone(Exchange* req);
  // Bytes written to the client's connection and not yet taken by its socket.
  static size_t pending_output(Exchange* req);
  // The answers and streams all this worker's clients have not taken fill http.max_output_buffer.
  bool output_buffer_full() const { return unsent_.over(); }
  // `cb` runs once when the client's connection closes (an empty one cancels it); false, and
  // `cb` dropped, when it is closed already.
  static bool on_connection_close(Exchange* req, std::function<void()> cb);
  void on_drain(std::function<void()> cb) { drain_hooks_.push_back(std::move(cb)); }

  // Runs `fn`, which answers `req` now or later. An exception from it never reaches libevent:
  // it is logged, and `req`, if still unanswered, is answered 500. Every request and
  // every completion that answers a request (a publish confirm, an RPC reply) goes through it.
  void guard(Exchange* req, const std::function<void()>& fn);

  // Every response goes through these two.
  void reply(Exchange* req, int code, std::string_view content_type, std::string_view body);
  void reply_error(Exchange* req, int code, std::string_view error, std::string_view detail);
  void reply_error(Exchange* req, const HttpError& e);
  void reply_json(Exchange* req, int code, const nlohmann::json& body);

 private:
  friend class ServerConnection;

  static void on_accept(evconnlistener* listener, evutil_socket_t fd, sockaddr*, int, void* arg);
  // accept() failing with EMFILE and the like: pause accepting (the listening socket stays
  // readable, so carrying on would be a busy loop) and try again on a timer.
  static void on_accept_error(evconnlistener* listener, void* arg);
  static void on_accept_resume(evutil_socket_t, short, void* arg);
  // At http.max_connections: idle connections closed, else accepting paused.
  void make_room(const ServerConnection* fresh);
  // Accepting again, unless out of file descriptors (a timer tries again) or at
  // http.max_connections (a connection's close tries again).
  void resume_accepting();
  // A request read whole from `conn`: counted, routed.
  void dispatch(ServerConnection& conn, uint64_t seq, http::WireRequest&& request);
  void route_request(Exchange* req);
  void count_response(int code);
  void count_body_buffer_full();
  // The status line's company: the route's headers, and those some statuses always carry.
  static http::WireReply answer_head(Exchange* req, int code, std::string_view content_type);
  // Bookkeeping common to every answer: counters, processing time, in-flight table. The
  // exchange, taken out of the table, is the caller's to free.
  [[nodiscard]] std::unique_ptr<Exchange> finish(Exchange* req, int code);
  void closed(ServerConnection& conn);
  void check_idle();
  static void on_idle(evutil_socket_t, short, void* arg);
  static void on_drain_grace(evutil_socket_t, short, void* arg);

  Loop& loop_;
  const HttpConfig& config_;
  Counters& counters_;
  ListenerPtr listener_;
  // Outlive the connections, which count in them.
  http::ByteBudget bodies_;  // http.max_body_buffer
  http::ByteBudget unsent_;  // http.max_output_buffer
  // Destroyed in this order: the routes (a handler may still look at its requests), the
  // requests, then the connections (which call no hook as they go).
  std::unordered_map<ServerConnection*, std::unique_ptr<ServerConnection>> connections_;
  std::unordered_map<Exchange*, std::unique_ptr<Exchange>> started_;  // not yet answered
  std::unordered_map<std::string, Handler> exact_;
  std::vector<std::pair<std::string, Handler>> prefixes_;
  Handler fallback_;
  bool draining_ = false;
  std::function<void()> on_idle_;
  std::vector<std::function<void()>> drain_hooks_;
  EventPtr idle_event_;
  EventPtr drain_grace_;
  EventPtr accept_resume_;
};

// A route's handler object, shared by the route table: it outlives any one request, and the
// callbacks of requests it started may still point at it.
template <typename H>
HttpServer::Handler shared_handler(std::shared_ptr<H> handler) {
  return [handler](Exchange* req, const std::string& path) { (*handler)(req, path); };
}

}  // namespace warren
