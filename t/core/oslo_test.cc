// The oslo.messaging wire format (core/oslo), without a broker. The bodies marked "captured" were taken with pika from python3-oslo.messaging
// 14.0.3 talking to RabbitMQ, so these tests pin what the real thing sends.
#include <gtest/gtest.h>

#include "core/oslo.h"

namespace warren {
namespace {

using nlohmann::json;
namespace oslo = core::oslo;

// captured: an oslo client's call (RPCClient.call({"user": "u1", "roles": ["a"]}, "echo", x=[1, 2]))
const std::string kCapturedCall =
    R"({"oslo.version": "2.0", "oslo.message": "{\"method\": \"echo\", \"args\": {\"x\": [1, 2]}, )"
    R"(\"_msg_id\": \"3647715568a6422ea4deba465303a287\", \"_reply_q\": \"reply_8748c13b734b497d973d08d90b9f48db\", )"
    R"(\"_timeout\": null, \"_unique_id\": \"7cf55fd567df41b59b1117e801fd7d31\", \"_context_user\": \"u1\", )"
    R"(\"_context_roles\": [\"a\"]}"})";
// captured: an oslo client's cast
const std::string kCapturedCast =
    R"({"oslo.version": "2.0", "oslo.message": "{\"method\": \"echo\", \"args\": {\"x\": 3}, )"
    R"(\"_unique_id\": \"ea40063ef12e435aaf3cacf9692f4149\"}"})";
// captured: a server's replies: a result, a heartbeat, a failure (tb shortened)
const std::string kCapturedResult =
    R"({"oslo.version": "2.0", "oslo.message": "{\"result\": {\"a\": 1}, \"failure\": null, \"ending\": true, )"
    R"(\"_msg_id\": \"414483fb3fef4caeb70f57eaa2ddde4b\", \"_unique_id\": \"c4197344b95d49d88cc0c5c3bdfa8111\"}"})";
const std::string kCapturedHeartbeat =
    R"({"oslo.version": "2.0", "oslo.message": "{\"result\": null, \"failure\": null, \"ending\": false, )"
    R"(\"_msg_id\": \"d7f3e25caaed4caf8ea1a76da8eb748b\", \"_unique_id\": \"146dca87b6614095b9e667475b83eb98\"}"})";
const std::string kCapturedFailure =
    R"({"oslo.version": "2.0", "oslo.message": "{\"result\": null, \"failure\": \"{\\\"class\\\": \\\"Boom\\\", )"
    R"(\\\"module\\\": \\\"__main__\\\", \\\"message\\\": \\\"it broke\\\", \\\"tb\\\": [\\\"Traceback (most recent call last):\\\\n\\\", )"
    R"(\\\"Boom: it broke\\\\n\\\"], \\\"args\\\": [\\\"it broke\\\"], \\\"kwargs\\\": {}}\", \"ending\": true, )"
    R"(\"_msg_id\": \"6bffbb862c364bb691e8c391c52dcf00\", \"_unique_id\": \"aad7de95732e4cb8b7e0d17ed883d337\"}"})";

TEST(OsloIds, Uuid4Hex) {
  const auto a = oslo::new_id(), b = oslo::new_id();
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, b);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(a[12], '4');  // version nibble
}

TEST(OsloEnvelope, RoundTripAndInnerIsAString) {
  json m{{"method", "x"}, {"args", json::object()}};
  const auto body = oslo::envelope(m);
  const json outer = json::parse(body);
  EXPECT_EQ(outer["oslo.version"], "2.0");
  ASSERT_TRUE(outer["oslo.message"].is_string());  // a JSON document inside a string, as oslo does
  EXPECT_EQ(json::parse(outer["oslo.message"].get<std::string>()), m);
  auto back = oslo::unwrap(body);
  ASSERT_TRUE(std::holds_alternative<json>(back));
  EXPECT_EQ(std::get<json>(back), m);
}

TEST(OsloEnvelope, UnenvelopedDictIsTakenAsIs) {
  auto r = oslo::unwrap(R"({"method": "old", "args": {}})");
  ASSERT_TRUE(std::holds_alternative<json>(r));
  EXPECT_EQ(std::get<json>(r)["method"], "old");
}

