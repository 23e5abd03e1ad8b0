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

}  // namespace warren::forward
