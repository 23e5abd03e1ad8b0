#include "http/admin.h"

#include "http/request.h"
#include "http/server.h"

namespace warren {
namespace {

const RouteRules kAdminRules{"GET", "read it with GET", false, true};

}  // namespace

void admin_routes(HttpServer& server, StatsSource& stats) {
  // /healthz answers from the worker alone: it must stay fast whatever the broker does.
  server.route("/healthz", [&server, &stats](Exchange* req, const std::string&) {
    if (!admit(server, req, kAdminRules)) return;
    auto body = stats.identity();
    body["status"] = "ok";
    server.reply_json(req, 200, body);
  });
  server.route("/stats", [&server, &stats](Exchange* req, const std::string&) {
    if (!admit(server, req, kAdminRules)) return;
    stats.request_stats("json", [&server, req](const nlohmann::json& body) {
      if (body.is_null())
        return server.reply_error(req, 503, "stats unavailable", "the master did not answer");
      server.reply_json(req, 200, body);
    });
  });
  server.route("/metrics", [&server, &stats](Exchange* req, const std::string&) {
    if (!admit(server, req, kAdminRules)) return;
    stats.request_stats("prometheus", [&server, req](const nlohmann::json& body) {
      if (!body.is_string())
        return server.reply_error(req, 503, "metrics unavailable", "the master did not answer");
      server.reply(req, 200, "text/plain; version=0.0.4", body.get<std::string>());
    });
  });
}

}  // namespace warren
