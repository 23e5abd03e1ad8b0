#include "amqp/ack_batch.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>

namespace warren::amqp {
namespace {

using Acks = std::vector<AckBatch::Ack>;

AckBatch delivered(uint64_t n) {
  AckBatch b;
  for (uint64_t tag = 1; tag <= n; ++tag) b.delivered(tag);
  return b;
}

TEST(AckBatch, InOrderAcksGoOutAsOneMultiple) {
  auto b = delivered(5);
  for (uint64_t tag = 1; tag <= 5; ++tag) b.ack(tag);
  EXPECT_TRUE(b.pending());
  EXPECT_EQ(b.flush(), (Acks{{5, true}}));
  EXPECT_FALSE(b.pending());
  EXPECT_EQ(b.floor(), 5u);
  EXPECT_TRUE(b.flush().empty());
}

TEST(AckBatch, OneAckIsNotMultiple) {
  auto b = delivered(2);
  b.ack(1);
  EXPECT_EQ(b.flush(), (Acks{{1, false}}));
}

TEST(AckBatch, AcksAboveAMessageInFlightGoOutOneByOne) {
  auto b = delivered(4);
  b.ack(3);
  b.ack(2);
  EXPECT_EQ(b.flush(), (Acks{{3, false}, {2, false}}));
  EXPECT_EQ(b.floor(), 0u);
  // Once 1 is done the run passes 2 and 3, which went out already: 1 alone is acked.
  b.ack(1);
  EXPECT_EQ(b.flush(), (Acks{{1, false}}));
  EXPECT_EQ(b.floor(), 3u);
  b.ack(4);
  EXPECT_EQ(b.flush(), (Acks{{4, false}}));
}

TEST(AckBatch, RejectedTagsInsideARunAreNotAckedButDoNotEndIt) {
  auto b = delivered(4);
  b.settled(2);  // the caller sent basic.reject for 2 already
  b.ack(1);
  b.ack(3);
  b.ack(4);
  // The multiple covers 1, 3 and 4; 2 is no longer unacked on the broker.
  EXPECT_EQ(b.flush(), (Acks{{4, true}}));
  EXPECT_EQ(b.floor(), 4u);
}

TEST(AckBatch, TheMultipleEndsAtTheLastAckedTagNotAtARejectedOne) {
  auto b = delivered(3);
  b.ack(1);
  b.ack(2);
  b.settled(3);
  EXPECT_EQ(b.flush(), (Acks{{2, true}}));
  EXPECT_EQ(b.floor(), 3u);
}

TEST(AckBatch, ARunOfOnlyRejectsSendsNothing) {
  auto b = delivered(3);
  b.settled(1);
  b.settled(2);
  b.ack(3);
  EXPECT_EQ(b.flush(), (Acks{{3, false}}));
  EXPECT_EQ(b.floor(), 3u);
}

TEST(AckBatch, InterleavedFlushes) {
  auto b = delivered(6);
  b.ack(2);
  b.ack(3);
  EXPECT_EQ(b.flush(), (Acks{{2, false}, {3, false}}));
  b.ack(1);
  b.ack(5);
  EXPECT_EQ(b.flush(), (Acks{{1, false}, {5, false}}));
  EXPECT_EQ(b.floor(), 3u);
  b.ack(6);
  b.ack(4);
  EXPECT_EQ(b.flush(), (Acks{{6, true}}));
  EXPECT_EQ(b.floor(), 6u);
}

TEST(AckBatch, ATagIsAckedOnce) {
  auto b = delivered(3);
  b.ack(2);
  b.ack(2);
  EXPECT_EQ(b.flush(), (Acks{{2, false}}));
  b.ack(2);
  b.ack(1);
  b.ack(1);
  EXPECT_EQ(b.flush(), (Acks{{1, false}}));
  b.ack(1);
  EXPECT_FALSE(b.pending());
}

TEST(AckBatch, AGapInTheTagsStopsMultipleAcks) {
  AckBatch b;
  b.delivered(1);
  b.delivered(2);
  b.delivered(4);  // 3 never reached us: a multiple at 4 would ack it
  b.ack(1);
  b.ack(2);
  b.ack(4);
  EXPECT_EQ(b.flush(), (Acks{{1, false}, {2, false}, {4, false}}));
  b.delivered(5);
  b.ack(5);
  EXPECT_EQ(b.flush(), (Acks{{5, false}}));
}

TEST(AckBatch, ResetStartsANewChannel) {
  auto b = delivered(3);
  b.ack(3);
  b.reset();
  EXPECT_FALSE(b.pending());
  b.delivered(1);
  b.delivered(2);
  b.ack(1);
  b.ack(2);
  EXPECT_EQ(b.flush(), (Acks{{2, true}}));
}

TEST(AckBatch, AHugeWindowFallsBackToSingleAcks) {
  AckBatch b;
  for (uint64_t tag = 1; tag <= AckBatch::kMaxWindow + 2; ++tag) b.delivered(tag);
  b.ack(3);
  b.ack(2);
  EXPECT_EQ(b.flush(), (Acks{{3, false}, {2, false}}));
  b.ack(1);
  EXPECT_EQ(b.flush(), (Acks{{1, false}}));
}

// A model of the broker's side: the unacked deliveries of one channel, and basic.ack applied
// as RabbitMQ applies it (multiple: every unacked tag up to N, and N itself must be unacked).
// Random settle orders and flush points: no frame may touch a message the consumer did not
// ack, none may name an unknown tag, and in the end every acked message is acked.
TEST(AckBatch, MatchesTheBrokerModelForRandomOrders) {
  std::mt19937 rng(1234);
  for (int round = 0; round < 300; ++round) {
    const uint64_t n = 1 + rng() % 60;
    AckBatch b;
    std::set<uint64_t> unacked;            // the broker's view
    std::map<uint64_t, bool> decided;      // tag -> acked (true) or rejected (false)
    std::vector<uint64_t> order;
    for (uint64_t tag = 1; tag <= n; ++tag) {
      b.delivered(tag);
      unacked.insert(tag);
      order.push_back(tag);
    }
    std::shuffle(order.begin(), order.end(), rng);
    auto apply = [&](const Acks& acks) {
      for (const auto& a : acks) {
        ASSERT_TRUE(unacked.count(a.tag)) << "round " << round << ": unknown delivery tag " << a.tag;
        auto end = a.multiple ? unacked.upper_bound(a.tag) : std::next(unacked.find(a.tag));
        for (auto it = a.multiple ? unacked.begin() : unacked.find(a.tag); it != end; ++it)
          ASSERT_TRUE(decided.count(*it) && decided[*it]) << "round " << round << ": acked " << *it;
        unacked.erase(a.multiple ? unacked.begin() : unacked.find(a.tag), end);
      }
    };
    for (uint64_t tag : order) {
      if (rng() % 5 == 0) {
        decided[tag] = false;  // reject: sent at once
        unacked.erase(tag);
        b.settled(tag);
      } else {
        decided[tag] = true;
        b.ack(tag);
      }
      if (rng() % 3 == 0) apply(b.flush());
    }
    apply(b.flush());
    EXPECT_TRUE(unacked.empty()) << "round " << round;
    EXPECT_EQ(b.floor(), n);
  }
}

}  // namespace
}  // namespace warren::amqp
