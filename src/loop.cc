#include "loop.h"

#include <openssl/err.h>

#include <cstdlib>

#include "log.h"

namespace warren {
std::string ssl_error_text(unsigned long err) {
  char buf[256];
  ERR_error_string_n(err, buf, sizeof(buf));
  return buf;
}

namespace {

// Empty on success, else what failed.
std::string load_tls_files(SSL_CTX* ctx, const TlsConfig& t) {
  if (t.ca.empty() ? SSL_CTX_set_default_verify_paths(ctx) != 1
                   : SSL_CTX_load_verify_locations(ctx, t.ca.c_str(), nullptr) != 1)
    return fmt::format("cannot load CA {}: {}", t.ca, ssl_error_text(ERR_get_error()));
  if (!t.cert.empty() && SSL_CTX_use_certificate_chain_file(ctx, t.cert.c_str()) != 1)
    return fmt::format("cannot load certificate {}: {}", t.cert, ssl_error_text(ERR_get_error()));
  if (!t.key.empty() && SSL_CTX_use_PrivateKey_file(ctx, t.key.c_str(), SSL_FILETYPE_PEM) != 1)
    return fmt::format("cannot load key {}: {}", t.key, ssl_error_text(ERR_get_error()));
  return {};
}

}  // namespace

timeval to_timeval(double seconds) {
  if (!(seconds > 0)) seconds = 0;
  if (seconds > 1e9) seconds = 1e9;
  timeval tv;
  tv.tv_sec = static_cast<time_t>(seconds);
  tv.tv_usec = static_cast<suseconds_t>((seconds - static_cast<double>(tv.tv_sec)) * 1e6);
  return tv;
}

Loop::Loop() : Loop(EventBasePtr(event_base_new())) {}

Loop::Loop(EventBasePtr base) : base_(std::move(base)) {
  if (!base_) abort();  // no memory
  deferred_event_.reset(evtimer_new(base_.get(), on_deferred, this));
  if (!deferred_event_) abort();
}

Loop::~Loop() {
  // Freeing an object may defer more work or more deletions: bounded, each round frees what the
  // previous one let go and nothing new is started any more.
  while (!deferred_.empty() || !doomed_.empty()) {
    std::exchange(deferred_, {}).clear();
    std::exchange(doomed_, {}).clear();
  }
  deferred_event_.reset();
  resolver_.reset();  // before the base it runs on
}

void Loop::defer(std::function<void()> fn) {
  deferred_.push_back(std::move(fn));
  arm();
}

void Loop::defer_release(std::shared_ptr<void> ref) {
  doomed_.push_back(std::move(ref));
  arm();
}

// A zero timeout runs after the next poll, so work deferred by deferred work waits a pass too:
// the loop cannot spin without serving I/O.
void Loop::arm() {
  if (event_pending(deferred_event_.get(), EV_TIMEOUT, nullptr)) return;
  const timeval zero{0, 0};
  evtimer_add(deferred_event_.get(), &zero);
}

void Loop::on_deferred(evutil_socket_t, short, void* arg) { static_cast<Loop*>(arg)->run_deferred(); }

void Loop::run_deferred() {
  // Taken out first: what runs may defer again, for the next pass.
  for (auto& fn : std::exchange(deferred_, {})) fn();
  std::exchange(doomed_, {}).clear();
}

SslCtxPtr Loop::tls_client_context(const TlsConfig& t, std::string* why) {
  const auto key = std::make_tuple(t.ca, t.cert, t.key, t.verify);
  auto it = tls_contexts_.find(key);
  if (it == tls_contexts_.end()) {
    SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
    *why = ctx ? load_tls_files(ctx.get(), t) : "SSL_CTX_new() failed";
    if (!why->empty()) {
      ERR_clear_error();
      return {};
    }
    SSL_CTX_set_verify(ctx.get(), t.verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
    it = tls_contexts_.emplace(key, std::move(ctx)).first;
  }
  SSL_CTX_up_ref(it->second.get());
  return SslCtxPtr(it->second.get());
}

evdns_base* Loop::resolver() {
  if (!resolver_)
    resolver_.reset(evdns_base_new(
        base_.get(), EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE));
  return resolver_.get();
}

}  // namespace warren
