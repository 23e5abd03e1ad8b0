// The raw format: method from header x-http-method (POST), path from x-http-path, body as it
// is, the message's properties and headers as X-AMQP-* headers; the reply carries the status in
// header x-http-status and the backend's body and Content-Type as they came.
#include <fmt/format.h>

#include "forward/format.h"
#include "json.h"

namespace warren::forward {
namespace {

using nlohmann::json;

// A client's value in an error text: at most 100 bytes of a string, the type of anything else
// (dumping a value nested 10000 deep would recurse as deep).
std::string excerpt(const json& v) {
  if (!v.is_string()) return fmt::format("a JSON {}", v.type_name());
  const auto& s = v.get_ref<const std::string&>();
  return json_text(s.size() > 100 ? s.substr(0, 100) + "..." : s);
}

// The message's properties, exchange, routing key and application headers as HTTP headers.
std::vector<std::pair<std::string, std::string>> amqp_headers(const amqp::Delivery& message) {
  const auto& p = message.properties;
  std::vector<std::pair<std::string, std::string>> h;
  if (p.content_type && is_header_value(*p.content_type)) h.emplace_back("Content-Type", *p.content_type);
  auto add = [&h](const char* name, const std::string& value) {
    if (is_header_value(value)) h.emplace_back(name, value);
  };
  if (p.content_type) add("X-AMQP-Content-Type", *p.content_type);
  if (p.content_encoding) add("X-AMQP-Content-Encoding", *p.content_encoding);
  if (p.delivery_mode) add("X-AMQP-Delivery-Mode", std::to_string(*p.delivery_mode));
  if (p.priority) add("X-AMQP-Priority", std::to_string(*p.priority));
  if (p.correlation_id) add("X-AMQP-Correlation-Id", *p.correlation_id);
  if (p.reply_to) add("X-AMQP-Reply-To", *p.reply_to);
  if (p.expiration) add("X-AMQP-Expiration", *p.expiration);
  if (p.message_id) add("X-AMQP-Message-Id", *p.message_id);
  if (p.timestamp) add("X-AMQP-Timestamp", std::to_string(*p.timestamp));
  if (p.type) add("X-AMQP-Type", *p.type);
  if (p.user_id) add("X-AMQP-User-Id", *p.user_id);
  if (p.app_id) add("X-AMQP-App-Id", *p.app_id);
  add("X-AMQP-Exchange", message.exchange);
  add("X-AMQP-Routing-Key", message.routing_key);
  add("X-AMQP-Redelivered", message.redelivered ? "true" : "false");
  // The application headers, one X-AMQP-Header-<name> each; names HTTP cannot carry are left
  // out (the body and the properties above still reach the backend).
  if (p.headers && p.headers->is_object())
    for (const auto& [name, value] : p.headers->items()) {
      if (name == "x-http-method" || name == "x-http-path" || !is_token(name)) continue;
      const std::string text = header_text(value);
      if (is_header_value(text)) h.emplace_back("X-AMQP-Header-" + name, text);
    }
  return h;
}

class RawFormat final : public Format {
 public:
  explicit RawFormat(const ForwarderConfig& config) : Format(config) {}

  Translation translate(const amqp::Delivery& message) const override {
    std::string method = "POST", target, error;
    if (!read_method_and_target(message.properties, method, target, error)) return bad_message(std::move(error));
    const auto q = target.find('?');
    auto url = target_url(std::string_view(target).substr(0, q),
                          q == std::string::npos ? std::string_view() : std::string_view(target).substr(q + 1), &error);
    if (!url) return bad_message(fmt::format("header x-http-path: {}", error));
    Translation t;
    t.request.method = std::move(method);
    t.request.url = std::move(*url);
    t.request.body = message.body;
    t.request.headers = amqp_headers(message);
    return t;
  }

  std::optional<Reply> reply(const amqp::Delivery& message, const Translation&,
                             const BackendResponse& r) const override {
    auto reply = reply_to_sender(message);
    if (!reply) return std::nullopt;
    auto& p = reply->properties;
    const int status = r.status ? r.status : failure_status(r);
    p.headers = json{{"x-http-status", status}};
    if (r.status) {
      if (!r.content_type.empty()) p.content_type = r.content_type;
      reply->body = r.body;
    } else {
      p.content_type = "application/json";
      reply->body = json_text({{"error", "backend failed"}, {"detail", r.error}});
    }
    return reply;
  }

 private:
  // Headers x-http-method and x-http-path, when given, into `method` (upper case) and
  // `target`; false with `error` set when either is not what it claims to be.
  bool read_method_and_target(const amqp::Properties& p, std::string& method, std::string& target,
                              std::string& error) const {
    if (!p.headers || !p.headers->is_object()) return true;
    if (auto it = p.headers->find("x-http-method"); it != p.headers->end()) {
      if (!it->is_string() || it->get_ref<const std::string&>().size() > kMaxMethodLength ||
          !is_token(it->get_ref<const std::string&>())) {
        error = fmt::format("header x-http-method is not an HTTP method: {}", excerpt(*it));
        return false;
      }
      method = ascii_upper(it->get<std::string>());
    }
    if (auto it = p.headers->find("x-http-path"); it != p.headers->end()) {
      if (it->is_string() && it->get_ref<const std::string&>().size() > config_.max_path) {
        error = fmt::format("header x-http-path is {} bytes, over forwarders[].max_path ({})",
                            it->get_ref<const std::string&>().size(), config_.max_path);
        return false;
      }
      if (!it->is_string() || !is_path(it->get_ref<const std::string&>())) {
        error = fmt::format("header x-http-path is not a path: {}", excerpt(*it));
        return false;
      }
      target = it->get<std::string>();
    }
    return true;
  }
};

}  // namespace

std::unique_ptr<Format> make_raw_format(const ForwarderConfig& config) {
  return std::make_unique<RawFormat>(config);
}

}  // namespace warren::forward
