#include "proc/commands.h"

#include <algorithm>
#include <string_view>

#include "json.h"
#include "proc/master.h"

namespace warren {
namespace {

void command_status(Master& master, const Control::Reply& reply) { reply(json_text(master.status())); }

void command_stats(Master& master, const Control::Reply& reply) {
  master.stats("json", [reply](const nlohmann::json& body) { reply(json_text(body)); });
}

// The Prometheus text, as one JSON string like every other answer.
void command_metrics(Master& master, const Control::Reply& reply) {
  master.stats("prometheus", [reply](const nlohmann::json& body) { reply(json_text(body)); });
}

void command_workers(Master& master, const Control::Reply& reply) { reply(json_text(master.workers())); }

// A reload that fails keeps the running configuration and generation; the log says why.
void command_reload(Master& master, const Control::Reply& reply) {
  master.reload();
  reply(json_text({{"result", "reloaded"}, {"generation", master.generation()}}));
}

// Answered first: the control socket closes with the master.
void command_stop(Master& master, const Control::Reply& reply) {
  reply(json_text({{"result", "stopping"}}));
  master.shutdown("stop requested");
}

struct ControlCommand {
  std::string_view name;
  void (*run)(Master& master, const Control::Reply& reply);
};

constexpr ControlCommand kCommands[] = {
    {"status", command_status},   {"stats", command_stats},   {"metrics", command_metrics},
    {"workers", command_workers}, {"reload", command_reload}, {"stop", command_stop},
};

}  // namespace

void control_run(Master& master, const std::string& line, const Control::Reply& reply) {
  auto it = std::find_if(std::begin(kCommands), std::end(kCommands),
                         [&line](const ControlCommand& c) { return c.name == line; });
  if (it == std::end(kCommands)) {
    reply(json_text({{"error", "unknown command"}, {"detail", line}}));
    return;
  }
  it->run(master, reply);
}

}  // namespace warren
