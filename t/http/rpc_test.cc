// The HTTP translation of /rpc (http/rpc): the request's path, query and body, and the answer
// to each outcome of a call, without a broker.
#include "http/rpc.h"

#include <gtest/gtest.h>

namespace warren {
namespace {

using nlohmann::json;
namespace oslo = core::oslo;

RpcConfig rpc_config() {
  RpcConfig c;
  c.timeout = 60;
  c.max_timeout = 600;
  return c;
}

std::variant<RpcRequest, HttpError> parse(std::string_view path, std::string_view query,
                                          std::string_view body = R"({"method": "m"})") {
  auto r = parse_rpc_path(path);
  if (auto* request = std::get_if<RpcRequest>(&r))
    if (auto e = parse_rpc_call(*request, query, body, rpc_config())) return *e;
  return r;
}

TEST(RpcHttp, PathQueryAndBody) {
  auto r = parse("/rpc/%2f/openstack/compute/host%201", "timeout=2.5",
                 R"({"method": "add", "args": {"a": 1}, "context": {"user": "u"}, "version": "1.1", "namespace": "n"})");
  ASSERT_TRUE(std::holds_alternative<RpcRequest>(r)) << std::get<HttpError>(r).detail;
  const auto& req = std::get<RpcRequest>(r);
  EXPECT_EQ(req.vhost, "/");
  EXPECT_EQ(req.target.exchange, "openstack");
  EXPECT_EQ(req.target.topic, "compute");
  EXPECT_EQ(req.target.server, "host 1");
  EXPECT_FALSE(req.target.fanout);
  EXPECT_FALSE(req.cast);
  EXPECT_EQ(req.timeout, 2.5);
  EXPECT_EQ(req.call.method, "add");
  EXPECT_EQ(req.call.args, json({{"a", 1}}));
  EXPECT_EQ(req.call.context, json({{"user", "u"}}));
  EXPECT_EQ(req.call.version, "1.1");
  EXPECT_EQ(req.call.name_space, "n");
}

TEST(RpcHttp, DefaultsCastAndFanout) {
  auto r = std::get<RpcRequest>(parse("/rpc/v/ex/t", ""));
  EXPECT_EQ(r.timeout, 60);
  EXPECT_FALSE(r.cast);
  EXPECT_EQ(r.call.args, json::object());
  EXPECT_TRUE(std::get<RpcRequest>(parse("/rpc/v/ex/t", "cast=1")).cast);
  EXPECT_EQ(std::get<RpcRequest>(parse("/rpc/v/amq.default/t", "")).target.exchange, "");
  auto f = std::get<RpcRequest>(parse("/rpc/v/ex/t", "fanout=1"));
  EXPECT_TRUE(f.target.fanout);
  EXPECT_TRUE(f.cast);  // a fanout is always a cast
}

TEST(RpcHttp, Errors) {
  auto status = [](const std::variant<RpcRequest, HttpError>& r) {
    return std::holds_alternative<HttpError>(r) ? std::get<HttpError>(r).status : 0;
  };
  EXPECT_EQ(status(parse("/rpc/v/ex", "")), 404);
  EXPECT_EQ(status(parse("/rpc/v/ex/t/s/extra", "")), 404);
  EXPECT_EQ(status(parse("/rpc/v//t", "")), 404);
  EXPECT_EQ(status(parse("/rpc/v/ex/t", "timeout=0")), 400);
  EXPECT_EQ(status(parse("/rpc/v/ex/t", "timeout=601")), 400);
  EXPECT_EQ(status(parse("/rpc/v/ex/t", "timeout=abc")), 400);
  EXPECT_EQ(status(parse("/rpc/v/ex/t", "cast=maybe")), 400);
  EXPECT_EQ(status(parse("/rpc/v/ex/t", "other=1")), 400);
  EXPECT_EQ(status(parse("/rpc/v/ex/t", "fanout=1&cast=0")), 400);
  EXPECT_EQ(status(parse("/rpc/v/ex/t/server", "fanout=1")), 400);
  EXPECT_EQ(status(parse("/rpc/v/ex/t", "", "not json")), 400);
  EXPECT_EQ(status(parse("/rpc/v/ex/t", "", "{}")), 400);
  EXPECT_EQ(status(parse("/rpc/v/ex/t", "", R"({"method": ""})")), 400);
  EXPECT_EQ(status(parse("/rpc/v/ex/t", "", R"({"method": "m", "args": [1]})")), 400);
  EXPECT_EQ(status(parse("/rpc/v/ex/t", "", R"({"method": "m", "extra": 1})")), 400);
  EXPECT_EQ(status(parse("/rpc/v/ex/t", "", R"({"method": "m", "version": 1})")), 400);
  EXPECT_EQ(status(parse("/rpc/v/ex/" + std::string(300, 't'), "")), 400);
}

TEST(RpcHttp, Responses) {
  core::RpcResult r;
  r.status = core::RpcStatus::result;
  r.result = {{"x", 1}};
  EXPECT_EQ(rpc_response(r, 1).first, 200);
  EXPECT_EQ(rpc_response(r, 1).second, json({{"result", {{"x", 1}}}}));
  r.result = nullptr;  // a method returning None
  EXPECT_EQ(rpc_response(r, 1).second, json({{"result", nullptr}}));

  r.status = core::RpcStatus::failure;
  r.failure = oslo::Failure{"Boom", "svc.errors", "it broke", json::array(), json::object(), {}};
  auto [code, body] = rpc_response(r, 1);
  EXPECT_EQ(code, 500);
  EXPECT_EQ(body["class"], "Boom");
  EXPECT_EQ(body["module"], "svc.errors");
  EXPECT_EQ(body["message"], "it broke");
  EXPECT_EQ(body["error"], "remote failure");

  r.status = core::RpcStatus::timeout;
  EXPECT_EQ(rpc_response(r, 1).first, 504);
  r.status = core::RpcStatus::accepted;
  EXPECT_EQ(rpc_response(r, 1).first, 202);
  r.status = core::RpcStatus::publish_failed;
  r.publish = {core::PublishStatus::unroutable, "NO_ROUTE"};
  EXPECT_EQ(rpc_response(r, 1).first, 404);
  EXPECT_EQ(rpc_response(r, 1).second["error"], "no server");
  r.publish = {core::PublishStatus::refused, ""};
  EXPECT_EQ(rpc_response(r, 1).first, 401);
  r.publish = {core::PublishStatus::unavailable, ""};
  EXPECT_EQ(rpc_response(r, 1).first, 503);
}

}  // namespace
}  // namespace warren

