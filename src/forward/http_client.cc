#include "forward/http_client.h"

#include <chrono>
#include <tuple>
#include <vector>

#include "amqp/connection.h"
#include "forward/backend_url.h"
#include "log.h"

namespace warren::forward {
namespace {

// A backend answering more than this is answered 502: replies must fit a broker message and a
// worker's memory.
constexpr size_t kMaxResponseBody = 64 << 20;
constexpr size_t kMaxIdleHandles = 256;
constexpr long kMaxRedirects = 30;  // the requests library's limit

using Clock = Loop::Clock;

}  // namespace

// An easy handle and what its options were last set for, apart from each request's own (URL,
// body, headers, where the answer goes): the next request like it keeps them, which saves a
// curl_easy_reset and the dozen options after it. libcurl is made for this: a handle keeps its
// options from one curl_easy_perform to the next.
struct HttpClient::Handle {
  CurlEasyPtr easy;
  BackendConfig backend;
  std::string method;
  bool sends_body = false;
  bool follow_redirects = false;
};

struct HttpClient::Request {
  uint64_t id = 0;
  HttpClient* client = nullptr;
  Handle handle;  // handle.easy is null once the transfer ended: the callback is due
  CurlSlistPtr headers;
  BackendRequest request;  // owns the body and URL curl points into
  Callback done;
  std::string body;
  bool too_large = false;
  std::string refused_redirect;  // why a redirect was not followed (on_header)
  char error[CURL_ERROR_SIZE] = {};
  Clock::time_point started = Clock::now();
};

// A socket number of curl's. A keep-alive connection is given back to curl's cache after
// every answer (CURL_POLL_REMOVE) and taken again for the next request (CURL_POLL_IN): its
// event stays with epoll meanwhile, which saves an EPOLL_CTL_DEL and an EPOLL_CTL_ADD per
// request. Should the idle connection turn readable (the backend closed it), the event goes
// then, and curl's own check finds the connection dead before it would reuse it. When curl
// closes the socket (on_close_socket) the event goes too; the slot stays for the number's next
// connection, and is never freed inside its own event's callback.
struct HttpClient::Socket {
  HttpClient* client;
  curl_socket_t fd;
  short events = 0;     // what `event` waits for; 0: not added
  bool wanted = false;  // by a transfer; false while the connection sits in curl's cache
  EventPtr event;

  // Waits for these events from now on (0: none), touching epoll only if they changed.
  void watch(short wanted_events);
};

HttpClient::HttpClient(Loop& loop) : loop_(loop), multi_(curl_multi_init()) {
  if (!multi_) abort();  // out of memory
  timer_.reset(evtimer_new(loop_.base(), on_timeout, this));
  curl_multi_setopt(multi_.get(), CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(multi_.get(), CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi_.get(), CURLMOPT_TIMERFUNCTION, on_timer);
  curl_multi_setopt(multi_.get(), CURLMOPT_TIMERDATA, this);
  // Keep enough idle connections for a forwarder's whole prefetch window to be reused.
  curl_multi_setopt(multi_.get(), CURLMOPT_MAXCONNECTS, 1024L);
}

HttpClient::~HttpClient() {
  // curl must not call back into a half-destroyed client: unhook first, then let go.
  curl_multi_setopt(multi_.get(), CURLMOPT_SOCKETFUNCTION, nullptr);
  curl_multi_setopt(multi_.get(), CURLMOPT_TIMERFUNCTION, nullptr);
  for (auto& [id, r] : requests_)
    if (r->handle.easy) curl_multi_remove_handle(multi_.get(), r->handle.easy.get());
  requests_.clear();
  idle_.clear();
  sockets_.clear();
  multi_.reset();
}

namespace {

// GET and HEAD go as curl knows them, anything else with the request's body.
bool sends_body(const BackendRequest& q) {
  return !(q.method == "GET" && q.body.empty()) && q.method != "HEAD";
}

void set_method(CURL* e, const BackendRequest& q) {
  if (q.method == "HEAD") {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else if (!sends_body(q)) {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  } else if (q.method != "POST") {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, q.method.c_str());
  }
}

// curl sends the body from where it is, without a copy: set for each request.
void set_body(CURL* e, const BackendRequest& q) {
  if (!sends_body(q)) return;
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, q.body.data());
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(q.body.size()));
}

// What forwarders[].backend says: the timeout, Basic auth, TLS files and verification.
void set_backend(CURL* e, const BackendConfig& backend) {
  if (backend.timeout > 0) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(backend.timeout * 1000));
  if (!backend.username.empty() || !backend.password.empty()) {
    curl_easy_setopt(e, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(e, CURLOPT_USERNAME, backend.username.c_str());
    curl_easy_setopt(e, CURLOPT_PASSWORD, backend.password.c_str());
  }
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, backend.verify ? 1L : 0L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, backend.verify ? 2L : 0L);
  if (!backend.ca.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, backend.ca.c_str());
  if (!backend.cert.empty()) curl_easy_setopt(e, CURLOPT_SSLCERT, backend.cert.c_str());
  if (!backend.key.empty()) curl_easy_setopt(e, CURLOPT_SSLKEY, backend.key.c_str());
}

