#include "proc/stats_collector.h"

#include <algorithm>
#include <set>

#include "proc/clock.h"

namespace warren {
namespace {

constexpr timeval kCollectTimeout{0, 500000};
constexpr timeval kRateInterval{1, 0};
constexpr size_t kRateWindow = 5;  // rates are averaged over the last five samples

}  // namespace

struct StatsCollector::Round {
  std::set<int> awaited;
  std::function<void()> done;
  EventPtr timer;
  StatsCollector* owner;
};

StatsCollector::StatsCollector(event_base* base, const MasterCounters& master, double started)
    : base_(base), master_(master), started_(started) {
  rate_timer_.reset(event_new(base_, -1, EV_PERSIST, on_rate_timer, this));
  event_add(rate_timer_.get(), &kRateInterval);
}

StatsCollector::~StatsCollector() = default;

void StatsCollector::collect(const std::vector<Member>& workers, std::function<void()> done) {
  auto round = std::make_unique<Round>();
  round->owner = this;
  round->done = std::move(done);
  round->timer.reset(evtimer_new(
      base_,
      [](evutil_socket_t, short, void* arg) {
        auto* self = static_cast<Round*>(arg);
        self->owner->finish(self);
      },
      round.get()));
  for (const auto& [pid, channel] : workers) {
    round->awaited.insert(pid);
    channel->send(FrameType::snapshot_request, "");
  }
  timeval tv = kCollectTimeout;
  if (round->awaited.empty()) tv = {0, 0};
  event_add(round->timer.get(), &tv);
  rounds_.push_back(std::move(round));
}

void StatsCollector::on_snapshot(int pid, const std::string& payload) {
  snapshots_[pid] = Snapshot::from_json(nlohmann::json::parse(payload));
  for (auto& round : rounds_) round_answered(*round, pid);
}

void StatsCollector::on_exit(int pid) {
  if (auto snap = snapshots_.find(pid); snap != snapshots_.end()) {
    retired_.add(snap->second);
    snapshots_.erase(snap);
  }
  for (auto& round : rounds_) round_answered(*round, pid);
}

// The last awaited worker answered (or exited): the round ends on the next loop pass.
void StatsCollector::round_answered(Round& round, int pid) {
  if (round.awaited.erase(pid) && round.awaited.empty()) event_active(round.timer.get(), EV_TIMEOUT, 0);
}

void StatsCollector::finish(Round* round) {
  auto it = std::find_if(rounds_.begin(), rounds_.end(),
                         [round](const auto& r) { return r.get() == round; });
  if (it == rounds_.end()) return;
  std::unique_ptr<Round> owned = std::move(*it);
  rounds_.erase(it);
  owned->done();
  // `owned` (and its timer, whose callback this is) is freed here: libevent allows freeing an
  // event from its own callback once it is no longer pending, which a fired timer is not.
}

nlohmann::json StatsCollector::render(std::string_view format) const {
  if (format == "prometheus") return stats_render_prometheus(snapshots_, retired_, master_);
  return render_json();
}

nlohmann::json StatsCollector::render_json() const {
  const double now = unix_now();
  auto j = stats_render(snapshots_, retired_, ProcessUsage::current(), now - started_, master_);
  j["rates"] = history_.empty() ? nlohmann::json::object()
                                : stats_total(snapshots_, retired_).rates_since(
                                      history_.front().second, now - history_.front().first);
  return j;
}

// Snapshots arrive once a second from each worker; so do the totals kept for rates.
void StatsCollector::on_rate_timer(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<StatsCollector*>(arg);
  self->history_.emplace_back(unix_now(), stats_total(self->snapshots_, self->retired_));
  while (self->history_.size() > kRateWindow) self->history_.pop_front();
}

}  // namespace warren
