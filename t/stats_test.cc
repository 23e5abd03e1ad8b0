#include "stats.h"

#include <gtest/gtest.h>

#include <map>
#include <sstream>
#include <string>

namespace warren {
namespace {

Snapshot worker(int pid, int port, uint64_t posts, uint64_t confirmed) {
  Snapshot s;
  s.pid = pid;
  s.slot = pid % 10;
  s.kind = ProcessKind::http;
  s.port = port;
  s.counters.method_post = posts;
  s.counters.response_204 = confirmed;
  s.counters.publish_confirmed = confirmed;
  s.counters.processing_time_us = 1500000;
  s.connections["/:guest"].connected = true;
  s.connections["/:guest"].publishes = confirmed;
  s.connections["/:guest"].connections_opened = 1;
  return s;
}

TEST(Counters, MergeAddsEveryCounter) {
  Counters a, b;
  a.method_post = 2;
  a.response_204 = 1;
  b.method_post = 3;
  b.response_503 = 4;
  a.merge(b);
  EXPECT_EQ(a.method_post, 5u);
  EXPECT_EQ(a.response_204, 1u);
  EXPECT_EQ(a.response_503, 4u);
}

TEST(Counters, JsonRoundTrip) {
  Counters c;
  c.method_get = 7;
  c.publish_returned = 9;
  EXPECT_EQ(Counters::from_json(c.to_json()), c);
}

TEST(Snapshot, JsonRoundTrip) {
  Snapshot s = worker(101, 8000, 5, 4);
  s.usage.max_rss_bytes = 1 << 20;
  Snapshot back = Snapshot::from_json(s.to_json());
  EXPECT_EQ(back.pid, 101);
  EXPECT_EQ(back.port, 8000);
  EXPECT_EQ(back.counters, s.counters);
  EXPECT_EQ(back.connections.at("/:guest").publishes, 4u);
  EXPECT_EQ(back.usage.max_rss_bytes, 1u << 20);
}

// A worker's kind travels to the master by name and comes out under the same name in /stats
// and /metrics; a name no kind has refuses the snapshot (the channel drops the frame).
TEST(Snapshot, KindTravelsByNameAndAnUnknownOneIsRefused) {
  nlohmann::json j = worker(1, 8000, 0, 0).to_json();
  EXPECT_EQ(j["kind"], "http");
  j["kind"] = "forward";
  Snapshot back = Snapshot::from_json(j);
  EXPECT_EQ(back.to_json()["kind"], "forward");
  std::map<int, Snapshot> workers{{1, back}};
  EXPECT_EQ(stats_render(workers, Retired{}, ProcessUsage{}, 1.0)["workers"][0]["kind"], "forward");
  EXPECT_NE(stats_render_prometheus(workers, Retired{}).find("kind=\"forward\""),
            std::string::npos);
  for (nlohmann::json bad : {nlohmann::json("ftp"), nlohmann::json(""), nlohmann::json("HTTP"),
                             nlohmann::json(1)}) {
    j["kind"] = bad;
    EXPECT_THROW(Snapshot::from_json(j), std::exception) << bad.dump();
  }
}

TEST(StatsRender, SumsWorkersInStatelessdShape) {
  std::map<int, Snapshot> workers{{101, worker(101, 8000, 5, 4)}, {102, worker(102, 8001, 7, 7)}};
  Retired retired;
  retired.counters.method_post = 10;
  auto j = stats_render(workers, retired, ProcessUsage{}, 12.5);
  EXPECT_EQ(j["requests"]["method.POST"], 22);
  EXPECT_EQ(j["requests"]["response.204"], 11);
  EXPECT_DOUBLE_EQ(j["requests"]["processing_time"].get<double>(), 3.0);
  EXPECT_EQ(j["connections"]["/:guest"]["publishes"], 11);
  EXPECT_EQ(j["connections"]["/:guest"]["connections"]["opened"], 2);
  EXPECT_EQ(j["connections"]["/:guest"]["connected"], true);
  EXPECT_EQ(j["workers"].size(), 2u);
  EXPECT_EQ(j["workers"][1]["requests"]["method.POST"], 7);
  EXPECT_EQ(j["port"], nlohmann::json::array({8000, 8001}));
  for (const char* key : {"page_faults", "cpu_time", "memory_usage", "timestamp", "context_switches",
                          "swap_outs", "page_size", "block", "signals_received", "requests",
                          "publish", "rpc", "broker", "events", "limits"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_FALSE(j["requests"].contains("processing_time_us"));
  EXPECT_FALSE(j.contains("")) << "the process counters stand at the top level";
  EXPECT_EQ(j["limits"]["broker_connections_refused"], 0);
}

// The snapshot carries each list in the /stats shape; what does not decode is refused whole.
TEST(Snapshot, FiguresThatAreNotAnObjectAreRefused) {
  nlohmann::json j = worker(1, 8000, 1, 1).to_json();
  EXPECT_EQ(j["counters"]["publish"]["confirmed"], 1);
  for (const char* part : {"counters", "connections", "usage"}) {
    nlohmann::json bad = j;
    bad[part] = 7;
    EXPECT_THROW(Snapshot::from_json(bad), std::exception) << part;
  }
  j["counters"]["publish"]["confirmed"] = "many";
  EXPECT_THROW(Snapshot::from_json(j), std::exception);
}

// ConnectionStats is generated from its list: the statelessd shape, a flag merged by "any",
// a gauge and the counters summed.
TEST(ConnectionStats, GeneratedStructRoundTripsAndMerges) {
  ConnectionStats a;
  a.connections_opened = 2;
  a.connections_closed = 1;
  a.channels_opened = 5;
  a.channels_closed = 4;
  a.connected = true;
  a.publishes = 9;
  a.queue_size = 3;
  const nlohmann::json j = a.to_json();
  EXPECT_EQ(j, nlohmann::json::parse(R"({"connections": {"opened": 2, "closed": 1},
      "channels": {"opened": 5, "closed": 4}, "connected": true, "publishes": 9,
      "queue_size": 3})"));
  EXPECT_EQ(ConnectionStats::from_json(j), a);

  ConnectionStats down;
  down.connections_opened = 1;
  down.queue_size = 4;
  down.merge(ConnectionStats{});
  EXPECT_FALSE(down.connected);
  down.merge(a);
  EXPECT_TRUE(down.connected);
  EXPECT_EQ(down.connections_opened, 3u);
  EXPECT_EQ(down.queue_size, 7u);
  EXPECT_EQ(down.publishes, 9u);
  a.merge(ConnectionStats{});
  EXPECT_TRUE(a.connected) << "a closed entry does not hide an open one";
}

TEST(ProcessUsage, StatelessdShapeAndRoundTrip) {
  ProcessUsage u = ProcessUsage::current();
  EXPECT_GT(u.max_rss_bytes, 0u);
  u.cpu_user_seconds = 1.25;
  const nlohmann::json j = u.to_json();
  EXPECT_EQ(j["cpu_time"]["user"], 1.25);
  EXPECT_EQ(j["memory_usage"], u.max_rss_bytes);
  for (const char* key : {"/page_faults/major", "/page_faults/minor", "/cpu_time/system",
                          "/context_switches", "/swap_outs", "/block/input", "/block/output"})
    EXPECT_TRUE(j.contains(nlohmann::json::json_pointer(key))) << key;
  EXPECT_EQ(ProcessUsage::from_json(j), u);
}

// A gauge is a level: `# TYPE gauge` and no `_total`; a counter of seconds stays fractional.
TEST(StatsRender, PrometheusGaugeHasNoTotal) {
  Snapshot w = worker(101, 8000, 1, 1);
  w.usage.max_rss_bytes = 123456;
  w.usage.cpu_user_seconds = 0.5;
  const auto text = stats_render_prometheus({{101, w}}, Retired{});
  const std::string labels = "{slot=\"1\",pid=\"101\",kind=\"http\",port=\"8000\"}";
  EXPECT_NE(text.find("# TYPE warren_process_max_rss_bytes gauge\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nwarren_process_max_rss_bytes" + labels + " 123456\n"), std::string::npos);
  EXPECT_EQ(text.find("warren_process_max_rss_bytes_total"), std::string::npos);
  EXPECT_NE(text.find("# TYPE warren_process_cpu_user_seconds_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("\nwarren_process_cpu_user_seconds_total" + labels + " 0.5\n"),
            std::string::npos);
  // Every family is typed once, and only counters end in _total.
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (!line.starts_with("# TYPE ")) continue;
    const bool total = line.find("_total ") != std::string::npos;
    EXPECT_EQ(total, line.ends_with(" counter")) << line;
  }
}

TEST(StatsRender, BrokerNodesPerLinkPerWorkerAndCountedByNode) {
  Snapshot a = worker(101, 8000, 1, 1), b = worker(102, 8000, 1, 2);
  a.broker_nodes = {{"/:guest", "127.0.0.1:5672"}, {"rpc replies /", "127.0.0.1:5673"}};
  b.broker_nodes = {{"/:guest", "127.0.0.1:5673"}};
  const std::map<int, Snapshot> workers{{101, Snapshot::from_json(a.to_json())}, {102, b}};
  auto j = stats_render(workers, Retired{}, ProcessUsage{}, 1.0);
  EXPECT_EQ(j["broker_nodes"], (nlohmann::json{{"127.0.0.1:5672", 1}, {"127.0.0.1:5673", 2}}));
  EXPECT_EQ(j["workers"][0]["broker_nodes"]["rpc replies /"], "127.0.0.1:5673");
  const auto text = stats_render_prometheus(workers, Retired{});
  EXPECT_NE(text.find("# TYPE warren_broker_link_node gauge\n"), std::string::npos);
  EXPECT_NE(text.find("warren_broker_link_node{slot=\"2\",pid=\"102\",kind=\"http\",port=\"8000\","
                      "link=\"/:guest\",node=\"127.0.0.1:5673\"} 1\n"),
            std::string::npos)
      << text;
}

TEST(StatsRender, MasterCountersAreTopLevelKeysAndSeries) {
  MasterCounters master;
  master.worker_respawns = 3;
  auto j = stats_render({}, Retired{}, ProcessUsage{}, 1.0, master);
  EXPECT_EQ(j["respawns"], 3);
  auto text = stats_render_prometheus({}, Retired{}, master);
  EXPECT_NE(text.find("\nwarren_worker_respawns_total 3\n"), std::string::npos) << text;
}

TEST(StatsRender, PrometheusHasOneSeriesPerWorkerAndRetired) {
  std::map<int, Snapshot> workers{{101, worker(101, 8000, 5, 4)}};
  auto text = stats_render_prometheus(workers, Retired{});
  EXPECT_NE(text.find("# TYPE warren_method_post_total counter"), std::string::npos);
  EXPECT_NE(text.find("warren_method_post_total{slot=\"1\",pid=\"101\",kind=\"http\",port=\"8000\"} 5"),
            std::string::npos);
  EXPECT_NE(text.find("warren_method_post_total{slot=\"retired\"} 0"), std::string::npos);
}

TEST(Histogram, BucketsAreCumulativeInPrometheusText) {
  Snapshot w = worker(7, 8000, 1, 1);
  w.histograms.publish_seconds.observe(0.0002);
  w.histograms.publish_seconds.observe(0.003);
  w.histograms.publish_seconds.observe(30);
  auto back = Snapshot::from_json(w.to_json());
  EXPECT_EQ(back.histograms.publish_seconds.count, 3u);
  EXPECT_DOUBLE_EQ(back.histograms.publish_seconds.sum, 30.0032);
  auto text = stats_render_prometheus({{7, back}}, Retired{});
  const std::string series = "warren_publish_seconds_bucket{slot=\"7\",pid=\"7\",kind=\"http\",port=\"8000\",le=";
  EXPECT_NE(text.find(series + "\"0.0005\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find(series + "\"0.005\"} 2"), std::string::npos);
  EXPECT_NE(text.find(series + "\"+Inf\"} 3"), std::string::npos);
  EXPECT_NE(text.find("# TYPE warren_publish_seconds histogram"), std::string::npos);
}

// Forwarder counters: carried in snapshots, summed by forwarder name over workers and the
// retired ones, rendered in /stats and the Prometheus text.

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
  nlohmann::json j = stats_render(workers, retired, ProcessUsage{}, 1.0);
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
