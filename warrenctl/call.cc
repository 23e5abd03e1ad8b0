// `warrenctl call`: one RPC call from a shell. It POSTs to a worker's /rpc route over HTTP (any
// worker will do, and HTTP is where the caller's broker credentials are checked), rather than
// going through the master's control socket, which carries no broker traffic.
#include "call.h"

#include <getopt.h>

#include <cstdlib>
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
  HttpTarget target;
  std::string vhost = "/", exchange = "openstack", server, context, timeout;
  bool cast = false, fanout = false, as_json = false;
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
      case 'H': target.base = optarg; break;
      case 'u': user = optarg; break;
      case 'V': vhost = optarg; break;
      case 'x': exchange = optarg; break;
      case 'S': server = optarg; break;
      case 'c': context = optarg; break;
      case 'T': timeout = optarg; break;
      case 'C': cast = true; break;
      case 'F': fanout = true; break;
      case 'j': as_json = true; break;
      case 'h': call_usage(stdout); return 0;
      default: call_usage(stderr); return kExitUsage;
    }
  }
  if (std::string error; !resolve_auth(user, &target.auth, &error)) {
    fmt::print(stderr, "warrenctl: {}\n", error);
    return kExitUsage;
  }
  const int rest = argc - optind;
  if (rest < 2 || rest > 3) {
    call_usage(stderr);
    return kExitUsage;
  }
  json body{{"method", argv[optind + 1]}};
  bool ok = true;
  if (rest == 3) body["args"] = parse_object(argv[optind + 2], "JSON-ARGS", &ok);
  if (ok && !context.empty()) body["context"] = parse_object(context, "-c", &ok);
  if (!ok) return kExitUsage;
  char* end = nullptr;
  const double wait = timeout.empty() ? kDefaultWait : strtod(timeout.c_str(), &end);
  if (!timeout.empty() && (end == timeout.c_str() || *end || wait <= 0)) {
    fmt::print(stderr, "warrenctl call: -T wants seconds above 0, got {}\n", timeout);
    return kExitUsage;
  }

  std::string path = fmt::format("/rpc/{}/{}/{}", url_escape(vhost),
                                 url_escape(exchange.empty() ? "amq.default" : exchange),
                                 url_escape(argv[optind]));
  if (!server.empty()) path += "/" + url_escape(server);
  std::string query;
  if (cast) query += "&cast=1";
  if (fanout) query += "&fanout=1";
  if (!timeout.empty()) query += "&timeout=" + timeout;
  if (!query.empty()) path += "?" + query.substr(1);

  const HttpAnswer http = http_request(target, path, "POST", "application/json", json_text(body), wait + 10);
  if (!http.reached) {
    fmt::print(stderr, "warrenctl call: {}\n", http.error);
    return kExitUnreachable;
  }
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

}  // namespace warrenctl
