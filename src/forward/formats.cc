#include "forward/formats.h"

#include "forward/oslo_format.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include "base64.h"
#include "json.h"

namespace warren::forward {
namespace {

using nlohmann::json;

// A request target: printable ASCII without spaces, empty or starting with '/'.
bool is_path(std::string_view s) {
  if (!s.empty() && s[0] != '/') return false;
  return std::all_of(s.begin(), s.end(), [](unsigned char c) { return c > 0x20 && c < 0x7f; });
}

// Hop-by-hop and framing headers that describe the hop to warren, not the request: curl sets
// its own for the hop to the backend.
bool is_hop_header(std::string_view name) {
  static constexpr std::string_view kHop[] = {"host", "content-length", "connection", "keep-alive",
                                              "transfer-encoding", "te", "trailer", "upgrade",
                                              "expect", "proxy-connection", "proxy-authorization"};
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  return std::find(std::begin(kHop), std::end(kHop), lower) != std::end(kHop);
}

std::optional<std::string> string_header(const amqp::Properties& p, const char* name) {
  if (!p.headers || !p.headers->is_object()) return std::nullopt;
  auto it = p.headers->find(name);
  if (it == p.headers->end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

Translation answer(int status, std::string error, bool invalid) {
  Translation t;
  t.kind = Translation::Kind::answer;
  t.invalid = invalid;
  t.error = std::move(error);
  t.answer.status = status;
  t.answer.content_type = "application/json";
  t.answer.body = json_text({{"error", status == 400 ? "bad message" : status == 403 ? "forbidden" : "not found"},
                             {"detail", t.error}});
  return t;
}

// vCloud Director's error document (its Error type, in JSON), for answers warren makes itself.
std::string vcd_error_body(int status, std::string_view minor, std::string_view message) {
  return json_text({{"majorErrorCode", status}, {"minorErrorCode", minor}, {"message", message}});
}

Translation vcd_answer(int status, std::string_view minor, std::string error, bool invalid,
                       std::string request_id) {
  Translation t;
  t.kind = Translation::Kind::answer;
  t.invalid = invalid;
  t.answer.status = status;
  t.answer.content_type = "application/json";
  t.answer.body = vcd_error_body(status, minor, error);
  t.error = std::move(error);
  t.request_id = std::move(request_id);
  return t;
}

std::string id_text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return "";
  return json_text(v);
}

// A client's value in an error text: at most 100 bytes of a string, the type of anything else
// (dumping a value nested 10000 deep would recurse as deep).
std::string excerpt(const json& v) {
  if (!v.is_string()) return fmt::format("a JSON {}", v.type_name());
  const auto& s = v.get_ref<const std::string&>();
  return json_text(s.size() > 100 ? s.substr(0, 100) + "..." : s);
}

// context.user / context.org: a URN string, or an object carrying one as "id".
std::string context_id(const json& context, const char* key) {
  auto it = context.find(key);
  if (it == context.end()) return "";
  if (it->is_object()) return id_text(it->value("id", json()));
  return id_text(*it);
}

json argument_json(const ArgValue& v) {
  switch (v.kind) {
    case ArgValue::Kind::integer: return v.integer;
    case ArgValue::Kind::real: return v.real;
    case ArgValue::Kind::boolean: return v.boolean;
    case ArgValue::Kind::string: break;
  }
  return v.text;
}

}  // namespace

// A header value may not break the request.
bool is_header_value(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

std::string header_text(const json& v) {
  return v.is_string() ? v.get<std::string>() : json_text(v);
}

std::vector<ConsumeQueue> consume_plan(const ForwarderConfig& config, std::string_view server,
                                       std::string_view fanout_id) {
  if (config.format == ForwarderFormat::oslo) return oslo_queues(config.oslo, server, fanout_id);
  ConsumeQueue q;
  q.queue = config.queue;
  const auto& d = config.declare;
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

int failure_status(const BackendResponse& r) {
  switch (r.failure) {
    case BackendResponse::Failure::connect: return 503;
    case BackendResponse::Failure::timeout: return 504;
    default: return 502;
  }
}


Translator::Translator(const ForwarderConfig& config)
    : config_(config), rewrite_(config.rewrite_from, config.rewrite_to), backend_url_(config.backend.url) {}

std::optional<std::string> Translator::target_url(std::string_view path, std::string_view query,
                                                  std::string* error) const {
  auto rewritten = rewrite_.apply(path, error);
  if (!rewritten) return std::nullopt;
  return backend_url_.with(*rewritten, query, error);
}

std::optional<std::string> Translator::json_body_problem(std::string_view body,
                                                         std::string_view nested_key) const {
  if (body.size() > config_.max_body)
    return fmt::format("the message body is {} bytes, over forwarders[].max_body ({})", body.size(),
                       config_.max_body);
  if (!json_nests_within(body, kMaxJsonDepth, nested_key))
    return fmt::format("the message body nests arrays and objects deeper than {} levels", kMaxJsonDepth);
  return std::nullopt;
}

Translation Translator::translate(const amqp::Delivery& message) const {
  if (config_.format == ForwarderFormat::vcd) return translate_vcd(message);
  if (config_.format == ForwarderFormat::oslo) return translate_oslo(message);
  return translate_raw(message);
}

std::optional<Reply> Translator::reply(const amqp::Delivery& message, const Translation& t,
                                       const BackendResponse& r) const {
  if (config_.format == ForwarderFormat::oslo) return reply_oslo(t, r);
  if (!message.properties.reply_to || message.properties.reply_to->empty()) return std::nullopt;
  if (config_.format == ForwarderFormat::vcd) return reply_vcd(message, t, r);
  return reply_raw(message, r);
}

Translation Translator::translate_raw(const amqp::Delivery& message) const {
  const auto& p = message.properties;
  std::string method = "POST", target;
  if (p.headers && p.headers->is_object()) {
    if (auto it = p.headers->find("x-http-method"); it != p.headers->end()) {
      if (!it->is_string() || it->get_ref<const std::string&>().size() > kMaxMethodLength ||
          !is_token(it->get_ref<const std::string&>()))
        return answer(400, fmt::format("header x-http-method is not an HTTP method: {}", excerpt(*it)), true);
      method = it->get<std::string>();
      std::transform(method.begin(), method.end(), method.begin(), [](unsigned char c) { return std::toupper(c); });
    }
    if (auto it = p.headers->find("x-http-path"); it != p.headers->end()) {
      if (it->is_string() && it->get_ref<const std::string&>().size() > config_.max_path)
        return answer(400, fmt::format("header x-http-path is {} bytes, over forwarders[].max_path ({})",
                                       it->get_ref<const std::string&>().size(), config_.max_path), true);
      if (!it->is_string() || !is_path(it->get_ref<const std::string&>()))
        return answer(400, fmt::format("header x-http-path is not a path: {}", excerpt(*it)), true);
      target = it->get<std::string>();
    }
  }
  const auto q = target.find('?');
  std::string error;
  auto url = target_url(std::string_view(target).substr(0, q),
                        q == std::string::npos ? std::string_view() : std::string_view(target).substr(q + 1), &error);
  if (!url) return answer(400, fmt::format("header x-http-path: {}", error), true);
  Translation t;
  t.request.method = method;
  t.request.url = std::move(*url);
  t.request.body = message.body;
  auto& h = t.request.headers;
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
  return t;
}

std::optional<Reply> Translator::reply_raw(const amqp::Delivery& message, const BackendResponse& r) const {
  Reply reply;
  reply.exchange = string_header(message.properties, "replyToExchange").value_or("");
  reply.routing_key = *message.properties.reply_to;
  auto& p = reply.properties;
  p.correlation_id = message.properties.correlation_id;
  const int status = r.status ? r.status : failure_status(r);
  p.headers = json{{"x-http-status", status}};
  if (r.status) {
    if (!r.content_type.empty()) p.content_type = r.content_type;
    reply.body = r.body;
  } else {
    p.content_type = "application/json";
    reply.body = json_text({{"error", "backend failed"}, {"detail", r.error}});
  }
  return reply;
}

// The vCloud Director API extension format (vCD 9.1 to 10): the body is the JSON array
// [request, context] where request = {id, method, requestUri, queryString, headers, body
// (base64)} and context = {user, org, rights: [URN...]}. Checks, in order: the URI belongs to
// /api/<vcd.extension>; every vcd.required_rights URN is in context.rights; context.org is one
// of vcd.allowed_orgs (when that list is not empty). Refusals are answered 403 (404 for a URI
// that is not this extension's) in vCD's error document.
Translation Translator::translate_vcd(const amqp::Delivery& message) const {
  if (auto problem = json_body_problem(message.body, "")) return vcd_answer(400, "BAD_REQUEST", *problem, true, "");
  json doc = json_parse(message.body);
  if (doc.is_discarded() || !doc.is_array() || doc.size() < 2 || !doc[0].is_object() || !doc[1].is_object())
    return vcd_answer(400, "BAD_REQUEST", "the message body is not a vCD [request, context] array", true, "");
  const json& request = doc[0];
  const json& context = doc[1];
  std::string id = id_text(request.value("id", json()));
  auto field = [&](const char* key) -> std::optional<std::string> {
    auto it = request.find(key);
    if (it == request.end() || it->is_null()) return std::string();
    if (!it->is_string()) return std::nullopt;
    return it->get<std::string>();
  };
  auto method = field("method"), uri = field("requestUri"), query = field("queryString"), body64 = field("body");
  if (!method || !uri || !query || !body64 || !is_token(*method) || method->size() > kMaxMethodLength)
    return vcd_answer(400, "BAD_REQUEST", "request.method, requestUri, queryString and body must be strings", true, id);
  if (uri->size() > config_.max_path || query->size() > config_.max_path)
    return vcd_answer(400, "BAD_REQUEST",
                      fmt::format("request.requestUri or queryString is over forwarders[].max_path ({} bytes)",
                                  config_.max_path),
                      true, id);
  auto body = base64_decode(*body64);
  if (!body) return vcd_answer(400, "BAD_REQUEST", "request.body is not base64", true, id);

  // requestUri is a path, or a whole URL on some vCD versions: keep the path.
  std::string path = *uri;
  if (path.starts_with("http://") || path.starts_with("https://")) {
    auto slash = path.find('/', path.find("//") + 2);
    path = slash == std::string::npos ? "/" : path.substr(slash);
  }
  if (auto q = path.find('?'); q != std::string::npos) path.resize(q);
  const std::string prefix = "/api/" + config_.vcd.extension;
  if (!(path == prefix || path.starts_with(prefix + "/")) || !is_path(path))
    return vcd_answer(404, "RESOURCE_NOT_FOUND",
                      fmt::format("{} is not a URI of the extension {}", *uri, config_.vcd.extension), false, id);

  std::vector<std::string> rights;
  if (auto it = context.find("rights"); it != context.end() && it->is_array())
    for (const auto& r : *it)
      if (r.is_string()) rights.push_back(r.get<std::string>());
  for (const auto& need : config_.vcd.required_rights)
    if (std::find(rights.begin(), rights.end(), need) == rights.end())
      return vcd_answer(403, "ACCESS_TO_RESOURCE_IS_FORBIDDEN",
                        fmt::format("the user lacks the right {}", need), false, id);
  const std::string org = context_id(context, "org"), user = context_id(context, "user");
  if (!config_.vcd.allowed_orgs.empty() &&
      std::find(config_.vcd.allowed_orgs.begin(), config_.vcd.allowed_orgs.end(), org) ==
          config_.vcd.allowed_orgs.end())
    return vcd_answer(403, "ACCESS_TO_RESOURCE_IS_FORBIDDEN",
                      fmt::format("the organization {} may not use this extension", org), false, id);

  Translation t;
  t.request_id = id;
  t.request.method = *method;
  std::transform(t.request.method.begin(), t.request.method.end(), t.request.method.begin(),
                 [](unsigned char c) { return std::toupper(c); });
  std::string error;
  auto url = target_url(path, std::string_view(*query).substr(query->starts_with('?') ? 1 : 0), &error);
  if (!url) return vcd_answer(400, "BAD_REQUEST", fmt::format("request.requestUri: {}", error), true, id);
  t.request.url = std::move(*url);
  t.request.body = std::move(*body);
  if (auto it = request.find("headers"); it != request.end() && it->is_object())
    for (const auto& [name, value] : it->items()) {
      if (!is_token(name) || is_hop_header(name)) continue;
      std::string text;
      if (value.is_array()) {  // some versions send every header as a list of values
        for (const auto& v : value) text += (text.empty() ? "" : ", ") + header_text(v);
      } else {
        text = header_text(value);
      }
      if (is_header_value(text)) t.request.headers.emplace_back(name, text);
    }
  if (is_header_value(org)) t.request.headers.emplace_back("org_id", org);
  if (is_header_value(user)) t.request.headers.emplace_back("user_id", user);
  return t;
}

std::optional<Reply> Translator::reply_vcd(const amqp::Delivery& message, const Translation& t,
                                           const BackendResponse& r) const {
  Reply reply;
  reply.exchange = string_header(message.properties, "replyToExchange").value_or("");
  reply.routing_key = *message.properties.reply_to;
  reply.properties.correlation_id = message.properties.correlation_id;
  reply.properties.content_type = "application/json";
  int status = r.status;
  std::string content_type = r.content_type, body = r.body;
  if (!status) {
    status = failure_status(r);
    content_type = "application/json";
    body = vcd_error_body(status, status == 504 ? "GATEWAY_TIMEOUT" : status == 503 ? "SERVICE_UNAVAILABLE" : "BAD_GATEWAY",
                          fmt::format("backend failed: {}", r.error));
  }
  json headers = json::object();
  if (!content_type.empty()) headers["Content-Type"] = content_type;
  reply.body = json_text({{"id", t.request_id},
                          {"headers", headers},
                          {"statusCode", status},
                          {"body", base64_encode(body)},
                          {"request", false}});
  return reply;
}

}  // namespace warren::forward
