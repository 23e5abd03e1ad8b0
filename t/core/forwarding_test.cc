// The delivery rules of forwarding (core/forwarding): what an answer's status does to the
// message, the retry delays, the status classes counted. Pure, no broker.
#include "core/forwarding.h"

#include <gtest/gtest.h>

namespace warren::core {
namespace {

TEST(ForwardingRules, Dispositions) {
  EXPECT_EQ(forward_disposition(200, 1, 5), Disposition::ack);
  EXPECT_EQ(forward_disposition(204, 5, 5), Disposition::ack);
  EXPECT_EQ(forward_disposition(302, 1, 5), Disposition::dead_letter);
  EXPECT_EQ(forward_disposition(404, 1, 5), Disposition::dead_letter);
  EXPECT_EQ(forward_disposition(400, 1, 5), Disposition::dead_letter);
  EXPECT_EQ(forward_disposition(500, 1, 5), Disposition::retry);
  EXPECT_EQ(forward_disposition(503, 4, 5), Disposition::retry);
  EXPECT_EQ(forward_disposition(503, 5, 5), Disposition::dead_letter);
  EXPECT_EQ(forward_disposition(0, 1, 5), Disposition::retry);
  EXPECT_EQ(forward_disposition(0, 1, 1), Disposition::dead_letter);
}

TEST(ForwardingRules, RetryDelayDoublesUpToTheCap) {
  RetryPolicy r{10, 0.5, 3};
  EXPECT_DOUBLE_EQ(retry_delay(r, 1), 0.5);
  EXPECT_DOUBLE_EQ(retry_delay(r, 2), 1.0);
  EXPECT_DOUBLE_EQ(retry_delay(r, 3), 2.0);
  EXPECT_DOUBLE_EQ(retry_delay(r, 4), 3.0);
  EXPECT_DOUBLE_EQ(retry_delay(r, 1000), 3.0);
  EXPECT_DOUBLE_EQ(retry_delay(RetryPolicy{5, 0, 0}, 3), 0.0);
}

TEST(ForwardingRules, StatusClasses) {
  EXPECT_STREQ(status_class(200), "2xx");
  EXPECT_STREQ(status_class(301), "3xx");
  EXPECT_STREQ(status_class(451), "4xx");
  EXPECT_STREQ(status_class(599), "5xx");
  EXPECT_STREQ(status_class(0), "error");
}

}  // namespace
}  // namespace warren::core
