#include "http/server.h"

#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "json.h"
#include "log.h"
#include "http/request.h"
#include "http/status_codes.h"
#include "http/wire_connection.h"

namespace warren {
namespace {

// A limit that keeps refusing logs its first time and every hundredth: a flood of refusals
// must not become a flood of lines.
bool worth_a_line(uint64_t times) { return times == 1 || times % 100 == 0; }

}  // namespace

// A client's connection as the server keeps it: the wire, the requests it has in handlers, and
// the close hook a route may lend (an event stream ends with its client).
class ServerConnection final : public http::WireConnection::Owner {
 public:
  ServerConnection(HttpServer& server, Fd fd)
      : server_(server),
        wire_(server.loop_, std::move(fd),
              http::WireLimits{server.config_.max_header_size, server.config_.max_body, &server.bodies_,
                               &server.unsent_},
              http::WireTimeouts{to_timeval(server.config_.request_timeout),
                                 to_timeval(server.config_.idle_connection_timeout)},
              *this) {
    if (!server.config_.keep_alive) wire_.close_after_owed();
  }

  http::WireConnection& wire() { return wire_; }
  void adopt(Exchange* req) {
    req->conn_ = this;
    open_.push_back(req);
  }
  void release(Exchange* req) {
    req->conn_ = nullptr;
    std::erase(open_, req);
  }
  void set_close_hook(std::function<void()> hook) { close_hook_ = std::move(hook); }

  void on_request(http::WireConnection&, uint64_t seq, http::WireRequest&& request) override {
    server_.dispatch(*this, seq, std::move(request));
  }
  void on_refused(http::WireConnection&, const http::RequestReader& reader) override {
    if (reader.refused_framing()) ++server_.counters_.bad_framing;
    if (reader.refused_status() == 431) ++server_.counters_.header_too_large;
    if (reader.refused_status() == 503) server_.count_body_buffer_full();
    server_.count_response(reader.refused_status());
  }
  void on_request_timeout(http::WireConnection&) override {
    Counters& c = server_.counters_;
    ++c.request_timeouts;
    ++c.response_408;
    if (worth_a_line(c.request_timeouts))
      log_warning("client sent no whole request within http.request_timeout ({} s): answered 408 "
                  "and disconnected ({} times so far)",
                  server_.config_.request_timeout, c.request_timeouts);
  }
  void on_output_full(http::WireConnection&) override {
    const auto n = ++server_.counters_.output_buffer_full;
    if (worth_a_line(n))
      log_warning("answers clients have not taken fill http.max_output_buffer ({} bytes): a "
                  "connection owed answers is not read from until they are out ({} times so far)",
                  server_.config_.max_output_buffer, n);
  }
  void on_closed(http::WireConnection&) override {
    for (Exchange* req : std::exchange(open_, {})) req->conn_ = nullptr;
    if (auto hook = std::exchange(close_hook_, nullptr)) hook();
    server_.closed(*this);
  }

 private:
  HttpServer& server_;
  http::WireConnection wire_;
  std::vector<Exchange*> open_;  // in handlers, or streaming
  std::function<void()> close_hook_;
};

HttpServer::HttpServer(Context& context, const HttpConfig& config)
    : loop_(context.loop), config_(config), counters_(context.counters),
      bodies_(config.max_body_buffer),
      unsent_(config.max_output_buffer) {
  idle_event_.reset(event_new(loop_.base(), -1, 0, on_idle, this));
  drain_grace_.reset(evtimer_new(loop_.base(), on_drain_grace, this));
}

HttpServer::~HttpServer() = default;

namespace {
constexpr timeval kAcceptRetry{0, 100000};  // 100 ms
// Draining, a connection answers what it owes, or the next request if it owes none, and
// closes. One that is still idle after this long is closed then: it might have been sending a
// request as we closed.
constexpr timeval kDrainGrace{1, 0};
}  // namespace

bool HttpServer::accept_on(int listen_fd) {
  // Our copy of the socket, closed with the listener; the master keeps its own.
  listener_.reset(evconnlistener_new(loop_.base(), on_accept, this,
                                     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, listen_fd));
  if (!listener_) return false;
  evconnlistener_set_error_cb(listener_.get(), on_accept_error);
  accept_resume_.reset(evtimer_new(loop_.base(), on_accept_resume, this));
  return true;
}

void HttpServer::on_accept(evconnlistener*, evutil_socket_t fd, sockaddr*, int, void* arg) {
  auto* self = static_cast<HttpServer*>(arg);
  // Answers are written whole, once each: nothing is gained by holding a small one back.
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  auto conn = std::make_unique<ServerConnection>(*self, Fd(fd));
  ServerConnection* fresh = conn.get();
  self->connections_.emplace(fresh, std::move(conn));
  if (self->connections_.size() >= self->config_.max_connections) self->make_room(fresh);
}

void HttpServer::make_room(const ServerConnection* fresh) {
  // As nginx's worker_connections: each connection may hold a read buffer, an answer and its
  // kernel buffers, so only their number bounds them. Idle ones go first, as nginx's reusable
  // connections do: clients that connect and send nothing kept every other out for
  // http.idle_connection_timeout. Else the next clients wait in the listen backlog.
  std::vector<ServerConnection*> idle;
  for (auto& [raw, conn] : connections_)
    if (raw != fresh && conn->wire().idle()) idle.push_back(raw);
  for (ServerConnection* conn : idle) conn->wire().close();
  if (connections_.size() < config_.max_connections) return;
  evconnlistener_disable(listener_.get());
  if (worth_a_line(++counters_.connections_full))
    log_warning("accept paused: http.max_connections ({}) client connections open, none idle; new "
                "ones wait in the listen backlog ({} times so far)",
                config_.max_connections, counters_.connections_full);
}

void HttpServer::on_accept_error(evconnlistener* listener, void* arg) {
  const int err = EVUTIL_SOCKET_ERROR();
  auto* self = static_cast<HttpServer*>(arg);
  if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM) {
    log_warning("accept failed: {}", evutil_socket_error_to_string(err));
    return;
  }
  evconnlistener_disable(listener);
  if (worth_a_line(++self->counters_.accept_paused))
    log_warning("accept paused: {} ({} times so far)", evutil_socket_error_to_string(err),
                self->counters_.accept_paused);
  evtimer_add(self->accept_resume_.get(), &kAcceptRetry);
}

