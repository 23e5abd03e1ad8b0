// The URL a forwarder sends a request to, and backend.url as people may see it. A request's
// path (x-http-path, a vCD requestUri, an oslo method, after `rewrite`) only ever replaces the
// path and query of backend.url, parsed once with libcurl's URL API (CURLU): its scheme,
// credentials, host and port never change, whatever the message says ("@evil", "//evil",
// an absolute URL...).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "handles.h"

namespace warren::forward {

// `url` without its "user:password@" part: for logs, error texts, headers and reply bodies.
std::string display_url(std::string_view url);

// Why `url` cannot be a backend.url (not http(s), no host, a query or fragment), or nullopt.
std::optional<std::string> backend_url_problem(std::string_view url);

// Where a Location header given in answer to `from` leads (as display_url shows it), when
// that leaves `from`'s origin: another scheme, host or port. Nullopt when it stays, or when it
// is no URL (curl does not follow that either).
std::optional<std::string> leaves_origin(std::string_view from, std::string_view location);

class BackendUrl {
 public:
  explicit BackendUrl(const std::string& url);

  // backend.url's own path joined with `path` (empty, or starting with '/'; one slash where
  // both have one) and `query` (without '?'; empty: none). nullopt with `error` set when the
  // path or the query could change the URL's meaning (not starting with '/', a control or
  // non-ASCII byte, a space, '#', or '?' in the path).
  std::optional<std::string> with(std::string_view path, std::string_view query, std::string* error) const;

 private:
  std::optional<std::string> join(std::string_view path, std::string_view query, std::string* error) const;

  CurlUrlPtr base_;
  std::string base_path_;
  // with() of no path and no query, worked out once: a message that names neither (the raw
  // format without x-http-path) goes to backend.url as it is, and building it through CURLU
  // for each was 7% of a forwarding worker's instructions (callgrind).
  std::optional<std::string> unchanged_;
};

}  // namespace warren::forward
