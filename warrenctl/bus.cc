#include "bus.h"

#include <getopt.h>
#include <unistd.h>

#include <iostream>
#include <iterator>
#include <string>

#include <fmt/format.h>

#include "http.h"

namespace warrenctl {
namespace {

constexpr int kExitError = 1, kExitUnreachable = 2, kExitUsage = 64;

// -H URL, -u USER[:PASS], -t CONTENT-TYPE (publish only), -h; the rest are positional.
bool parse_options(int argc, char** argv, HttpTarget* target, std::string* content_type, int* rc) {
  optind = 1;
  int opt;
  const char* user = nullptr;
  while ((opt = getopt(argc, argv, "H:u:t:h")) != -1) {
    switch (opt) {
      case 'H': target->base = optarg; break;
      case 'u': user = optarg; break;
      case 't': *content_type = optarg; break;
      case 'h': bus_usage(stdout); *rc = 0; return false;
      default: bus_usage(stderr); *rc = kExitUsage; return false;
    }
  }
  if (std::string error; !resolve_auth(user, &target->auth, &error)) {
    fmt::print(stderr, "warrenctl: {}\n", error);
    *rc = kExitUsage;
    return false;
  }
  return true;
}

std::string bus_path(char** args) {
  return fmt::format("/{}/{}/{}", url_escape(args[0]), url_escape(args[1]), url_escape(args[2]));
}

}  // namespace

void bus_usage(FILE* out) {
  fmt::print(out,
             "usage: warrenctl publish [-H URL] [-u USER[:PASS]] [-t TYPE] VHOST EXCHANGE KEY [BODY|-]\n"
             "       warrenctl tail [-H URL] [-u USER[:PASS]] VHOST EXCHANGE BINDING-KEY\n"
             "  publish: one message, answered once the broker confirmed it (BODY, or standard\n"
             "           input with - or nothing); tail: print what is published to EXCHANGE\n"
             "           matching BINDING-KEY until interrupted.\n"
             "  -H URL          a worker's base URL (default http://127.0.0.1:8000)\n"
             "  -u USER[:PASS]  the broker credentials, sent as HTTP Basic; PASS on the command\n"
             "                  line is visible in ps: without it, $WARRENCTL_PASSWORD or a\n"
             "                  prompt; no -u: $WARRENCTL_AUTH (USER:PASS), else guest:guest\n"
             "  -t TYPE         the message's content type (default text/plain)\n"
             "exit: 0 done, 1 error answer, 2 no answer from warrend, 64 usage\n");
}

int publish_command(int argc, char** argv) {
  HttpTarget target;
  std::string content_type = "text/plain";
  int rc = 0;
  if (!parse_options(argc, argv, &target, &content_type, &rc)) return rc;
  const int rest = argc - optind;
  if (rest < 3 || rest > 4) {
    bus_usage(stderr);
    return kExitUsage;
  }
  std::string body;
  if (rest == 4 && std::string_view(argv[optind + 3]) != "-") body = argv[optind + 3];
  else body.assign(std::istreambuf_iterator<char>(std::cin), {});
  const HttpAnswer answer =
      http_request(target, bus_path(argv + optind), "POST", content_type, body, 60);
  if (!answer.reached) {
    fmt::print(stderr, "warrenctl publish: {}\n", answer.error);
    return kExitUnreachable;
  }
  if (answer.status == 204) return 0;
  fmt::print(stderr, "warrenctl publish: {}\n", http_error_text(answer));
  return kExitError;
}

int tail_command(int argc, char** argv) {
  HttpTarget target;
  std::string unused;
  int rc = 0;
  if (!parse_options(argc, argv, &target, &unused, &rc)) return rc;
  if (argc - optind != 3) {
    bus_usage(stderr);
    return kExitUsage;
  }
  // The stream is already text/event-stream lines: pass them through as they come.
  const HttpAnswer answer = http_request(target, "/events" + bus_path(argv + optind), "GET", "", "",
                                         0, [](std::string_view data) {
                                           fmt::print("{}", data);
                                           fflush(stdout);
                                           return true;
                                         });
  if (!answer.reached) {
    fmt::print(stderr, "warrenctl tail: {}\n", answer.error);
    return kExitUnreachable;
  }
  if (answer.status != 200) {
    fmt::print(stderr, "warrenctl tail: {}\n", http_error_text(answer));
    return kExitError;
  }
  return answer.error.empty() ? 0 : kExitUnreachable;
}

}  // namespace warrenctl
