// The serving side of oslo RPC (format: oslo): request -> HTTP, answer -> reply, the queues an
// oslo server declares. Pure, no broker.
#include <gtest/gtest.h>

#include <cmath>

#include "loop.h"
#include "core/oslo.h"
#include "forward/format.h"
#include "forward/format_oslo.h"
#include "t/forward/format_fixture.h"

namespace warren::forward {
namespace {

using nlohmann::json;
namespace oslo = core::oslo;

ForwarderConfig oslo_config() {
  ForwarderConfig f;
  f.name = "volumes";
  f.format = ForwarderFormat::oslo;
  f.backend.url = "http://127.0.0.1:9000/rpc/";
  f.oslo.topic = "volume";
  f.oslo.server = "host1";
  return f;
}

amqp::Delivery request(const json& message) {
  amqp::Delivery d;
  d.exchange = "openstack";
  d.routing_key = "volume";
  d.body = oslo::envelope(message);
  return d;
}

json call_message(double timeout = 30) {
  return {{"method", "attach"},         {"args", {{"volume", "v1"}, {"size", 2}}},
          {"namespace", "storage"},     {"version", "1.2"},
          {"_msg_id", "m1"},            {"_reply_q", "reply_abc"},
          {"_timeout", timeout},        {"_unique_id", "u1"},
          {"_context_user_id", "alice"}, {"_context_roles", {"admin"}}};
}

BackendResponse answer(int status, std::string body = "") {
  BackendResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

json reply_dict(const Reply& r) { return std::get<json>(oslo::unwrap(r.body)); }

using OsloServe = FormatFixture<oslo_config>;

TEST_F(OsloServe, CallBecomesAPostOfTheArgs) {
  auto t = format();
  auto tr = t->translate(request(call_message()));
  ASSERT_EQ(tr.kind, Translation::Kind::forward);
  EXPECT_EQ(tr.request.method, "POST");
  EXPECT_EQ(tr.request.url, "http://127.0.0.1:9000/rpc/attach");
  EXPECT_EQ(json::parse(tr.request.body), json({{"volume", "v1"}, {"size", 2}}));
  expect_headers(tr.request, {{"Content-Type", "application/json"}, {"X-Oslo-Method", "attach"},
                              {"X-Oslo-Kind", "call"}, {"X-Oslo-Unique-Id", "u1"},
                              {"X-Oslo-Namespace", "storage"}, {"X-Oslo-Version", "1.2"},
                              {"X-Oslo-Context-user-id", "alice"}, {"X-Oslo-Context-roles", R"(["admin"])"}});
  EXPECT_EQ(json::parse(header(tr.request, "X-Oslo-Context")), json({{"user_id", "alice"}, {"roles", {"admin"}}}));
  ASSERT_TRUE(tr.oslo);
  EXPECT_EQ(tr.oslo->msg_id, "m1");
  EXPECT_EQ(tr.oslo->reply_q, "reply_abc");
  EXPECT_DOUBLE_EQ(tr.oslo->heartbeat, 15);
  EXPECT_TRUE(tr.final_answer);
}

TEST_F(OsloServe, HeartbeatsOnlyForTimeoutsOfTwoSecondsOrMore) {
  auto t = format();
  EXPECT_DOUBLE_EQ(t->translate(request(call_message(1))).oslo->heartbeat, 0);
  EXPECT_DOUBLE_EQ(t->translate(request(call_message(2))).oslo->heartbeat, 1);
  auto m = call_message();
  m["_timeout"] = nullptr;
  EXPECT_DOUBLE_EQ(t->translate(request(m)).oslo->heartbeat, 0);
}

// Found while writing the oslo fuzz target: a _timeout of 1e300 is valid JSON, and half of it
// went to a libevent timer through a double -> time_t cast that overflowed (undefined).
TEST_F(OsloServe, AHugeTimeoutGivesAHeartbeatATimerCanHold) {
  auto t = format();
  auto m = call_message();
  m["_timeout"] = 1e300;
  const double beat = t->translate(request(m)).oslo->heartbeat;
  EXPECT_DOUBLE_EQ(beat, kOsloMaxHeartbeatTimeout / 2);
  const timeval tv = to_timeval(beat);
  EXPECT_EQ(tv.tv_sec, static_cast<time_t>(kOsloMaxHeartbeatTimeout / 2));
  EXPECT_EQ(tv.tv_usec, 0);
  EXPECT_EQ(to_timeval(1e300).tv_sec, static_cast<time_t>(1e9));
  EXPECT_EQ(to_timeval(std::nan("")).tv_sec, 0);
  EXPECT_EQ(to_timeval(-3).tv_sec, 0);
  EXPECT_EQ(to_timeval(1.25).tv_usec, 250000);
}

TEST_F(OsloServe, CastHasNoReplyAndFollowsTheRetryRules) {
  auto t = format();
  auto tr = t->translate(request({{"method", "notify"}, {"args", json::object()}, {"_unique_id", "u2"}}));
  ASSERT_EQ(tr.kind, Translation::Kind::forward);
  EXPECT_EQ(header(tr.request, "X-Oslo-Kind"), "cast");
  EXPECT_FALSE(tr.final_answer);
  EXPECT_FALSE(t->reply(amqp::Delivery{}, tr, answer(200)));
  EXPECT_FALSE(t->heartbeat(tr));
}

TEST_F(OsloServe, SuccessIsTheResult) {
  auto t = format();
  auto d = request(call_message());
  auto tr = t->translate(d);
  auto r = t->reply(d, tr, answer(200, R"({"attached": true})"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->exchange, "");
  EXPECT_EQ(r->routing_key, "reply_abc");
  EXPECT_TRUE(r->mandatory);
  EXPECT_EQ(r->properties.content_type, "application/json");
  auto m = reply_dict(*r);
  EXPECT_EQ(m["result"], json({{"attached", true}}));
  EXPECT_TRUE(m["failure"].is_null());
  EXPECT_EQ(m["ending"], true);
  EXPECT_EQ(m["_msg_id"], "m1");
  EXPECT_EQ(m["_unique_id"].get<std::string>().size(), 32u);
  EXPECT_TRUE(reply_dict(*t->reply(d, tr, answer(204)))["result"].is_null());
  EXPECT_EQ(reply_dict(*t->reply(d, tr, answer(200, "text")))["result"], "text");
}

TEST_F(OsloServe, ErrorsAreHttpErrorFailures) {
  auto t = format();
  auto d = request(call_message());
  auto tr = t->translate(d);
  auto m = reply_dict(*t->reply(d, tr, answer(404, "no such volume")));
  EXPECT_TRUE(m["result"].is_null());
  EXPECT_EQ(m["ending"], true);
  auto f = oslo::parse_failure(m["failure"]);
  EXPECT_EQ(f.class_name, "HTTPError");
  EXPECT_EQ(f.module, "warren");
  EXPECT_EQ(f.message, "HTTP 404: no such volume");
  EXPECT_EQ(f.kwargs, json({{"status", 404}}));
  BackendResponse down;
  down.failure = BackendResponse::Failure::connect;
  down.error = "connection refused";
  f = oslo::parse_failure(reply_dict(*t->reply(d, tr, down))["failure"]);
  EXPECT_EQ(f.message, "HTTP 503: backend failed: connection refused");
}

TEST_F(OsloServe, HeartbeatIsAnEmptyNonEndingReply) {
  auto t = format();
  auto tr = t->translate(request(call_message()));
  auto hb = t->heartbeat(tr);
  ASSERT_TRUE(hb);
  auto parsed = std::get<oslo::Reply>(oslo::parse_reply(hb->body));
  EXPECT_TRUE(parsed.is_heartbeat());
  EXPECT_EQ(parsed.msg_id, "m1");
}

TEST_F(OsloServe, BadRequests) {
  auto t = format();
  amqp::Delivery d;
  d.body = "not json";
  auto tr = t->translate(d);
  EXPECT_EQ(tr.kind, Translation::Kind::answer);
  EXPECT_TRUE(tr.invalid);
  EXPECT_FALSE(tr.oslo);  // nothing to reply to: dead-lettered
  // A call to a method that cannot be a URL path is answered with a failure.
  auto m = call_message();
  m["method"] = "../admin";
  auto d2 = request(m);
  tr = t->translate(d2);
  EXPECT_EQ(tr.kind, Translation::Kind::answer);
  EXPECT_TRUE(tr.final_answer);
  auto f = oslo::parse_failure(reply_dict(*t->reply(d2, tr, tr.answer))["failure"]);
  EXPECT_EQ(f.class_name, "HTTPError");
  EXPECT_TRUE(f.message.starts_with("HTTP 400: ")) << f.message;
}

TEST_F(OsloServe, QueuesAsAnOsloServerDeclaresThem) {
  auto plan = oslo_queues(cfg.oslo, "host1", "abc");
  ASSERT_EQ(plan.size(), 3u);
  EXPECT_EQ(plan[0].queue, "volume");
  EXPECT_EQ(plan[1].queue, "volume.host1");
  for (int i : {0, 1}) {
    EXPECT_EQ(plan[i].exchange, "openstack");
    EXPECT_EQ(plan[i].exchange_type, "topic");
    EXPECT_FALSE(plan[i].exchange_durable || plan[i].exchange_auto_delete || plan[i].durable || plan[i].auto_delete);
    EXPECT_EQ(plan[i].arguments, json::object());
    EXPECT_EQ(plan[i].bindings, std::vector<std::string>{plan[i].queue});
  }
  EXPECT_EQ(plan[2].queue, "volume_fanout_abc");
  EXPECT_EQ(plan[2].exchange, "volume_fanout");
  EXPECT_EQ(plan[2].exchange_type, "fanout");
  EXPECT_TRUE(plan[2].exchange_auto_delete);
  EXPECT_FALSE(plan[2].durable || plan[2].auto_delete);
  EXPECT_EQ(plan[2].arguments, json({{"x-expires", 1800000}}));
  cfg.oslo.server = "";
  EXPECT_FALSE(oslo_server_name(cfg.oslo).empty());
}

// The plan comes from the format: an oslo forwarder's fanout queue keeps its name for the
// forwarder's whole life (redeclared as it was after a reconnect); another forwarder has its own.
TEST_F(OsloServe, TheFanoutQueueIsNamedOncePerForwarder) {
  auto t = format();
  auto plan = t->consume_plan();
  ASSERT_EQ(plan.size(), 3u);
  EXPECT_EQ(plan[1].queue, "volume.host1");
  EXPECT_TRUE(plan[2].queue.starts_with("volume_fanout_")) << plan[2].queue;
  EXPECT_EQ(t->consume_plan()[2].queue, plan[2].queue);
  EXPECT_NE(format()->consume_plan()[2].queue, plan[2].queue);
}

TEST_F(OsloServe, RawKeepsItsOneQueue) {
  ForwarderConfig f;
  f.queue = "q1";
  auto plan = make_format(f)->consume_plan();
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].queue, "q1");
  EXPECT_FALSE(plan[0].declare);
}

}  // namespace
}  // namespace warren::forward
