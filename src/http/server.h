// The HTTP side of a worker: evhttp on the inherited listening socket, a route table, and the
// one reply path that keeps counters, processing time and the in-flight count right.
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
#include "http/client_deadline.h"

struct evconnlistener;

namespace warren {

struct HttpError;

class HttpServer : NonCopyable {
 public:
  using Handler = std::function<void(evhttp_request* req, const std::string& path)>;

  HttpServer(Context& context, const HttpConfig& config);

  [[nodiscard]] bool accept_on(int listen_fd);
  // Exact paths first, then the longest matching prefix, then the fallback.
  void route(std::string path, Handler handler);
  void route_prefix(std::string prefix, Handler handler);
  void route_fallback(Handler handler);

  // Stop accepting; every later response carries `Connection: close`. `on_idle` runs (from the
  // loop) once no request is in flight.
  void drain(std::function<void()> on_idle);
  size_t in_flight() const { return started_.size(); }
  size_t max_body() const { return config_.max_body; }

  // A long response (Server-Sent Events): start, chunks, end. The request stays in flight,
  // and counted, until stream_end. Stopping the worker ends every stream through `on_drain`.
  void stream_start(evhttp_request* req, int code, std::string_view content_type);
  void stream_chunk(evhttp_request* req, std::string_view data);
  void stream_end(evhttp_request* req);
  // The bookkeeping of stream_end without a word to the client: its connection is being cut.
  void stream_abandon(evhttp_request* req);
  // Bytes written to the client's connection and not yet taken by its socket.
  static size_t pending_output(evhttp_request* req);
  // `cb` runs once when the client's connection closes (an empty one cancels it). evhttp has
  // one close callback per connection, and the request deadlines need it: share it through here.
  void on_connection_close(evhttp_request* req, std::function<void()> cb) {
    deadlines_.on_close(req, std::move(cb));
  }
  void on_drain(std::function<void()> cb) { drain_hooks_.push_back(std::move(cb)); }

  // Runs `fn`, which answers `req` now or later. An exception from it never reaches libevent:
  // it is logged, and `req`, if still unanswered, is answered 500. Every evhttp callback and
  // every completion that answers a request (a publish confirm, an RPC reply) goes through it.
  void guard(evhttp_request* req, const std::function<void()>& fn);

  // Every response goes through these two.
  void reply(evhttp_request* req, int code, std::string_view content_type, std::string_view body);
  void reply_error(evhttp_request* req, int code, std::string_view error, std::string_view detail);
  void reply_error(evhttp_request* req, const HttpError& e);
  void reply_json(evhttp_request* req, int code, const nlohmann::json& body);

 private:
  static void on_request(evhttp_request* req, void* arg);
  // accept() failing with EMFILE and the like: pause accepting (the listening socket stays
  // readable, so carrying on would be a busy loop) and try again on a timer.
  static void on_accept_error(evconnlistener* listener, void* arg);
  static void on_accept_resume(evutil_socket_t, short, void* arg);
  void dispatch(evhttp_request* req);
  // What makes the request's framing ambiguous (RFC 9112 section 6.3), or "" when nothing.
  static std::string framing_error(evhttp_request* req);
  void count_response(int code);
  // Request line and header lines as received (CRLFs included), for http.max_header_size.
  static size_t header_block_size(evhttp_request* req);
  // Bookkeeping common to every answer: counters, processing time, in-flight table.
  [[nodiscard]] bool finish(evhttp_request* req, int code);
  void check_idle();
  static void on_idle(evutil_socket_t, short, void* arg);

  Loop& loop_;
  const HttpConfig& config_;
  Counters& counters_;
  ClientDeadlines deadlines_;  // before http_: freeing the evhttp closes connections through it
  EvhttpPtr http_;
  evhttp_bound_socket* bound_ = nullptr;
  std::unordered_map<std::string, Handler> exact_;
  std::vector<std::pair<std::string, Handler>> prefixes_;
  Handler fallback_;
  std::unordered_map<evhttp_request*, std::chrono::steady_clock::time_point> started_;
  std::unordered_map<evhttp_request*, int> streaming_;  // status of each open stream
  bool draining_ = false;
  std::function<void()> on_idle_;
  std::vector<std::function<void()>> drain_hooks_;
  EventPtr idle_event_;
  EventPtr accept_resume_;
};

// A route's handler object, shared by the route table: it outlives any one request, and the
// callbacks of requests it started may still point at it.
template <typename H>
HttpServer::Handler shared_handler(std::shared_ptr<H> handler) {
  return [handler](evhttp_request* req, const std::string& path) { (*handler)(req, path); };
}

// The reason phrase of a status on the list (src/http/status_codes.h), else "Unknown".
std::string_view http_reason(int code);

}  // namespace warren
