#include "channel.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

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
  Channel a(base.get(), Fd(sv[0]), [](const Frame&) {}, [] {});
  auto b = std::make_unique<Channel>(
      base.get(), Fd(sv[1]),
      [&](const Frame& f) {
        got.push_back(f);
        if (got.size() == 100) event_base_loopbreak(base.get());
      },
      [&] { closed = true; });
  for (int i = 0; i < 100; ++i) a.send(FrameType::snapshot, std::to_string(i));
  timeval limit{5, 0};
  event_base_loopexit(base.get(), &limit);
  event_base_dispatch(base.get());
  ASSERT_EQ(got.size(), 100u);
  EXPECT_EQ(got[42].payload, "42");
  EXPECT_FALSE(closed);
}

}  // namespace
}  // namespace warren
