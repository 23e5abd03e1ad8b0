// spawn_process() forks for real; the child reports what it saw in its exit code and on the
// channel (no gtest assertion runs in the child).
#include "proc/spawn.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

namespace warren {
namespace {

int wait_exit_code(int pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

bool blocked(int sig) {
  sigset_t now;
  sigprocmask(SIG_BLOCK, nullptr, &now);
  return sigismember(&now, sig) == 1;
}

TEST(SpawnProcess, TheChildStartsWithEverySignalBlockedAndIsGivenTheMaskToRestore) {
  ASSERT_FALSE(blocked(SIGTERM));
  Spawned child = spawn_process([](Fd channel, const sigset_t& mask) {
    const bool all_blocked = blocked(SIGTERM) && blocked(SIGUSR1) && blocked(SIGHUP);
    const bool mask_is_parents = sigismember(&mask, SIGTERM) == 0;
    const char answer = 'k';
    if (write(channel.get(), &answer, 1) != 1) return 3;
    return all_blocked && mask_is_parents ? 7 : 1;
  });
  ASSERT_GT(child.pid, 0);
  EXPECT_FALSE(blocked(SIGTERM));  // the parent's mask is back
  char got = 0;
  EXPECT_EQ(read(child.channel.get(), &got, 1), 1);
  EXPECT_EQ(got, 'k');
  EXPECT_EQ(wait_exit_code(child.pid), 7);
}

TEST(SpawnProcess, CloseInheritedFdsKeepsOnlyStdioAndWhatIsNamed) {
  int kept[2], dropped[2];
  ASSERT_EQ(pipe(kept), 0);
  ASSERT_EQ(pipe(dropped), 0);
  Spawned child = spawn_process([&](Fd channel, const sigset_t&) {
    close_inherited_fds({channel.get(), kept[1], -1});
    auto open = [](int fd) { return fcntl(fd, F_GETFD) != -1; };
    const bool ok = open(0) && open(1) && open(2) && open(channel.get()) && open(kept[1]) &&
                    !open(kept[0]) && !open(dropped[0]) && !open(dropped[1]);
    return ok ? 7 : 1;
  });
  ASSERT_GT(child.pid, 0);
  EXPECT_EQ(wait_exit_code(child.pid), 7);
  for (int fd : {kept[0], kept[1], dropped[0], dropped[1]}) close(fd);
}

}  // namespace
}  // namespace warren
