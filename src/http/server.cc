#include "http/server.h"

#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <strings.h>

#include "json.h"
#include "log.h"
#include "http/request.h"
#include "http/status_codes.h"
#include "rfc9110.h"

namespace warren {

std::string_view http_reason(int code) {
  switch (code) {
#define WARREN_STATUS_REASON(arg, n, reason, note) \
  case n: return reason;
    WARREN_HTTP_STATUSES(WARREN_STATUS_REASON, )
#undef WARREN_STATUS_REASON
    default: return "Unknown";
  }
}

HttpServer::HttpServer(Context& context, const HttpConfig& config)
    : loop_(context.loop),
      config_(config),
      counters_(context.counters),
      deadlines_(context, config.request_timeout),
      http_(evhttp_new(loop_.base())) {
  // evhttp's own limits are the hard stops (it answers with an HTML page and closes); up to
  // them the routes check max_body and max_header_size and answer with a JSON error naming the
  // limit.
  evhttp_set_max_body_size(http_.get(), static_cast<ev_ssize_t>(config.max_body * 2 + 65536));
  evhttp_set_max_headers_size(http_.get(), static_cast<ev_ssize_t>(config.max_header_size * 4));
  deadlines_.attach(http_.get());
  evhttp_set_timeout(http_.get(), static_cast<int>(config.idle_connection_timeout));
  evhttp_set_allowed_methods(http_.get(), EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                              EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                              EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
  evhttp_set_gencb(http_.get(), on_request, this);
  idle_event_.reset(event_new(loop_.base(), -1, 0, on_idle, this));
}

namespace {
// evhttp owns the listener and its callback argument; this finds our server from it. One
// HttpServer per worker process, so the table holds one entry.
std::unordered_map<evconnlistener*, HttpServer*>& accept_owners() {
  static std::unordered_map<evconnlistener*, HttpServer*> owners;
  return owners;
}
constexpr timeval kAcceptRetry{0, 100000};  // 100 ms
}  // namespace

bool HttpServer::accept_on(int listen_fd) {
  bound_ = evhttp_accept_socket_with_handle(http_.get(), listen_fd);
  if (!bound_) return false;
  evconnlistener* listener = evhttp_bound_socket_get_listener(bound_);
  accept_owners()[listener] = this;
  evconnlistener_set_error_cb(listener, on_accept_error);
  accept_resume_.reset(evtimer_new(loop_.base(), on_accept_resume, this));
  return true;
}

void HttpServer::on_accept_error(evconnlistener* listener, void*) {
  const int err = EVUTIL_SOCKET_ERROR();
  auto it = accept_owners().find(listener);
  if (it == accept_owners().end()) return;
  HttpServer* self = it->second;
  if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM) {
    log_warning("accept failed: {}", evutil_socket_error_to_string(err));
    return;
  }
  evconnlistener_disable(listener);
  if (++self->counters_.accept_paused == 1 || self->counters_.accept_paused % 100 == 0)
    log_warning("accept paused: {} ({} times so far)", evutil_socket_error_to_string(err),
                self->counters_.accept_paused);
  evtimer_add(self->accept_resume_.get(), &kAcceptRetry);
}

void HttpServer::on_accept_resume(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<HttpServer*>(arg);
  if (self->bound_) evconnlistener_enable(evhttp_bound_socket_get_listener(self->bound_));
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

void HttpServer::on_request(evhttp_request* req, void* arg) {
  auto* self = static_cast<HttpServer*>(arg);
  self->guard(req, [self, req] { self->dispatch(req); });
}

void HttpServer::guard(evhttp_request* req, const std::function<void()>& fn) {
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
  if (!started_.count(req) || streaming_.count(req)) return;
  try {
    reply_error(req, 500, "internal error", what);
  } catch (...) {
    log_error("answering 500 failed too: the request is left to the connection's timeout");
  }
}

size_t HttpServer::header_block_size(evhttp_request* req) {
  const char* uri = evhttp_request_get_uri(req);
  // "METHOD uri HTTP/1.1\r\n": the method is at most 7 letters.
  size_t size = 7 + 1 + (uri ? strlen(uri) : 0) + 1 + 8 + 2;
  const evkeyvalq* headers = evhttp_request_get_input_headers(req);
  for (const evkeyval* h = headers->tqh_first; h; h = h->next.tqe_next)
    size += strlen(h->key) + 2 + strlen(h->value) + 2;
  return size + 2;  // the empty line
}

namespace {

bool is_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

std::string HttpServer::framing_error(evhttp_request* req) {
  size_t lengths = 0, encodings = 0;
  const evkeyvalq* headers = evhttp_request_get_input_headers(req);
  for (const evkeyval* h = headers->tqh_first; h; h = h->next.tqe_next) {
    // evhttp keeps a name as sent: "Content-Length : 3" is a field "Content-Length " that it
    // does not take for the length, where a lenient proxy does.
    if (!is_token(h->key)) return "a header name with a space, a control character or a separator";
    if (strcasecmp(h->key, "Content-Length") == 0) {
      ++lengths;
      // evhttp reads it with strtoll, which takes "+3" and " 3"; a proxy may not.
      if (!is_digits(h->value)) return "Content-Length is not a decimal number";
    } else if (strcasecmp(h->key, "Transfer-Encoding") == 0) {
      ++encodings;
      // evhttp knows "chunked" alone; with anything else it would read no body at all.
      if (strcasecmp(h->value, "chunked") != 0) return "Transfer-Encoding other than \"chunked\"";
    }
  }
  if (lengths > 1) return "more than one Content-Length";
  if (encodings > 1) return "more than one Transfer-Encoding";
  if (lengths && encodings) return "both Transfer-Encoding and Content-Length";
  return {};
}

void HttpServer::dispatch(evhttp_request* req) {
  deadlines_.request_started(req);
  started_.emplace(req, std::chrono::steady_clock::now());
  switch (evhttp_request_get_command(req)) {
    case EVHTTP_REQ_GET: ++counters_.method_get; break;
    case EVHTTP_REQ_POST: ++counters_.method_post; break;
    default: ++counters_.method_other; break;
  }
  // RFC 9112 section 6.3: a request a proxy in front could frame otherwise (and so smuggle a
  // request in its body) is refused, and the connection closed: what follows on it is not a
  // request we can trust to start where we think it does.
  if (const std::string error = framing_error(req); !error.empty()) {
    ++counters_.bad_framing;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    return reply_error(req, 400, "bad framing", error + " (RFC 9112 section 6.3)");
  }
  if (const size_t size = header_block_size(req); size > config_.max_header_size) {
    ++counters_.header_too_large;
    return reply_error(req, 431, "request header fields too large",
                       fmt::format("the request line and headers are {} bytes, over "
                                   "http.max_header_size ({})",
                                   size, config_.max_header_size));
  }
  const evhttp_uri* uri = evhttp_request_get_evhttp_uri(req);
  const char* raw_path = uri ? evhttp_uri_get_path(uri) : nullptr;
  std::string path = raw_path && *raw_path ? raw_path : "/";
  if (auto it = exact_.find(path); it != exact_.end()) return it->second(req, path);
  for (const auto& [prefix, handler] : prefixes_)
    if (path.compare(0, prefix.size(), prefix) == 0) return handler(req, path);
  if (fallback_) return fallback_(req, path);
  reply_error(req, 404, "not found", fmt::format("no route for {}", path));
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

bool HttpServer::finish(evhttp_request* req, int code) {
  auto it = started_.find(req);
  if (it == started_.end()) {
    log_error("reply to a request already answered (status {}): ignored", code);
    return false;
  }
  auto elapsed = std::chrono::steady_clock::now() - it->second;
  counters_.processing_time_us +=
      std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count();
  started_.erase(it);
  count_response(code);
  return true;
}

void HttpServer::reply(evhttp_request* req, int code, std::string_view content_type,
                       std::string_view body) {
  if (!finish(req, code)) return;
  evkeyvalq* headers = evhttp_request_get_output_headers(req);
  if (!content_type.empty())
    evhttp_add_header(headers, "Content-Type", std::string(content_type).c_str());
  if (draining_ || !config_.keep_alive) evhttp_add_header(headers, "Connection", "close");
  // Every route's credentials are the broker's, and every 503 is worth retrying shortly.
  if (code == 401) evhttp_add_header(headers, "WWW-Authenticate", "Basic realm=\"warren\"");
  if (code == 503) evhttp_add_header(headers, "Retry-After", "1");
  EvbufferPtr buf(evbuffer_new());
  evbuffer_add(buf.get(), body.data(), body.size());
  evhttp_send_reply(req, code, std::string(http_reason(code)).c_str(), buf.get());
  check_idle();
}

void HttpServer::stream_start(evhttp_request* req, int code, std::string_view content_type) {
  evkeyvalq* headers = evhttp_request_get_output_headers(req);
  evhttp_add_header(headers, "Content-Type", std::string(content_type).c_str());
  evhttp_add_header(headers, "Cache-Control", "no-cache");
  evhttp_send_reply_start(req, code, std::string(http_reason(code)).c_str());
  streaming_.emplace(req, code);
}

void HttpServer::stream_chunk(evhttp_request* req, std::string_view data) {
  EvbufferPtr buf(evbuffer_new());
  evbuffer_add(buf.get(), data.data(), data.size());
  evhttp_send_reply_chunk(req, buf.get());
}

void HttpServer::stream_end(evhttp_request* req) {
  auto it = streaming_.find(req);
  if (it == streaming_.end()) return;
  const int code = it->second;
  streaming_.erase(it);
  if (finish(req, code)) evhttp_send_reply_end(req);
  check_idle();
}

void HttpServer::stream_abandon(evhttp_request* req) {
  auto it = streaming_.find(req);
  if (it == streaming_.end()) return;
  const int code = it->second;
  streaming_.erase(it);
  (void)finish(req, code);
  check_idle();
}

size_t HttpServer::pending_output(evhttp_request* req) {
  evhttp_connection* conn = evhttp_request_get_connection(req);
  if (!conn) return 0;
  return evbuffer_get_length(bufferevent_get_output(evhttp_connection_get_bufferevent(conn)));
}

void HttpServer::reply_json(evhttp_request* req, int code, const nlohmann::json& body) {
  reply(req, code, "application/json", json_text(body));
}

void HttpServer::reply_error(evhttp_request* req, int code, std::string_view error,
                             std::string_view detail) {
  reply_json(req, code, {{"error", error}, {"detail", detail}});
}

void HttpServer::reply_error(evhttp_request* req, const HttpError& e) {
  reply_error(req, e.status, e.error, e.detail);
}

void HttpServer::drain(std::function<void()> on_idle) {
  if (bound_) {
    accept_owners().erase(evhttp_bound_socket_get_listener(bound_));
    if (accept_resume_) evtimer_del(accept_resume_.get());
    evhttp_del_accept_socket(http_.get(), bound_);  // closes our copy; the master keeps its own
    bound_ = nullptr;
  }
  draining_ = true;
  on_idle_ = std::move(on_idle);
  for (auto& hook : std::exchange(drain_hooks_, {})) hook();
  check_idle();
}

void HttpServer::check_idle() {
  // From the loop, not from inside the reply that emptied the table.
  if (draining_ && started_.empty() && on_idle_) event_active(idle_event_.get(), 0, 0);
}

void HttpServer::on_idle(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<HttpServer*>(arg);
  if (auto cb = std::exchange(self->on_idle_, nullptr)) cb();
}

}  // namespace warren
