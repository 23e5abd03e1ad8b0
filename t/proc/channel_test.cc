#include "proc/channel.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stats.h"

namespace warren {
namespace {

TEST(FrameDecoder, DecodesFramesFedByteByByte) {
  std::string wire = frame_encode(FrameType::snapshot, "{\"a\":1}") + frame_encode(FrameType::ready, "");
  FrameDecoder d;
  std::vector<Frame> frames;
  for (char c : wire) {
    d.feed(std::string_view(&c, 1));
    while (auto f = d.next()) frames.push_back(*f);
  }
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].type, FrameType::snapshot);
  EXPECT_EQ(frames[0].payload, "{\"a\":1}");
  EXPECT_EQ(frames[1].type, FrameType::ready);
  EXPECT_EQ(frames[1].payload, "");
  EXPECT_FALSE(d.broken());
}

TEST(FrameDecoder, KeepsBinaryPayloadsIntact) {
  std::string payload("\0\xff\n\r", 4);
  FrameDecoder d;
  d.feed(frame_encode(FrameType::stats_reply, payload));
  auto f = d.next();
  ASSERT_TRUE(f);
  EXPECT_EQ(f->payload, payload);
  EXPECT_FALSE(d.next());
}

TEST(FrameDecoder, RejectsZeroAndOversizedLengths) {
  FrameDecoder zero;
  zero.feed(std::string("\0\0\0\0", 4));
  EXPECT_FALSE(zero.next());
  EXPECT_TRUE(zero.broken());

  FrameDecoder huge;
  huge.feed(std::string("\x7f\xff\xff\xff\x02", 5));
  EXPECT_FALSE(huge.next());
  EXPECT_TRUE(huge.broken());
}

TEST(FrameDecoder, HoldsNothingOnceAFrameIsOverTheLimit) {
  FrameDecoder d;
  const uint32_t over = FrameDecoder::kMaxFrame + 1;
  d.feed(std::string{char(over >> 24), char(over >> 16), char(over >> 8), char(over), '\x02'});
  EXPECT_FALSE(d.next());
  EXPECT_TRUE(d.broken());
  const std::string chunk(1 << 20, 'x');
  for (int i = 0; i < 64; ++i) d.feed(chunk);  // a peer that goes on writing
  EXPECT_EQ(d.buffered(), 0u);
  EXPECT_FALSE(d.next());
}

TEST(FrameDecoder, AFrameAtTheLimitStillDecodes) {
  FrameDecoder d;
  d.feed(frame_encode(FrameType::snapshot, std::string(FrameDecoder::kMaxFrame - 1, 'x')));
  auto f = d.next();
  ASSERT_TRUE(f);
  EXPECT_EQ(f->payload.size(), FrameDecoder::kMaxFrame - 1);
  EXPECT_FALSE(d.broken());
}

TEST(FrameDecoder, ManyFramesDoNotGrowTheBuffer) {
  FrameDecoder d;
  const std::string frame = frame_encode(FrameType::snapshot, std::string(1000, 'x'));
  for (int i = 0; i < 10000; ++i) {
    d.feed(frame);
    ASSERT_TRUE(d.next());
  }
  EXPECT_FALSE(d.next());
}

TEST(Channel, CarriesFramesBetweenTwoEndsOnALoop) {
  EventBasePtr base(event_base_new());
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  std::vector<Frame> got;
  bool closed = false;
  Channel a(base.get(), Fd(sv[0]), [](const Frame&) {}, [](ChannelTrouble) {});
  auto b = std::make_unique<Channel>(
      base.get(), Fd(sv[1]),
      [&](const Frame& f) {
        got.push_back(f);
        if (got.size() == 100) event_base_loopbreak(base.get());
      },
      [&](ChannelTrouble) { closed = true; });
  for (int i = 0; i < 100; ++i) a.send(FrameType::snapshot, std::to_string(i));
  timeval limit{5, 0};
  event_base_loopexit(base.get(), &limit);
  event_base_dispatch(base.get());
  ASSERT_EQ(got.size(), 100u);
  EXPECT_EQ(got[42].payload, "42");
  EXPECT_FALSE(closed);
}

// Two ends on one loop; `b` decodes snapshots as the master does.
struct ChannelPair {
  EventBasePtr base{event_base_new()};
  std::unique_ptr<Channel> a, b;
  std::vector<Snapshot> snapshots;
  std::vector<ChannelTrouble> troubles;
  int raw = -1;  // a's descriptor, for writing what no Channel would send

  ChannelPair() {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) throw std::runtime_error("socketpair");
    raw = sv[0];
    a = std::make_unique<Channel>(base.get(), Fd(sv[0]), [](const Frame&) {}, [](ChannelTrouble) {});
    b = std::make_unique<Channel>(
        base.get(), Fd(sv[1]),
        [this](const Frame& f) {
          snapshots.push_back(Snapshot::from_json(nlohmann::json::parse(f.payload)));
          if (f.payload.find("\"last\"") != std::string::npos) event_base_loopbreak(base.get());
        },
        [this](ChannelTrouble t) {
          troubles.push_back(t);
          if (t == ChannelTrouble::malformed) event_base_loopbreak(base.get());
        });
  }
  void run() {
    timeval limit{5, 0};
    event_base_loopexit(base.get(), &limit);
    event_base_dispatch(base.get());
  }
};

TEST(Channel, AFrameThatDoesNotDecodeIsDroppedAndReportedNotThrown) {
  ChannelPair pair;
  Snapshot good;
  good.pid = 7;
  good.kind = ProcessKind::http;
  nlohmann::json last = good.to_json();
  last["last"] = true;
  for (const char* bad : {"{\"pid\": \"x\"}", "[1, 2]", "not json", "\xff\xfe",
                          "{\"pid\": 1, \"slot\": 1, \"kind\": \"http\", \"counters\": 7, "
                          "\"connections\": [], \"usage\": {}}"})
    pair.a->send(FrameType::snapshot, bad);
  pair.a->send(FrameType::snapshot, last.dump());
  pair.run();
  ASSERT_EQ(pair.snapshots.size(), 1u);
  EXPECT_EQ(pair.snapshots[0].pid, 7);
  EXPECT_EQ(pair.troubles, std::vector<ChannelTrouble>(5, ChannelTrouble::frame_refused));
}

TEST(Channel, AnOversizedFrameClosesTheChannelAtOnce) {
  ChannelPair pair;
  const std::string header("\x7f\xff\xff\xff\x02", 5);
  ASSERT_EQ(write(pair.raw, header.data(), header.size()), 5);
  pair.run();
  EXPECT_EQ(pair.troubles, std::vector<ChannelTrouble>{ChannelTrouble::malformed});
  // The reading end is shut: the peer's next write fails instead of queueing.
  const std::string more(4096, 'x');
  EXPECT_LT(send(pair.raw, more.data(), more.size(), MSG_NOSIGNAL), 0);
  EXPECT_EQ(errno, EPIPE);
}

}  // namespace
}  // namespace warren
