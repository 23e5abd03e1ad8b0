// What a forward worker runs: the forwarders of one queue_set (core/forwarder.h), each with its
// HTTP backend (forward/http_backend.h), all sharing one HttpClient (one CURLM, one connection
// cache) on the worker's loop.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "amqp/types.h"
#include "config.h"
#include "context.h"
#include "core/forwarder.h"
#include "forward/http_backend.h"
#include "forward/http_client.h"
#include "handles.h"

namespace warren::forward {

class QueueSet : NonCopyable {
 public:
  // `config` must outlive the set.
  QueueSet(Context& context, const Config& config, std::string name);
  ~QueueSet();

  const std::string& name() const { return name_; }
  size_t size() const { return forwarders_.size(); }
  void start();
  // Every forwarder stops consuming and finishes what it has; `done` runs once all are idle or
  // after `timeout` seconds, when what is left is requeued.
  void drain(double timeout, std::function<void()> done);
  void close();
  // Per forwarder counters and the broker figures into a worker's snapshot.
  void fill(Snapshot& snapshot) const;

 private:
  static void on_drain_timeout(evutil_socket_t, short, void* arg);
  void drained_one();

  Loop& loop_;
  const Config& config_;
  std::string name_;
  HttpClient http_;
  std::map<std::string, ForwarderCounters> counters_;  // by forwarder name; stable addresses
  std::vector<std::unique_ptr<HttpBackend>> backends_;  // forwarders_[i]'s is backends_[i]
  std::vector<std::unique_ptr<core::Forwarder>> forwarders_;
  EventPtr drain_timer_;
  size_t draining_ = 0;
  std::function<void()> on_drained_;
};

}  // namespace warren::forward
