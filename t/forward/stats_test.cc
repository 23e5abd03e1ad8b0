// Forwarder counters: carried in snapshots, summed by forwarder name over workers and the
// retired ones, rendered in /stats and the Prometheus text.
#include <gtest/gtest.h>

#include "stats.h"

namespace warren {
namespace {

using nlohmann::json;

Snapshot forward_worker(int pid, uint64_t consumed, uint64_t acked) {
  Snapshot s;
  s.pid = pid;
  s.slot = 5;
  s.kind = ProcessKind::forward;
  s.queue_set = "vcd";
  s.forwarders["example1"].consumed = consumed;
  s.forwarders["example1"].acked = acked;
  s.forwarders["example1"].status_2xx = acked;
  s.forwarders["example1"].latency_us = 1000 * acked;
  return s;
}

TEST(ForwarderCounters, SnapshotRoundTrip) {
  Snapshot s = forward_worker(42, 10, 9);
  s.forwarders["other"].dead_lettered = 3;
  Snapshot back = Snapshot::from_json(s.to_json());
  EXPECT_EQ(back.queue_set, "vcd");
  ASSERT_EQ(back.forwarders.size(), 2u);
  EXPECT_EQ(back.forwarders["example1"], s.forwarders["example1"]);
  EXPECT_EQ(back.forwarders["other"].dead_lettered, 3u);
}

TEST(ForwarderCounters, SummedOverWorkersAndRetired) {
  std::map<int, Snapshot> workers{{1, forward_worker(1, 10, 9)}, {2, forward_worker(2, 5, 5)}};
  Retired retired;
  retired.forwarders["example1"].acked = 100;
  json j = stats_render(workers, retired, ProcessUsage{}, 1.0);
  EXPECT_EQ(j["forwarders"]["example1"]["consumed"], 15);
  EXPECT_EQ(j["forwarders"]["example1"]["acked"], 114);
  EXPECT_EQ(j["forwarders"]["example1"]["status_2xx"], 14);
  EXPECT_EQ(j["workers"][0]["queue_set"], "vcd");
  std::string prom = stats_render_prometheus(workers, retired);
  EXPECT_NE(prom.find("warren_forwarder_acked_total{forwarder=\"example1\"} 114\n"), std::string::npos) << prom;
  EXPECT_NE(prom.find("# TYPE warren_forwarder_latency_us_total counter"), std::string::npos);
}

TEST(ForwarderCounters, NoForwardersNoSeries) {
  std::map<int, Snapshot> workers;
  EXPECT_EQ(stats_render_prometheus(workers, Retired{}).find("warren_forwarder_"), std::string::npos);
  EXPECT_TRUE(stats_render(workers, Retired{}, ProcessUsage{}, 1.0)["forwarders"].empty());
}

}  // namespace
}  // namespace warren
