#include "proc/master.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include <curl/curl.h>

#include "buildinfo.h"
#include "forward/backend_url.h"
#include "json.h"
#include "log.h"
#include "loop.h"
#include "proc/clock.h"
#include "proc/commands.h"
#include "proc/spawn.h"

namespace warren {
namespace {

constexpr int kHandledSignals[] = {SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGCHLD, SIGUSR1, SIGUSR2};
constexpr timeval kRetireTimeout{5, 0};  // old workers go even if new ones never say ready
constexpr double kRespawnThrottle = 1.0;  // a worker that dies younger waits this long

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

Master::Master(std::shared_ptr<const Config> config, Invocation invocation, Inheritance inheritance)
    : invocation_(std::move(invocation)),
      inherited_(std::move(inheritance)),
      config_(with_overrides(std::move(config))),
      started_(unix_now()),
      base_(event_base_new()),
      stats_(base_.get(), counters_, started_) {}

std::shared_ptr<const Config> Master::with_overrides(std::shared_ptr<const Config> config) const {
  if (invocation_.pidfile_override.empty()) return config;
  auto copy = std::make_shared<Config>(*config);
  copy->daemon.pidfile = invocation_.pidfile_override;
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
  pidfile_path_ = path;
  return true;
}

int Master::run() {
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
  const auto& control = config_->daemon.control_socket;
  if (control_ && !control.empty() && file_id(control) == control_file_) unlink(control.c_str());
  if (pidfile_ && file_id(pidfile_path_) == file_id(pidfile_.get())) unlink(pidfile_path_.c_str());
}

// The master that started this one by an upgrade, while it runs: this one is its child until then.
bool Master::started_by_live_master() const {
  return inherited_.old_master != 0 && getppid() == inherited_.old_master;
}

void Master::upgrade() {
  if (new_binary_ > 0)
    return log_warning("SIGUSR2: the new binary of the last upgrade (pid {}) still runs", new_binary_);
  if (started_by_live_master())
    return log_warning("SIGUSR2: the old master (pid {}) still runs; send it SIGQUIT first",
                       inherited_.old_master);
  if (pidfile_) {
    const std::string oldbin = config_->daemon.pidfile + ".oldbin";
    if (rename(pidfile_path_.c_str(), oldbin.c_str()) != 0)
      return log_error("upgrade: rename() of {} failed: {}", pidfile_path_, errno_text(errno));
    pidfile_path_ = oldbin;
  }
  const int pid = start_new_binary(invocation_, listeners_);
  if (pid < 0) return take_back_runtime_files();
  new_binary_ = pid;
  log_info("upgrade: started {} as pid {}; send this master (pid {}) SIGQUIT once it serves",
           invocation_.binary, pid, getpid());
}

void Master::on_upgrade_exit(int status) {
  std::string text;
  log_error("upgrade: the new binary (pid {}) {}; this master goes on serving", new_binary_,
            exit_text(status, text));
  new_binary_ = 0;
  take_back_runtime_files();
}

void Master::take_back_runtime_files() {
  const auto& pidfile = config_->daemon.pidfile;
  if (pidfile_ && pidfile_path_ != pidfile) {
    if (rename(pidfile_path_.c_str(), pidfile.c_str()) == 0) pidfile_path_ = pidfile;
    else log_error("rename() of {} to {} failed: {}", pidfile_path_, pidfile, errno_text(errno));
  }
  const auto& control = config_->daemon.control_socket;
  if (control_ && file_id(control) != control_file_) {
    control_.reset();
    if (!open_control_socket()) log_error("warrenctl cannot reach this master until it restarts");
  }
}

// The listening ports, the control socket and the timers: everything that can fail before a
// worker is forked.
bool Master::start() {
  if (!inherited_.listeners.empty())
    if (auto refused = listeners_.adopt(inherited_.listeners); !refused.empty())
      log_warning("upgrade: inherited sockets refused (not listening): {}", refused);
  const auto& http = config_->http;
  if (auto error = listeners_.bind_all(http.listen, http.ports, http.workers_per_port); !error.empty()) {
    log_error("{}", error);
    return false;
  }
  std::vector<ListenerKey> wanted;  // an inherited socket the config no longer names is closed
  for (const auto& [spec, key] : plan(*config_)) wanted.push_back(key);
  listeners_.close_except(wanted);
  if (!open_control_socket()) return false;
  signal(SIGPIPE, SIG_IGN);
  for (int sig : kHandledSignals) {
    signals_.emplace_back(evsignal_new(base_.get(), sig, on_signal, this));
    event_add(signals_.back().get(), nullptr);
  }
  kill_timer_.reset(evtimer_new(base_.get(), on_kill_timer, this));
  retire_timer_.reset(evtimer_new(base_.get(), on_retire_timer, this));
  respawn_timer_.reset(evtimer_new(base_.get(), on_respawn_timer, this));
  return true;
}

bool Master::open_control_socket() {
  const auto& path = config_->daemon.control_socket;
  if (path.empty()) return true;
  make_parent_dir(path);
  std::string error;
  Fd fd = listen_unix(path, 0660, started_by_live_master(), &error);
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
      [this](const std::string& command, Control::Reply reply) { control_run(*this, command, reply); },
      control_group);
  control_file_ = file_id(path);
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
  spec.listen_fd = listeners_.fd(key);  // -1 for a forward worker: its key names no socket
  Spawned child = spawn_process([this, &spec](Fd channel, const sigset_t& signal_mask) {
    // The inherited event_base shares its epoll set with the master: the child never frees or
    // touches it. Signal events are the exception: dropping them only restores the default
    // dispositions and releases libevent's global signal slot for the worker's own base.
    // Every signal stays blocked until the worker's own handlers are in: one sent now (a USR1
    // right after a reload) waits for them instead of meeting the default action.
    signals_.clear();
    // A worker keeps only stdio and its own two sockets; the rest is the master's.
    close_inherited_fds({channel.get(), spec.listen_fd});
    log_reopen();
    return worker_run(config_, spec, std::move(channel), signal_mask);
  });
  if (child.pid < 0) return;
  const int pid = child.pid;
  auto p = std::make_unique<Process>();
  p->spec = spec;
  p->listener = key;
  p->pid = pid;
  p->generation = generation_;
  p->started = unix_now();
  p->channel = std::make_unique<Channel>(
      base_.get(), std::move(child.channel), [this, pid](const Frame& f) { on_frame(pid, f); },
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
    if (pid == new_binary_) {
      on_upgrade_exit(status);
      continue;
    }
    auto it = std::find_if(processes_.begin(), processes_.end(),
                           [pid](const auto& p) { return p->pid == pid; });
    if (it == processes_.end()) continue;
    std::unique_ptr<Process> p = std::move(*it);
    processes_.erase(it);
    on_exit(std::move(p), status);
  }
  if (stopping_ && processes_.empty()) event_base_loopexit(base_.get(), nullptr);
  if (!stopping_ && processes_.empty() && respawn_queue_.empty()) {
    log_error("no worker left to run; stopping");
    exit_code_ = 1;
    shutdown("no workers");
  }
}

// A worker that was not asked to go is respawned into its slot, unless it failed to set up
// (exit 2); one that dies younger than kRespawnThrottle waits that long first.
void Master::on_exit(std::unique_ptr<Process> p, int status) {
  const int pid = p->pid;
  stats_.on_exit(pid);
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
    case FrameType::ready:
      on_ready(*p);
      break;
    case FrameType::snapshot:
      stats_.on_snapshot(pid, frame.payload);
      break;
    case FrameType::stats_request:
      on_stats_request(pid, frame.payload);
      break;
    default:
      log_warning("channel: unexpected frame type {} from worker pid {}", int(frame.type), pid);
  }
}

