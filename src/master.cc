#include "master.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "buildinfo.h"
#include "forward/backend_url.h"
#include "log.h"
#include "json.h"

namespace warren {
namespace {

constexpr int kHandledSignals[] = {SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGCHLD, SIGUSR1};
constexpr timeval kCollectTimeout{0, 500000};
constexpr timeval kRetireTimeout{5, 0};  // old workers go even if new ones never say ready
constexpr double kRespawnThrottle = 1.0;  // a worker that dies younger waits this long
constexpr timeval kRateInterval{1, 0};
constexpr size_t kRateWindow = 5;  // rates are averaged over the last five samples

double unix_now() {
  timeval tv{};
  gettimeofday(&tv, nullptr);
  return tv.tv_sec + tv.tv_usec / 1e6;
}

timeval to_timeval(double seconds) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(seconds);
  tv.tv_usec = static_cast<suseconds_t>((seconds - tv.tv_sec) * 1e6);
  return tv;
}

// Verification off is allowed (a lab broker with a self-signed certificate) but never silent.
void warn_insecure_tls(const Config& config) {
  if (config.broker.tls.enabled && !config.broker.tls.verify)
    log_warning("broker.tls.verify is false: the broker's certificate is NOT checked");
  for (const auto& f : config.forwarders)
    if (!f.backend.verify && f.backend.url.starts_with("https:"))
      log_warning("forwarder {}: backend.verify is false: {} is NOT authenticated", f.name,
                  forward::display_url(f.backend.url));
}

void make_parent_dir(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return;
  mkdir(path.substr(0, slash).c_str(), 0755);  // EEXIST is the usual answer
}

// A forked worker keeps only stdio and its own two sockets; the rest is the master's.
// close_range(2) needs no /proc (a chroot or a container may have none).
void close_inherited_fds(std::initializer_list<int> keep_fds) {
  std::vector<int> keep(keep_fds);
  std::sort(keep.begin(), keep.end());
  unsigned first = 3;
  for (int fd : keep) {
    if (fd < 0 || static_cast<unsigned>(fd) < first) continue;
    if (static_cast<unsigned>(fd) > first) close_range(first, fd - 1, 0);
    first = fd + 1;
  }
  close_range(first, ~0U, 0);
}

// "port 8000" or "queue set vcd", for log lines.
std::string worker_role(const WorkerSpec& spec) {
  return spec.kind == ProcessKind::forward ? "queue set " + spec.queue_set : fmt::format("port {}", spec.port);
}

const char* exit_text(int status, std::string& buf) {
  if (WIFEXITED(status)) buf = fmt::format("exited with code {}", WEXITSTATUS(status));
  else if (WIFSIGNALED(status)) buf = fmt::format("killed by signal {}", strsignal(WTERMSIG(status)));
  else buf = "stopped";
  return buf.c_str();
}

}  // namespace

struct Master::Collect {
  std::set<int> awaited;
  std::function<void()> done;
  EventPtr timer;
  Master* master;
};

Master::Master(std::shared_ptr<const Config> config, std::string pidfile_override)
    : pidfile_override_(std::move(pidfile_override)),
      config_(with_overrides(std::move(config))),
      base_(event_base_new()) {}

std::shared_ptr<const Config> Master::with_overrides(std::shared_ptr<const Config> config) const {
  if (pidfile_override_.empty()) return config;
  auto copy = std::make_shared<Config>(*config);
  copy->daemon.pidfile = pidfile_override_;
  return copy;
}

Master::~Master() = default;

bool Master::open_pidfile() {
  const std::string& path = config_->daemon.pidfile;
  if (path.empty()) return true;
  make_parent_dir(path);
  Fd fd(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!fd) {
    log_error("open() of pidfile {} failed: {}", path, errno_text(errno));
    return false;
  }
  if (flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {};
    [[maybe_unused]] auto n = pread(fd.get(), buf, sizeof buf - 1, 0);
    log_error("another warrend (pid {}) holds the pidfile {}; not starting", atoi(buf), path);
    return false;
  }
  auto pid = fmt::format("{}\n", getpid());
  if (ftruncate(fd.get(), 0) != 0 || pwrite(fd.get(), pid.data(), pid.size(), 0) < 0) {
    log_error("write() of pidfile {} failed: {}", path, errno_text(errno));
    return false;
  }
  pidfile_ = std::move(fd);
  return true;
}

