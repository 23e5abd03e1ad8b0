// A worker process: set up after fork, one event loop, serve until told to drain, then exit.
#pragma once

#include <signal.h>

#include <memory>
#include <string>

#include "config.h"
#include "handles.h"
#include "process_kind.h"

namespace warren {

struct WorkerSpec {
  ProcessKind kind = ProcessKind::http;  // http: one listening socket; forward: a queue set
  int slot = 0;               // stable position in the master's table, kept across respawns
  int port = 0;
  int listen_fd = -1;         // -1 for forward workers: they listen on nothing
  std::string queue_set;      // forward workers: the forwarders[].queue_set they run
};

// Exit codes: 0 after a graceful drain; 2 for a fatal setup error the master must not respawn.
constexpr int kWorkerExitFatal = 2;

// Runs in the child after fork and never returns to the master's code: the caller _exits with
// the result. The child starts with every signal blocked; `signal_mask` is restored once the
// worker's handlers are installed.
int worker_run(std::shared_ptr<const Config> config, const WorkerSpec& spec, Fd channel,
               const sigset_t& signal_mask);

}  // namespace warren