// The request's headers as curl's list, with the ones curl would add on its own turned off.
CurlSlistPtr header_list(const BackendRequest& q) {
  bool has_content_type = false;
  curl_slist* list = nullptr;
  auto append = [&list](const std::string& line) {
    if (curl_slist* grown = curl_slist_append(list, line.c_str())) list = grown;
  };
  for (const auto& [name, value] : q.headers) {
    if (strcasecmp(name.c_str(), "Content-Type") == 0) has_content_type = true;
    // "Name;" is curl's way of sending a header with an empty value.
    append(value.empty() ? name + ";" : name + ": " + value);
  }
  // No 100-continue round trip, and no made-up form content type for a body that has none.
  append("Expect:");
  if (!has_content_type) append("Content-Type:");
  return CurlSlistPtr(list);
}

}  // namespace

HttpClient::Handle HttpClient::handle_for(const BackendConfig& backend, const BackendRequest& q) {
  Handle h;
  if (!idle_.empty()) {
    h = std::move(idle_.back());
    idle_.pop_back();
    if (h.backend == backend && h.method == q.method && h.sends_body == sends_body(q) &&
        h.follow_redirects == q.follow_redirects)
      return h;
    curl_easy_reset(h.easy.get());  // options back to defaults; its connection stays cached
  } else {
    h.easy.reset(curl_easy_init());
    if (!h.easy) abort();  // out of memory
  }
  CURL* e = h.easy.get();
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, this);
  if (q.follow_redirects) {
    // 301-303 turn a POST into a GET, 307 and 308 keep method and body (curl's defaults, as
    // the requests library does); never to another origin (on_header).
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, kMaxRedirects);
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  }
  set_method(e, q);
  set_backend(e, backend);
  h.backend = backend;
  h.method = q.method;
  h.sends_body = sends_body(q);
  h.follow_redirects = q.follow_redirects;
  return h;
}

uint64_t HttpClient::start(const BackendConfig& backend, BackendRequest request, Callback done) {
  auto r = std::make_unique<Request>();
  r->id = next_id_++;
  r->client = this;
  r->request = std::move(request);
  r->done = std::move(done);
  const BackendRequest& q = r->request;
  r->handle = handle_for(backend, q);
  CURL* e = r->handle.easy.get();
  curl_easy_setopt(e, CURLOPT_URL, q.url.c_str());
  curl_easy_setopt(e, CURLOPT_PRIVATE, r.get());
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->error);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, r.get());
  if (q.follow_redirects) curl_easy_setopt(e, CURLOPT_HEADERDATA, r.get());
  set_body(e, q);
  r->headers = header_list(q);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers.get());

  const uint64_t id = r->id;
  CURLMcode rc = curl_multi_add_handle(multi_.get(), e);
  requests_.emplace(id, std::move(r));
  if (rc != CURLM_OK) {
    BackendResponse fail;
    fail.failure = BackendResponse::Failure::other;
    fail.error = fmt::format("curl_multi_add_handle() failed: {}", curl_multi_strerror(rc));
    fail_later(id, std::move(fail));
  }
  return id;
}

void HttpClient::fail_later(uint64_t id, BackendResponse r) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return;
  curl_multi_remove_handle(multi_.get(), it->second->handle.easy.get());
  it->second->handle.easy.reset();
  loop_.defer([this, alive = life_.watch(), id, r = std::move(r)]() mutable {
    if (!alive.expired()) answer(id, std::move(r), 0);
  });
}

