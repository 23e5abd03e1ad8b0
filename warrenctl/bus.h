// `warrenctl publish` and `warrenctl tail`: one message onto the bus, or what flows on it, from a
// shell, through a worker's publish and /events routes.
#pragma once

#include <cstdio>

namespace warrenctl {

// argv[0] is the command name; they return the process exit code.
int publish_command(int argc, char** argv);
int tail_command(int argc, char** argv);
void bus_usage(FILE* out);

}  // namespace warrenctl
