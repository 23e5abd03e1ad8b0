// One owning alias per C handle. No other file calls a *_free: ownership lives here.
#pragma once

#include <amqp.h>
#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <openssl/ssl.h>
#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>
#include <unistd.h>
#include <yaml.h>

#include <memory>
#include <utility>

namespace warren {

// A class that owns something (a C handle, a connection, its place in the loop) is neither
// copied nor moved: `class Link : NonCopyable`.
struct NonCopyable {
  NonCopyable() = default;
  NonCopyable(const NonCopyable&) = delete;
  NonCopyable& operator=(const NonCopyable&) = delete;
};

template <auto Free>
struct Deleter {
  template <typename T>
  void operator()(T* p) const noexcept {
    if (p) Free(p);
  }
};

using EventBasePtr = std::unique_ptr<event_base, Deleter<event_base_free>>;
using EventConfigPtr = std::unique_ptr<event_config, Deleter<event_config_free>>;
using EventPtr = std::unique_ptr<event, Deleter<event_free>>;
using ListenerPtr = std::unique_ptr<evconnlistener, Deleter<evconnlistener_free>>;
using EvbufferPtr = std::unique_ptr<evbuffer, Deleter<evbuffer_free>>;
using BuffereventPtr = std::unique_ptr<bufferevent, Deleter<bufferevent_free>>;
using CurlMultiPtr = std::unique_ptr<CURLM, Deleter<curl_multi_cleanup>>;
using CurlEasyPtr = std::unique_ptr<CURL, Deleter<curl_easy_cleanup>>;
using CurlSlistPtr = std::unique_ptr<curl_slist, Deleter<curl_slist_free_all>>;
using CurlUrlPtr = std::unique_ptr<CURLU, Deleter<curl_url_cleanup>>;
using Pcre2CodePtr = std::unique_ptr<pcre2_code, Deleter<pcre2_code_free>>;
using Pcre2MatchDataPtr = std::unique_ptr<pcre2_match_data, Deleter<pcre2_match_data_free>>;
using Pcre2MatchContextPtr = std::unique_ptr<pcre2_match_context, Deleter<pcre2_match_context_free>>;
using SslCtxPtr = std::unique_ptr<SSL_CTX, Deleter<SSL_CTX_free>>;
using SslPtr = std::unique_ptr<SSL, Deleter<SSL_free>>;

// fail_requests=1: pending lookups are answered (with an error) before the base goes away.
inline void evdns_base_free_failing(evdns_base* b) { evdns_base_free(b, 1); }
using EvdnsBasePtr = std::unique_ptr<evdns_base, Deleter<evdns_base_free_failing>>;

inline void amqp_state_free(amqp_connection_state_t s) { amqp_destroy_connection(s); }
using AmqpStatePtr = std::unique_ptr<amqp_connection_state_t_, Deleter<amqp_state_free>>;

inline void yaml_parser_free(yaml_parser_t* p) {
  yaml_parser_delete(p);
  delete p;
}
using YamlParserPtr = std::unique_ptr<yaml_parser_t, Deleter<yaml_parser_free>>;

inline void yaml_event_free(yaml_event_t* e) {
  yaml_event_delete(e);
  delete e;
}
using YamlEventPtr = std::unique_ptr<yaml_event_t, Deleter<yaml_event_free>>;

inline void amqp_pool_free(amqp_pool_t* p) {
  empty_amqp_pool(p);
  delete p;
}
// An amqp_pool_t on the heap, emptied and freed with its owner.
using AmqpPoolPtr = std::unique_ptr<amqp_pool_t, Deleter<amqp_pool_free>>;
inline AmqpPoolPtr make_amqp_pool(size_t pagesize = 4096) {
  auto* p = new amqp_pool_t;
  init_amqp_pool(p, pagesize);
  return AmqpPoolPtr(p);
}

// A move-only file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) reset(std::exchange(o.fd_, -1));
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace warren
