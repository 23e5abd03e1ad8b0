#include "proc/worker.h"

#include <grp.h>
#include <malloc.h>
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <map>

#include "context.h"
#include "core/publisher.h"
#include "core/rpc.h"
#include "forward/queue_set.h"
#include "handles.h"
#include "http/admin.h"
#include "http/dashboard.h"
#include "http/events.h"
#include "http/publish.h"
#include "http/rpc.h"
#include "http/server.h"
#include "json.h"
#include "log.h"
#include "options.h"
#include "proc/channel.h"
#include "proc/clock.h"
#include "stats.h"

namespace warren {
namespace {

constexpr timeval kSnapshotInterval{1, 0};

// Workers never keep root: after the master bound the sockets they need no privilege.
[[nodiscard]] bool drop_privileges(const DaemonConfig& daemon) {
  if (geteuid() != 0 || daemon.user.empty()) return true;
  const passwd* pw = getpwnam(daemon.user.c_str());
  if (!pw) {
    log_error("daemon.user: no such user \"{}\"", daemon.user);
    return false;
  }
  gid_t gid = pw->pw_gid;
  if (!daemon.group.empty()) {
    const group* gr = getgrnam(daemon.group.c_str());
    if (!gr) {
      log_error("daemon.group: no such group \"{}\"", daemon.group);
      return false;
    }
    gid = gr->gr_gid;
  }
  if (setgid(gid) != 0 || initgroups(daemon.user.c_str(), gid) != 0 || setuid(pw->pw_uid) != 0) {
    log_error("dropping privileges to {} failed: {}", daemon.user, errno_text(errno));
    return false;
  }
  return true;
}

// Each HTTP request changes its connection's events several times (reply written: write on;
// written: write off, read on), often within one loop pass; epoll's changelist folds the
// changes of one pass into one epoll_ctl per fd: 3 calls per request instead of 4 at c=64.
// (Its documented caveat, fds duplicated with dup(), does not apply: a worker dups none.)
EventBasePtr new_worker_base() {
  EventConfigPtr config(event_config_new());
  event_config_set_flag(config.get(), EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
  return EventBasePtr(event_base_new_with_config(config.get()));
}

// What every kind shares: the channel to the master, the signals, a snapshot once a second and
// on request, the drain sequence. A kind adds its own subsystems, built in its constructor and
// never null, and says how they start, drain and close.
class Worker : NonCopyable {
 public:
  Worker(std::shared_ptr<const Config> config, const WorkerSpec& spec)
      : config_(std::move(config)), spec_(spec), loop_(new_worker_base()) {}
  virtual ~Worker() = default;

  int run(Fd channel_fd, const sigset_t& signal_mask) {
    started_ = unix_now();
    channel_ = std::make_unique<Channel>(
        loop_.base(), std::move(channel_fd), [this](const Frame& f) { on_frame(f); },
        [this](ChannelTrouble trouble) {
          if (trouble != ChannelTrouble::frame_refused) on_master_gone();
        });
    for (int sig : {SIGTERM, SIGQUIT, SIGINT, SIGUSR1, SIGHUP, SIGUSR2}) {
      signals_.emplace_back(evsignal_new(loop_.base(), sig, on_signal, this));
      event_add(signals_.back().get(), nullptr);
    }
    sigprocmask(SIG_SETMASK, &signal_mask, nullptr);  // what came meanwhile is handled now
    snapshot_timer_.reset(event_new(loop_.base(), -1, EV_PERSIST, on_snapshot_timer, this));
    event_add(snapshot_timer_.get(), &kSnapshotInterval);

    if (!start()) return kWorkerExitFatal;
    channel_->send(FrameType::ready, "");
    event_base_dispatch(loop_.base());
    return 0;
  }

 protected:
  // Starts serving; false after logging a set-up error the master must not respawn for.
  [[nodiscard]] virtual bool start() = 0;
  // The kind's own figures (connections, forwarders) in a snapshot.
  virtual void fill(Snapshot& s) const = 0;
  // Takes no more work and calls `done` once nothing is in flight.
  virtual void drain_work(std::function<void()> done) = 0;
  // Closes the broker connections politely; nothing is in flight.
  virtual void close() = 0;
  // A frame only this kind expects; false: not one it knows.
  virtual bool on_kind_frame(const Frame&) { return false; }

  std::shared_ptr<const Config> config_;
  WorkerSpec spec_;
  Counters counters_;
  Histograms histograms_;
  Loop loop_;  // before the objects that run on it: it frees what they let go, after them
  Context context_{loop_, counters_, histograms_};  // what the kind's objects are built with
  std::unique_ptr<Channel> channel_;
  bool draining_ = false;

 private:
  Snapshot snapshot() const {
    Snapshot s;
    s.pid = getpid();
    s.slot = spec_.slot;
    s.kind = spec_.kind;
    s.port = spec_.port;
    s.started = started_;
    s.counters = counters_;
    s.histograms = histograms_;
    s.usage = ProcessUsage::current();
    fill(s);
    return s;
  }

  // Connection names hold a client's vhost and user name, which may be any bytes: invalid UTF-8
  // is replaced, never thrown about (the master's parse refuses it).
  void send_snapshot() { channel_->send(FrameType::snapshot, json_text(snapshot().to_json())); }

  void on_frame(const Frame& frame) {
    if (frame.type == FrameType::snapshot_request) send_snapshot();
    else if (!on_kind_frame(frame))
      log_warning("channel: unexpected frame type {} from the master", int(frame.type));
  }

  void on_master_gone() {
    if (draining_) return;
    log_error("lost the channel to the master; draining");
    drain();
  }

  void drain() {
    if (draining_) return;
    draining_ = true;
    drain_work([this] { finish(); });
  }

  void finish() {
    send_snapshot();
    channel_->flush_blocking();
    close();
    log_info("drained; exiting");
    constexpr timeval kCloseWait{0, 500000};  // the polite closes' bound
    event_base_loopexit(loop_.base(), &kCloseWait);
  }

  static void on_signal(evutil_socket_t sig, short, void* arg) {
    auto* self = static_cast<Worker*>(arg);
    ++self->counters_.signals_received;
    switch (sig) {
      case SIGUSR1:
        log_reopen();
        break;
      case SIGHUP:
        break;  // the master reloads; a worker is replaced, not reconfigured
      case SIGUSR2:
        break;  // the master's binary upgrade; `pkill -USR2 warrend` must not cost the workers
      default:
        log_info("signal {}: draining", strsignal(sig));
        self->drain();
    }
  }

  static void on_snapshot_timer(evutil_socket_t, short, void* arg) {
    static_cast<Worker*>(arg)->send_snapshot();
    give_back_free_heap();
  }

  // glibc keeps what is freed in its heap, and takes bodies of a MiB or so there once one was
  // freed: after a burst of big publishes (as many bodies as clients sent at once) a worker
  // would stay that big for good (CI: 21 MiB more after 40 refused 1 MiB publishes). Once a
  // second, free pages past a MiB go back to the kernel, as jemalloc's decay would. Not on
  // every free (a fixed mmap threshold): page faults made a 256 KiB publish cost 2.5 times the
  // CPU here.
  static void give_back_free_heap() {
    constexpr size_t kSlack = 1 << 20;
    if (mallinfo2().fordblks > kSlack) malloc_trim(0);
  }

  double started_ = 0;
  std::vector<EventPtr> signals_;
  EventPtr snapshot_timer_;
};

// An HTTP worker: accepts on its listening socket; publishes, calls and subscribes on the broker.
// /stats asks the master, which alone has every worker's figures.
class HttpWorker final : public Worker, public StatsSource {
 public:
  static std::string role(const WorkerSpec& spec) { return fmt::format("worker http:{}", spec.port); }

  HttpWorker(std::shared_ptr<const Config> config, const WorkerSpec& spec)
      : Worker(std::move(config), spec) {
    http_ = std::make_unique<HttpServer>(context_, config_->http);
    publisher_ = std::make_unique<core::Publisher>(context_, publish_options(*config_));
    rpc_ = std::make_unique<core::Rpc>(context_, rpc_options(*config_), *publisher_);
    admin_routes(*http_, *this);
    dashboard_routes(*http_);
    publish_routes(*http_, *publisher_);
    event_routes(*http_, context_, *config_);
    rpc_routes(*http_, *rpc_, *config_);
  }

  void request_stats(std::string format, StatsCallback done) override {
    const uint64_t id = ++last_request_id_;
    pending_stats_.emplace(id, std::move(done));
    channel_->send(FrameType::stats_request, json_text({{"id", id}, {"format", format}}));
  }

  nlohmann::json identity() const override {
    return {{"pid", getpid()}, {"slot", spec_.slot}, {"port", spec_.port}, {"draining", draining_},
            {"queue_set", spec_.queue_set}};
  }

 private:
  bool start() override {
    if (!http_->accept_on(spec_.listen_fd)) {
      log_error("listening on port {} failed: {}", spec_.port, strerror(errno));
      return false;
    }
    log_info("serving on port {}", spec_.port);
    return true;
  }

  void fill(Snapshot& s) const override {
    publisher_->fill(s);
    rpc_->fill(s);
  }

  void drain_work(std::function<void()> done) override {
    // Stats requests still waiting on the master will not be answered now.
    for (auto& [id, answer] : std::exchange(pending_stats_, {})) answer(nullptr);
    http_->drain(std::move(done));
  }

  void close() override {
    publisher_->close_all();
    rpc_->close_all();
  }

  bool on_kind_frame(const Frame& frame) override {
    if (frame.type != FrameType::stats_reply) return false;
    // Nothing here throws: a reply not of the master's form answers no request (find() on
    // anything but an object is end()); one without a body answers its request "unavailable".
    const auto reply = nlohmann::json::parse(frame.payload, nullptr, false);
    const auto id = reply.find("id");
    if (id == reply.end() || !id->is_number_unsigned()) return true;
    auto it = pending_stats_.find(id->get<uint64_t>());
    if (it == pending_stats_.end()) return true;
    auto done = std::move(it->second);
    pending_stats_.erase(it);
    const auto body = reply.find("body");
    done(body == reply.end() ? nlohmann::json() : *body);
    return true;
  }

  std::unique_ptr<HttpServer> http_;
  std::unique_ptr<core::Publisher> publisher_;
  std::unique_ptr<core::Rpc> rpc_;
  std::map<uint64_t, StatsCallback> pending_stats_;
  uint64_t last_request_id_ = 0;
};

// A forward worker: runs one queue set's forwarders (consumers, the curl multi handle); it
// listens on nothing.
class ForwardWorker final : public Worker {
 public:
  static std::string role(const WorkerSpec& spec) {
    return fmt::format("worker forward:{}", spec.queue_set);
  }

  ForwardWorker(std::shared_ptr<const Config> config, const WorkerSpec& spec)
      : Worker(std::move(config), spec) {
    queue_set_ = std::make_unique<forward::QueueSet>(context_, *config_, spec_.queue_set);
  }

 private:
  bool start() override {
    queue_set_->start();
    log_info("forwarding queue set {} ({} forwarder(s))", spec_.queue_set, queue_set_->size());
    return true;
  }

  void fill(Snapshot& s) const override { queue_set_->fill(s); }

  // Stops consuming and lets in-flight messages finish, requeueing what is left a second before
  // the master's SIGKILL would.
  void drain_work(std::function<void()> done) override {
    queue_set_->drain(std::max(0.5, config_->daemon.shutdown_timeout - 1), std::move(done));
  }

  void close() override { queue_set_->close(); }

  std::unique_ptr<forward::QueueSet> queue_set_;
};

// Each worker tries broker.hosts from its own place in the list (its slot's), so that the
// workers' connections spread over a cluster's nodes rather than all landing on the first.
std::shared_ptr<const Config> hosts_from_slot(std::shared_ptr<const Config> config, int slot) {
  const auto& hosts = config->broker.hosts;
  if (hosts.size() < 2 || slot % hosts.size() == 0) return config;
  auto own = std::make_shared<Config>(*config);
  std::rotate(own->broker.hosts.begin(), own->broker.hosts.begin() + slot % hosts.size(),
              own->broker.hosts.end());
  return own;
}

template <class KindWorker>
int worker_serve(std::shared_ptr<const Config> config, const WorkerSpec& spec, Fd channel,
                 const sigset_t& signal_mask) {
  log_set_role(KindWorker::role(spec));
  if (!drop_privileges(config->daemon)) return kWorkerExitFatal;
  signal(SIGPIPE, SIG_IGN);
  KindWorker worker(hosts_from_slot(std::move(config), spec.slot), spec);
  return worker.run(std::move(channel), signal_mask);
}

}  // namespace

int worker_run(std::shared_ptr<const Config> config, const WorkerSpec& spec, Fd channel,
               const sigset_t& signal_mask) {
  // The one place a worker's kind is decided.
  auto serve = spec.kind == ProcessKind::forward ? worker_serve<ForwardWorker> : worker_serve<HttpWorker>;
  return serve(std::move(config), spec, std::move(channel), signal_mask);
}

}  // namespace warren