int Master::run() {
  started_ = unix_now();
  log_set_role("master");
  if (!open_pidfile()) return 1;
  if (!start()) {
    remove_runtime_files();  // no stale pidfile naming a warrend that never ran
    return 1;
  }
  log_info("warrend {} starting with {} (pid {})", PACKAGE_VERSION, config_->path, getpid());
  warn_insecure_tls(*config_);
  spawn_generation();
  event_base_dispatch(base_.get());

  remove_runtime_files();
  log_info("stopped");
  return exit_code_;
}

void Master::remove_runtime_files() {
  if (control_ && !config_->daemon.control_socket.empty()) unlink(config_->daemon.control_socket.c_str());
  if (pidfile_) unlink(config_->daemon.pidfile.c_str());
}

// The listening ports, the control socket and the timers: everything that can fail before a
// worker is forked.
bool Master::start() {
  const auto& http = config_->http;
  if (auto error = listeners_.bind_all(http.listen, http.ports, http.workers_per_port); !error.empty()) {
    log_error("{}", error);
    return false;
  }
  if (const auto& path = config_->daemon.control_socket; !path.empty()) {
    make_parent_dir(path);
    std::string error;
    Fd fd = listen_unix(path, 0660, &error);
    if (!fd) {
      log_error("control socket: {}", error);
      return false;
    }
    // warrenctl may be run by members of daemon.group without root.
    gid_t control_group = static_cast<gid_t>(-1);
    if (geteuid() == 0 && !config_->daemon.group.empty())
      if (const group* gr = getgrnam(config_->daemon.group.c_str())) {
        control_group = gr->gr_gid;
        [[maybe_unused]] auto rc = chown(path.c_str(), 0, gr->gr_gid);
      }
    control_ = std::make_unique<Control>(
        base_.get(), std::move(fd),
        [this](const std::string& cmd, Control::Reply reply) { handle_command(cmd, std::move(reply)); },
        control_group);
  }
  signal(SIGPIPE, SIG_IGN);
  for (int sig : kHandledSignals) {
    signals_.emplace_back(evsignal_new(base_.get(), sig, on_signal, this));
    event_add(signals_.back().get(), nullptr);
  }
  kill_timer_.reset(evtimer_new(base_.get(), on_kill_timer, this));
  retire_timer_.reset(evtimer_new(base_.get(), on_retire_timer, this));
  respawn_timer_.reset(evtimer_new(base_.get(), on_respawn_timer, this));
  rate_timer_.reset(event_new(base_.get(), -1, EV_PERSIST, on_rate_timer, this));
  event_add(rate_timer_.get(), &kRateInterval);
  return true;
}

std::vector<std::pair<WorkerSpec, ListenerKey>> Master::plan(const Config& config) const {
  std::vector<std::pair<WorkerSpec, ListenerKey>> out;
  int slot = 0;
  for (int port : config.http.ports)
    for (int i = 0; i < config.http.workers_per_port; ++i)
      out.emplace_back(WorkerSpec{ProcessKind::http, slot++, port, -1, ""}, ListenerKey{config.http.listen, port, i});
  // One forward worker per queue set, in the order the sets first appear; no socket (port 0).
  std::vector<std::string> sets;
  for (const auto& f : config.forwarders)
    if (std::find(sets.begin(), sets.end(), f.queue_set) == sets.end()) sets.push_back(f.queue_set);
  for (const auto& set : sets) out.emplace_back(WorkerSpec{ProcessKind::forward, slot++, 0, -1, set}, ListenerKey{});
  return out;
}

void Master::spawn_generation() {
  ++generation_;
  for (const auto& [spec, key] : plan(*config_)) spawn(spec, key);
}

