// The binary upgrade, nginx's way. On SIGUSR2 the master renames its pidfile to
// <pidfile>.oldbin and starts the binary at the path it was itself started from, with the
// listening sockets inherited (kInheritedListenersVar): the new master binds nothing, takes the
// control socket over and forks its workers, and both generations accept on the same sockets
// until the old master gets SIGQUIT and drains. Should the new master exit while the old one
// still runs, the old one takes its pidfile and control socket back and carries on.
#pragma once

#include <sys/types.h>

#include <string>

#include "proc/listener.h"

namespace warren {

// How this master was started, to start its successor the same way.
struct Invocation {
  std::string binary;  // the executable's path as resolved at start: a file installed over it is
                       // what the upgrade runs
  std::string config_path;
  std::string pidfile_override;  // warrend -p
};

// The path of the running executable (/proc/self/exe), read before anything could replace it.
std::string running_binary();

// Forks and execs the binary in the foreground (-f) with `listeners` inherited; the pid, or -1
// (logged) when the fork failed. An exec that fails ends the child with kExecFailed.
int start_new_binary(const Invocation& invocation, const Listeners& listeners);
inline constexpr int kExecFailed = 127;

// In the new binary: the inherited listeners' variable and the old master's pid, read once and
// removed from the environment so that no worker or later upgrade sees them.
struct Inheritance {
  std::string listeners;  // empty: not started by an upgrade
  int old_master = 0;
};
Inheritance take_inheritance();

// A file's identity: a master removes at exit only the runtime files it made, not those the
// upgrade's new master made at the same paths since. {0, 0} for a file that does not exist.
struct FileId {
  dev_t dev = 0;
  ino_t ino = 0;
  bool operator==(const FileId&) const = default;
};
FileId file_id(const std::string& path);
FileId file_id(int fd);

}  // namespace warren
