#include "forward/format_oslo.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include "json.h"

namespace warren::forward {
namespace {

using nlohmann::json;
namespace oslo = core::oslo;

// A method name that can be a path segment as it is: what Python identifiers are made of, plus
// '-' and '.'.
bool is_method_name(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) {
           return std::isalnum(c) || c == '_' || c == '-' || c == '.';
         });
}

Reply reply_to(const OsloCaller& o, const json& result, const std::optional<oslo::Failure>& failure,
               bool ending) {
  Reply r;
  r.routing_key = o.reply_q;  // on the default exchange
  r.mandatory = true;
  r.properties = oslo::message_properties(std::nullopt);
  // Every reply has its own _unique_id: the caller drops replies whose id it has seen.
  r.body = oslo::envelope(oslo::reply_message(o.msg_id, result, failure, ending, oslo::new_id()));
  return r;
}

}  // namespace

std::vector<core::ConsumeQueue> oslo_queues(const OsloConfig& config, std::string_view server,
                                      std::string_view fanout_id) {
  std::vector<core::ConsumeQueue> queues;
  for (std::string name : {config.topic, fmt::format("{}.{}", config.topic, server)}) {
    core::ConsumeQueue q;
    q.queue = name;
    q.declare = true;
    q.exchange = config.exchange.empty() ? std::string(oslo::kDefaultExchange) : config.exchange;
    q.exchange_type = "topic";
    q.bindings = {name};
    queues.push_back(std::move(q));
  }
  core::ConsumeQueue fanout;
  fanout.queue = fmt::format("{}_fanout_{}", config.topic, fanout_id);
  fanout.declare = true;
  fanout.exchange = config.topic + "_fanout";
  fanout.exchange_type = "fanout";
  fanout.exchange_auto_delete = true;
  fanout.arguments = json{{"x-expires", oslo::kTransientQueueTtlMs}};
  fanout.bindings = {config.topic};
  queues.push_back(std::move(fanout));
  return queues;
}

std::string oslo_server_name(const OsloConfig& config) {
  if (!config.server.empty()) return config.server;
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') return "localhost";
  return host;
}

json oslo_result(const BackendResponse& r) {
  if (r.body.empty()) return nullptr;
  json result = json_parse(r.body);
  if (result.is_discarded()) return r.body;  // not JSON: the text itself
  return result;
}

oslo::Failure oslo_failure(const BackendResponse& r) {
  oslo::Failure f;
  f.class_name = kOsloFailureClass;
  f.module = kOsloFailureModule;
  const int status = r.status ? r.status : failure_status(r);
  std::string detail = r.status ? r.body.substr(0, kOsloFailureBodyLimit) : "backend failed: " + r.error;
  f.message = fmt::format("HTTP {}: {}", status, detail);
  f.args = json::array({f.message});
  f.kwargs = json{{"status", status}};
  return f;
}

namespace {

class OsloFormat final : public Format {
 public:
  // One fanout queue per forwarder for its whole life (an oslo server has one per process):
  // redeclared as it was after a reconnect; x-expires removes it once nobody consumes it.
  explicit OsloFormat(const ForwarderConfig& config)
      : Format(config), server_(oslo_server_name(config.oslo)), fanout_id_(oslo::new_id()) {}

  std::vector<core::ConsumeQueue> consume_plan() const override { return oslo_queues(config_.oslo, server_, fanout_id_); }

  Translation translate(const amqp::Delivery& message) const override {
    if (auto problem = json_body_problem(message.body, oslo::kMessageKey))
      return bad_message("not an oslo.messaging request: " + *problem);
    auto parsed = oslo::parse_request(message.body);
    if (auto* e = std::get_if<std::string>(&parsed)) return bad_message("not an oslo.messaging request: " + *e);
    auto& request = std::get<oslo::Request>(parsed);
    const bool is_call = !request.msg_id.empty();
    OsloCaller caller{.msg_id = request.msg_id, .reply_q = request.reply_q, .unique_id = request.unique_id};
    if (is_call && request.timeout && *request.timeout >= kOsloMinHeartbeatTimeout)
      caller.heartbeat = std::min(*request.timeout, kOsloMaxHeartbeatTimeout) / 2;
    std::string error;
    auto url = method_url(request.call.method, &error);
    Translation t = url ? post(request.call, std::move(*url), is_call, caller.unique_id) : bad_message(std::move(error));
    t.oslo = std::move(caller);
    // A caller waits: whatever happens is answered, never retried behind its back.
    t.final_answer = is_call;
    return t;
  }

  std::optional<Reply> reply(const amqp::Delivery&, const Translation& t, const BackendResponse& r) const override {
    if (!t.oslo || t.oslo->msg_id.empty()) return std::nullopt;
    if (r.status >= 200 && r.status < 300) return reply_to(*t.oslo, oslo_result(r), std::nullopt, true);
    return reply_to(*t.oslo, nullptr, oslo_failure(r), true);
  }

  std::optional<Reply> heartbeat(const Translation& t) const override {
    if (!t.oslo || t.oslo->msg_id.empty()) return std::nullopt;
    return reply_to(*t.oslo, nullptr, std::nullopt, false);
  }

 private:
  // backend.url/<method> (after the rewrite), or nullopt with `error` set.
  std::optional<std::string> method_url(const std::string& method, std::string* error) const {
    if (method.size() > config_.max_path) {
      *error = fmt::format("method is {} bytes, over forwarders[].max_path ({})", method.size(), config_.max_path);
      return std::nullopt;
    }
    if (!is_method_name(method)) {
      *error = fmt::format("method {} is not a name warren can put in a URL", json_text(method));
      return std::nullopt;
    }
    return target_url("/" + method, "", error);
  }

  // The request's args POSTed as JSON, the rest of it as X-Oslo-* headers.
  static Translation post(const oslo::Call& c, std::string url, bool is_call, const std::string& unique_id) {
    Translation t;
    t.request.method = "POST";
    t.request.url = std::move(url);
    t.request.body = json_text(c.args);
    auto& h = t.request.headers;
    auto add = [&h](std::string name, const std::string& value) {
      if (is_header_value(value)) h.emplace_back(std::move(name), value);
    };
    add("Content-Type", "application/json");
    add("X-Oslo-Method", c.method);
    add("X-Oslo-Kind", is_call ? "call" : "cast");
    if (!unique_id.empty()) add("X-Oslo-Unique-Id", unique_id);
    if (c.name_space) add("X-Oslo-Namespace", *c.name_space);
    if (c.version) add("X-Oslo-Version", *c.version);
    add("X-Oslo-Context", header_text(c.context));
    for (const auto& [key, value] : c.context.items()) {
      std::string name = key;
      std::replace(name.begin(), name.end(), '_', '-');
      if (is_token(name)) add("X-Oslo-Context-" + name, header_text(value));
    }
    return t;
  }

  const std::string server_, fanout_id_;
};

}  // namespace

std::unique_ptr<Format> make_oslo_format(const ForwarderConfig& config) {
  return std::make_unique<OsloFormat>(config);
}

}  // namespace warren::forward
