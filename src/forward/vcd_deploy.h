// The extension's life in vCloud Director (vcdextproxy's planned feature #2): register the
// extension service a vcd forwarder serves (POST /api/admin/extension/service with Namespace,
// RoutingKey, Exchange, Enabled, Priority), its API filters (UrlPattern /api/<extension>/.*)
// and enable it; or find it by name (the adminService query), update it and replace its
// filters; or only compare what vCD has with what the config says. Idempotent: a second run
// writes nothing. Used by `warrenctl vcd` and by `vcd.deploy: auto` at a forward worker's start.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config.h"
#include "forward/vcd_api.h"
#include "handles.h"
#include "loop.h"

namespace warren::forward {

// The extension service as the config says it should be.
struct VcdService {
  std::string name;         // vcd.extension
  std::string namespace_;   // vcd.extension
  std::string exchange;     // declare.exchange.name: where vCD publishes the requests
  std::string routing_key;  // declare.bindings[0], else queue
  int priority = 0;
  std::vector<std::string> filters;  // /api/<extension>/.*
};
VcdService vcd_service_wanted(const ForwarderConfig& forwarder);

enum class VcdDeployMode {
  status,    // compare only
  deploy,    // create what is missing (service, filters), enable; leave what differs, say so
  redeploy,  // the same, and update the service and replace the filters where they differ
};

// `done(ok, report)`: report = {"forwarder", "config", "vcd" (null: not registered),
// "differences": [...], "actions": [...], "error"?}. `api` must outlive the run (when it goes,
// the run ends silently).
void vcd_deploy(VcdApi& api, const std::string& forwarder, VcdService wanted, VcdDeployMode mode,
                std::function<void(bool ok, nlohmann::json report)> done);

// vcd.deploy auto: deploys when the forward worker starts, and again after a failure (vCD
// down, say) 1 s later, doubling up to a minute, until it went through; logs what it did.
class VcdAutoDeploy : NonCopyable {
 public:
  // `api` and `forwarder` must outlive it.
  VcdAutoDeploy(Loop& loop, VcdApi& api, const ForwarderConfig& forwarder);
  ~VcdAutoDeploy();
  void start();

 private:
  static void on_timer(evutil_socket_t, short, void* arg);

  VcdApi& api_;
  const ForwarderConfig& forwarder_;
  EventPtr timer_;
  double delay_ = 1;  // before the next try after a failure
  LifeToken life_;
};

}  // namespace warren::forward
