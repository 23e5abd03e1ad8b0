// One event loop and what every object on it shares (memcached's LIBEVENT_THREAD, Envoy's
// Dispatcher): the event_base, work deferred to the next pass, the deferred-delete list, the
// clock, and the loop's one TLS client context per TlsConfig and one DNS resolver. A worker has
// one; the master uses one for its timers.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "handles.h"
#include "tls_config.h"

namespace warren {

// Negative and NaN wait nothing; the cap keeps the cast to time_t defined (about 31 years).
timeval to_timeval(double seconds);

// Lets callbacks deferred to the loop (or held by a C library) notice that their owner was
// destroyed meanwhile: the owner holds a LifeToken, a callback captures its watch().
class LifeToken : NonCopyable {
 public:
  class Watch {
   public:
    bool expired() const { return life_.expired(); }

   private:
    friend class LifeToken;
    explicit Watch(std::weak_ptr<const char> life) : life_(std::move(life)) {}
    std::weak_ptr<const char> life_;
  };

  LifeToken() = default;

  Watch watch() const { return Watch(life_); }
  // Every watch expires now, before the owner's destructor goes on (its members are still there
  // for callbacks the destructor itself triggers).
  void end() { life_.reset(); }

 private:
  std::shared_ptr<const char> life_ = std::make_shared<const char>(0);
};

// OpenSSL's text for an error code (ERR_get_error()).
std::string ssl_error_text(unsigned long err);

class Loop : NonCopyable {
 public:
  using Clock = std::chrono::steady_clock;

  Loop();                              // a default event_base
  explicit Loop(EventBasePtr base);    // one made with the caller's event_config
  // Pending deferred work is dropped, the deferred-delete list is freed, then the resolver, then
  // the base: every object using the loop must be gone (or on that list) by now.
  ~Loop();

  event_base* base() const { return base_.get(); }

  // Runs fn on the next loop pass, never inside the caller's frame.
  void defer(std::function<void()> fn);
  // Frees `doomed` on the next loop pass, after the deferred work: an object may be let go from
  // inside its own callback (Envoy's deferredDelete).
  template <class T>
  void defer_delete(std::unique_ptr<T> doomed) {
    if (doomed) defer_release(std::shared_ptr<void>(std::move(doomed)));
  }
  // Drops this reference on the next loop pass (the object goes if it was the last).
  void defer_release(std::shared_ptr<void> ref);

  // The loop's clock: monotonic, in seconds (not cached: a pass may be long, and a read of
  // CLOCK_MONOTONIC is a vDSO call).
  static double now() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }
  static double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  }

  // The loop's TLS client context for these settings, made on first use and shared by every
  // connection: loading the CA file per connection cost a file read and a parse on the loop each
  // time. A failure is not kept: the next call tries again. Returns a new reference or null with
  // *why.
  SslCtxPtr tls_client_context(const TlsConfig& tls, std::string* why);
  // The loop's resolver, made on first use (it reads resolv.conf and hosts and opens sockets),
  // disabled while no lookup is pending so an idle loop can exit; null if evdns_base_new failed.
  evdns_base* resolver();

 private:
  static void on_deferred(evutil_socket_t, short, void* arg);
  void arm();
  void run_deferred();

  EventBasePtr base_;  // first: freed last
  EvdnsBasePtr resolver_;
  std::map<std::tuple<std::string, std::string, std::string, bool>, SslCtxPtr> tls_contexts_;
  EventPtr deferred_event_;  // one event for the deferred work and the deferred-delete list
  std::vector<std::function<void()>> deferred_;
  std::vector<std::shared_ptr<void>> doomed_;
};

}  // namespace warren