void HttpServer::on_accept_resume(evutil_socket_t, short, void* arg) {
  static_cast<HttpServer*>(arg)->resume_accepting();
}

void HttpServer::resume_accepting() {
  if (!listener_ || connections_.size() >= config_.max_connections ||
      evtimer_pending(accept_resume_.get(), nullptr))
    return;
  evconnlistener_enable(listener_.get());
}

void HttpServer::closed(ServerConnection& conn) {
  auto it = connections_.find(&conn);
  if (it == connections_.end()) return;
  loop_.defer_delete(std::move(it->second));  // not inside its own callback
  connections_.erase(it);
  if (connections_.size() + 1 == config_.max_connections) resume_accepting();  // room again
  check_idle();
}

void HttpServer::route(std::string path, Handler handler) {
  exact_.emplace(std::move(path), std::move(handler));
}

void HttpServer::route_prefix(std::string prefix, Handler handler) {
  prefixes_.emplace_back(std::move(prefix), std::move(handler));
  std::sort(prefixes_.begin(), prefixes_.end(),
            [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
}

void HttpServer::route_fallback(Handler handler) { fallback_ = std::move(handler); }

void HttpServer::guard(Exchange* req, const std::function<void()>& fn) {
  std::string what;
  try {
    return fn();
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
    what = "an exception of unknown type";
  }
  log_error("request handler failed: {}", what);
  // Answered already, or a stream whose 200 went out: its owner ends it.
  auto it = started_.find(req);
  if (it == started_.end() || req->stream_status_) return;
  try {
    reply_error(req, 500, "internal error", what);
  } catch (...) {
    log_error("answering 500 failed too: the request is left to the connection's timeout");
  }
}

namespace {

// The path and query of a request-target, origin-form or absolute-form (RFC 9112 3.2), by
// the same http-parser that read the request.
bool split_target(const std::string& target, std::string& path, std::string& query) {
  http_parser_url url;
  http_parser_url_init(&url);
  if (http_parser_parse_url(target.data(), target.size(), 0, &url) != 0) return false;
  const auto field = [&](int f) {
    return (url.field_set & (1 << f)) ? target.substr(url.field_data[f].off, url.field_data[f].len)
                                      : std::string();
  };
  path = field(UF_PATH);
  query = field(UF_QUERY);
  return true;
}

}  // namespace

void HttpServer::dispatch(ServerConnection& conn, uint64_t seq, http::WireRequest&& request) {
  auto owned = std::make_unique<Exchange>();
  Exchange* req = owned.get();
  req->request_ = std::move(request);
  req->seq_ = seq;
  req->started_ = std::chrono::steady_clock::now();
  conn.adopt(req);
  started_.emplace(req, std::move(owned));
  const std::string_view method = req->method();
  if (method == "GET") ++counters_.method_get;
  else if (method == "POST") ++counters_.method_post;
  else ++counters_.method_other;
  guard(req, [this, req] { route_request(req); });
}

void HttpServer::route_request(Exchange* req) {
  if (!split_target(req->request_.target, req->path_, req->query_))
    return reply_error(req, 400, "bad request", "the request target is not a URI");
  if (req->path_.empty()) req->path_ = "/";  // "http://host" names the root
  const std::string& path = req->path_;
  if (auto it = exact_.find(path); it != exact_.end()) return it->second(req, path);
  for (const auto& [prefix, handler] : prefixes_)
    if (path.compare(0, prefix.size(), prefix) == 0) return handler(req, path);
  if (fallback_) return fallback_(req, path);
  reply_error(req, 404, "not found", fmt::format("no route for {}", path));
}

void HttpServer::count_body_buffer_full() {
  const auto n = ++counters_.body_buffer_full;
  if (worth_a_line(n))
    log_warning("request bodies being read fill http.max_body_buffer ({} bytes): a request was "
                "answered 503 ({} times so far)",
                config_.max_body_buffer, n);
}

void HttpServer::count_response(int code) {
  switch (code) {
#define WARREN_COUNT_STATUS(arg, n, reason, note) \
  case n: ++counters_.response_##n; break;
    WARREN_HTTP_STATUSES(WARREN_COUNT_STATUS, )
#undef WARREN_COUNT_STATUS
    default: ++counters_.response_other; break;
  }
}

std::unique_ptr<Exchange> HttpServer::finish(Exchange* req, int code) {
  auto it = started_.find(req);
  if (it == started_.end()) {
    log_error("reply to a request already answered (status {}): ignored", code);
    return nullptr;
  }
  auto elapsed = std::chrono::steady_clock::now() - req->started_;
  counters_.processing_time_us +=
      std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count();
  auto owned = std::move(it->second);
  started_.erase(it);
  count_response(code);
  if (req->conn_) req->conn_->release(req);
  check_idle();
  return owned;
}

http::WireReply HttpServer::answer_head(Exchange* req, int code, std::string_view content_type) {
  http::WireReply r;
  r.status = code;
  r.content_type = content_type;
  r.headers = std::move(req->out_headers_);
  // Every route's credentials are the broker's (a 503's Retry-After is the wire's).
  if (code == 401) r.headers.emplace_back("WWW-Authenticate", "Basic realm=\"warren\"");
  return r;
}

void HttpServer::reply(Exchange* req, int code, std::string_view content_type,
                       std::string_view body) {
  if (!started_.count(req)) return (void)finish(req, code);  // logs the second answer
  ServerConnection* conn = req->conn_;
  const uint64_t seq = req->seq_;
  http::WireReply r = answer_head(req, code, content_type);
  r.body = body;
  (void)finish(req, code);
  if (conn) conn->wire().reply(seq, std::move(r));
}

void HttpServer::stream_start(Exchange* req, int code, std::string_view content_type) {
  if (!started_.count(req)) return;
  req->stream_status_ = code;
  if (!req->conn_) return;
  req->add_header("Cache-Control", "no-cache");
  req->conn_->wire().stream_start(req->seq_, answer_head(req, code, content_type));
}

void HttpServer::stream_chunk(Exchange* req, std::string_view data) {
  if (started_.count(req) && req->conn_) req->conn_->wire().stream_write(req->seq_, data);
}

void HttpServer::stream_end(Exchange* req) {
  if (!started_.count(req) || !req->stream_status_) return;
  ServerConnection* conn = req->conn_;
  const uint64_t seq = req->seq_;
  if (finish(req, req->stream_status_) && conn) conn->wire().stream_end(seq);
}

void HttpServer::stream_cut(Exchange* req) {
  if (!started_.count(req) || !req->stream_status_) return;
  ServerConnection* conn = req->conn_;
  (void)finish(req, req->stream_status_);
  if (conn) conn->wire().close();
}

void HttpServer::answer_alone(Exchange* req) {
  if (req->conn_) req->conn_->wire().answer_alone(req->seq_);
}

size_t HttpServer::pending_output(Exchange* req) {
  return req->conn_ ? req->conn_->wire().pending_output() : 0;
}

bool HttpServer::on_connection_close(Exchange* req, std::function<void()> cb) {
  if (!req->conn_) return false;
  req->conn_->set_close_hook(std::move(cb));
  return true;
}

void HttpServer::reply_json(Exchange* req, int code, const nlohmann::json& body) {
  reply(req, code, "application/json", json_text(body));
}

void HttpServer::reply_error(Exchange* req, int code, std::string_view error,
                             std::string_view detail) {
  reply_json(req, code, {{"error", error}, {"detail", detail}});
}

void HttpServer::reply_error(Exchange* req, const HttpError& e) {
  reply_error(req, e.status, e.error, e.detail);
}

void HttpServer::drain(std::function<void()> on_idle) {
  if (accept_resume_) evtimer_del(accept_resume_.get());
  listener_.reset();  // closes our copy; the master keeps its own
  draining_ = true;
  // No request read after those owed: one the client gets no answer to was never handed over.
  for (auto& [raw, conn] : connections_) conn->wire().close_after_owed();
  on_idle_ = std::move(on_idle);
  for (auto& hook : std::exchange(drain_hooks_, {})) hook();
  evtimer_add(drain_grace_.get(), &kDrainGrace);
  check_idle();
}

void HttpServer::on_drain_grace(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<HttpServer*>(arg);
  std::vector<ServerConnection*> all;
  for (auto& [raw, conn] : self->connections_) all.push_back(raw);
  for (ServerConnection* conn : all) conn->wire().close_when_idle();
}

void HttpServer::check_idle() {
  // From the loop, not from inside the reply that emptied the table. Once no connection is
  // left: a request sent on one (and on its way) would otherwise reach a worker closing down.
  if (draining_ && started_.empty() && connections_.empty() && on_idle_)
    event_active(idle_event_.get(), 0, 0);
}

void HttpServer::on_idle(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<HttpServer*>(arg);
  if (auto cb = std::exchange(self->on_idle_, nullptr)) cb();
}

}  // namespace warren