void Master::spawn(const WorkerSpec& spec_in, const ListenerKey& key) {
  WorkerSpec spec = spec_in;
  spec.listen_fd = spec.kind == ProcessKind::forward ? -1 : listeners_.fd(key);
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    log_error("socketpair() failed: {}", errno_text(errno));
    return;
  }
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, &old);  // no signal may reach the child before it has handlers
  const pid_t pid = fork();
  if (pid == 0) {
    // The inherited event_base shares its epoll set with the master: the child never frees or
    // touches it. Signal events are the exception: dropping them only restores the default
    // dispositions and releases libevent's global signal slot for the worker's own base.
    // Every signal stays blocked until the worker's own handlers are in: one sent now (a USR1
    // right after a reload) waits for them instead of meeting the default action.
    signals_.clear();
    close(sv[0]);
    close_inherited_fds({sv[1], spec.listen_fd});
    log_reopen();
    _exit(worker_run(config_, spec, Fd(sv[1]), old));
  }
  sigprocmask(SIG_SETMASK, &old, nullptr);
  close(sv[1]);
  if (pid < 0) {
    close(sv[0]);
    log_error("fork() failed: {}", errno_text(errno));
    return;
  }
  auto p = std::make_unique<Process>();
  p->spec = spec;
  p->listener = key;
  p->pid = pid;
  p->generation = generation_;
  p->started = unix_now();
  p->channel = std::make_unique<Channel>(
      base_.get(), Fd(sv[0]), [this, pid](const Frame& f) { on_frame(pid, f); },
      [this, pid](ChannelTrouble trouble) { on_channel_trouble(pid, trouble); });
  log_info("started worker pid {} for {} (slot {})", pid, worker_role(spec), spec.slot);
  processes_.push_back(std::move(p));
}

Master::Process* Master::find(int pid) {
  for (auto& p : processes_)
    if (p->pid == pid) return p.get();
  return nullptr;
}

void Master::reap() {
  int status = 0;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    auto it = std::find_if(processes_.begin(), processes_.end(),
                           [pid](const auto& p) { return p->pid == pid; });
    if (it == processes_.end()) continue;
    std::unique_ptr<Process> p = std::move(*it);
    processes_.erase(it);
    if (auto snap = snapshots_.find(pid); snap != snapshots_.end()) {
      retired_.add(snap->second);
      snapshots_.erase(snap);
    }
    for (auto& c : collects_) c->awaited.erase(pid);
    std::string text;
    const bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (p->quitting || stopping_ || p->generation < generation_) {
      log_info("worker pid {} {}", pid, exit_text(status, text));
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == kWorkerExitFatal) {
      log_error("worker pid {} for {} failed to set up; not respawning it", pid, worker_role(p->spec));
    } else {
      log_error("worker pid {} for {} {}; respawning", pid, worker_role(p->spec), exit_text(status, text));
      ++counters_.worker_respawns;
      if (clean || unix_now() - p->started >= kRespawnThrottle) {
        spawn(p->spec, p->listener);
      } else {
        respawn_queue_.emplace_back(p->spec, p->listener);
        timeval tv = to_timeval(kRespawnThrottle);
        event_add(respawn_timer_.get(), &tv);
      }
    }
  }
  for (auto& c : collects_)
    if (c->awaited.empty()) event_active(c->timer.get(), EV_TIMEOUT, 0);
  if (stopping_ && processes_.empty()) event_base_loopexit(base_.get(), nullptr);
  if (!stopping_ && processes_.empty() && respawn_queue_.empty()) {
    log_error("no worker left to run; stopping");
    exit_code_ = 1;
    shutdown("no workers");
  }
}

void Master::reload() {
  log_info("reloading {}", config_->path);
  ConfigResult result = config_load(config_->path);
  if (result.config) result.config = with_overrides(result.config);
  for (const auto& e : result.errors) log_error("reload: {}", e.text());
  if (!result.errors.empty()) {
    log_error("reload failed; keeping the running configuration");
    return;
  }
  auto restart = config_restart_keys(*config_, *result.config);
  if (!restart.empty()) {
    std::string keys;
    for (const auto& k : restart) keys += (keys.empty() ? "" : ", ") + k;
    log_error("reload: {} cannot change without a restart; keeping the running configuration", keys);
    return;
  }
  const auto& http = result.config->http;
  if (auto error = listeners_.bind_all(http.listen, http.ports, http.workers_per_port); !error.empty()) {
    log_error("reload: {}; keeping the running configuration", error);
    return;
  }
  if (!log_configure(result.config->logging.level, result.config->logging.syslog_facility))
    log_warning("reload: logging settings not applied");
  warn_insecure_tls(*result.config);
  config_ = result.config;
  respawn_queue_.clear();
  spawn_generation();
  timeval tv = kRetireTimeout;
  event_add(retire_timer_.get(), &tv);
}

