// The preamble every route runs before its own work: the same checks, in the same order, with
// the same answers. The route reads its path first (a path not of its shape is a 404 whatever
// the method, and the credentials are for the vhost the path names), then:
//   the method      405 "method not allowed", with Allow
//   credentials     401 "unauthorized" (HTTP Basic, the broker's), when the route needs them
// (A body over http.max_body never gets here: the request reader answers it 413 before it is
// read.)
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "core/publisher.h"
#include "http/server.h"

namespace warren {

// An HTTP status with the JSON error body that goes with it.
struct HttpError {
  int status = 400;
  std::string error;
  std::string detail;
};

struct RouteRules {
  std::string_view method;         // the one method the route answers: "GET"
  std::string_view method_detail;  // the 405's detail: "publish with POST"
  bool credentials = false;        // HTTP Basic required
  bool head = false;               // HEAD too: the same reply, whose body is left out
};

// What a route gets once the preamble passed.
struct Request {
  std::string_view body;          // at most http.max_body bytes
  std::string_view query;         // the raw query string, "" without one
  std::string_view content_type;  // "" without one
  core::Credentials who;          // for `vhost`, when the rules ask for credentials
};

// The preamble for a route that needs no vhost: the Request, or nullopt once the error (for a
// 405 with its Allow header) is answered.
std::optional<Request> admit(HttpServer& server, Exchange* req, const RouteRules& rules,
                             const std::string& vhost = "");

// The whole preamble for a route whose path names the vhost: `path` as the route read it (its
// error answered as it is), then the checks above. Nullopt once an error is answered.
template <typename Path>
std::optional<std::pair<Path, Request>> admit(HttpServer& server, Exchange* req,
                                              const RouteRules& rules,
                                              std::variant<Path, HttpError> path) {
  if (auto* e = std::get_if<HttpError>(&path)) {
    server.reply_error(req, *e);
    return std::nullopt;
  }
  auto request = admit(server, req, rules, std::get<Path>(path).vhost);
  if (!request) return std::nullopt;
  return std::pair{std::move(std::get<Path>(path)), std::move(*request)};
}

// "Basic base64(user:password)"; the password may contain ':'.
std::optional<core::Credentials> parse_basic_auth(std::string_view header, std::string vhost);

}  // namespace warren