// The old generation drains once every worker of the new one serves (or kRetireTimeout passed).
void Master::on_ready(Process& process) {
  process.ready = true;
  bool all_ready = std::all_of(processes_.begin(), processes_.end(), [this](const auto& q) {
    return q->generation < generation_ || q->ready;
  });
  if (all_ready && event_pending(retire_timer_.get(), EV_TIMEOUT, nullptr)) retire_old_generation();
}

// An HTTP worker's /stats: the sum over all workers, which only the master has.
void Master::on_stats_request(int pid, const std::string& payload) {
  const auto j = nlohmann::json::parse(payload);
  const uint64_t id = j.value("id", uint64_t{0});
  stats(j.value("format", "json"), [this, pid, id](const nlohmann::json& body) {
    Process* p = find(pid);
    if (p) p->channel->send(FrameType::stats_reply, json_text({{"id", id}, {"body", body}}));
  });
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

void Master::stats(std::string format, std::function<void(const nlohmann::json&)> done) {
  std::vector<StatsCollector::Member> members;
  for (auto& p : processes_)
    if (!p->quitting) members.emplace_back(p->pid, p->channel.get());
  stats_.collect(members, [this, format = std::move(format), done = std::move(done)] {
    done(stats_.render(format));
  });
}

nlohmann::json Master::status() const {
  return {{"pid", getpid()},
          {"version", PACKAGE_VERSION},
          {"config", config_->path},
          {"uptime", unix_now() - started_},
          {"generation", generation_},
          {"workers", processes_.size()},
          {"respawns", counters_.worker_respawns},
          {"stopping", stopping_},
          {"new_binary", new_binary_}};
}

nlohmann::json Master::workers() const {
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
    case SIGUSR2:
      if (!self->stopping_) self->upgrade();
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

int master_main(std::shared_ptr<const Config> config, Invocation invocation, bool detach) {
  Inheritance inheritance = take_inheritance();
  if (!log_configure(config->logging.level, config->logging.syslog_facility)) {
    fmt::print(stderr, "warrend: logging settings not usable\n");
    return 1;
  }
  if (detach && daemon(0, 1) != 0) {
    log_error("daemon() failed: {}", errno_text(errno));
    return 1;
  }
  // Once, before any fork: curl's global state (OpenSSL included) is not safe to set up later
  // from several places. Forward workers inherit it.
  if (CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT); rc != CURLE_OK) {
    log_error("curl_global_init() failed: {}", curl_easy_strerror(rc));
    return 1;
  }
  Master master(std::move(config), std::move(invocation), std::move(inheritance));
  return master.run();
}

}  // namespace warren
