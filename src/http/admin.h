// Operator routes every worker serves: /healthz, /stats, /metrics.
#pragma once

#include <functional>
#include <string>

#include <nlohmann/json.hpp>

namespace warren {

class HttpServer;

// Where a worker gets the figures summed over all workers (the master has them).
class StatsSource {
 public:
  // body: the rendered stats (a JSON document, or a JSON string holding Prometheus text);
  // null when the master could not be asked.
  using StatsCallback = std::function<void(const nlohmann::json& body)>;
  virtual ~StatsSource() = default;
  virtual void request_stats(std::string format, StatsCallback done) = 0;
  virtual nlohmann::json identity() const = 0;
};

void admin_routes(HttpServer& server, StatsSource& stats);

}  // namespace warren
