#include "http/client_deadline.h"

#include <sys/socket.h>

#include <nlohmann/json.hpp>

#include "amqp/connection.h"
#include "json.h"
#include "log.h"

namespace warren {

struct ClientDeadlines::Client {
  ClientDeadlines* owner = nullptr;
  bufferevent* bev = nullptr;
  evhttp_connection* conn = nullptr;  // known once adopted
  evbuffer_cb_entry* input_cb = nullptr;
  EventPtr deadline;
  bool in_handler = false;  // a request is with a handler, or its reply is being written
  bool expired = false;     // answered 408; the connection goes on the next pass
  std::function<void()> on_close;
};

ClientDeadlines::ClientDeadlines(Context& context, double request_timeout)
    : loop_(context.loop), timeout_(to_timeval(request_timeout)), counters_(context.counters) {
  adopt_event_.reset(event_new(loop_.base(), -1, 0, on_adopt, this));
  reap_event_.reset(event_new(loop_.base(), -1, 0, on_reap, this));
  if (!adopt_event_ || !reap_event_) abort();  // no memory
}

ClientDeadlines::~ClientDeadlines() {
  // The evhttp went first and closed its connections (on_closed forgot them); what is left are
  // connections it never finished setting up.
  for (bufferevent* bev : std::exchange(unadopted_, {})) {
    forget(bev);
    bufferevent_decref(bev);
  }
}

void ClientDeadlines::attach(evhttp* http) { evhttp_set_bevcb(http, on_new_connection, this); }

bufferevent* ClientDeadlines::on_new_connection(event_base* base, void* arg) {
  auto* self = static_cast<ClientDeadlines*>(arg);
  // As evhttp makes its own: no fd yet, and evhttp closes the fd itself.
  bufferevent* bev = bufferevent_socket_new(base, -1, 0);
  if (!bev) return nullptr;  // evhttp tries once more itself, and fails the same way
  auto client = std::make_unique<Client>();
  client->owner = self;
  client->bev = bev;
  client->deadline.reset(evtimer_new(base, on_deadline, client.get()));
  client->input_cb = evbuffer_add_cb(bufferevent_get_input(bev), on_input, client.get());
  if (!client->deadline || !client->input_cb) abort();  // no memory
  self->clients_.emplace(bev, std::move(client));
  // evhttp wraps the bufferevent in its connection after this returns, and may free it again
  // if that fails: the reference keeps it valid until on_adopt looks.
  bufferevent_incref(bev);
  self->unadopted_.push_back(bev);
  event_active(self->adopt_event_.get(), 0, 0);
  return bev;
}

void ClientDeadlines::on_adopt(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<ClientDeadlines*>(arg);
  for (bufferevent* bev : std::exchange(self->unadopted_, {})) {
    // evhttp's callbacks carry its connection; bufferevent_free has cleared them if it is gone.
    void* conn = nullptr;
    bufferevent_getcb(bev, nullptr, nullptr, nullptr, &conn);
    auto client = self->clients_.find(bev);  // registered with the reference taken above
    if (conn && client != self->clients_.end()) {
      client->second->conn = static_cast<evhttp_connection*>(conn);
      evhttp_connection_set_closecb(static_cast<evhttp_connection*>(conn), on_closed, self);
    } else {
      self->forget(bev);
    }
    bufferevent_decref(bev);
  }
}

ClientDeadlines::Client* ClientDeadlines::find(evhttp_connection* conn) {
  if (!conn) return nullptr;
  auto it = clients_.find(evhttp_connection_get_bufferevent(conn));
  return it == clients_.end() ? nullptr : it->second.get();
}

void ClientDeadlines::on_input(evbuffer*, const evbuffer_cb_info* info, void* arg) {
  auto* c = static_cast<Client*>(arg);
  // The first byte of a request starts its clock; later bytes do not restart it.
  if (info->n_added == 0 || c->in_handler || c->expired) return;
  if (!evtimer_pending(c->deadline.get(), nullptr)) evtimer_add(c->deadline.get(), &c->owner->timeout_);
}

void ClientDeadlines::request_started(evhttp_request* req) {
  Client* c = find(evhttp_request_get_connection(req));
  if (!c) return;
  c->in_handler = true;
  evtimer_del(c->deadline.get());
  evhttp_request_set_on_complete_cb(req, on_reply_written, this);
}

void ClientDeadlines::on_reply_written(evhttp_request* req, void* arg) {
  auto* self = static_cast<ClientDeadlines*>(arg);
  Client* c = self->find(evhttp_request_get_connection(req));
  if (!c) return;
  c->in_handler = false;
  // A pipelining client's next request may have arrived already: its clock starts now.
  if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
    evtimer_add(c->deadline.get(), &self->timeout_);
}

void ClientDeadlines::on_deadline(evutil_socket_t, short, void* arg) {
  auto* c = static_cast<Client*>(arg);
  c->owner->expire(*c);
}

void ClientDeadlines::expire(Client& c) {
  if (!c.conn || c.in_handler) return;
  // evhttp is writing something of its own: an error page for a request it could not parse
  // (the connection closes after it), or a "100 Continue". Look again later.
  if (evbuffer_get_length(bufferevent_get_output(c.bev)) > 0) {
    evtimer_add(c.deadline.get(), &timeout_);
    return;
  }
  ++counters_.request_timeouts;
  ++counters_.response_408;
  const double seconds = static_cast<double>(timeout_.tv_sec) + timeout_.tv_usec / 1e6;
  if (counters_.request_timeouts == 1 || counters_.request_timeouts % 100 == 0)
    log_warning("client sent no whole request within http.request_timeout ({} s): answered 408 "
                "and disconnected ({} times so far)",
                seconds, counters_.request_timeouts);
  const int fd = bufferevent_getfd(c.bev);
  if (fd >= 0) {
    const std::string body =
        json_text({{"error", "request timeout"},
                   {"detail", fmt::format("the request was not received whole within "
                                          "http.request_timeout ({} s)",
                                          seconds)}});
    const std::string response = fmt::format(
        "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
        "Content-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.size(), body);
    // Written past evhttp, which has no request to answer here. While a request is read the
    // socket's send buffer is empty, so one small send() takes it all.
    if (send(fd, response.data(), response.size(), MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
      log_info("send() of a 408 failed: {}", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    // Unread bytes at close() make the kernel reset the connection, which may destroy the
    // answer before the client reads it: take what has arrived (bounded).
    char sink[4096];
    for (int i = 0; i < 16 && recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0; ++i) {
    }
  }
  bufferevent_disable(c.bev, EV_READ | EV_WRITE);
  c.expired = true;
  expired_.push_back(c.bev);
  // Not inside this timer's own callback: the connection, and the timer with it, go next pass.
  event_active(reap_event_.get(), 0, 0);
}

void ClientDeadlines::on_reap(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<ClientDeadlines*>(arg);
  for (bufferevent* bev : std::exchange(self->expired_, {})) {
    auto it = self->clients_.find(bev);
    if (it == self->clients_.end() || !it->second->expired) continue;
    evhttp_connection_free(it->second->conn);  // on_closed runs and forgets it
    self->forget(bev);                          // in case it did not
  }
}

void ClientDeadlines::on_close(evhttp_request* req, std::function<void()> cb) {
  if (Client* c = find(evhttp_request_get_connection(req))) c->on_close = std::move(cb);
}

void ClientDeadlines::on_closed(evhttp_connection* conn, void* arg) {
  auto* self = static_cast<ClientDeadlines*>(arg);
  Client* c = self->find(conn);
  if (!c) return;
  auto hook = std::move(c->on_close);
  self->forget(c->bev);
  if (hook) hook();
}

void ClientDeadlines::forget(bufferevent* bev) {
  auto it = clients_.find(bev);
  if (it == clients_.end()) return;
  evbuffer_remove_cb_entry(bufferevent_get_input(bev), it->second->input_cb);
  clients_.erase(it);
  std::erase(expired_, bev);
}

}  // namespace warren
