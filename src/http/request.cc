#include "http/request.h"

#include <fmt/format.h>
#include <strings.h>

#include "base64.h"

namespace warren {
namespace {

// The checks in their order: the Request, or the error to answer (the 405's Allow set on `req`).
std::variant<Request, HttpError> check(Exchange* req, const RouteRules& rules,
                                       const std::string& vhost) {
  const std::string_view method = req->method();
  if (method != rules.method && !(rules.head && method == "HEAD")) {
    req->add_header("Allow", rules.head ? fmt::format("{}, HEAD", rules.method) : std::string(rules.method));
    return HttpError{405, "method not allowed", std::string(rules.method_detail)};
  }
  Request r;
  if (rules.credentials) {
    auto who = parse_basic_auth(req->header("Authorization"), vhost);
    if (!who) return HttpError{401, "unauthorized", "HTTP Basic credentials are the broker's"};
    r.who = std::move(*who);
  }
  r.body = req->body();
  r.query = req->query();
  r.content_type = req->header("Content-Type");
  return r;
}

}  // namespace

std::optional<Request> admit(HttpServer& server, Exchange* req, const RouteRules& rules,
                             const std::string& vhost) {
  auto checked = check(req, rules, vhost);
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
