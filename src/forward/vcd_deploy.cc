#include "forward/vcd_deploy.h"

#include <algorithm>
#include <cctype>
#include <memory>

#include <fmt/format.h>

#include "json.h"
#include "log.h"

namespace warren::forward {
namespace {

using nlohmann::json;

constexpr std::string_view kServiceType = "application/vnd.vmware.admin.service+json";
constexpr std::string_view kFilterType = "application/vnd.vmware.admin.apiFilter+json";
constexpr double kMaxAutoDeployDelay = 60;

// Percent-encodes all but RFC 3986's unreserved bytes (a query value).
std::string query_escape(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') out += static_cast<char>(c);
    else out += fmt::format("%{:02X}", c);
  }
  return out;
}

// AdminServiceType in JSON, as POST and PUT take it.
json service_body(const VcdService& s, bool enabled) {
  return {{"name", s.name},         {"namespace", s.namespace_}, {"routingKey", s.routing_key},
          {"exchange", s.exchange}, {"priority", s.priority},    {"enabled", enabled},
          {"authorizationEnabled", false}};
}

json member_or_null(const json& record, const char* key) {
  auto it = record.find(key);
  return it == record.end() ? json() : *it;
}

// One run: find the service, read its filters, work out the writes, make them in turn.
class Deployment : public std::enable_shared_from_this<Deployment> {
 public:
  Deployment(VcdApi& api, std::string forwarder, VcdService wanted, VcdDeployMode mode,
             std::function<void(bool, json)> done)
      : api_(api), wanted_(std::move(wanted)), mode_(mode), done_(std::move(done)) {
    report_ = {{"forwarder", std::move(forwarder)},
               {"mode", mode == VcdDeployMode::status     ? "status"
                        : mode == VcdDeployMode::deploy ? "deploy"
                                                        : "redeploy"},
               {"config", service_body(wanted_, true)},
               {"vcd", nullptr},
               {"differences", json::array()},
               {"actions", json::array()}};
    report_["config"]["apiFilters"] = wanted_.filters;
  }

  void find() {
    api_.admin("GET",
               fmt::format("/api/query?type=adminService&format=records&filter=name=={}", query_escape(wanted_.name)),
               "", "", [self = shared_from_this()](VcdReply&& r) { self->found(std::move(r)); });
  }

 private:
  struct Write {
    std::string method, target, content_type, body, says;
  };

  void found(VcdReply&& r) {
    if (!r.ok()) return fail("the adminService query failed: " + r.problem);
    std::vector<json> same_name;
    for (const auto& rec : vcd_list(r.doc, "record"))
      if (vcd_text(rec, "name") == wanted_.name) same_name.push_back(rec);
    if (same_name.size() > 1) return fail(fmt::format("vCD has {} services named {}", same_name.size(), wanted_.name));
    if (same_name.empty()) {
      report_["differences"].push_back("not registered");
      if (mode_ == VcdDeployMode::status) return finish();
      return create();
    }
    service_ = same_name[0];
    read_filters();
  }

  void create() {
    const std::string body = json_text(service_body(wanted_, true));
    report_["actions"].push_back("POST /api/admin/extension/service (register " + wanted_.name + ")");
    api_.admin("POST", "/api/admin/extension/service", std::string(kServiceType), body,
               [self = shared_from_this()](VcdReply&& r) {
                 if (!r.ok() || vcd_text(r.doc, "href").empty())
                   return self->fail("registering the service failed: " + r.problem);
                 self->service_ = r.doc;
                 self->read_filters();
               });
  }

  void read_filters() {
    href_ = vcd_text(service_, "href");
    report_["vcd"] = {{"href", href_},
                      {"name", member_or_null(service_, "name")},
                      {"namespace", member_or_null(service_, "namespace")},
                      {"routingKey", member_or_null(service_, "routingKey")},
                      {"exchange", member_or_null(service_, "exchange")},
                      {"priority", member_or_null(service_, "priority")},
                      {"enabled", member_or_null(service_, "enabled")}};
    api_.admin("GET", href_ + "/apifilters", "", "", [self = shared_from_this()](VcdReply&& r) {
      if (!r.ok()) return self->fail("reading the service's API filters failed: " + r.problem);
      self->report_["vcd"]["apiFilters"] = json::array();
      for (const auto& rec : vcd_list(r.doc, "record"))
        if (auto pattern = vcd_text(rec, "urlPattern"); !pattern.empty()) {
          self->filters_.emplace_back(pattern, vcd_text(rec, "href"));
          self->report_["vcd"]["apiFilters"].push_back(pattern);
        }
      self->plan();
    });
  }

