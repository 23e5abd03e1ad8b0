// Forking a child with a channel to it, as nginx's ngx_spawn_process() runs an ngx_spawn_proc_pt:
// a socketpair, and every signal blocked across fork() so that none reaches the child before it
// has handlers of its own.
#pragma once

#include <signal.h>

#include <functional>
#include <vector>

#include "handles.h"

namespace warren {

// Runs in the child, with its end of the channel and the signal mask to restore once its
// handlers are in (until then every signal waits); returns the child's exit code.
using ChildMain = std::function<int(Fd channel, const sigset_t& signal_mask)>;

struct Spawned {
  int pid = -1;  // -1: socketpair() or fork() failed (logged)
  Fd channel;    // the parent's end
};

[[nodiscard]] Spawned spawn_process(const ChildMain& child_main);

// In a child: closes every descriptor but stdio and `keep_fds` (-1s are ignored).
void close_inherited_fds(std::vector<int> keep);

}  // namespace warren
