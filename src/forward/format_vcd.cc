// The vCloud Director API extension format (vCD 9.1 to 10), a drop-in for vcdextproxy: the
// body is the JSON array [request, context] where request = {id, method, requestUri,
// queryString, headers, body (base64)} and context = {user, org, rights: [URN...]}. Checks, in
// order: the URI belongs to /api/<vcd.extension> (404); every vcd.required_rights URN is in
// context.rights and context.org is one of vcd.allowed_orgs when that list is not empty (403);
// the method is one vcdextproxy can send (405). The backend gets the request's own headers and,
// as vcdextproxy sends them, org_id and user_id (the bare ids) and, with vcd.forward_rights,
// user_rights (the rights as a JSON list). vCD waits for every request it sends with reply_to:
// it is answered once, after one call, whatever the backend answered or failed with (504
// timeout, 503 unreachable, 502 otherwise); refusals in vCD's error document. The reply is
// vCD's response document {id, headers, statusCode, body (base64), request: false}.
#include <algorithm>
#include <cctype>

#include <fmt/format.h>
#include <strings.h>

#include "base64.h"
#include "forward/format.h"
#include "json.h"

namespace warren::forward {
namespace {

using nlohmann::json;

constexpr std::string_view kBadRequest = "BAD_REQUEST";
constexpr std::string_view kForbidden = "ACCESS_TO_RESOURCE_IS_FORBIDDEN";

// The methods vcdextproxy's HTTP library sends; it answers any other 405.
constexpr std::string_view kMethods[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};

// What vcdextproxy cuts from context.org and context.user for org_id and user_id.
constexpr std::string_view kOrgUrn = "urn:vcloud:org:";
constexpr std::string_view kUserUrn = "urn:vcloud:user:";

std::string ascii_lower(std::string_view s) {
  std::string lower(s);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  return lower;
}

// Hop-by-hop and framing headers that describe the hop to warren, not the request: curl sets
// its own for the hop to the backend. Accept-Encoding too: the reply to vCD carries the body
// without a Content-Encoding, so the backend must send it as it is.
bool is_hop_header(const std::string& lower) {
  static constexpr std::string_view kHop[] = {"host", "content-length", "connection", "keep-alive",
                                              "transfer-encoding", "te", "trailer", "upgrade",
                                              "expect", "proxy-connection", "proxy-authorization",
                                              "accept-encoding"};
  return std::find(std::begin(kHop), std::end(kHop), lower) != std::end(kHop);
}

// A name the backend would take for one of the headers warren sets from the context: a WSGI
// or CGI backend reads org-id, ORG_ID and org_id alike (and joins them), so a vCD client's own
// must not reach it.
bool is_context_header(std::string lower) {
  std::replace(lower.begin(), lower.end(), '-', '_');
  return lower == "org_id" || lower == "user_id" || lower == "user_rights";
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
  t.answer = vcd_error_response(status, minor, error);
  t.error = std::move(error);
  t.request_id = std::move(request_id);
  return t;
}

std::string id_text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return "";
  return json_text(v);
}

// context.user / context.org: a URN string, or an object carrying one as "id".
std::string context_id(const json& context, const char* key) {
  auto it = context.find(key);
  if (it == context.end()) return "";
  if (it->is_object()) return id_text(it->value("id", json()));
  return id_text(*it);
}

// A request's string field; "" when absent or null, nullopt when it is not a string.
std::optional<std::string> string_field(const json& request, const char* key) {
  auto it = request.find(key);
  if (it == request.end() || it->is_null()) return std::string();
  if (!it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

// requestUri is a path, or a whole URL on some vCD versions: the path, without a query.
std::string uri_path(std::string path) {
  if (path.starts_with("http://") || path.starts_with("https://")) {
    auto slash = path.find('/', path.find("//") + 2);
    path = slash == std::string::npos ? "/" : path.substr(slash);
  }
  if (auto q = path.find('?'); q != std::string::npos) path.resize(q);
  return path;
}

// A header's value in request.headers: a string, or a list of them (as some vCD versions send
// every header) joined with ", ".
std::string header_field(const json& value) {
  if (!value.is_array()) return header_text(value);
  std::string text;
  for (const auto& v : value) text += (text.empty() ? "" : ", ") + header_text(v);
  return text;
}

// request.headers, minus the hop's own, the context's and names HTTP cannot carry, and minus
// Authorization when the backend has credentials of its own (they replace it, as vcdextproxy's
// backend.auth does).
std::vector<std::pair<std::string, std::string>> request_headers(const json& request, bool backend_credentials) {
  std::vector<std::pair<std::string, std::string>> headers;
  auto it = request.find("headers");
  if (it == request.end() || !it->is_object()) return headers;
  for (const auto& [name, value] : it->items()) {
    if (!is_token(name)) continue;
    const std::string lower = ascii_lower(name);
    if (is_hop_header(lower) || is_context_header(lower) || (backend_credentials && lower == "authorization"))
      continue;
    if (std::string text = header_field(value); is_header_value(text)) headers.emplace_back(name, text);
  }
  return headers;
}

// What translate reads from one [request, context] document, step by step.
struct VcdCall {
  std::string id, method, uri, query, body, path, org, user;
};

class VcdFormat final : public Format {
 public:
  explicit VcdFormat(const ForwarderConfig& config)
      : Format(config),
        backend_credentials_(!config.backend.username.empty() || !config.backend.password.empty() ||
                             display_url(config.backend.url) != config.backend.url) {}

  Translation translate(const amqp::Delivery& message) const override {
    Translation t = translate_call(message);
    // Someone waits for the answer (vCD does for every request): one call, and whatever it
    // gives is the reply.
    t.final_answer = message.properties.reply_to && !message.properties.reply_to->empty();
    return t;
  }

  std::optional<Reply> reply(const amqp::Delivery& message, const Translation& t,
                             const BackendResponse& r) const override {
    auto reply = reply_to_sender(message);
    if (!reply) return std::nullopt;
    reply->properties.content_type = "application/json";
    int status = r.status;
    std::string content_type = r.content_type, body = r.body;
    if (!status) {
      // vCD shows this to its tenant: what failed, not where the backend is (the log has it).
      status = failure_status(r);
      content_type = "application/json";
      body = status == 504   ? vcd_error_body(status, "GATEWAY_TIMEOUT", "the extension's backend timed out")
             : status == 503 ? vcd_error_body(status, "SERVICE_UNAVAILABLE",
                                              "the extension's backend could not be reached")
                             : vcd_error_body(status, "BAD_GATEWAY", "the extension's backend gave no usable answer");
    }
    json headers = json::object();
    if (!content_type.empty()) headers["Content-Type"] = content_type;
    reply->body = json_text({{"id", t.request_id},
                             {"headers", headers},
                             {"statusCode", status},
                             {"body", base64_encode(body)},
                             {"request", false}});
    return reply;
  }

 private:
  Translation translate_call(const amqp::Delivery& message) const {
    if (auto problem = json_body_problem(message.body, "")) return vcd_answer(400, kBadRequest, *problem, true, "");
    const json doc = json_parse(message.body);
    if (doc.is_discarded() || !doc.is_array() || doc.size() < 2 || !doc[0].is_object() || !doc[1].is_object())
      return vcd_answer(400, kBadRequest, "the message body is not a vCD [request, context] array", true, "");
    const json& request = doc[0];
    const json& context = doc[1];
    VcdCall call;
    call.id = id_text(request.value("id", json()));
    if (auto refused = read_request(request, call)) return std::move(*refused);
    if (auto refused = check_extension(call)) return std::move(*refused);
    call.org = context_id(context, "org");
    call.user = context_id(context, "user");
    if (auto refused = check_access(context, call)) return std::move(*refused);
    if (auto refused = check_method(call)) return std::move(*refused);
    Translation t = forward(request, context, std::move(call));
    if (t.kind == Translation::Kind::forward) t.vcd_checks = vcd_checks_needed(config_.vcd, request, context);
    return t;
  }

  // request.method, requestUri, queryString and body (decoded) into `call`, or the refusal.
  std::optional<Translation> read_request(const json& request, VcdCall& call) const {
    auto method = string_field(request, "method"), uri = string_field(request, "requestUri"),
         query = string_field(request, "queryString"), body64 = string_field(request, "body");
    if (!method || !uri || !query || !body64 || !is_token(*method) || method->size() > kMaxMethodLength)
      return vcd_answer(400, kBadRequest, "request.method, requestUri, queryString and body must be strings", true,
                        call.id);
    if (uri->size() > config_.max_path || query->size() > config_.max_path)
      return vcd_answer(400, kBadRequest,
                        fmt::format("request.requestUri or queryString is over forwarders[].max_path ({} bytes)",
                                    config_.max_path),
                        true, call.id);
    auto body = base64_decode(*body64);
    if (!body) return vcd_answer(400, kBadRequest, "request.body is not base64", true, call.id);
    call.method = std::move(*method);
    call.uri = std::move(*uri);
    call.query = std::move(*query);
    call.body = std::move(*body);
    return std::nullopt;
  }

  // The URI's path must be /api/<vcd.extension> or below it: 404 otherwise.
  std::optional<Translation> check_extension(VcdCall& call) const {
    call.path = uri_path(call.uri);
    const std::string prefix = "/api/" + config_.vcd.extension;
    if ((call.path == prefix || call.path.starts_with(prefix + "/")) && is_path(call.path)) return std::nullopt;
    return vcd_answer(404, "RESOURCE_NOT_FOUND",
                      fmt::format("{} is not a URI of the extension {}", call.uri, config_.vcd.extension), false,
                      call.id);
  }

  // Every vcd.required_rights URN in context.rights, and the org among vcd.allowed_orgs: 403
  // otherwise. Rights given by name are the vCD API's to resolve (forward/vcd_checks.h).
  std::optional<Translation> check_access(const json& context, const VcdCall& call) const {
    std::vector<std::string> rights;
    if (auto it = context.find("rights"); it != context.end() && it->is_array())
      for (const auto& r : *it)
        if (r.is_string()) rights.push_back(r.get<std::string>());
    for (const auto& need : config_.vcd.required_rights)
      if (is_right_id(need) && !holds_right(rights, need))
        return vcd_answer(403, kForbidden, fmt::format("the user lacks the right {}", need), false, call.id);
    const auto& orgs = config_.vcd.allowed_orgs;
    if (!orgs.empty() && std::find(orgs.begin(), orgs.end(), call.org) == orgs.end())
      return vcd_answer(403, kForbidden, fmt::format("the organization {} may not use this extension", call.org),
                        false, call.id);
    return std::nullopt;
  }

  // A method vcdextproxy can send (in any case, as it takes them): 405 otherwise.
  std::optional<Translation> check_method(VcdCall& call) const {
    call.method = ascii_upper(std::move(call.method));
    if (std::find(std::begin(kMethods), std::end(kMethods), call.method) != std::end(kMethods)) return std::nullopt;
    return vcd_answer(405, "METHOD_NOT_ALLOWED", fmt::format("the method {} is not supported", call.method), false,
                      call.id);
  }

  // The backend request for a call that passed every check, with the context's headers.
  Translation forward(const json& request, const json& context, VcdCall call) const {
    std::string error;
    auto url = target_url(call.path, std::string_view(call.query).substr(call.query.starts_with('?') ? 1 : 0), &error);
    if (!url) return vcd_answer(400, kBadRequest, fmt::format("request.requestUri: {}", error), true, call.id);
    Translation t;
    t.request_id = std::move(call.id);
    t.request.method = std::move(call.method);
    t.request.url = std::move(*url);
    t.request.body = std::move(call.body);
    t.request.follow_redirects = true;
    t.request.headers = request_headers(request, backend_credentials_);
    auto& headers = t.request.headers;
    if (const auto org = urn_id(call.org, kOrgUrn); is_header_value(org)) headers.emplace_back("org_id", org);
    if (const auto user = urn_id(call.user, kUserUrn); is_header_value(user)) headers.emplace_back("user_id", user);
    if (config_.vcd.forward_rights) headers.emplace_back("user_rights", json_text(context.value("rights", json())));
    return t;
  }

  // backend.username/password, or credentials in backend.url: curl sends them as Basic auth,
  // which a request's own Authorization header would replace.
  const bool backend_credentials_;
};

}  // namespace

BackendResponse vcd_error_response(int status, std::string_view minor, std::string_view message) {
  BackendResponse r;
  r.status = status;
  r.content_type = "application/json";
  r.body = vcd_error_body(status, minor, message);
  return r;
}

std::string vcd_request_header(const json& request, std::string_view name) {
  auto headers = request.find("headers");
  if (headers == request.end() || !headers->is_object()) return "";
  for (const auto& [key, value] : headers->items())
    if (key.size() == name.size() && strncasecmp(key.data(), name.data(), name.size()) == 0)
      return header_text(value.is_array() && !value.empty() ? value[0] : value);
  return "";
}

std::unique_ptr<Format> make_vcd_format(const ForwarderConfig& config) {
  return std::make_unique<VcdFormat>(config);
}

}  // namespace warren::forward
