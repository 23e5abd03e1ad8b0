#include "proc/upgrade.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <vector>

#include "log.h"
#include "proc/spawn.h"

namespace warren {
namespace {

constexpr const char* kOldMasterVar = "WARREN_OLD_MASTER";

}  // namespace

std::string running_binary() {
  char path[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
  return n > 0 ? std::string(path, static_cast<size_t>(n)) : std::string();
}

int start_new_binary(const Invocation& invocation, const Listeners& listeners) {
  std::vector<std::string> args = {invocation.binary, "-f", "-c", invocation.config_path};
  if (!invocation.pidfile_override.empty()) args.insert(args.end(), {"-p", invocation.pidfile_override});
  const std::string inherited = listeners.inherited_value();
  const std::string old_master = std::to_string(getpid());
  const pid_t pid = fork();
  if (pid != 0) {
    if (pid < 0) log_error("fork() for the new binary failed: {}", errno_text(errno));
    return pid;
  }
  // The child: only stdio and the listening sockets cross the exec, and no signal stays blocked.
  std::vector<int> keep = listeners.fds();
  close_inherited_fds(keep);
  for (int fd : keep) fcntl(fd, F_SETFD, 0);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  setenv(kInheritedListenersVar, inherited.c_str(), 1);
  setenv(kOldMasterVar, old_master.c_str(), 1);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  execv(argv[0], argv.data());
  log_error("execv() of {} failed: {}", invocation.binary, errno_text(errno));
  _exit(kExecFailed);
}

Inheritance take_inheritance() {
  Inheritance out;
  if (const char* v = getenv(kInheritedListenersVar)) out.listeners = v;
  if (const char* v = getenv(kOldMasterVar)) out.old_master = atoi(v);
  unsetenv(kInheritedListenersVar);
  unsetenv(kOldMasterVar);
  return out;
}

FileId file_id(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? FileId{st.st_dev, st.st_ino} : FileId{};
}

FileId file_id(int fd) {
  struct stat st {};
  return fstat(fd, &st) == 0 ? FileId{st.st_dev, st.st_ino} : FileId{};
}

}  // namespace warren