void Master::retire_old_generation() {
  event_del(retire_timer_.get());
  for (auto& p : processes_) {
    if (p->generation < generation_ && !p->quitting) {
      log_info("draining old worker pid {}", p->pid);
      kill(p->pid, SIGQUIT);
      p->quitting = true;
    }
  }
  std::vector<ListenerKey> keep;
  for (const auto& [spec, key] : plan(*config_)) keep.push_back(key);
  listeners_.close_except(keep);
}

void Master::shutdown(const char* why) {
  if (stopping_) return;
  stopping_ = true;
  log_info("{}: stopping workers (SIGKILL in {} s)", why, config_->daemon.shutdown_timeout);
  for (auto& p : processes_) {
    kill(p->pid, SIGQUIT);
    p->quitting = true;
  }
  respawn_queue_.clear();
  timeval tv = to_timeval(config_->daemon.shutdown_timeout);
  event_add(kill_timer_.get(), &tv);
  if (processes_.empty()) event_base_loopexit(base_.get(), nullptr);
}

void Master::on_frame(int pid, const Frame& frame) {
  Process* p = find(pid);
  if (!p) return;
  switch (frame.type) {
    case FrameType::ready: {
      p->ready = true;
      bool all_ready = std::all_of(processes_.begin(), processes_.end(), [this](const auto& q) {
        return q->generation < generation_ || q->ready;
      });
      if (all_ready && event_pending(retire_timer_.get(), EV_TIMEOUT, nullptr))
        retire_old_generation();
      break;
    }
    case FrameType::snapshot: {
      snapshots_[pid] = Snapshot::from_json(nlohmann::json::parse(frame.payload));
      for (auto& c : collects_)
        if (c->awaited.erase(pid) && c->awaited.empty()) event_active(c->timer.get(), EV_TIMEOUT, 0);
      break;
    }
    case FrameType::stats_request: {
      const auto j = nlohmann::json::parse(frame.payload);
      const uint64_t id = j.value("id", uint64_t{0});
      const std::string format = j.value("format", "json");
      collect([this, pid, id, format] {
        Process* q = find(pid);
        if (!q) return;
        nlohmann::json body = format == "prometheus"
                                  ? nlohmann::json(stats_render_prometheus(snapshots_, retired_, counters_))
                                  : render_stats();
        q->channel->send(FrameType::stats_reply, json_text({{"id", id}, {"body", body}}));
      });
      break;
    }
    default:
      log_warning("channel: unexpected frame type {} from worker pid {}", int(frame.type), pid);
  }
}

// A worker's frame that does not decode throws out of on_frame; the channel drops that frame
// and says so here. A stream that is not frames at all costs the worker: its replacement starts
// with a clean channel.
void Master::on_channel_trouble(int pid, ChannelTrouble trouble) {
  switch (trouble) {
    case ChannelTrouble::closed:
      break;  // the exit is seen by SIGCHLD; nothing to do until then
    case ChannelTrouble::frame_refused:
      ++counters_.worker_frames_refused;
      break;
    case ChannelTrouble::malformed:
      ++counters_.worker_frames_refused;
      log_error("worker pid {} sent a malformed frame; killing it", pid);
      kill(pid, SIGKILL);
      break;
  }
}

// Asks every worker for a fresh snapshot and runs `done` when all answered or after a bound.
void Master::collect(std::function<void()> done) {
  auto c = std::make_unique<Collect>();
  c->master = this;
  c->done = std::move(done);
  c->timer.reset(evtimer_new(
      base_.get(),
      [](evutil_socket_t, short, void* arg) {
        auto* self = static_cast<Collect*>(arg);
        self->master->finish_collect(self);
      },
      c.get()));
  for (auto& p : processes_) {
    if (p->quitting) continue;
    c->awaited.insert(p->pid);
    p->channel->send(FrameType::snapshot_request, "");
  }
  timeval tv = kCollectTimeout;
  if (c->awaited.empty()) tv = {0, 0};
  event_add(c->timer.get(), &tv);
  collects_.push_back(std::move(c));
}

