// `warrenctl vcd`: the extension's life in vCloud Director (forward/vcd_deploy.h), for the vcd
// forwarders of a configuration file, straight to vCD's API (no daemon needed).
#pragma once

#include <cstdio>

namespace warrenctl {

// argv[0] is "vcd"; returns the process exit code.
int vcd_command(int argc, char** argv);
void vcd_usage(FILE* out);

}  // namespace warrenctl
