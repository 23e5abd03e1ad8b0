// One list of statuses and one table of publish outcomes: every route that publishes answers a
// broker outcome alike (RPC's "no server" the one documented exception, man/warren-rpc.7).
#include "http/outcome.h"

#include <gtest/gtest.h>

#include "http/rpc.h"
#include "http/wire_connection.h"
#include "http/status_codes.h"
#include "stats.h"

namespace warren {
namespace {

constexpr core::PublishStatus kEveryOutcome[] = {
    core::PublishStatus::confirmed, core::PublishStatus::unroutable, core::PublishStatus::refused,
    core::PublishStatus::forbidden, core::PublishStatus::not_found,  core::PublishStatus::rejected,
    core::PublishStatus::invalid,   core::PublishStatus::unavailable, core::PublishStatus::over_limit,
    core::PublishStatus::timeout};

TEST(HttpStatuses, EveryListedStatusHasItsReasonAndItsCounter) {
  const nlohmann::json counters = Counters{}.to_json();
#define WARREN_CHECK_STATUS(arg, code, reason, note)          \
  EXPECT_EQ(http::http_reason(code), reason);                 \
  EXPECT_NE(http::http_reason(code), "Unknown");              \
  EXPECT_TRUE(counters["requests"].contains("response." #code)) << #code;
  WARREN_HTTP_STATUSES(WARREN_CHECK_STATUS, )
#undef WARREN_CHECK_STATUS
  EXPECT_EQ(http::http_reason(418), "Unknown");
}

TEST(HttpOutcome, EveryOutcomeAnswersAListedStatus) {
  for (auto s : kEveryOutcome) {
    const HttpOutcome o = http_outcome(s);
    EXPECT_NE(http::http_reason(o.status), "Unknown") << o.status;
    EXPECT_EQ(o.error.empty(), s == core::PublishStatus::confirmed) << o.status;
  }
  EXPECT_EQ(http_outcome(core::PublishStatus::unroutable).status, 422);
  EXPECT_EQ(http_outcome(core::PublishStatus::over_limit).error, "too many broker connections");
}

TEST(HttpOutcome, RpcAnswersAPublishFailureAsAPublishDoes) {
  for (auto s : kEveryOutcome) {
    if (s == core::PublishStatus::confirmed) continue;  // a call then goes on to its reply
    core::RpcResult r;
    r.status = core::RpcStatus::publish_failed;
    r.publish = {s, "why"};
    auto [code, body] = rpc_response(r, 1);
    if (s == core::PublishStatus::unroutable) {  // no queue bound for the topic: no server
      EXPECT_EQ(code, 404);
      EXPECT_EQ(body["error"], "no server");
      continue;
    }
    const HttpOutcome o = http_outcome(s);
    EXPECT_EQ(code, o.status);
    EXPECT_EQ(body["error"], std::string(o.error));
    EXPECT_EQ(body["detail"], "why");
  }
}

}  // namespace
}  // namespace warren
