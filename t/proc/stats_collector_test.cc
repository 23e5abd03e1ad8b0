// The master's collection rounds over real channels (socketpairs) on one event loop: each fake
// worker end answers a snapshot_request with a snapshot, or stays silent.
#include "proc/stats_collector.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>

#include <chrono>

namespace warren {
namespace {

using Clock = std::chrono::steady_clock;

class StatsCollectorTest : public ::testing::Test {
 protected:
  void SetUp() override { signal(SIGPIPE, SIG_IGN); }  // as the master: a gone worker is EPIPE

  // A worker `pid` whose end answers with a snapshot counting `signals` signals, unless silent.
  void add_worker(int pid, uint64_t signals, bool silent = false) {
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    masters_.push_back(std::make_unique<Channel>(
        base_.get(), Fd(sv[0]), [this, pid](const Frame& f) { collector_.on_snapshot(pid, f.payload); },
        [](ChannelTrouble) {}));
    auto* worker = new Channel(
        base_.get(), Fd(sv[1]),
        [this, pid, signals, silent](const Frame& f) {
          if (f.type != FrameType::snapshot_request || silent) return;
          Snapshot s;
          s.pid = pid;
          s.counters.signals_received = signals;
          workers_[pid]->send(FrameType::snapshot, s.to_json().dump());
        },
        [](ChannelTrouble) {});
    workers_[pid].reset(worker);
    members_.emplace_back(pid, masters_.back().get());
  }

  // Runs one round; returns the /stats document and how long the round took.
  std::pair<nlohmann::json, double> round(std::function<void()> meanwhile = {}) {
    nlohmann::json out;
    const auto start = Clock::now();
    double took = -1;
    collector_.collect(members_, [&] {
      out = collector_.render("json");
      took = std::chrono::duration<double>(Clock::now() - start).count();
      event_base_loopbreak(base_.get());
    });
    if (meanwhile) meanwhile();
    const timeval bound{5, 0};
    event_base_loopexit(base_.get(), &bound);
    event_base_dispatch(base_.get());
    return {out, took};
  }

  EventBasePtr base_{event_base_new()};
  MasterCounters master_;
  StatsCollector collector_{base_.get(), master_, 0};
  std::vector<std::unique_ptr<Channel>> masters_;
  std::map<int, std::unique_ptr<Channel>> workers_;
  std::vector<StatsCollector::Member> members_;
};

TEST_F(StatsCollectorTest, ARoundEndsAsSoonAsEveryWorkerAnswered) {
  add_worker(101, 3);
  add_worker(102, 4);
  master_.worker_respawns = 2;
  auto [stats, took] = round();
  EXPECT_GE(took, 0);
  EXPECT_LT(took, 0.4);  // well before the 0.5 s bound
  EXPECT_EQ(stats["signals_received"], 7);
  EXPECT_EQ(stats["workers"].size(), 2u);
  EXPECT_EQ(stats["respawns"], 2);
}

TEST_F(StatsCollectorTest, ASilentWorkerDelaysTheRoundOnlyToItsBound) {
  add_worker(101, 3);
  add_worker(102, 4, /*silent=*/true);
  auto [stats, took] = round();
  EXPECT_GE(took, 0.45);
  EXPECT_LT(took, 2);
  EXPECT_EQ(stats["signals_received"], 3);
}

TEST_F(StatsCollectorTest, AnExitedWorkerEndsTheRoundAndItsCountsStay) {
  add_worker(101, 3);
  add_worker(102, 4);
  round();  // both have sent a snapshot once
  workers_.erase(102);  // gone, but still in the master's table until its exit is reaped
  auto [stats, took] = round([&] { collector_.on_exit(102); });
  EXPECT_GE(took, 0);
  EXPECT_LT(took, 0.4);
  EXPECT_EQ(stats["signals_received"], 7);  // 102's last snapshot, retired
  EXPECT_EQ(stats["workers"].size(), 1u);
}

TEST_F(StatsCollectorTest, NoWorkerToAskStillAnswers) {
  auto [stats, took] = round();
  EXPECT_GE(took, 0);
  EXPECT_EQ(stats["workers"].size(), 0u);
  EXPECT_TRUE(collector_.render("prometheus").is_string());
}

}  // namespace
}  // namespace warren
