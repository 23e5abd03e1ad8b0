// HTTP requests to backends from a worker's event loop: one CURLM driven through
// CURLMOPT_SOCKETFUNCTION / CURLMOPT_TIMERFUNCTION with libevent events, so a slow backend
// never blocks the loop. The multi handle's connection cache keeps backend connections alive
// between requests (keep-alive reuse across every forwarder of the worker).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config.h"
#include "forward/format.h"
#include "handles.h"
#include "loop.h"

namespace warren::forward {

class HttpClient : NonCopyable {
 public:
  // Called exactly once per request that was not cancelled, from the loop, never inside start().
  using Callback = std::function<void(BackendResponse&&, double seconds)>;

  explicit HttpClient(Loop& loop);
  ~HttpClient();

  // Sends `request` to the backend `backend` describes (TLS files, verification, Basic auth,
  // timeout). Returns an id for cancel().
  uint64_t start(const BackendConfig& backend, BackendRequest request, Callback done);
  // Abandons a request; its callback is never called, even when the request has ended and its
  // callback waits for its turn in this loop pass.
  void cancel(uint64_t id);
  size_t active() const { return requests_.size(); }
  Loop& loop() const { return loop_; }

 private:
  struct Handle;
  struct Request;
  struct Socket;

  static int on_socket(CURL* easy, curl_socket_t s, int what, void* arg, void* socket_arg);
  static int on_close_socket(void* arg, curl_socket_t s);
  static int on_timer(CURLM* multi, long timeout_ms, void* arg);
  static void on_socket_event(evutil_socket_t fd, short what, void* arg);
  static void on_timeout(evutil_socket_t, short, void* arg);
  static size_t on_header(char* data, size_t size, size_t n, void* arg);
  static size_t on_body(char* data, size_t size, size_t n, void* arg);

  // A pooled easy handle set up for this request: only the request's own options are set
  // when the handle's last request went to the same backend the same way.
  Handle handle_for(const BackendConfig& backend, const BackendRequest& q);
  void action(curl_socket_t s, int what);
  void collect_done();
  static BackendResponse response_of(Request& r, CURLcode code);
  void fail_later(uint64_t id, BackendResponse r);
  // Runs the callback of a request that ended, unless it was cancelled meanwhile.
  void answer(uint64_t id, BackendResponse&& response, double seconds);

  Loop& loop_;
  CurlMultiPtr multi_;
  EventPtr timer_;
  std::map<curl_socket_t, std::unique_ptr<Socket>> sockets_;
  std::map<uint64_t, std::unique_ptr<Request>> requests_;
  // Finished easy handles, reused: curl_easy_init allocates and clears several KiB per call,
  // which showed at the top of a forwarding profile.
  std::vector<Handle> idle_;
  uint64_t next_id_ = 1;
  // Lets deferred callbacks notice the client is gone.
  LifeToken life_;
};

}  // namespace warren::forward
