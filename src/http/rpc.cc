#include "http/rpc.h"

#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <cstdlib>

#include "http/outcome.h"
#include "http/publish_request.h"
#include "http/server.h"
#include "json.h"

namespace warren {
namespace {

using nlohmann::json;

const HttpError kShape{404, "not found",
                       "expected /rpc/{vhost}/{exchange}/{topic}[/{server}] (vhost \"/\" is %2f)"};

std::optional<std::string> path_decode(std::string_view s) {
  size_t out_len = 0;
  char* decoded = evhttp_uridecode(std::string(s).c_str(), 0, &out_len);
  if (!decoded) return std::nullopt;
  std::string out(decoded, out_len);
  free(decoded);  // evhttp_uridecode's malloc, documented to be freed by the caller
  return out;
}

std::optional<bool> flag(const std::string& value) {
  if (value == "1" || value == "true" || value == "yes" || value.empty()) return true;
  if (value == "0" || value == "false" || value == "no") return false;
  return std::nullopt;
}

HttpError bad(std::string error, std::string detail) { return {400, std::move(error), std::move(detail)}; }

std::optional<HttpError> read_body(std::string_view body, core::oslo::Call& call) {
  json j = json_parse(body);
  if (j.is_discarded() || !j.is_object())
    return bad("bad body", "expected a JSON object {\"method\", \"args\", \"context\", \"version\", \"namespace\"}");
  for (const auto& [key, value] : j.items()) {
    if (key == "method") {
      if (!value.is_string() || value.get<std::string>().empty())
        return bad("bad field", "method: expected a non-empty string");
      call.method = value.get<std::string>();
    } else if (key == "args" || key == "context") {
      if (value.is_null()) continue;
      if (!value.is_object()) return bad("bad field", key + ": expected a JSON object");
      (key == "args" ? call.args : call.context) = value;
    } else if (key == "version" || key == "namespace") {
      if (value.is_null()) continue;
      if (!value.is_string()) return bad("bad field", key + ": expected a string");
      (key == "version" ? call.version : call.name_space) = value.get<std::string>();
    } else {
      return bad("bad field", key + ": unknown (method, args, context, version, namespace)");
    }
  }
  if (call.method.empty()) return bad("bad field", "method: missing");
  return std::nullopt;
}

}  // namespace

std::variant<RpcRequest, HttpError> parse_rpc_path(std::string_view raw_path) {
  if (!raw_path.starts_with(kRpcPrefix)) return kShape;
  std::vector<std::string> segments;
  std::string_view rest = raw_path.substr(kRpcPrefix.size());
  for (;;) {
    const size_t slash = rest.find('/');
    auto decoded = path_decode(rest.substr(0, slash));
    if (!decoded) return HttpError{400, "bad path", "malformed percent-encoding"};
    segments.push_back(std::move(*decoded));
    if (slash == std::string_view::npos) break;
    rest = rest.substr(slash + 1);
  }
  if (segments.size() < 3 || segments.size() > 4) return kShape;
  for (const auto& s : segments)
    if (s.empty()) return kShape;
  RpcRequest r;
  r.vhost = segments[0];
  r.target.exchange = segments[1] == "amq.default" ? "" : segments[1];
  r.target.topic = segments[2];
  if (segments.size() == 4) r.target.server = segments[3];
  if (r.vhost.size() > 255 || r.target.exchange.size() > 255 ||
      r.target.topic.size() + r.target.server.size() + 1 > 255)
    return bad("bad path",
               "the vhost, the exchange and the routing key (topic.server) are at most 255 bytes");
  return r;
}

std::optional<HttpError> parse_rpc_call(RpcRequest& r, std::string_view query, std::string_view body,
                                        const RpcConfig& config) {
  std::map<std::string, std::string> params;
  if (!parse_form(query, &params)) return bad("bad query", "malformed percent-encoding");
  r.timeout = config.timeout;
  for (const auto& [key, value] : params) {
    if (key == "cast" || key == "fanout") {
      auto on = flag(value);
      if (!on) return bad("bad query", key + ": expected 1 or 0");
      (key == "cast" ? r.cast : r.target.fanout) = *on;
    } else if (key == "timeout") {
      double t = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), t);
      if (ec != std::errc{} || end != value.data() + value.size() || !std::isfinite(t) || t <= 0 ||
          t > config.max_timeout)
        return bad("bad query",
                   fmt::format("timeout: expected seconds above 0, at most rpc.max_timeout ({})",
                               config.max_timeout));
      r.timeout = t;
    } else {
      return bad("bad query", key + ": unknown (cast, fanout, timeout)");
    }
  }
  if (r.target.fanout) {
    if (params.count("cast") && !r.cast)
      return bad("bad query", "fanout: a fanout cannot be called, only cast (oslo refuses it too)");
    if (!r.target.server.empty())
      return bad("bad query", "fanout: goes to every server of the topic, not to one");
    r.cast = true;
  }
  return read_body(body, r.call);
}

