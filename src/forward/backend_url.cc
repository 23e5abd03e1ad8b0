#include "forward/backend_url.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

namespace warren::forward {
namespace {

// Printable ASCII without space or '#' (a fragment never reaches a server).
bool is_url_text(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](unsigned char c) { return c > 0x20 && c < 0x7f && c != '#'; });
}

std::optional<std::string> url_part(CURLU* u, CURLUPart part, unsigned flags = 0) {
  char* text = nullptr;
  if (curl_url_get(u, part, &text, flags) != CURLUE_OK) return std::nullopt;
  std::string out = text;
  curl_free(text);
  return out;
}

CurlUrlPtr parse(std::string_view url) {
  CurlUrlPtr u(curl_url());
  if (!u) abort();  // out of memory
  if (curl_url_set(u.get(), CURLUPART_URL, std::string(url).c_str(), 0) != CURLUE_OK) u.reset();
  return u;
}

// "scheme://host:port" with the scheme's default port written out; "" when `u` has no host.
std::string origin(CURLU* u) {
  auto scheme = url_part(u, CURLUPART_SCHEME), host = url_part(u, CURLUPART_HOST),
       port = url_part(u, CURLUPART_PORT, CURLU_DEFAULT_PORT);
  if (!scheme || !host || !port) return "";
  std::string text = *scheme + "://" + *host + ":" + *port;
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text;
}

}  // namespace

std::optional<std::string> leaves_origin(std::string_view from, std::string_view location) {
  CurlUrlPtr u = parse(from);
  if (!u) return std::nullopt;
  const std::string before = origin(u.get());
  // Set on a handle that holds a URL, a relative one is resolved against it, as curl does.
  if (curl_url_set(u.get(), CURLUPART_URL, std::string(location).c_str(), 0) != CURLUE_OK)
    return std::nullopt;
  if (origin(u.get()) == before) return std::nullopt;
  return display_url(url_part(u.get(), CURLUPART_URL).value_or(std::string(location)));
}

std::string display_url(std::string_view url) {
  const size_t start = url.find("://");
  if (start == std::string_view::npos) return std::string(url);
  const size_t host = start + 3;
  const size_t end = std::min(url.find_first_of("/?#", host), url.size());
  const size_t at = url.substr(0, end).rfind('@');
  if (at == std::string_view::npos || at < host) return std::string(url);
  return std::string(url.substr(0, host)) + std::string(url.substr(at + 1));
}

std::optional<std::string> backend_url_problem(std::string_view url) {
  if (!url.starts_with("http://") && !url.starts_with("https://"))
    return fmt::format("must start with http:// or https://, got \"{}\"", display_url(url));
  auto u = parse(url);
  if (!u) return fmt::format("\"{}\" is not a URL", display_url(url));
  if (url_part(u.get(), CURLUPART_QUERY) || url_part(u.get(), CURLUPART_FRAGMENT))
    return fmt::format("\"{}\" has a query or fragment: the message gives the query", display_url(url));
  return std::nullopt;
}

BackendUrl::BackendUrl(const std::string& url) : base_(parse(url)) {
  if (!base_) return;
  base_path_ = url_part(base_.get(), CURLUPART_PATH).value_or("/");
  std::string error;
  unchanged_ = join({}, {}, &error);
}

std::optional<std::string> BackendUrl::with(std::string_view path, std::string_view query,
                                            std::string* error) const {
  if (path.empty() && query.empty() && unchanged_) return unchanged_;
  return join(path, query, error);
}

std::optional<std::string> BackendUrl::join(std::string_view path, std::string_view query,
                                            std::string* error) const {
  if (!base_) {
    *error = "backend.url is not a URL";
    return std::nullopt;
  }
  if (!path.empty() && path.front() != '/') {
    *error = fmt::format("the path \"{}\" does not start with '/'", path.substr(0, 200));
    return std::nullopt;
  }
  if (!is_url_text(path) || path.find('?') != std::string_view::npos) {
    *error = "the path has a byte a URL path cannot carry (control, space, non-ASCII, '#' or '?')";
    return std::nullopt;
  }
  if (!is_url_text(query)) {
    *error = "the query has a byte a URL cannot carry (control, space, non-ASCII or '#')";
    return std::nullopt;
  }
  CurlUrlPtr u(curl_url_dup(base_.get()));
  if (!u) abort();  // out of memory
  std::string joined = base_path_;
  if (!path.empty() && joined.ends_with('/')) joined.pop_back();
  joined += path;
  if (curl_url_set(u.get(), CURLUPART_PATH, joined.c_str(), 0) != CURLUE_OK ||
      curl_url_set(u.get(), CURLUPART_QUERY, query.empty() ? nullptr : std::string(query).c_str(), 0) != CURLUE_OK) {
    *error = "the path or query cannot be set on backend.url";
    return std::nullopt;
  }
  auto url = url_part(u.get(), CURLUPART_URL);
  if (!url) *error = "the path or query cannot be set on backend.url";
  return url;
}

}  // namespace warren::forward