  // What differs, and the writes this mode makes of it.
  void plan() {
    const json& want = report_["config"];
    bool fields_differ = false;
    for (const char* key : {"namespace", "routingKey", "exchange", "priority"}) {
      if (report_["vcd"][key] == want[key]) continue;
      fields_differ = true;
      report_["differences"].push_back(
          fmt::format("{}: vCD has {}, the config says {}", key, json_text(report_["vcd"][key]), json_text(want[key])));
    }
    const bool enabled = report_["vcd"]["enabled"] == true;
    if (!enabled) report_["differences"].push_back("enabled: vCD has it disabled");
    if (fields_differ && mode_ == VcdDeployMode::deploy)
      report_["differences"].push_back("the service is left as it is: `warrenctl vcd redeploy` updates it");
    const bool update = mode_ == VcdDeployMode::redeploy && fields_differ;
    if (update || (!enabled && mode_ != VcdDeployMode::status)) {
      // deploy only enables: the service keeps the fields vCD has.
      VcdService as_is = wanted_;
      if (!update) {
        as_is.namespace_ = vcd_text(service_, "namespace");
        as_is.routing_key = vcd_text(service_, "routingKey");
        as_is.exchange = vcd_text(service_, "exchange");
        as_is.priority = static_cast<int>(vcd_number(service_, "priority", 0));
      }
      writes_.push_back({"PUT", href_, std::string(kServiceType), json_text(service_body(as_is, true)),
                         update ? "PUT the service (update and enable)" : "PUT the service (enable)"});
    }
    for (const auto& [pattern, href] : filters_) {
      if (std::find(wanted_.filters.begin(), wanted_.filters.end(), pattern) != wanted_.filters.end()) continue;
      report_["differences"].push_back("API filter " + pattern + ": not in the config");
      if (mode_ == VcdDeployMode::redeploy)
        writes_.push_back({"DELETE", href, "", "", "DELETE the API filter " + pattern});
    }
    for (const auto& pattern : wanted_.filters) {
      if (std::any_of(filters_.begin(), filters_.end(), [&](const auto& f) { return f.first == pattern; })) continue;
      report_["differences"].push_back("API filter " + pattern + ": missing in vCD");
      if (mode_ != VcdDeployMode::status)
        writes_.push_back({"POST", href_ + "/apifilters", std::string(kFilterType),
                           json_text({{"urlPattern", pattern}}), "POST the API filter " + pattern});
    }
    next_write();
  }

  void next_write() {
    if (writes_.empty()) return finish();
    Write w = std::move(writes_.front());
    writes_.erase(writes_.begin());
    report_["actions"].push_back(w.says);
    api_.admin(w.method, w.target, w.content_type, w.body, [self = shared_from_this(), says = w.says](VcdReply&& r) {
      if (!r.ok()) return self->fail(says + " failed: " + r.problem);
      self->next_write();
    });
  }

  void fail(std::string error) {
    report_["error"] = error;
    done_(false, std::move(report_));
  }
  void finish() {
    if (mode_ == VcdDeployMode::status) report_["in_sync"] = report_["differences"].empty();
    done_(true, std::move(report_));
  }

  VcdApi& api_;
  const VcdService wanted_;
  const VcdDeployMode mode_;
  std::function<void(bool, json)> done_;
  json report_;
  json service_;  // vCD's record of it
  std::string href_;
  std::vector<std::pair<std::string, std::string>> filters_;  // vCD's: pattern, href
  std::vector<Write> writes_;
};

}  // namespace

VcdService vcd_service_wanted(const ForwarderConfig& f) {
  VcdService s;
  s.name = s.namespace_ = f.vcd.extension;
  s.exchange = f.declare.exchange_name;
  s.routing_key = f.declare.bindings.empty() ? f.queue : f.declare.bindings.front();
  s.filters = {"/api/" + f.vcd.extension + "/.*"};
  return s;
}

VcdAutoDeploy::VcdAutoDeploy(Loop& loop, VcdApi& api, const ForwarderConfig& forwarder)
    : api_(api), forwarder_(forwarder), timer_(evtimer_new(loop.base(), on_timer, this)) {}

VcdAutoDeploy::~VcdAutoDeploy() { life_.end(); }

void VcdAutoDeploy::start() {
  const std::string& name = forwarder_.name;
  vcd_deploy(api_, name, vcd_service_wanted(forwarder_), VcdDeployMode::deploy,
             [this, alive = life_.watch(), name](bool ok, json report) {
               if (alive.expired()) return;
               if (!ok) {
                 log_error("forwarder {}: vcd.deploy auto failed: {}; trying again in {:.0f} s", name,
                           vcd_text(report, "error"), delay_);
                 timeval tv = to_timeval(delay_);
                 evtimer_add(timer_.get(), &tv);
                 delay_ = std::min(delay_ * 2, kMaxAutoDeployDelay);
                 return;
               }
               log_info("forwarder {}: vcd.deploy auto: {}", name,
                        report["actions"].empty() ? "the extension was registered already"
                                                  : json_text(report["actions"]));
               for (const auto& d : report["differences"])
                 if (d.is_string()) log_warning("forwarder {}: vCD: {}", name, d.get<std::string>());
             });
}

void VcdAutoDeploy::on_timer(evutil_socket_t, short, void* arg) { static_cast<VcdAutoDeploy*>(arg)->start(); }

void vcd_deploy(VcdApi& api, const std::string& forwarder, VcdService wanted, VcdDeployMode mode,
                std::function<void(bool, json)> done) {
  std::make_shared<Deployment>(api, forwarder, std::move(wanted), mode, std::move(done))->find();
}

}  // namespace warren::forward
