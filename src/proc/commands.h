// The control socket's commands, as a table (pgbouncer's admin cmd_list[]): one row per
// command, its name and its handler. warrenctl's own list names the same commands.
#pragma once

#include <string>

#include "proc/control.h"

namespace warren {

class Master;

// Runs the command `line` names, or answers {"error": "unknown command", "detail": line}.
void control_run(Master& master, const std::string& line, const Control::Reply& reply);

}  // namespace warren
