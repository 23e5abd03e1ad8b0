// warrend: options, -t, hand-off to the master.
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>

#include <cstdio>

#include "buildinfo.h"
#include "config.h"
#include "log.h"
#include "proc/master.h"

namespace {

constexpr const char* kDefaultConfig = "/etc/warren/warren.yml";

void usage(FILE* out) {
  fmt::print(out,
             "usage: warrend [-c FILE] [-t] [-f | -d] [-p PIDFILE] [-V] [-h]\n"
             "  -c FILE     configuration file (default {})\n"
             "  -t          test the configuration and exit (0: valid, 1: errors listed)\n"
             "  -f          stay in the foreground (the default)\n"
             "  -d          detach and run as a daemon\n"
             "  -p PIDFILE  pidfile, overriding daemon.pidfile\n"
             "  -V          print the version and exit\n"
             "  -h          this help\n",
             kDefaultConfig);
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path = kDefaultConfig;
  std::string pidfile;
  bool test_only = false, detach = false;
  int opt;
  while ((opt = getopt(argc, argv, "c:tfdp:Vh")) != -1) {
    switch (opt) {
      case 'c': config_path = optarg; break;
      case 't': test_only = true; break;
      case 'f': detach = false; break;
      case 'd': detach = true; break;
      case 'p': pidfile = optarg; break;
      case 'V': fmt::print("warrend {}\n", PACKAGE_VERSION); return 0;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 1;
    }
  }
  if (optind != argc) {
    usage(stderr);
    return 1;
  }
  // Reloads re-read the same file after a daemon's chdir("/").
  if (char resolved[PATH_MAX]; realpath(config_path.c_str(), resolved)) config_path = resolved;

  warren::ConfigResult loaded = warren::config_load(config_path);
  for (const auto& e : loaded.errors) fmt::print(stderr, "{}\n", e.text());
  if (!loaded.errors.empty()) {
    fmt::print(stderr, "warrend: configuration file {} has {} error(s)\n", config_path,
               loaded.errors.size());
    return 1;
  }
  if (test_only) {
    fmt::print("warrend: configuration file {} is valid\n", config_path);
    return 0;
  }
  return warren::master_main(loaded.config, {warren::running_binary(), config_path, pidfile}, detach);
}
