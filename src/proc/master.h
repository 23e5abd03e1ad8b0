// The master process: owns the config, the listening sockets, the pidfile and the control
// socket; forks, reaps and respawns workers; reloads on SIGHUP; drains on SIGTERM/SIGQUIT;
// hands the workers' counters to a StatsCollector and control commands to proc/commands.cc.
// Its loop is libevent's, whose signal events do what nginx's flag handlers do: the handler only
// writes to a pipe, the work happens in the loop.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config.h"
#include "handles.h"
#include "proc/channel.h"
#include "proc/control.h"
#include "proc/listener.h"
#include "proc/stats_collector.h"
#include "proc/upgrade.h"
#include "proc/worker.h"
#include "stats.h"

namespace warren {

class Master : NonCopyable {
 public:
  // invocation.pidfile_override: warrend -p, which wins over daemon.pidfile in every config
  // loaded. inheritance: what an upgrade's old master handed over (proc/upgrade.h).
  Master(std::shared_ptr<const Config> config, Invocation invocation, Inheritance inheritance);
  ~Master();

  // Binds, forks the workers and runs until stopped. Returns the process exit code.
  int run();

  // What the control commands (proc/commands.cc) act on.
  nlohmann::json status() const;
  nlohmann::json workers() const;
  // Collects a fresh snapshot from every worker, then renders them (StatsCollector::render).
  void stats(std::string format, std::function<void(const nlohmann::json&)> done);
  // Re-reads the config and starts a new generation on it; on any error keeps the running one.
  void reload();
  // Asks every worker to drain, SIGKILLs what is left after daemon.shutdown_timeout, then exits.
  void shutdown(const char* why);
  // SIGUSR2: starts the binary installed at this one's path on the same sockets (proc/upgrade.h).
  void upgrade();
  int generation() const { return generation_; }

 private:
  struct Process {
    WorkerSpec spec;
    ListenerKey listener;
    int pid = 0;
    int generation = 0;
    double started = 0;
    bool ready = false;
    bool quitting = false;
    std::unique_ptr<Channel> channel;
  };

  [[nodiscard]] bool open_pidfile();
  [[nodiscard]] bool start();
  [[nodiscard]] bool open_control_socket();
  void remove_runtime_files();
  // The new binary of an upgrade exited while this master runs: its pidfile and control socket
  // are this master's again.
  void on_upgrade_exit(int status);
  void take_back_runtime_files();
  bool started_by_live_master() const;
  std::vector<std::pair<WorkerSpec, ListenerKey>> plan(const Config& config) const;
  void spawn(const WorkerSpec& spec, const ListenerKey& key);
  void spawn_generation();
  void reap();
  void on_exit(std::unique_ptr<Process> process, int status);
  void retire_old_generation();
  void on_frame(int pid, const Frame& frame);
  void on_ready(Process& process);
  void on_stats_request(int pid, const std::string& payload);
  void on_channel_trouble(int pid, ChannelTrouble trouble);
  Process* find(int pid);

  static void on_signal(evutil_socket_t sig, short, void* arg);
  static void on_kill_timer(evutil_socket_t, short, void* arg);
  static void on_retire_timer(evutil_socket_t, short, void* arg);
  static void on_respawn_timer(evutil_socket_t, short, void* arg);

  std::shared_ptr<const Config> with_overrides(std::shared_ptr<const Config> config) const;

  Invocation invocation_;
  Inheritance inherited_;
  std::shared_ptr<const Config> config_;
  double started_;
  EventBasePtr base_;
  MasterCounters counters_;
  StatsCollector stats_;
  Listeners listeners_;
  Fd pidfile_;
  std::string pidfile_path_;  // <pidfile>.oldbin while an upgrade's new binary runs
  FileId control_file_;       // the control socket file this master bound; another one is not removed
  std::unique_ptr<Control> control_;
  int new_binary_ = 0;        // the upgrade's new master while it runs
  std::vector<EventPtr> signals_;
  EventPtr kill_timer_, retire_timer_, respawn_timer_;
  std::vector<std::unique_ptr<Process>> processes_;
  std::vector<std::pair<WorkerSpec, ListenerKey>> respawn_queue_;
  int generation_ = 0;
  bool stopping_ = false;
  int exit_code_ = 0;  // 1 once no worker is left to run: the service failed, init should know
};

// warrend after its command line: logging, detaching (-d), the process-wide set-up every worker
// inherits, then the master's loop. Returns the process exit code.
int master_main(std::shared_ptr<const Config> config, Invocation invocation, bool detach);

}  // namespace warren