// A request whose transfer ended stays in requests_ until its callback runs, so that a cancel()
// in between (by an earlier callback of the same pass, say) still stops it.
void HttpClient::answer(uint64_t id, BackendResponse&& response, double seconds) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return;  // cancelled meanwhile
  Callback done = std::move(it->second->done);
  requests_.erase(it);
  done(std::move(response), seconds);
}

void HttpClient::cancel(uint64_t id) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return;
  if (it->second->handle.easy) curl_multi_remove_handle(multi_.get(), it->second->handle.easy.get());
  requests_.erase(it);
}

// A redirect to another origin is not followed. curl leaves Authorization and Cookie behind
// on the way, but sends every other header of the request again, and a vCD request carries
// the user's session token in x-vcloud-authorization.
size_t HttpClient::on_header(char* data, size_t size, size_t n, void* arg) {
  auto* r = static_cast<Request*>(arg);
  const size_t len = size * n;
  // Once a response's headers are in (its empty line), before curl follows its Location.
  if (const std::string_view line(data, len); line != "\r\n" && line != "\n") return len;
  CURL* e = r->handle.easy.get();
  long status = 0;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  const char* from = nullptr;
  curl_easy_getinfo(e, CURLINFO_EFFECTIVE_URL, &from);
  curl_header* location = nullptr;
  if (status < 300 || status > 399 || !from ||
      curl_easy_header(e, "Location", 0, CURLH_HEADER, -1, &location) != CURLHE_OK)
    return len;
  auto target = leaves_origin(from, location->value);
  if (!target) return len;
  r->refused_redirect = fmt::format("redirect to another origin not followed ({}): the request's "
                                    "credentials would go with it", *target);
  return 0;  // curl ends the transfer with CURLE_WRITE_ERROR
}

size_t HttpClient::on_body(char* data, size_t size, size_t n, void* arg) {
  auto* r = static_cast<Request*>(arg);
  const size_t len = size * n;
  if (r->body.size() + len > kMaxResponseBody) {
    r->too_large = true;
    return 0;  // curl aborts the transfer with CURLE_WRITE_ERROR
  }
  r->body.append(data, len);
  return len;
}

int HttpClient::on_socket(CURL*, curl_socket_t s, int what, void* arg, void*) {
  auto* self = static_cast<HttpClient*>(arg);
  auto& slot = self->sockets_[s];
  if (!slot) {
    slot = std::make_unique<Socket>();
    slot->client = self;
    slot->fd = s;
    slot->event.reset(event_new(self->loop_.base(), s, 0, on_socket_event, slot.get()));
  }
  slot->wanted = what != CURL_POLL_REMOVE;
  if (!slot->wanted) return 0;  // the event stays until curl wants the socket again or closes it
  short events = 0;
  if (what & CURL_POLL_IN) events |= EV_READ | EV_PERSIST;
  if (what & CURL_POLL_OUT) events |= EV_WRITE | EV_PERSIST;
  slot->watch(events);
  return 0;
}

void HttpClient::Socket::watch(short wanted_events) {
  if (wanted_events == events) return;
  event_del(event.get());
  events = wanted_events;
  if (events == 0) return;
  event_assign(event.get(), client->loop_.base(), fd, events, on_socket_event, this);
  event_add(event.get(), nullptr);
}

// curl closes every socket it opened through here (CURLOPT_CLOSESOCKETFUNCTION), idle ones in
// its cache too, which it does not announce with CURL_POLL_REMOVE: the event must go before the
// number can come back for a new connection.
int HttpClient::on_close_socket(void* arg, curl_socket_t s) {
  auto* self = static_cast<HttpClient*>(arg);
  if (auto it = self->sockets_.find(s); it != self->sockets_.end()) {
    it->second->wanted = false;
    it->second->watch(0);
  }
  return close(s);
}

int HttpClient::on_timer(CURLM*, long timeout_ms, void* arg) {
  auto* self = static_cast<HttpClient*>(arg);
  if (timeout_ms < 0) {
    evtimer_del(self->timer_.get());
    return 0;
  }
  // 0 means "now": still through the loop, never from inside curl's own call.
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  evtimer_add(self->timer_.get(), &tv);
  return 0;
}

