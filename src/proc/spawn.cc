#include "proc/spawn.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "log.h"

namespace warren {

Spawned spawn_process(const ChildMain& child_main) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    log_error("socketpair() failed: {}", errno_text(errno));
    return {};
  }
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, &old);  // no signal may reach the child before it has handlers
  const pid_t pid = fork();
  if (pid == 0) {
    close(sv[0]);
    _exit(child_main(Fd(sv[1]), old));
  }
  sigprocmask(SIG_SETMASK, &old, nullptr);
  close(sv[1]);
  if (pid < 0) {
    close(sv[0]);
    log_error("fork() failed: {}", errno_text(errno));
    return {};
  }
  return {pid, Fd(sv[0])};
}

// close_range(2) needs no /proc (a chroot or a container may have none).
void close_inherited_fds(std::vector<int> keep) {
  std::sort(keep.begin(), keep.end());
  unsigned first = 3;
  for (int fd : keep) {
    if (fd < 0 || static_cast<unsigned>(fd) < first) continue;
    if (static_cast<unsigned>(fd) > first) close_range(first, fd - 1, 0);
    first = fd + 1;
  }
  close_range(first, ~0U, 0);
}

}  // namespace warren
