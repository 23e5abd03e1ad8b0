// `warrenctl call`: one RPC call from a shell. It POSTs to a worker's /rpc route over HTTP (any
// worker will do, and HTTP is where the caller's broker credentials are checked), rather than
// going through the master's control socket, which carries no broker traffic.
#include "call.h"

#include <getopt.h>

#include <cstdlib>
#include <optional>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "http.h"
#include "json.h"

namespace warrenctl {
namespace {

using nlohmann::json;
using warren::json_text;
constexpr int kExitError = 1, kExitUnreachable = 2, kExitUsage = 64;
// Without -T the daemon applies rpc.timeout; wait as long as its rpc.max_timeout default.
constexpr double kDefaultWait = 600;

json parse_object(const std::string& text, const char* what, bool* ok) {
  json j = json::parse(text, nullptr, false);
  *ok = !j.is_discarded() && j.is_object();
  if (!*ok) fmt::print(stderr, "warrenctl call: {} must be a JSON object, got: {}\n", what, text);
  return j;
}

// What the command line asks for.
struct CallOptions {
  HttpTarget target;
  std::string vhost = "/", exchange = "openstack", server, context, timeout;
  bool cast = false, fanout = false, as_json = false;
  const char* topic = nullptr;
  const char* method = nullptr;
  const char* args = nullptr;  // JSON-ARGS, when given
  double wait = kDefaultWait;  // seconds to wait for warrend's answer, less the margin
};

// The options into `o`; the exit code when there is nothing more to do (help, a usage error).
std::optional<int> parse_call_options(int argc, char** argv, CallOptions& o) {
  static const option kLong[] = {{"cast", no_argument, nullptr, 'C'},
                                 {"fanout", no_argument, nullptr, 'F'},
                                 {"json", no_argument, nullptr, 'j'},
                                 {"help", no_argument, nullptr, 'h'},
                                 {nullptr, 0, nullptr, 0}};
  optind = 1;
  int opt;
  const char* user = nullptr;
  while ((opt = getopt_long(argc, argv, "H:u:V:x:S:c:T:h", kLong, nullptr)) != -1) {
    switch (opt) {
      case 'H': o.target.base = optarg; break;
      case 'u': user = optarg; break;
      case 'V': o.vhost = optarg; break;
      case 'x': o.exchange = optarg; break;
      case 'S': o.server = optarg; break;
      case 'c': o.context = optarg; break;
      case 'T': o.timeout = optarg; break;
      case 'C': o.cast = true; break;
      case 'F': o.fanout = true; break;
      case 'j': o.as_json = true; break;
      case 'h': call_usage(stdout); return 0;
      default: call_usage(stderr); return kExitUsage;
    }
  }
  if (std::string error; !resolve_auth(user, &o.target.auth, &error)) {
    fmt::print(stderr, "warrenctl: {}\n", error);
    return kExitUsage;
  }
  const int rest = argc - optind;
  if (rest < 2 || rest > 3) {
    call_usage(stderr);
    return kExitUsage;
  }
  o.topic = argv[optind];
  o.method = argv[optind + 1];
  if (rest == 3) o.args = argv[optind + 2];
  return std::nullopt;
}

// The request body, or nullopt once a JSON option that is not an object was reported.
std::optional<json> call_body(const CallOptions& o) {
  json body{{"method", o.method}};
  bool ok = true;
  if (o.args) body["args"] = parse_object(o.args, "JSON-ARGS", &ok);
  if (ok && !o.context.empty()) body["context"] = parse_object(o.context, "-c", &ok);
  if (!ok) return std::nullopt;
  return body;
}

// -T in seconds (above 0) into o.wait; false once a bad value was reported.
bool parse_wait(CallOptions& o) {
  if (o.timeout.empty()) return true;
  char* end = nullptr;
  o.wait = strtod(o.timeout.c_str(), &end);
  if (end != o.timeout.c_str() && !*end && o.wait > 0) return true;
  fmt::print(stderr, "warrenctl call: -T wants seconds above 0, got {}\n", o.timeout);
  return false;
}

// /rpc/VHOST/EXCHANGE/TOPIC[/SERVER][?cast=1&fanout=1&timeout=T]
std::string call_path(const CallOptions& o) {
  std::string path = fmt::format("/rpc/{}/{}/{}", url_escape(o.vhost),
                                 url_escape(o.exchange.empty() ? "amq.default" : o.exchange),
                                 url_escape(o.topic));
  if (!o.server.empty()) path += "/" + url_escape(o.server);
  std::string query;
  if (o.cast) query += "&cast=1";
  if (o.fanout) query += "&fanout=1";
  if (!o.timeout.empty()) query += "&timeout=" + o.timeout;
  if (!query.empty()) path += "?" + query.substr(1);
  return path;
}

// The result (or the whole body with --json) on stdout; an error answer on stderr.
int print_answer(const HttpAnswer& http, bool as_json) {
  const long status = http.status;
  const std::string& answer = http.body;
  json j = json::parse(answer, nullptr, false);
  if (status == 200 || status == 202) {
    if (as_json) fmt::print("{}\n", j.is_discarded() ? answer : json_text(j, 2));
    else if (status == 200 && j.is_object()) fmt::print("{}\n", json_text(j["result"], 2));
    return 0;
  }
  fmt::print(stderr, "warrenctl call: {}\n", as_json ? fmt::format("HTTP {}: {}", status, answer)
                                                     : http_error_text(http));
  return kExitError;
}

}  // namespace

void call_usage(FILE* out) {
  fmt::print(out,
             "usage: warrenctl call [options] TOPIC METHOD [JSON-ARGS]\n"
             "  Calls METHOD on an oslo.messaging server of TOPIC through a worker's\n"
             "  POST /rpc/VHOST/EXCHANGE/TOPIC[/SERVER] (see warren-rpc(7)); prints the result\n"
             "  as JSON. JSON-ARGS is an object of keyword arguments, default {{}}.\n"
             "options:\n"
             "  -H URL          a worker's base URL (default http://127.0.0.1:8000)\n"
             "  -u USER[:PASS]  the broker credentials, sent as HTTP Basic; PASS on the command\n"
             "                  line is visible in ps: without it, $WARRENCTL_PASSWORD or a\n"
             "                  prompt; no -u: $WARRENCTL_AUTH (USER:PASS), else guest:guest\n"
             "  -V VHOST        virtual host (default /)\n"
             "  -x EXCHANGE     the servers' control exchange (default openstack)\n"
             "  -S SERVER       call this server of the topic only\n"
             "  -c JSON         the request context, a JSON object\n"
             "  -T SECONDS      reply timeout (default: the daemon's rpc.timeout)\n"
             "  --cast          do not wait for a result (exit 0 once the broker has it)\n"
             "  --fanout        cast to every server of the topic\n"
             "  --json          print the whole HTTP answer body\n"
             "exit: 0 result (or cast accepted), 1 error answer (remote failure 500, 504, ...),\n"
             "      2 no answer from warrend, 64 usage\n");
}

int call_command(int argc, char** argv) {
  CallOptions o;
  if (auto done = parse_call_options(argc, argv, o)) return *done;
  const auto body = call_body(o);
  if (!body || !parse_wait(o)) return kExitUsage;
  const HttpAnswer http = http_request(o.target, call_path(o), "POST", "application/json",
                                       json_text(*body), o.wait + 10);
  if (!http.reached) {
    fmt::print(stderr, "warrenctl call: {}\n", http.error);
    return kExitUnreachable;
  }
  return print_answer(http, o.as_json);
}

}  // namespace warrenctl