std::pair<int, json> rpc_response(const core::RpcResult& r, double timeout) {
  using core::PublishStatus;
  using core::RpcStatus;
  auto error = [](std::string error, std::string detail) {
    return json{{"error", std::move(error)}, {"detail", std::move(detail)}};
  };
  switch (r.status) {
    case RpcStatus::result: return {200, {{"result", r.result}}};
    case RpcStatus::accepted: return {202, {{"unique_id", r.unique_id}}};
    case RpcStatus::failure: {
      const auto& f = *r.failure;
      json body = error("remote failure", f.message.empty() ? f.class_name : f.class_name + ": " + f.message);
      body.update({{"class", f.class_name}, {"module", f.module}, {"message", f.message},
                   {"msg_id", r.msg_id}});
      return {500, body};
    }
    case RpcStatus::timeout: {
      json body = error("timeout", fmt::format("no reply within {} s", timeout));
      body["msg_id"] = r.msg_id;
      return {504, body};
    }
    case RpcStatus::too_many: return {503, error("too many pending calls", r.publish.detail)};
    case RpcStatus::publish_failed: break;
  }
  // Requests go out mandatory: unroutable means no queue is bound for the topic.
  if (r.publish.status == PublishStatus::unroutable)
    return {404, error("no server", "no queue is bound for this topic: " + r.publish.detail)};
  if (r.publish.status != PublishStatus::confirmed) {
    const HttpOutcome o = http_outcome(r.publish.status);
    return {o.status, error(std::string(o.error), r.publish.detail)};
  }
  return {500, error("internal error", "unexpected outcome")};
}

namespace {

const RouteRules kRpcRules{"POST", "call with POST", true};

class RpcHandler {
 public:
  RpcHandler(HttpServer& server, core::Rpc& rpc, const Config& config)
      : server_(server), rpc_(rpc), config_(config) {}

  void operator()(Exchange* req, const std::string& raw_path) {
    // The caller's credentials are the broker's, as for publishing: the broker decides who may
    // send to the exchange. Replies come back on warren's own queue.
    auto admitted = admit(server_, req, kRpcRules, parse_rpc_path(raw_path));
    if (!admitted) return;
    auto& [r, request] = *admitted;
    if (auto e = parse_rpc_call(r, request.query, request.body, config_.rpc))
      return server_.reply_error(req, *e);
    req->take_body();  // the call holds what it needs of it, while its reply is awaited
    const double timeout = r.timeout;
    auto reply = [this, req, timeout](const core::RpcResult& result) {
      server_.guard(req, [&] {
        auto [code, json_body] = rpc_response(result, timeout);
        server_.reply_json(req, code, json_body);
      });
    };
    if (r.cast) return rpc_.cast(request.who, r.target, std::move(r.call), std::move(reply));
    rpc_.call(request.who, r.target, std::move(r.call), timeout, std::move(reply));
  }

 private:
  HttpServer& server_;
  core::Rpc& rpc_;
  const Config& config_;
};

}  // namespace

void rpc_routes(HttpServer& server, core::Rpc& rpc, const Config& config) {
  server.route_prefix(std::string(kRpcPrefix),
                      shared_handler(std::make_shared<RpcHandler>(server, rpc, config)));
}

}  // namespace warren