void HttpClient::on_socket_event(evutil_socket_t fd, short what, void* arg) {
  auto* sock = static_cast<Socket*>(arg);
  if (!sock->wanted) {
    // An idle connection in curl's cache: the backend closed it or sent what nobody asked for.
    // Nothing to do until curl takes it again (and checks it) or closes it.
    sock->watch(0);
    return;
  }
  int flags = 0;
  if (what & EV_READ) flags |= CURL_CSELECT_IN;
  if (what & EV_WRITE) flags |= CURL_CSELECT_OUT;
  sock->client->action(fd, flags);
}

void HttpClient::on_timeout(evutil_socket_t, short, void* arg) {
  static_cast<HttpClient*>(arg)->action(CURL_SOCKET_TIMEOUT, 0);
}

void HttpClient::action(curl_socket_t s, int what) {
  int running = 0;
  curl_multi_socket_action(multi_.get(), s, what, &running);
  collect_done();
}

// What a finished transfer amounts to: the answer, or the failure and why.
BackendResponse HttpClient::response_of(Request& r, CURLcode code) {
  BackendResponse resp;
  if (code == CURLE_OK) {
    long status = 0;
    curl_easy_getinfo(r.handle.easy.get(), CURLINFO_RESPONSE_CODE, &status);
    resp.status = static_cast<int>(status);
    const char* ct = nullptr;
    curl_easy_getinfo(r.handle.easy.get(), CURLINFO_CONTENT_TYPE, &ct);
    if (ct) resp.content_type = ct;
    for (const auto& name : r.request.response_headers) {
      curl_header* h = nullptr;
      if (curl_easy_header(r.handle.easy.get(), name.c_str(), 0, CURLH_HEADER, -1, &h) == CURLHE_OK)
        resp.headers[name] = h->value;
    }
    resp.body = std::move(r.body);
  } else {
    switch (code) {
      case CURLE_COULDNT_CONNECT:
      case CURLE_COULDNT_RESOLVE_HOST:
        resp.failure = BackendResponse::Failure::connect;
        break;
      case CURLE_OPERATION_TIMEDOUT:
        resp.failure = BackendResponse::Failure::timeout;
        break;
      default:
        resp.failure = BackendResponse::Failure::other;
    }
    resp.error = r.too_large ? fmt::format("response body over {} bytes", kMaxResponseBody)
                 : !r.refused_redirect.empty() ? r.refused_redirect
                 : r.error[0] ? std::string(r.error)
                               : std::string(curl_easy_strerror(code));
    // The URL carries backend.url's credentials: the error goes into logs, headers and replies.
    resp.error = fmt::format("{} {}: {}", r.request.method, display_url(r.request.url), resp.error);
  }
  return resp;
}

void HttpClient::collect_done() {
  // Finished transfers are taken out first and their callbacks run afterwards: a callback may
  // start or cancel requests, which must not happen while curl's message list is walked.
  std::vector<std::tuple<uint64_t, BackendResponse, double>> finished;
  int left = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi_.get(), &left)) {
    if (msg->msg != CURLMSG_DONE) continue;
    Request* raw = nullptr;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &raw);
    auto it = raw ? requests_.find(raw->id) : requests_.end();
    if (it == requests_.end()) continue;
    Request* r = it->second.get();
    BackendResponse resp = response_of(*r, msg->data.result);
    const double seconds = std::chrono::duration<double>(Clock::now() - r->started).count();
    curl_multi_remove_handle(multi_.get(), r->handle.easy.get());
    if (idle_.size() < kMaxIdleHandles) {
      // The header list and the error buffer go with the request: unhook them first.
      curl_easy_setopt(r->handle.easy.get(), CURLOPT_HTTPHEADER, nullptr);
      curl_easy_setopt(r->handle.easy.get(), CURLOPT_ERRORBUFFER, nullptr);
      idle_.push_back(std::move(r->handle));
    }
    r->handle.easy.reset();
    finished.emplace_back(r->id, std::move(resp), seconds);
  }
  const auto alive = life_.watch();
  for (auto& [id, response, seconds] : finished) {
    if (alive.expired()) return;  // a callback destroyed the client
    answer(id, std::move(response), seconds);
  }
}

}  // namespace warren::forward
