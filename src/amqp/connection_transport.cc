// Connection: the transport. TLS context, non-blocking connect to each host in turn (numeric
// addresses directly, names through evdns), and what the socket reports while connecting.
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>


#include <cerrno>
#include <memory>

#include "amqp/connection.h"
#include "log.h"

namespace warren::amqp {
namespace {

bool is_ip_literal(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return evutil_inet_pton(AF_INET, host.c_str(), buf) == 1 ||
         evutil_inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

}  // namespace

void Connection::start() {
  if (state_ != ConnectionState::idle) return;
  state_ = ConnectionState::connecting;
  // never report anything from inside start(): the first attempt begins on the next pass
  loop_.defer([this, guard = life_.watch()] {
    if (guard.expired() || phase_ != Phase::idle) return;
    if (options_.tls.enabled) {
      std::string why;
      ssl_ctx_ = loop_.tls_client_context(options_.tls, &why);
      if (!ssl_ctx_) {
        ++stats_->connect_failures;
        teardown({Outcome::connection_lost, 0, why});
        return;
      }
    }
    try_host();
  });
}

bool Connection::make_bufferevent(const BrokerHost& host, std::string* why) {
  const int options = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
  bool literal = is_ip_literal(host.host);
  if (ssl_ctx_) {
    SslPtr ssl(SSL_new(ssl_ctx_.get()));
    if (!ssl) {
      *why = "SSL_new() failed";
      return false;
    }
    if (!literal) SSL_set_tlsext_host_name(ssl.get(), host.host.c_str());
    if (options_.tls.verify) {
      int ok = literal ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()), host.host.c_str())
                       : SSL_set1_host(ssl.get(), host.host.c_str());
      if (ok != 1) {
        *why = "cannot set the expected TLS peer name";
        return false;
      }
    }
    bev_.reset(bufferevent_openssl_socket_new(loop_.base(), -1, ssl.get(), BUFFEREVENT_SSL_CONNECTING,
                                              options));
    if (bev_) {
      ssl.release();  // the bufferevent owns it now (CLOSE_ON_FREE)
      bufferevent_openssl_set_allow_dirty_shutdown(bev_.get(), 1);
    }
  } else {
    bev_.reset(bufferevent_socket_new(loop_.base(), -1, options));
  }
  if (!bev_) {
    *why = "bufferevent_socket_new() failed";
    return false;
  }
  bufferevent_setcb(bev_.get(), on_read, nullptr, on_event, this);
  bufferevent_enable(bev_.get(), EV_READ | EV_WRITE);
  int rc;
  if (literal) {
    sockaddr_storage ss{};
    int len = sizeof(ss);
    std::string spec = host.host.find(':') != std::string::npos
                           ? fmt::format("[{}]:{}", host.host, host.port)
                           : fmt::format("{}:{}", host.host, host.port);
    if (evutil_parse_sockaddr_port(spec.c_str(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
      *why = "bad address " + spec;
      return false;
    }
    rc = bufferevent_socket_connect(bev_.get(), reinterpret_cast<sockaddr*>(&ss), len);
  } else {
    evdns_base* dns = loop_.resolver();
    if (!dns) {
      *why = "evdns_base_new() failed";
      return false;
    }
    rc = bufferevent_socket_connect_hostname(bev_.get(), dns, AF_UNSPEC, host.host.c_str(),
                                             host.port);
  }
  if (rc != 0) {
    *why = fmt::format("connect() to {}:{} failed: {}", host.host, host.port, errno_text(errno));
    return false;
  }
  return true;
}

void Connection::try_host() {
  if (hosts_tried_ >= options_.hosts.size()) {
    ++stats_->connect_failures;
    teardown({Outcome::connection_lost, 0,
              options_.hosts.empty() ? "no broker host configured" : last_host_error_});
    return;
  }
  phase_ = Phase::tcp;
  decoder_ = Decoder();
  frame_max_ = kInitialFrameMax;
  std::string why;
  if (!make_bufferevent(options_.hosts[host_position()], &why)) {
    host_failed(why);
    return;
  }
  timeval tv = to_timeval(options_.connect_timeout);
  evtimer_add(connect_timer_.get(), &tv);
}

void Connection::host_failed(const std::string& why) {
  log_warning("amqp: {}", why);
  last_host_error_ = why;
  bev_.reset();
  evtimer_del(connect_timer_.get());
  ++hosts_tried_;
  try_host();  // bounded: one level per configured host
}

void Connection::on_event(bufferevent* bev, short what, void* arg) {
  auto* c = static_cast<Connection*>(arg);
  int err = EVUTIL_SOCKET_ERROR();
  if (what & BEV_EVENT_CONNECTED) {
    // Without TCP_NODELAY, a write that follows an unacknowledged one (a new channel's publish
    // right after its channel.open) waits for the broker's delayed ACK: 40 ms on Linux.
    const int one = 1;
    if (setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
      log_warning("amqp: setsockopt(TCP_NODELAY) failed: {}", errno_text(errno));
    c->phase_ = Phase::start;
    c->last_recv_ = Clock::now();
    c->send(kProtocolHeader);
    return;
  }
  std::string why;
  if (unsigned long ssl_err = bufferevent_get_openssl_error(bev)) {
    why = "TLS: " + ssl_error_text(ssl_err);
    ERR_clear_error();
  } else if (int dns_err = bufferevent_socket_get_dns_error(bev)) {
    why = fmt::format("cannot resolve: {}", evutil_gai_strerror(dns_err));
  } else if (what & BEV_EVENT_EOF) {
    why = "connection closed by the broker";
  } else {
    why = err ? errno_text(err) : "socket error";
  }
  if (c->phase_ == Phase::tcp || c->phase_ == Phase::start) {
    c->host_failed(fmt::format("connect() to {} failed: {}", c->peer(), why));
  } else if (c->phase_ == Phase::closing) {
    c->teardown(c->close_reason_);
  } else if (c->phase_ != Phase::closed) {
    c->teardown({Outcome::connection_lost, 0, fmt::format("connection to {} lost: {}", c->peer(), why)});
  } else {
    c->bev_.reset();  // lingering after close: the broker hung up, fine
  }
}

void Connection::on_connect_timeout(evutil_socket_t, short, void* arg) {
  auto* c = static_cast<Connection*>(arg);
  if (c->phase_ == Phase::open || c->phase_ == Phase::closing || c->phase_ == Phase::closed) return;
  c->host_failed(fmt::format("connect to {} timed out after {}s", c->peer(), c->options_.connect_timeout));
}

}  // namespace warren::amqp