TEST(OsloEnvelope, Errors) {
  EXPECT_TRUE(std::holds_alternative<std::string>(oslo::unwrap("not json")));
  EXPECT_TRUE(std::holds_alternative<std::string>(oslo::unwrap("[1]")));
  EXPECT_TRUE(std::holds_alternative<std::string>(
      oslo::unwrap(R"({"oslo.version": "3.0", "oslo.message": "{}"})")));
  EXPECT_TRUE(std::holds_alternative<std::string>(
      oslo::unwrap(R"({"oslo.version": "2.0", "oslo.message": "[1"})")));
  EXPECT_TRUE(std::holds_alternative<std::string>(
      oslo::unwrap(R"({"oslo.version": "2.0", "oslo.message": {}})")));
  // any 2.x is accepted, as oslo's version_is_compatible does
  EXPECT_TRUE(std::holds_alternative<json>(
      oslo::unwrap(R"({"oslo.version": "2.1", "oslo.message": "{}"})")));
}

TEST(OsloRequest, CallMessageHasTheReplyFieldsAndFlattenedContext) {
  oslo::Call call;
  call.method = "add";
  call.args = {{"a", 1}, {"b", 2}};
  call.context = {{"user", "bob"}, {"roles", {"admin"}}};
  call.version = "1.2";
  call.name_space = "ns";
  const json m = oslo::request_message(call, "m1", "reply_q1", 30, "u1");
  EXPECT_EQ(m["method"], "add");
  EXPECT_EQ(m["args"], call.args);
  EXPECT_EQ(m["version"], "1.2");
  EXPECT_EQ(m["namespace"], "ns");
  EXPECT_EQ(m["_msg_id"], "m1");
  EXPECT_EQ(m["_reply_q"], "reply_q1");
  EXPECT_EQ(m["_timeout"], 30);
  EXPECT_EQ(m["_unique_id"], "u1");
  EXPECT_EQ(m["_context_user"], "bob");
  EXPECT_EQ(m["_context_roles"], json({"admin"}));
  EXPECT_FALSE(m.contains("context"));
}

TEST(OsloRequest, CastHasNoReplyFieldsAndNullTimeoutWhenNone) {
  oslo::Call call;
  call.method = "m";
  const json cast = oslo::request_message(call, "", "", std::nullopt, "u");
  EXPECT_FALSE(cast.contains("_msg_id"));
  EXPECT_FALSE(cast.contains("_reply_q"));
  EXPECT_FALSE(cast.contains("_timeout"));
  EXPECT_FALSE(cast.contains("version"));
  EXPECT_EQ(cast["args"], json::object());
  const json call_m = oslo::request_message(call, "id", "q", std::nullopt, "u");
  EXPECT_TRUE(call_m["_timeout"].is_null());  // oslo sends null without a call monitor
}

TEST(OsloRequest, ParsesACapturedCall) {
  auto r = oslo::parse_request(kCapturedCall);
  ASSERT_TRUE(std::holds_alternative<oslo::Request>(r)) << std::get<std::string>(r);
  const auto& req = std::get<oslo::Request>(r);
  EXPECT_EQ(req.call.method, "echo");
  EXPECT_EQ(req.call.args, json({{"x", {1, 2}}}));
  EXPECT_EQ(req.call.context, json({{"user", "u1"}, {"roles", {"a"}}}));
  EXPECT_EQ(req.msg_id, "3647715568a6422ea4deba465303a287");
  EXPECT_EQ(req.reply_q, "reply_8748c13b734b497d973d08d90b9f48db");
  EXPECT_EQ(req.unique_id, "7cf55fd567df41b59b1117e801fd7d31");
  EXPECT_FALSE(req.timeout);
  EXPECT_FALSE(req.call.version);
}

TEST(OsloRequest, ParsesACapturedCastAndRoundTripsOurs) {
  auto r = oslo::parse_request(kCapturedCast);
  ASSERT_TRUE(std::holds_alternative<oslo::Request>(r));
  EXPECT_TRUE(std::get<oslo::Request>(r).msg_id.empty());

  oslo::Call call;
  call.method = "x";
  call.context = {{"k", "v"}};
  call.version = "2.0";
  auto back = oslo::parse_request(oslo::envelope(oslo::request_message(call, "m", "q", 4, "u")));
  ASSERT_TRUE(std::holds_alternative<oslo::Request>(back));
  const auto& req = std::get<oslo::Request>(back);
  EXPECT_EQ(req.call.context, call.context);
  EXPECT_EQ(req.call.version, "2.0");
  EXPECT_EQ(req.timeout, 4);
}

TEST(OsloRequest, RejectsBadRequests) {
  auto bad = [](const json& m) {
    return std::holds_alternative<std::string>(oslo::parse_request(oslo::envelope(m)));
  };
  EXPECT_TRUE(bad({{"args", json::object()}}));                  // no method
  EXPECT_TRUE(bad({{"method", 3}}));                             // not a string
  EXPECT_TRUE(bad({{"method", "m"}, {"args", json::array()}}));  // args not an object
  EXPECT_TRUE(bad({{"method", "m"}, {"_msg_id", "x"}}));         // a call without _reply_q
  EXPECT_FALSE(bad({{"method", "m"}, {"args", nullptr}}));
}

// A message with several wrong fields is refused for the first, named as it stands on the wire.
TEST(OsloRequest, TheErrorNamesTheFirstWrongField) {
  auto error = [](const json& m) {
    auto parsed = oslo::parse_request(oslo::envelope(m));
    return std::holds_alternative<std::string>(parsed) ? std::get<std::string>(parsed) : "parsed";
  };
  EXPECT_EQ(error({{"method", 3}}), "method: not a string");
  EXPECT_EQ(error({{"method", "m"}, {"version", 1}, {"_unique_id", 2}}), "version: not a string");
  EXPECT_EQ(error({{"method", "m"}, {"namespace", json::array()}, {"_msg_id", "x"}}),
            "namespace: not a string");
  EXPECT_EQ(error({{"method", "m"}, {"_msg_id", "x"}, {"_reply_q", 7}}), "_reply_q: not a string");
  EXPECT_EQ(error({{"method", ""}}), "method: missing");
  EXPECT_EQ(error({{"method", "m"}, {"version", nullptr}, {"_unique_id", nullptr}}), "parsed");
}

TEST(OsloReply, TheErrorNamesTheFirstWrongField) {
  auto error = [](const json& m) {
    auto parsed = oslo::parse_reply(oslo::envelope(m));
    return std::holds_alternative<std::string>(parsed) ? std::get<std::string>(parsed) : "parsed";
  };
  EXPECT_EQ(error({{"_msg_id", 1}, {"_unique_id", 2}}), "_msg_id: not a string");
  EXPECT_EQ(error({{"_msg_id", "m"}, {"_unique_id", 2}}), "_unique_id: not a string");
  EXPECT_EQ(error({{"_unique_id", "u"}}), "_msg_id: missing");
  EXPECT_EQ(error(json::array()), "oslo.message: not a JSON object");
}

TEST(OsloReply, CapturedResultHeartbeatAndFailure) {
  auto r = oslo::parse_reply(kCapturedResult);
  ASSERT_TRUE(std::holds_alternative<oslo::Reply>(r));
  const auto& result = std::get<oslo::Reply>(r);
  EXPECT_EQ(result.msg_id, "414483fb3fef4caeb70f57eaa2ddde4b");
  EXPECT_EQ(result.result, json({{"a", 1}}));
  EXPECT_TRUE(result.ending);
  EXPECT_FALSE(result.failure);
  EXPECT_FALSE(result.is_heartbeat());

  auto h = oslo::parse_reply(kCapturedHeartbeat);
  ASSERT_TRUE(std::holds_alternative<oslo::Reply>(h));
  EXPECT_TRUE(std::get<oslo::Reply>(h).is_heartbeat());

  auto f = oslo::parse_reply(kCapturedFailure);
  ASSERT_TRUE(std::holds_alternative<oslo::Reply>(f)) << std::get<std::string>(f);
  const auto& failure = *std::get<oslo::Reply>(f).failure;
  EXPECT_EQ(failure.class_name, "Boom");
  EXPECT_EQ(failure.module, "__main__");
  EXPECT_EQ(failure.message, "it broke");
  EXPECT_EQ(failure.args, json({"it broke"}));
  EXPECT_EQ(failure.traceback.size(), 2u);
}

TEST(OsloReply, BuildsWhatItParses) {
  oslo::Failure f;
  f.class_name = "NotFound";
  f.module = "myservice.exceptions";
  f.message = "no such thing";
  f.args = {"no such thing"};
  const json m = oslo::reply_message("m1", nullptr, f, true, "u1");
  ASSERT_TRUE(m["failure"].is_string());  // oslo puts a JSON string there, not an object
  EXPECT_TRUE(m["result"].is_null());
  auto back = oslo::parse_reply(oslo::envelope(m));
  ASSERT_TRUE(std::holds_alternative<oslo::Reply>(back));
  const auto& reply = std::get<oslo::Reply>(back);
  EXPECT_EQ(reply.failure->class_name, "NotFound");
  EXPECT_EQ(reply.failure->module, "myservice.exceptions");
  EXPECT_EQ(reply.unique_id, "u1");

  const json ok = oslo::reply_message("m2", {1, 2}, std::nullopt, true, "u2");
  EXPECT_TRUE(ok["failure"].is_null());
  EXPECT_EQ(ok["ending"], true);
  EXPECT_EQ(ok["_msg_id"], "m2");
}

TEST(OsloReply, LenientFailuresAndMissingEnding) {
  EXPECT_EQ(oslo::parse_failure("plain text").class_name, "RemoteError");
  EXPECT_EQ(oslo::parse_failure("plain text").message, "plain text");
  EXPECT_EQ(oslo::parse_failure(json{{"class", "X"}, {"message", "m"}}).class_name, "X");
  auto r = oslo::parse_reply(oslo::envelope({{"_msg_id", "m"}, {"result", 1}}));
  ASSERT_TRUE(std::holds_alternative<oslo::Reply>(r));
  EXPECT_FALSE(std::get<oslo::Reply>(r).ending);  // as oslo: keep waiting
  EXPECT_TRUE(std::holds_alternative<std::string>(oslo::parse_reply(oslo::envelope({{"result", 1}}))));
}

TEST(OsloProperties, AsKombuSetsThem) {
  const auto p = oslo::message_properties(1.5);
  EXPECT_EQ(p.content_type, "application/json");
  EXPECT_EQ(p.content_encoding, "utf-8");
  EXPECT_EQ(p.delivery_mode, 2);
  EXPECT_EQ(p.priority, 0);
  EXPECT_EQ(p.expiration, "1500");
  EXPECT_FALSE(oslo::message_properties(std::nullopt).expiration);
}

}  // namespace
}  // namespace warren