void Master::finish_collect(Collect* collect) {
  auto it = std::find_if(collects_.begin(), collects_.end(),
                         [collect](const auto& c) { return c.get() == collect; });
  if (it == collects_.end()) return;
  std::unique_ptr<Collect> owned = std::move(*it);
  collects_.erase(it);
  owned->done();
  // `owned` (and its timer, whose callback this is) is freed here: libevent allows freeing an
  // event from its own callback once it is no longer pending, which a fired timer is not.
}

nlohmann::json Master::render_stats() const {
  auto j = stats_render(snapshots_, retired_, ProcessUsage::current(), unix_now() - started_, counters_);
  const double now = unix_now();
  j["rates"] = history_.empty() ? nlohmann::json::object()
                                : stats_total(snapshots_, retired_).rates_since(
                                      history_.front().second, now - history_.front().first);
  return j;
}

// Snapshots arrive once a second from each worker; so do the totals kept for rates.
void Master::on_rate_timer(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<Master*>(arg);
  self->history_.emplace_back(unix_now(), stats_total(self->snapshots_, self->retired_));
  while (self->history_.size() > kRateWindow) self->history_.pop_front();
}

nlohmann::json Master::workers_json() const {
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& p : processes_)
    rows.push_back({{"pid", p->pid},
                    {"slot", p->spec.slot},
                    {"kind", process_kind_name(p->spec.kind)},
                    {"port", p->spec.port},
                    {"queue_set", p->spec.queue_set},
                    {"generation", p->generation},
                    {"started", p->started},
                    {"ready", p->ready},
                    {"quitting", p->quitting}});
  return rows;
}

void Master::handle_command(const std::string& command, Control::Reply reply) {
  if (command == "status") {
    reply(json_text({{"pid", getpid()},
                     {"version", PACKAGE_VERSION},
                     {"config", config_->path},
                     {"uptime", unix_now() - started_},
                     {"generation", generation_},
                     {"workers", processes_.size()},
                     {"respawns", counters_.worker_respawns},
                     {"stopping", stopping_}}));
  } else if (command == "stats") {
    collect([this, reply] { reply(json_text(render_stats())); });
  } else if (command == "metrics") {
    collect([this, reply] { reply(json_text(stats_render_prometheus(snapshots_, retired_, counters_))); });
  } else if (command == "workers") {
    reply(json_text(workers_json()));
  } else if (command == "reload") {
    reload();
    reply(json_text({{"result", "reloaded"}, {"generation", generation_}}));
  } else if (command == "stop") {
    reply(json_text({{"result", "stopping"}}));
    shutdown("stop requested");
  } else {
    reply(json_text({{"error", "unknown command"}, {"detail", command}}));
  }
}

void Master::on_signal(evutil_socket_t sig, short, void* arg) {
  auto* self = static_cast<Master*>(arg);
  switch (sig) {
    case SIGCHLD:
      self->reap();
      break;
    case SIGHUP:
      if (!self->stopping_) self->reload();
      break;
    case SIGUSR1:
      log_reopen();
      for (auto& p : self->processes_) kill(p->pid, SIGUSR1);
      break;
    default:
      self->shutdown(strsignal(sig));
  }
}

void Master::on_kill_timer(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<Master*>(arg);
  for (auto& p : self->processes_) {
    log_warning("worker pid {} still running after shutdown_timeout; SIGKILL", p->pid);
    kill(p->pid, SIGKILL);
  }
}

void Master::on_retire_timer(evutil_socket_t, short, void* arg) {
  log_warning("new workers not all ready in time; draining the old ones anyway");
  static_cast<Master*>(arg)->retire_old_generation();
}

void Master::on_respawn_timer(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<Master*>(arg);
  for (const auto& [spec, key] : std::exchange(self->respawn_queue_, {})) self->spawn(spec, key);
}

}  // namespace warren
