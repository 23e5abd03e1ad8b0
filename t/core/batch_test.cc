// core::publish_batch without a broker: a stand-in publisher that settles messages in any order.
#include "core/batch.h"

#include <gtest/gtest.h>

namespace warren::core {
namespace {

struct StandIn {
  std::vector<Message> sent;
  std::vector<PublishCallback> waiting;
  PublishOne publish() {
    return [this](Message m, PublishCallback done) {
      sent.push_back(std::move(m));
      waiting.push_back(std::move(done));
    };
  }
};

std::vector<Message> messages(std::initializer_list<const char*> keys) {
  std::vector<Message> out;
  for (const char* k : keys) out.push_back({"ex", k, false, {}, "body"});
  return out;
}

TEST(PublishBatch, AnswersOnceAfterTheLastInTheBatchOrder) {
  StandIn broker;
  int answers = 0;
  BatchResult got;
  publish_batch(broker.publish(), messages({"a", "b", "c"}), [&](const BatchResult& r) {
    ++answers;
    got = r;
  });
  ASSERT_EQ(broker.sent.size(), 3u);
  EXPECT_EQ(broker.sent[1].routing_key, "b");
  broker.waiting[2]({PublishStatus::confirmed, {}});
  broker.waiting[0]({PublishStatus::unroutable, "NO_ROUTE"});
  EXPECT_EQ(answers, 0);
  broker.waiting[1]({PublishStatus::confirmed, {}});
  ASSERT_EQ(answers, 1);
  ASSERT_EQ(got.items.size(), 3u);
  EXPECT_EQ(got.items[0].status, PublishStatus::unroutable);
  EXPECT_EQ(got.items[0].detail, "NO_ROUTE");
  EXPECT_EQ(got.items[1].status, PublishStatus::confirmed);
  EXPECT_FALSE(got.all_confirmed);
}

TEST(PublishBatch, AllConfirmedOnlyWhenEveryMessageIs) {
  StandIn broker;
  std::optional<BatchResult> got;
  publish_batch(broker.publish(), messages({"a", "b"}), [&](const BatchResult& r) { got = r; });
  for (auto& done : broker.waiting) done({PublishStatus::confirmed, {}});
  ASSERT_TRUE(got);
  EXPECT_TRUE(got->all_confirmed);
}

TEST(PublishBatch, AnEmptyBatchIsAnsweredAtOnce) {
  StandIn broker;
  std::optional<BatchResult> got;
  publish_batch(broker.publish(), {}, [&](const BatchResult& r) { got = r; });
  ASSERT_TRUE(got);
  EXPECT_TRUE(got->items.empty());
  EXPECT_TRUE(broker.sent.empty());
}

}  // namespace
}  // namespace warren::core
