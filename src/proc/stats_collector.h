// The master's sum of the workers' counters: each live worker's last snapshot, what exited
// workers counted, totals once a second for rates. A collection round asks every worker for a
// fresh snapshot before /stats, `warrenctl stats` or `warrenctl metrics` is answered.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "handles.h"
#include "proc/channel.h"
#include "stats.h"

namespace warren {

class StatsCollector : NonCopyable {
 public:
  // `master`: the master's own counters, rendered with the workers'. `started`: the master's
  // start, for its uptime.
  StatsCollector(event_base* base, const MasterCounters& master, double started);
  ~StatsCollector();

  // A worker asked in a round: its pid and its end of the channel.
  using Member = std::pair<int, Channel*>;
  // Asks each worker for a fresh snapshot; runs `done` when all answered or after a bound.
  void collect(const std::vector<Member>& workers, std::function<void()> done);
  // A snapshot frame from worker `pid`. Throws on a payload that does not decode.
  void on_snapshot(int pid, const std::string& payload);
  // Worker `pid` exited: its last snapshot joins the retired totals; no round waits for it.
  void on_exit(int pid);

  // format "prometheus": the exposition text (a JSON string); anything else: the /stats document.
  nlohmann::json render(std::string_view format) const;

 private:
  struct Round;
  void finish(Round* round);
  void round_answered(Round& round, int pid);
  nlohmann::json render_json() const;
  static void on_rate_timer(evutil_socket_t, short, void* arg);

  event_base* base_;
  const MasterCounters& master_;
  double started_;
  EventPtr rate_timer_;
  std::deque<std::pair<double, Counters>> history_;  // totals once a second, for rates
  std::map<int, Snapshot> snapshots_;                 // by pid
  Retired retired_;                                   // what workers that have exited counted
  std::vector<std::unique_ptr<Round>> rounds_;
};

}  // namespace warren
