// The memory of recent ids (an oslo request's _unique_id): remembered for the ttl, at most the
// capacity at once, the oldest first to go. Pure: the test passes the clock.
#include "core/recent_ids.h"

#include <gtest/gtest.h>

#include <string>

namespace warren::core {
namespace {

TEST(RecentIds, RemembersForTtlWithinCapacity) {
  RecentIds ids(3, 10);
  EXPECT_FALSE(ids.seen("a", 0));
  EXPECT_TRUE(ids.seen("a", 5));
  EXPECT_FALSE(ids.seen("a", 11));  // expired, remembered again from 11
  EXPECT_TRUE(ids.seen("a", 12));
  EXPECT_FALSE(ids.seen("b", 12));
  EXPECT_FALSE(ids.seen("c", 12));
  EXPECT_FALSE(ids.seen("d", 12));  // the oldest (a) goes
  EXPECT_EQ(ids.size(), 3u);
  EXPECT_FALSE(ids.seen("a", 13));
  ids.forget("c");
  EXPECT_FALSE(ids.seen("c", 13));
  for (int i = 0; i < 100; ++i) {
    ids.seen("x" + std::to_string(i), 14);
    ids.forget("x" + std::to_string(i));
  }
  EXPECT_LE(ids.size(), 3u);
}

}  // namespace
}  // namespace warren::core
