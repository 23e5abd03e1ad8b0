#include "http.h"

#include <fcntl.h>
#include <termios.h>
#include <unistd.h>

#include <cstdlib>

#include <curl/curl.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "handles.h"

namespace warrenctl {
namespace {

struct Sink {
  CURL* curl;
  std::string* body;
  const std::function<bool(std::string_view)>* on_data;
};

// A 2xx body goes to on_data when there is one; anything else (an error's JSON) is kept.
size_t receive(char* data, size_t size, size_t n, void* arg) {
  auto* sink = static_cast<Sink*>(arg);
  long status = 0;
  curl_easy_getinfo(sink->curl, CURLINFO_RESPONSE_CODE, &status);
  if (*sink->on_data && status < 300) return (*sink->on_data)({data, size * n}) ? size * n : 0;
  sink->body->append(data, size * n);
  return size * n;
}

}  // namespace

namespace {

// A line read from the controlling terminal with echo off, as curl's -u USER does.
bool ask_password(const std::string& user, std::string* password) {
  warren::Fd tty(open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY));
  if (!tty) return false;
  const std::string prompt = fmt::format("Enter the password for {}: ", user);
  if (write(tty.get(), prompt.data(), prompt.size()) < 0) return false;
  termios saved{};
  const bool is_terminal = tcgetattr(tty.get(), &saved) == 0;
  if (is_terminal) {
    termios quiet = saved;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    tcsetattr(tty.get(), TCSAFLUSH, &quiet);
  }
  char c;
  while (read(tty.get(), &c, 1) == 1 && c != '\n') *password += c;
  if (is_terminal) tcsetattr(tty.get(), TCSAFLUSH, &saved);
  [[maybe_unused]] auto n = write(tty.get(), "\n", 1);
  return true;
}

}  // namespace

bool resolve_auth(const char* option, std::string* auth, std::string* error) {
  if (!option) {
    const char* from_env = getenv("WARRENCTL_AUTH");
    *auth = from_env ? from_env : "guest:guest";
    return true;
  }
  const std::string user = option;
  if (user.find(':') != std::string::npos) {
    *auth = user;
    return true;
  }
  std::string password;
  if (const char* from_env = getenv("WARRENCTL_PASSWORD")) password = from_env;
  else if (!ask_password(user, &password)) {
    *error = fmt::format("-u {}: no password: set WARRENCTL_PASSWORD or run on a terminal", user);
    return false;
  }
  *auth = user + ":" + password;
  return true;
}

std::string url_escape(const std::string& s) {
  char* e = curl_escape(s.c_str(), static_cast<int>(s.size()));
  std::string out = e ? e : "";
  curl_free(e);  // curl's allocation, freed by curl
  return out;
}

HttpAnswer http_request(const HttpTarget& target, const std::string& path, const char* method,
                        const std::string& content_type, const std::string& body, double timeout,
                        std::function<bool(std::string_view)> on_data) {
  HttpAnswer answer;
  warren::CurlEasyPtr curl(curl_easy_init());
  if (!curl) {
    answer.error = "curl_easy_init() failed";
    return answer;
  }
  const std::string url = target.base.substr(0, target.base.find_last_not_of('/') + 1) + path;
  warren::CurlSlistPtr headers;
  if (!content_type.empty())
    headers.reset(curl_slist_append(nullptr, ("Content-Type: " + content_type).c_str()));
  Sink sink{curl.get(), &answer.body, &on_data};
  curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_CUSTOMREQUEST, method);
  if (std::string_view(method) != "GET") {
    curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  }
  curl_easy_setopt(curl.get(), CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(curl.get(), CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
  curl_easy_setopt(curl.get(), CURLOPT_USERPWD, target.auth.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, receive);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(curl.get(), CURLOPT_CONNECTTIMEOUT, 5L);
  if (timeout > 0) curl_easy_setopt(curl.get(), CURLOPT_TIMEOUT_MS, static_cast<long>(timeout * 1000));
  curl_easy_setopt(curl.get(), CURLOPT_NOSIGNAL, 1L);
  const CURLcode rc = curl_easy_perform(curl.get());
  curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &answer.status);
  answer.reached = answer.status != 0;
  // A stream ended by on_data reports a write error: that is the caller's own doing.
  if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && on_data))
    answer.error = fmt::format("{} {} failed: {}", method, url, curl_easy_strerror(rc));
  return answer;
}

std::string http_error_text(const HttpAnswer& answer) {
  auto j = nlohmann::json::parse(answer.body, nullptr, false);
  if (j.is_object() && j.contains("error"))
    return fmt::format("HTTP {}: {}: {}", answer.status, j.value("error", ""), j.value("detail", ""));
  return fmt::format("HTTP {}: {}", answer.status, answer.body);
}

}  // namespace warrenctl
