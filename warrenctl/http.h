// warrenctl's HTTP side: the commands that act on the bus (call, publish, tail) go through a
// worker's HTTP routes, where the broker credentials are checked, not the control socket.
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace warrenctl {

// -H URL and -u USER[:PASS], shared by every HTTP command.
struct HttpTarget {
  std::string base = "http://127.0.0.1:8000";
  std::string auth = "guest:guest";
};

// USER:PASS from -u's argument (nullptr: no -u), kept out of the command line that ps shows:
// "USER:PASS" is taken as given; "USER" takes its password from $WARRENCTL_PASSWORD, else asks
// on the terminal; no -u takes $WARRENCTL_AUTH (USER:PASS), else guest:guest. False, with
// *error, when a password is needed and there is none.
bool resolve_auth(const char* option, std::string* auth, std::string* error);

struct HttpAnswer {
  bool reached = false;  // false: no HTTP answer at all (error says why)
  std::string error;
  long status = 0;
  std::string body;
};

// "/%2f/..." path segments.
std::string url_escape(const std::string& s);

// One request to base + path. With `on_data`, a 2xx body is handed over as it arrives (a stream)
// and not kept; returning false from it ends the request. timeout 0: none.
HttpAnswer http_request(const HttpTarget& target, const std::string& path, const char* method,
                        const std::string& content_type, const std::string& body, double timeout,
                        std::function<bool(std::string_view)> on_data = {});

// "HTTP 404: not found: no exchange ..." from a JSON error body, or the raw body.
std::string http_error_text(const HttpAnswer& answer);

}  // namespace warrenctl
