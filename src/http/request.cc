#include "http/request.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <fmt/format.h>
#include <strings.h>

#include "base64.h"

namespace warren {
namespace {

const char* method_name(evhttp_cmd_type method) {
  switch (method) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_PATCH: return "PATCH";
    default: return "";
  }
}

std::string_view header(evhttp_request* req, const char* name) {
  const char* v = evhttp_find_header(evhttp_request_get_input_headers(req), name);
  return v ? v : "";
}

std::string_view input_body(evhttp_request* req) {
  evbuffer* in = evhttp_request_get_input_buffer(req);
  const size_t n = evbuffer_get_length(in);
  if (n == 0) return {};
  return {reinterpret_cast<const char*>(evbuffer_pullup(in, -1)), n};
}

// The checks in their order: the Request, or the error to answer (the 405's Allow set on `req`).
std::variant<Request, HttpError> check(evhttp_request* req, const RouteRules& rules,
                                       const std::string& vhost, size_t max_body) {
  const evhttp_cmd_type method = evhttp_request_get_command(req);
  if (method != rules.method && !(rules.head && method == EVHTTP_REQ_HEAD)) {
    const std::string allow = rules.head ? fmt::format("{}, HEAD", method_name(rules.method))
                                         : method_name(rules.method);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow.c_str());
    return HttpError{405, "method not allowed", std::string(rules.method_detail)};
  }
  Request r;
  if (rules.credentials) {
    auto who = parse_basic_auth(header(req, "Authorization"), vhost);
    if (!who) return HttpError{401, "unauthorized", "HTTP Basic credentials are the broker's"};
    r.who = std::move(*who);
  }
  r.body = input_body(req);
  if (r.body.size() > max_body)
    return HttpError{413, "payload too large",
                     fmt::format("the body is {} bytes, over http.max_body ({})", r.body.size(),
                                 max_body)};
  const char* query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
  r.query = query ? query : "";
  r.content_type = header(req, "Content-Type");
  return r;
}

}  // namespace

std::optional<Request> admit(HttpServer& server, evhttp_request* req, const RouteRules& rules,
                             const std::string& vhost) {
  auto checked = check(req, rules, vhost, server.max_body());
  if (auto* e = std::get_if<HttpError>(&checked)) {
    server.reply_error(req, *e);
    return std::nullopt;
  }
  return std::move(std::get<Request>(checked));
}

std::optional<core::Credentials> parse_basic_auth(std::string_view header, std::string vhost) {
  constexpr std::string_view kScheme = "Basic ";
  if (header.size() <= kScheme.size() || strncasecmp(header.data(), "Basic ", kScheme.size()) != 0)
    return std::nullopt;
  auto decoded = base64_decode(header.substr(kScheme.size()));
  if (!decoded) return std::nullopt;
  const auto colon = decoded->find(':');
  if (colon == std::string::npos || colon == 0) return std::nullopt;
  return core::Credentials{std::move(vhost), decoded->substr(0, colon), decoded->substr(colon + 1)};
}

}  // namespace warren
