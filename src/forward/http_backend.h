// A forwarder's REST backend (core::Backend): each consumed message becomes an HTTP request
// through the forwarder's Format, sent with the worker's HttpClient to backend.url (TLS, Basic
// auth, timeout from forwarders[].backend); the response becomes the answer core::Forwarder
// applies the delivery rules to, and the reply its Format makes. Translation only: retries,
// acks, replies and dead letters are core/forwarder's.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config.h"
#include "core/backend.h"
#include "core/forwarder.h"
#include "forward/format.h"
#include "forward/http_client.h"
#include "forward/vcd_api.h"
#include "forward/vcd_deploy.h"
#include "stats.h"

namespace warren::forward {

class HttpBackend final : public core::Backend {
 public:
  // `config` (an entry of config.forwarders), `http` and `counters` must outlive the backend
  // and its jobs.
  HttpBackend(const ForwarderConfig& config, HttpClient& http, ForwarderCounters& counters);
  ~HttpBackend() override;

  // What runs once the worker is up: vcd.deploy auto registers the extension in vCD.
  void start();
  std::unique_ptr<core::BackendJob> prepare(const amqp::Delivery& message) override;
  std::string describe() const override;
  // What the forwarder declares and consumes: its format's plan.
  std::vector<core::ConsumeQueue> consume_plan() const { return format_->consume_plan(); }

 private:
  const ForwarderConfig& config_;
  HttpClient& http_;
  std::unique_ptr<const Format> format_;  // forwarders[].format's, chosen once
  ForwarderCounters& counters_;
  std::unique_ptr<VcdApi> vcd_api_;  // vcd with vcd.api.url: its checks and deploy
  std::unique_ptr<VcdAutoDeploy> auto_deploy_;  // vcd.deploy auto (after vcd_api_: goes first)
};

// What core/forwarder needs of a backend's response (or of the answer a format gave itself).
core::BackendAnswer backend_answer(const BackendResponse& response, double seconds);

}  // namespace warren::forward
