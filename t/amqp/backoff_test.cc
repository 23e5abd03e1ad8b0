// Reconnect backoff: doubling from the initial delay, capped, jittered within [d/2, d].
#include <gtest/gtest.h>

#include "amqp/types.h"

namespace warren::amqp {
namespace {

TEST(AmqpBackoff, DoublesUpToTheCapWithJitter) {
  Backoff b(0.1, 2.0);
  double expected[] = {0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0};
  for (double d : expected) {
    double got = b.next_delay();
    EXPECT_GE(got, d / 2 - 1e-9);
    EXPECT_LE(got, d + 1e-9);
  }
  EXPECT_EQ(b.attempts(), 8);
  b.reset();
  EXPECT_LE(b.next_delay(), 0.1 + 1e-9);
}

TEST(AmqpBackoff, JitterSpreadsDelays) {
  Backoff b(1, 1);
  double lo = 1, hi = 0;
  for (int i = 0; i < 200; ++i) {
    double d = b.next_delay();
    lo = std::min(lo, d);
    hi = std::max(hi, d);
  }
  EXPECT_LT(lo, 0.6);
  EXPECT_GT(hi, 0.9);
}

TEST(AmqpOutcome, NamesAreStable) {
  EXPECT_STREQ(outcome_name(Outcome::channel_error), "channel_error");
  EXPECT_STREQ(outcome_name(Outcome::refused), "refused");
}

}  // namespace
}  // namespace warren::amqp
