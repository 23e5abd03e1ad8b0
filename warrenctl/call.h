// `warrenctl call`: an RPC call over a worker's HTTP /rpc route (warren-rpc(7)).
#pragma once

#include <cstdio>

namespace warrenctl {

// argv[0] is "call"; returns the process exit code.
int call_command(int argc, char** argv);
void call_usage(FILE* out);

}  // namespace warrenctl
