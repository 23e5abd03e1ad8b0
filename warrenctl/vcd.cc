#include "vcd.h"

#include <getopt.h>

#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "config.h"
#include "forward/http_client.h"
#include "forward/vcd_deploy.h"
#include "json.h"
#include "loop.h"

namespace warrenctl {
namespace {

using nlohmann::json;
using warren::ForwarderConfig;
constexpr const char* kDefaultConfig = "/etc/warren/warren.yml";
constexpr int kExitError = 1, kExitUnreachable = 2, kExitUsage = 64, kExitConfig = 78;

// One line per difference and action; --json prints the report itself.
void print_report(const json& r) {
  const json& have = r["vcd"];
  fmt::print("{}: ", r.value("forwarder", ""));
  if (r.contains("error")) fmt::print("failed: {}\n", r.value("error", ""));
  else if (r.value("mode", "") == "status")
    fmt::print("{}\n", have.is_null() ? "not registered in vCD"
                       : r.value("in_sync", false) ? "registered, as the config says"
                                                   : "registered, differs from the config");
  else fmt::print("{}\n", r["actions"].empty() ? "nothing to do" : "done");
  if (have.is_object())
    fmt::print("  vCD:    namespace {} exchange {} routing key {} enabled {} filters {}\n",
               warren::json_text(have.value("namespace", json())), warren::json_text(have.value("exchange", json())),
               warren::json_text(have.value("routingKey", json())), warren::json_text(have.value("enabled", json())),
               warren::json_text(have.value("apiFilters", json::array())));
  const json& want = r["config"];
  fmt::print("  config: namespace {} exchange {} routing key {} enabled true filters {}\n",
             warren::json_text(want["namespace"]), warren::json_text(want["exchange"]),
             warren::json_text(want["routingKey"]), warren::json_text(want["apiFilters"]));
  for (const auto& d : r["differences"]) fmt::print("  differs: {}\n", d.get<std::string>());
  for (const auto& a : r["actions"]) fmt::print("  did: {}\n", a.get<std::string>());
}

// Runs the mode for each forwarder in turn on one loop: one session serves them all when they
// share an API.
int run(const std::vector<const ForwarderConfig*>& forwarders, warren::forward::VcdDeployMode mode, bool as_json) {
  warren::Loop loop;
  warren::forward::HttpClient http(loop);
  json reports = json::array();
  bool all_ok = true;
  for (const auto* f : forwarders) {
    if (f->declare.exchange_name.empty() && mode != warren::forward::VcdDeployMode::status) {
      reports.push_back({{"forwarder", f->name},
                         {"error", "declare.exchange.name is not set: vCD needs the exchange to publish to"}});
      all_ok = false;
      continue;
    }
    warren::forward::VcdApi api(loop, http, f->vcd.api);
    bool finished = false;
    warren::forward::vcd_deploy(api, f->name, warren::forward::vcd_service_wanted(*f), mode,
                                [&](bool ok, json report) {
                                  all_ok = all_ok && ok;
                                  reports.push_back(std::move(report));
                                  finished = true;
                                  event_base_loopbreak(loop.base());
                                });
    // Every request has vcd.api.timeout: the run always ends. No event left yet unfinished
    // would be a bug; say so rather than spin.
    while (!finished)
      if (event_base_loop(loop.base(), EVLOOP_ONCE) == 1) {
        reports.push_back({{"forwarder", f->name}, {"error", "the run stopped without an answer"}});
        all_ok = finished = false;
        break;
      }
  }
  if (as_json) fmt::print("{}\n", warren::json_text(reports.size() == 1 ? reports[0] : reports, 2));
  else
    for (const auto& r : reports)
      if (r.contains("config")) print_report(r);
      else fmt::print("{}: failed: {}\n", r.value("forwarder", ""), r.value("error", ""));
  return all_ok ? 0 : kExitUnreachable;
}

}  // namespace

void vcd_usage(FILE* out) {
  fmt::print(out,
             "usage: warrenctl vcd [-c CONFIG] [--json] deploy NAME | redeploy NAME | status [NAME]\n"
             "  deploy    register forwarder NAME's extension in vCD (service, API filter), enable it\n"
             "  redeploy  the same, and update the service and replace its API filters to match\n"
             "  status    what vCD has against what the config says (every vcd forwarder)\n"
             "options: -c CONFIG (default {}), --json or -j the report as JSON\n",
             kDefaultConfig);
}

int vcd_command(int argc, char** argv) {
  std::string config_path = kDefaultConfig;
  bool as_json = false;
  static const option kLong[] = {{"json", no_argument, nullptr, 'j'},
                                 {"help", no_argument, nullptr, 'h'},
                                 {nullptr, 0, nullptr, 0}};
  optind = 1;
  int opt;
  while ((opt = getopt_long(argc, argv, "+c:jh", kLong, nullptr)) != -1) {
    switch (opt) {
      case 'c': config_path = optarg; break;
      case 'j': as_json = true; break;
      case 'h': vcd_usage(stdout); return 0;
      default: vcd_usage(stderr); return kExitUsage;
    }
  }
  std::vector<std::string> args(argv + optind, argv + argc);
  std::erase_if(args, [&](const std::string& a) { return a == "--json" && (as_json = true); });
  using Mode = warren::forward::VcdDeployMode;
  Mode mode;
  if (!args.empty() && args[0] == "deploy" && args.size() == 2) mode = Mode::deploy;
  else if (!args.empty() && args[0] == "redeploy" && args.size() == 2) mode = Mode::redeploy;
  else if (!args.empty() && args[0] == "status" && args.size() <= 2) mode = Mode::status;
  else {
    vcd_usage(stderr);
    return kExitUsage;
  }
  auto loaded = warren::config_load(config_path);
  if (!loaded.config) {
    for (const auto& e : loaded.errors) fmt::print(stderr, "warrenctl: {}\n", e.text());
    return kExitConfig;
  }
  // A NAME must have an API; `status` alone shows every forwarder that has one.
  std::vector<const ForwarderConfig*> chosen;
  for (const auto& f : loaded.config->forwarders)
    if (f.format == warren::ForwarderFormat::vcd && (args.size() == 1 ? !f.vcd.api.url.empty() : f.name == args[1]))
      chosen.push_back(&f);
  if (chosen.empty()) {
    fmt::print(stderr, "warrenctl: {} has no vcd forwarder {}\n", config_path,
               args.size() == 2 ? "named " + args[1] : std::string("with vcd.api.url"));
    return kExitError;
  }
  if (chosen[0]->vcd.api.url.empty()) {
    fmt::print(stderr, "warrenctl: forwarder {}: vcd.api.url is not set in {}\n", chosen[0]->name, config_path);
    return kExitError;
  }
  return run(chosen, mode, as_json);
}

}  // namespace warrenctl
