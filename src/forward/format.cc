#include "forward/format.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include <fmt/format.h>

#include "json.h"

namespace warren::forward {
namespace {

using nlohmann::json;

json argument_json(const ArgValue& v) {
  switch (v.kind) {
    case ArgValue::Kind::integer: return v.integer;
    case ArgValue::Kind::real: return v.real;
    case ArgValue::Kind::boolean: return v.boolean;
    case ArgValue::Kind::string: break;
  }
  return v.text;
}

std::optional<std::string> string_header(const amqp::Properties& p, const char* name) {
  if (!p.headers || !p.headers->is_object()) return std::nullopt;
  auto it = p.headers->find(name);
  if (it == p.headers->end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

}  // namespace

std::unique_ptr<Format> make_format(const ForwarderConfig& config) {
  switch (config.format) {
    case ForwarderFormat::raw: return make_raw_format(config);
    case ForwarderFormat::vcd: return make_vcd_format(config);
    case ForwarderFormat::oslo: return make_oslo_format(config);
  }
  std::abort();  // the loader only stores the enum's own values
}

Format::Format(const ForwarderConfig& config)
    : config_(config), rewrite_(config.rewrite_from, config.rewrite_to), backend_url_(config.backend.url) {}

std::optional<Reply> Format::heartbeat(const Translation&) const { return std::nullopt; }

std::vector<core::ConsumeQueue> Format::consume_plan() const {
  core::ConsumeQueue q;
  q.queue = config_.queue;
  const auto& d = config_.declare;
  q.declare = d.enabled;
  if (d.enabled) {
    q.exchange = d.exchange_name;
    q.exchange_type = d.exchange_type;
    q.exchange_durable = d.exchange_durable;
    q.durable = d.queue_durable;
    for (const auto& [k, v] : d.queue_arguments) q.arguments[k] = argument_json(v);
    q.bindings = d.bindings;
  }
  return {q};
}

std::optional<std::string> Format::target_url(std::string_view path, std::string_view query,
                                              std::string* error) const {
  auto rewritten = rewrite_.apply(path, error);
  if (!rewritten) return std::nullopt;
  return backend_url_.with(*rewritten, query, error);
}

std::optional<std::string> Format::json_body_problem(std::string_view body, std::string_view nested_key) const {
  if (body.size() > config_.max_body)
    return fmt::format("the message body is {} bytes, over forwarders[].max_body ({})", body.size(),
                       config_.max_body);
  if (!json_nests_within(body, kMaxJsonDepth, nested_key))
    return fmt::format("the message body nests arrays and objects deeper than {} levels", kMaxJsonDepth);
  return std::nullopt;
}

int failure_status(const BackendResponse& r) {
  switch (r.failure) {
    case BackendResponse::Failure::connect: return 503;
    case BackendResponse::Failure::timeout: return 504;
    default: return 502;
  }
}

// A header value may not break the request.
bool is_header_value(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

std::string header_text(const json& v) {
  return v.is_string() ? v.get<std::string>() : json_text(v);
}

bool is_path(std::string_view s) {
  if (!s.empty() && s[0] != '/') return false;
  return std::all_of(s.begin(), s.end(), [](unsigned char c) { return c > 0x20 && c < 0x7f; });
}

std::string ascii_upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::toupper(c); });
  return s;
}

Translation bad_message(std::string error) {
  Translation t;
  t.kind = Translation::Kind::answer;
  t.invalid = true;
  t.answer.status = 400;
  t.answer.content_type = "application/json";
  t.answer.body = json_text({{"error", "bad message"}, {"detail", error}});
  t.error = std::move(error);
  return t;
}

std::optional<Reply> reply_to_sender(const amqp::Delivery& message) {
  const auto& p = message.properties;
  if (!p.reply_to || p.reply_to->empty()) return std::nullopt;
  Reply reply;
  reply.exchange = string_header(p, "replyToExchange").value_or("");
  reply.routing_key = *p.reply_to;
  reply.properties.correlation_id = p.correlation_id;
  return reply;
}

}  // namespace warren::forward
