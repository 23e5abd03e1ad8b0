// The HTTP binding of RPC: `POST /rpc/{vhost}/{exchange}/{topic}[/{server}]` with a JSON body
// {"method", "args", "context", "version", "namespace"} into core::Rpc calls and casts, and
// their outcomes into status codes (man/warren-rpc.7). Translation only.
#pragma once

#include <string_view>
#include <variant>

#include "config.h"
#include "core/rpc.h"
#include "http/request.h"

namespace warren {

class HttpServer;

inline constexpr std::string_view kRpcPrefix = "/rpc/";

struct RpcRequest {
  std::string vhost;
  core::RpcTarget target;
  core::oslo::Call call;
  bool cast = false;    // ?cast=1, and always with ?fanout=1
  double timeout = 0;   // ?timeout=S, else rpc.timeout
};

// The path: percent-decoded segments, "amq.default" for the default exchange. No I/O.
std::variant<RpcRequest, HttpError> parse_rpc_path(std::string_view raw_path);
// The query (cast, fanout, timeout) and the JSON body into `request`. No I/O.
std::optional<HttpError> parse_rpc_call(RpcRequest& request, std::string_view query,
                                        std::string_view body, const RpcConfig& config);

// The HTTP answer for an outcome: status and JSON body.
std::pair<int, nlohmann::json> rpc_response(const core::RpcResult& result, double timeout);

void rpc_routes(HttpServer& server, core::Rpc& rpc, const Config& config);

}  // namespace warren
