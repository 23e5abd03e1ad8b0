// Message <-> HTTP translation (raw and vcd): pure, no broker.
#include <gtest/gtest.h>

#include <algorithm>

#include "base64.h"
#include "forward/format.h"
#include "t/forward/format_fixture.h"

namespace warren::forward {
namespace {

using nlohmann::json;

ForwarderConfig raw_config() {
  ForwarderConfig f;
  f.name = "example1";
  f.queue = "example1";
  f.backend.url = "http://127.0.0.1:9000/api";
  f.rewrite_from = "^/api/example1";
  f.rewrite_to = "";
  return f;
}

amqp::Delivery message(std::string body, json headers = json::object()) {
  amqp::Delivery d;
  d.exchange = "vcdext";
  d.routing_key = "example1";
  d.body = std::move(body);
  d.properties.headers = std::move(headers);
  return d;
}

// A backend's answer.
BackendResponse answered(int status, std::string content_type, std::string body) {
  BackendResponse r;
  r.status = status;
  r.content_type = std::move(content_type);
  r.body = std::move(body);
  return r;
}

// Where a reply goes (exchange, routing key) and which request it answers, as one value.
std::string envelope(const Reply& r) {
  return r.exchange + " " + r.routing_key + " " + r.properties.correlation_id.value_or("-");
}

using ForwardRaw = FormatFixture<raw_config>;

TEST_F(ForwardRaw, MethodPathHeadersAndBody) {
  auto t = format();
  auto d = message("payload", {{"x-http-method", "put"}, {"x-http-path", "/api/example1/things/7?x=1"},
                               {"tenant", "acme"}, {"count", 3}});
  d.properties.content_type = "application/json";
  d.properties.correlation_id = "c-1";
  d.properties.reply_to = "replies";
  d.properties.message_id = "m-1";
  d.properties.timestamp = 1700000000;
  auto tr = t->translate(d);
  ASSERT_EQ(tr.kind, Translation::Kind::forward);
  EXPECT_EQ(tr.request.method, "PUT");
  EXPECT_EQ(tr.request.url, "http://127.0.0.1:9000/api/things/7?x=1");
  EXPECT_EQ(tr.request.body, "payload");
  expect_headers(tr.request, {{"Content-Type", "application/json"}, {"X-AMQP-Correlation-Id", "c-1"},
                              {"X-AMQP-Reply-To", "replies"}, {"X-AMQP-Message-Id", "m-1"},
                              {"X-AMQP-Timestamp", "1700000000"}, {"X-AMQP-Routing-Key", "example1"},
                              {"X-AMQP-Header-tenant", "acme"}, {"X-AMQP-Header-count", "3"},
                              {"X-AMQP-Header-x-http-path", "<none>"}});
}

TEST_F(ForwardRaw, DefaultsToPostOnTheBackendUrl) {
  auto t = format();
  auto tr = t->translate(message("b"));
  ASSERT_EQ(tr.kind, Translation::Kind::forward);
  EXPECT_EQ(tr.request.method, "POST");
  EXPECT_EQ(tr.request.url, "http://127.0.0.1:9000/api");
}

TEST_F(ForwardRaw, BadMethodOrPathIsAnInvalidMessage) {
  auto t = format();
  for (json h : {json{{"x-http-method", "GE T"}}, json{{"x-http-method", 5}},
                 json{{"x-http-path", "no-slash"}}, json{{"x-http-path", "/a b"}},
                 json{{"x-http-path", "/a\r\nX: y"}}}) {
    auto tr = t->translate(message("b", h));
    EXPECT_EQ(tr.kind, Translation::Kind::answer) << h.dump();
    EXPECT_TRUE(tr.invalid);
    EXPECT_EQ(tr.answer.status, 400);
  }
}

TEST_F(ForwardRaw, ReplyCarriesStatusCorrelationAndContentType) {
  auto t = format();
  auto d = message("b", {{"replyToExchange", "replies-x"}});
  d.properties.reply_to = "rk";
  d.properties.correlation_id = "c-9";
  auto tr = t->translate(d);
  const auto r = answered(201, "text/plain; charset=utf-8", "made");
  auto reply = t->reply(d, tr, r);
  ASSERT_TRUE(reply);
  EXPECT_EQ(envelope(*reply), "replies-x rk c-9");
  EXPECT_EQ(reply->properties.content_type, "text/plain; charset=utf-8");
  EXPECT_EQ((*reply->properties.headers)["x-http-status"], 201);
  EXPECT_EQ(reply->body, "made");

  d.properties.reply_to.reset();
  EXPECT_FALSE(t->reply(d, tr, r));
}

TEST_F(ForwardRaw, FailuresReplyWithGatewayStatuses) {
  auto t = format();
  auto d = message("b");
  d.properties.reply_to = "rk";
  auto tr = t->translate(d);
  BackendResponse r;
  r.failure = BackendResponse::Failure::timeout;
  r.error = "timed out";
  auto reply = t->reply(d, tr, r);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->exchange, "");
  EXPECT_EQ((*reply->properties.headers)["x-http-status"], 504);
  r.failure = BackendResponse::Failure::connect;
  EXPECT_EQ((*t->reply(d, tr, r)->properties.headers)["x-http-status"], 503);
  r.failure = BackendResponse::Failure::other;
  EXPECT_EQ((*t->reply(d, tr, r)->properties.headers)["x-http-status"], 502);
}

TEST_F(ForwardRaw, RewriteKeepsTheQueryAndUrlJoinsSlashes) {
  cfg.backend.url = "http://b/root/";
  cfg.rewrite_from = "^/v1/(\\w+)";
  cfg.rewrite_to = "/v2/$1";
  auto t = format();
  std::string error;
  EXPECT_EQ(t->target_url("/v1/items/3", "a=/v1/x", &error), "http://b/root/v2/items/3?a=/v1/x");
  EXPECT_EQ(t->target_url("/x", "", &error), "http://b/root/x");
  EXPECT_EQ(t->target_url("", "", &error), "http://b/root/");
}

// Whatever the path (after the rewrite) says, the request goes to backend.url's scheme, host and
// port, with its credentials; a path that is not a path is refused, never "fixed".
TEST_F(ForwardRaw, ThePathNeverChangesTheHost) {
  cfg.backend.url = "http://svc:pw@127.0.0.1:9000";
  cfg.rewrite_from = "^/api/x/";
  cfg.rewrite_to = "";
  auto t = format();
  for (const char* hostile : {"/api/x/@evil/p", "/api/x/evil.example/p", "/api/x/\\evil/p", "/api/x/%2F%2Fevil",
                              "/api/x/http://evil/p", "/api/x/:80@evil/"}) {
    auto tr = t->translate(message("", {{"x-http-path", hostile}}));
    EXPECT_EQ(tr.kind, Translation::Kind::answer) << hostile;
    EXPECT_EQ(tr.answer.status, 400) << hostile;
    EXPECT_NE(tr.error.find("does not start with '/'"), std::string::npos) << tr.error;
  }
  // Paths that start with '/' stay paths of the same host.
  std::string error;
  EXPECT_EQ(t->target_url("//evil.example/p", "", &error), "http://svc:pw@127.0.0.1:9000//evil.example/p");
  EXPECT_EQ(t->target_url("/@evil/p", "", &error), "http://svc:pw@127.0.0.1:9000/@evil/p");
  for (const char* bad : {"/a#b", "/a?b", "/a b", "/a\r\nHost: evil", "/\xff"})
    EXPECT_FALSE(t->target_url(bad, "", &error)) << bad;
  EXPECT_FALSE(t->target_url("/a", "q=#frag", &error));
}

TEST_F(ForwardRaw, TheRewriteIsPcre2WithLimits) {
  cfg.rewrite_from = "^/api/(.*)$";
  cfg.rewrite_to = "/$1";
  auto t = format();
  std::string error;
  // std::regex recursed once per character here: a megabyte of path is a clean answer now.
  const std::string huge = "/api/" + std::string(1 << 20, 'a');
  auto url = t->target_url(huge, "", &error);
  ASSERT_TRUE(url) << error;
  EXPECT_EQ(url->size(), std::string("http://127.0.0.1:9000/api/").size() + (1 << 20));
  // Catastrophic backtracking stops at the match limit and is refused.
  cfg.rewrite_from = "^(a+)+$";
  auto slow = format();
  EXPECT_FALSE(slow->target_url(std::string(40, 'a') + "!", "", &error));
  EXPECT_NE(error.find("rewrite.from failed"), std::string::npos) << error;
  // A replacement naming a group that does not exist: refused, not a crash.
  cfg.rewrite_from = "^/api";
  cfg.rewrite_to = "$7";
  auto bad = format();
  EXPECT_FALSE(bad->target_url("/api/x", "", &error));
}

TEST_F(ForwardRaw, ClientStringsAreCappedBeforeAnyParser) {
  cfg.max_path = 64;
  auto t = format();
  auto tr = t->translate(message("", {{"x-http-path", "/api/example1/" + std::string(100, 'a')}}));
  ASSERT_EQ(tr.kind, Translation::Kind::answer);
  EXPECT_TRUE(tr.invalid);
  EXPECT_NE(tr.error.find("over forwarders[].max_path (64)"), std::string::npos) << tr.error;
  EXPECT_EQ(t->translate(message("", {{"x-http-method", std::string(33, 'G')}})).answer.status, 400);
  // A value that is not a string is named by its type, never dumped (it may nest deep).
  auto nested = t->translate(message("", {{"x-http-path", json::array({json::array({1})})}}));
  EXPECT_NE(nested.error.find("a JSON array"), std::string::npos) << nested.error;
}

TEST(BackendUrl, DisplayUrlDropsTheCredentials) {
  EXPECT_EQ(display_url("http://svc:s3cr3t@h:80/p?q"), "http://h:80/p?q");
  EXPECT_EQ(display_url("https://u@h/"), "https://h/");
  EXPECT_EQ(display_url("http://h/a@b"), "http://h/a@b");
  EXPECT_EQ(display_url("http://a@b@h"), "http://h");
  EXPECT_EQ(display_url("not a url"), "not a url");
  EXPECT_EQ(backend_url_problem("http://h:1/base"), std::nullopt);
  EXPECT_NE(backend_url_problem("http://h/?x=1"), std::nullopt);
  EXPECT_NE(backend_url_problem("http://h/#f"), std::nullopt);
  auto problem = backend_url_problem("ftp://u:s3cr3t@h/");
  ASSERT_TRUE(problem);
  EXPECT_EQ(problem->find("s3cr3t"), std::string::npos) << *problem;
}

TEST(BackendUrl, ARedirectLeavesTheOriginOnAnotherSchemeHostOrPort) {
  const char* from = "http://svc:pw@127.0.0.1:8080/api/vms";
  EXPECT_EQ(leaves_origin(from, "/api/vms/"), std::nullopt);
  EXPECT_EQ(leaves_origin(from, "other?x=1"), std::nullopt);
  EXPECT_EQ(leaves_origin(from, "HTTP://127.0.0.1:8080/x"), std::nullopt);
  EXPECT_EQ(leaves_origin("http://h/a", "http://h:80/b"), std::nullopt);  // the default port
  EXPECT_EQ(leaves_origin(from, "http://127.0.0.1:9090/x"), "http://127.0.0.1:9090/x");
  EXPECT_EQ(leaves_origin(from, "https://127.0.0.1:8080/x"), "https://127.0.0.1:8080/x");
  EXPECT_EQ(leaves_origin(from, "//evil.example/x"), "http://evil.example/x");
  EXPECT_EQ(leaves_origin(from, "http://u:p@evil.example/"), "http://evil.example/");
  EXPECT_EQ(leaves_origin(from, "http://127.0.0.1:8080@evil.example/"), "http://evil.example/");
  EXPECT_EQ(leaves_origin(from, "http://127.0.0.1:8080.evil.example/"), std::nullopt);  // no URL: curl refuses it too
}

ForwarderConfig vcd_config() {
  auto f = raw_config();
  f.format = ForwarderFormat::vcd;
  f.vcd.extension = "example1";
  f.vcd.required_rights = {"urn:vcloud:right:ext-use"};
  f.vcd.allowed_orgs = {"urn:vcloud:org:acme"};
  return f;
}

amqp::Delivery vcd_message(json request, json context) {
  auto d = message(json::array({request, context}).dump(), {{"replyToExchange", "vcdreply"}});
  d.properties.reply_to = "reply-key";
  d.properties.correlation_id = "corr-1";
  return d;
}

json vcd_request(std::string uri = "/api/example1/vms/1") {
  return {{"id", "req-1"},
          {"method", "POST"},
          {"requestUri", uri},
          {"queryString", "page=2"},
          {"headers", {{"Accept", "application/json"}, {"Content-Type", "application/json"}, {"Host", "vcd"}}},
          {"body", base64_encode("{\"a\":1}")}};
}

// vcd_request() with these headers added to the request's own.
json vcd_request_with_headers(const json& extra) {
  json request = vcd_request();
  request["headers"].update(extra);
  return request;
}

json vcd_context(std::string org = "urn:vcloud:org:acme") {
  return {{"user", "urn:vcloud:user:bob"}, {"org", org},
          {"rights", {"urn:vcloud:right:other", "urn:vcloud:right:ext-use"}}};
}

using ForwardVcd = FormatFixture<vcd_config>;

TEST_F(ForwardVcd, RequestBecomesBackendCallWithOrgAndUser) {
  auto t = format();
  auto tr = t->translate(vcd_message(vcd_request(), vcd_context()));
  ASSERT_EQ(tr.kind, Translation::Kind::forward) << tr.error;
  EXPECT_EQ(tr.request.method, "POST");
  EXPECT_EQ(tr.request.url, "http://127.0.0.1:9000/api/vms/1?page=2");
  EXPECT_EQ(tr.request.body, "{\"a\":1}");
  expect_headers(tr.request, {{"Accept", "application/json"}, {"Host", "<none>"},
                              {"org_id", "acme"}, {"user_id", "bob"}});
  EXPECT_EQ(tr.request_id, "req-1");
}

// vcdextproxy sends org_id and user_id as the bare ids (the URN without urn:vcloud:org: /
// urn:vcloud:user:); its users' backends read them so. A context carrying the URN as "id" of
// an object reads the same.
TEST_F(ForwardVcd, OrgAndUserAreTheBareIdsAsVcdextproxySendsThem) {
  json ctx = vcd_context();
  ctx["org"] = "urn:vcloud:org:1d0e5d2f-0b1a-4c7e-9a58-3f5c2d0a7e11";
  ctx["user"] = {{"id", "urn:vcloud:user:8f9c0b2e-7c2d-4a36-b0a4-5e1f3d6c9a20"}, {"name", "bob"}};
  cfg.vcd.allowed_orgs = {"urn:vcloud:org:1d0e5d2f-0b1a-4c7e-9a58-3f5c2d0a7e11"};
  auto tr = format()->translate(vcd_message(vcd_request(), ctx));
  ASSERT_EQ(tr.kind, Translation::Kind::forward) << tr.error;
  expect_headers(tr.request, {{"org_id", "1d0e5d2f-0b1a-4c7e-9a58-3f5c2d0a7e11"},
                              {"user_id", "8f9c0b2e-7c2d-4a36-b0a4-5e1f3d6c9a20"}});
  // An id that is not the expected URN is passed as it came, never cut elsewhere.
  ctx["org"] = "urn:vcloud:user:not-an-org";
  cfg.vcd.allowed_orgs = {};
  tr = format()->translate(vcd_message(vcd_request(), ctx));
  expect_headers(tr.request, {{"org_id", "urn:vcloud:user:not-an-org"}});
}

// The context headers are warren's word about the caller: a vCD client sending org_id, User-Id
// or USER_RIGHTS in its own request (a WSGI backend reads org-id and org_id alike) must not
// reach the backend beside, or instead of, them.
TEST_F(ForwardVcd, ClientHeadersCannotForgeTheContextHeaders) {
  const json req = vcd_request_with_headers({{"org_id", "victim"}, {"User-Id", "root"},
                                             {"USER_RIGHTS", "[\"urn:vcloud:right:everything\"]"},
                                             {"org-Id", "victim"}});
  for (bool forward_rights : {false, true}) {
    cfg.vcd.forward_rights = forward_rights;
    auto tr = format()->translate(vcd_message(req, vcd_context()));
    ASSERT_EQ(tr.kind, Translation::Kind::forward) << tr.error;
    std::vector<std::string> names;
    for (const auto& [name, value] : tr.request.headers) {
      std::string n = ascii_upper(name);
      std::replace(n.begin(), n.end(), '-', '_');
      if (n == "ORG_ID" || n == "USER_ID" || n == "USER_RIGHTS") names.push_back(name + "=" + value);
    }
    std::vector<std::string> want = {"org_id=acme", "user_id=bob"};
    if (forward_rights) want.push_back(R"(user_rights=["urn:vcloud:right:other","urn:vcloud:right:ext-use"])");
    EXPECT_EQ(names, want);
  }
}

// vcd.forward_rights: the context's rights as the header user_rights, a JSON list, as
// vcdextproxy's backend.forward_rights sends them; off by default.
TEST_F(ForwardVcd, RightsGoAsUserRightsWhenForwardRightsIsOn) {
  auto tr = format()->translate(vcd_message(vcd_request(), vcd_context()));
  expect_headers(tr.request, {{"user_rights", "<none>"}});
  cfg.vcd.forward_rights = true;
  tr = format()->translate(vcd_message(vcd_request(), vcd_context()));
  EXPECT_EQ(json::parse(header(tr.request, "user_rights")),
            json::array({"urn:vcloud:right:other", "urn:vcloud:right:ext-use"}));
}

// The request's headers go on as vcdextproxy passes them (the user's token included), except
// what describes warren's own hop: Authorization gives way to backend.username/password (as
// vcdextproxy's backend.auth replaces it), and Accept-Encoding is not asked for, since the
// reply to vCD carries the body without a Content-Encoding.
TEST_F(ForwardVcd, RequestHeadersGoOnAsVcdextproxyPassesThem) {
  const json req = vcd_request_with_headers({{"Authorization", "Bearer user-token"},
                                             {"x-vcloud-authorization", "user-token"},
                                             {"Accept-Encoding", "gzip, deflate, br"},
                                             {"X-VMWARE-VCLOUD-TENANT-CONTEXT", "acme-id"}});
  auto tr = format()->translate(vcd_message(req, vcd_context()));
  expect_headers(tr.request, {{"Authorization", "Bearer user-token"}, {"x-vcloud-authorization", "user-token"},
                              {"X-VMWARE-VCLOUD-TENANT-CONTEXT", "acme-id"}, {"Accept-Encoding", "<none>"},
                              {"Content-Type", "application/json"}, {"Host", "<none>"}});
  cfg.backend.username = "rest_username";
  tr = format()->translate(vcd_message(req, vcd_context()));
  expect_headers(tr.request, {{"Authorization", "<none>"}, {"x-vcloud-authorization", "user-token"}});
  cfg.backend.username = "";
  cfg.backend.url = "http://rest_username:s3cret@127.0.0.1:9000/api";
  tr = format()->translate(vcd_message(req, vcd_context()));
  expect_headers(tr.request, {{"Authorization", "<none>"}, {"x-vcloud-authorization", "user-token"}});
}

// vcdextproxy forwards the methods its HTTP library has (GET, HEAD, POST, PUT, PATCH, DELETE,
// OPTIONS, in any case) and answers any other 405; warren too, in vCD's error document.
TEST_F(ForwardVcd, AnUnsupportedMethodIsA405) {
  auto t = format();
  for (const char* m : {"get", "Head", "POST", "put", "patch", "DELETE", "options"}) {
    json req = vcd_request();
    req["method"] = m;
    auto tr = t->translate(vcd_message(req, vcd_context()));
    ASSERT_EQ(tr.kind, Translation::Kind::forward) << m;
    EXPECT_EQ(tr.request.method, ascii_upper(m));
  }
  for (const char* m : {"TRACE", "CONNECT", "PROPFIND", "FOO"}) {
    json req = vcd_request();
    req["method"] = m;
    auto d = vcd_message(req, vcd_context());
    auto tr = t->translate(d);
    ASSERT_EQ(tr.kind, Translation::Kind::answer) << m;
    EXPECT_FALSE(tr.invalid);
    EXPECT_EQ(tr.answer.status, 405);
    auto j = json::parse(t->reply(d, tr, tr.answer)->body);
    EXPECT_EQ(j["statusCode"], 405);
    auto err = json::parse(*base64_decode(j["body"].get<std::string>()));
    EXPECT_EQ(err["minorErrorCode"], "METHOD_NOT_ALLOWED");
    EXPECT_NE(err["message"].get<std::string>().find(m), std::string::npos) << err;
  }
}

// vCD waits for the reply: like vcdextproxy, one call to the backend and its answer (or
// failure) is the reply; a retried POST would run twice. Without reply_to nobody waits, and
// the retry rules apply.
TEST_F(ForwardVcd, ARequestVcdWaitsForIsAnsweredAfterOneAttempt) {
  auto t = format();
  auto d = vcd_message(vcd_request(), vcd_context());
  EXPECT_TRUE(t->translate(d).final_answer);
  d.properties.reply_to.reset();
  EXPECT_FALSE(t->translate(d).final_answer);
}

TEST_F(ForwardVcd, ReplyIsTheVcdResponseDocument) {
  auto t = format();
  auto d = vcd_message(vcd_request(), vcd_context());
  auto reply = t->reply(d, t->translate(d), answered(200, "application/vnd.example+json", "{\"ok\":true}"));
  ASSERT_TRUE(reply);
  EXPECT_EQ(envelope(*reply), "vcdreply reply-key corr-1");
  auto j = json::parse(reply->body);
  EXPECT_EQ(j["id"], "req-1");
  EXPECT_EQ(j["statusCode"], 200);
  EXPECT_EQ(j["request"], false);
  EXPECT_EQ(j["headers"]["Content-Type"], "application/vnd.example+json");
  EXPECT_EQ(base64_decode(j["body"].get<std::string>()), "{\"ok\":true}");
}

TEST_F(ForwardVcd, MissingRightOrOrgIsA403InVcdFormat) {
  auto t = format();
  json ctx = vcd_context();
  ctx["rights"] = json::array({"urn:vcloud:right:other"});
  for (const json& c : {ctx, vcd_context("urn:vcloud:org:evil")}) {
    auto d = vcd_message(vcd_request(), c);
    auto tr = t->translate(d);
    ASSERT_EQ(tr.kind, Translation::Kind::answer);
    EXPECT_FALSE(tr.invalid);
    EXPECT_EQ(tr.answer.status, 403);
    auto j = json::parse(t->reply(d, tr, tr.answer)->body);
    EXPECT_EQ(j["statusCode"], 403);
    EXPECT_EQ(j["id"], "req-1");
    auto err = json::parse(*base64_decode(j["body"].get<std::string>()));
    EXPECT_EQ(err["majorErrorCode"], 403);
    EXPECT_EQ(err["minorErrorCode"], "ACCESS_TO_RESOURCE_IS_FORBIDDEN");
  }
}

TEST_F(ForwardVcd, UriOfAnotherExtensionIs404AndGarbageIs400) {
  auto t = format();
  auto tr = t->translate(vcd_message(vcd_request("/api/example10/x"), vcd_context()));
  EXPECT_EQ(tr.answer.status, 404);
  tr = t->translate(vcd_message(vcd_request("https://vcd.example.com/api/example1"), vcd_context()));
  EXPECT_EQ(tr.kind, Translation::Kind::forward);
  auto garbage = message("not json");
  garbage.properties.reply_to = "r";
  tr = t->translate(garbage);
  EXPECT_TRUE(tr.invalid);
  EXPECT_EQ(tr.answer.status, 400);
  json bad = vcd_request();
  bad["body"] = "!!!";
  tr = t->translate(vcd_message(bad, vcd_context()));
  EXPECT_TRUE(tr.invalid);
}

TEST_F(ForwardVcd, BackendFailuresMapToGatewayStatuses) {
  auto t = format();
  auto d = vcd_message(vcd_request(), vcd_context());
  auto tr = t->translate(d);
  BackendResponse r;
  for (auto [failure, status] : {std::pair{BackendResponse::Failure::connect, 503},
                                 std::pair{BackendResponse::Failure::timeout, 504},
                                 std::pair{BackendResponse::Failure::other, 502}}) {
    r.failure = failure;
    r.error = "GET http://10.1.2.3:8881/vms/1: Failed to connect to 10.1.2.3 port 8881";
    auto j = json::parse(t->reply(d, tr, r)->body);
    EXPECT_EQ(j["statusCode"], status);
    EXPECT_EQ(j["headers"]["Content-Type"], "application/json");
    const auto error = *base64_decode(j["body"].get<std::string>());
    EXPECT_TRUE(json::parse(error).contains("message"));
    // vCD shows it to its tenant: where the backend is stays in warren's log.
    EXPECT_EQ(error.find("10.1.2.3"), std::string::npos) << error;
  }
}

// JSON values are copied, compared and dumped recursively: a body nested deeper than
// kMaxJsonDepth is refused before any of that happens, for vcd and for oslo's inner message.
TEST_F(ForwardVcd, DeepOrHugeBodiesAreRefusedBeforeTheyAreParsed) {
  auto t = format();
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  auto tr = t->translate(message("[{\"id\": " + deep + "}, {}]"));
  ASSERT_EQ(tr.kind, Translation::Kind::answer);
  EXPECT_EQ(tr.answer.status, 400);
  EXPECT_NE(tr.error.find("deeper than 128"), std::string::npos) << tr.error;
  cfg.max_body = 10;
  auto small = format();
  EXPECT_NE(small->translate(message("[{}, {}, {}, {}]")).error.find("over forwarders[].max_body (10)"),
            std::string::npos);

  auto oslo = raw_config();
  oslo.format = ForwarderFormat::oslo;
  auto o = make_format(oslo);
  const json inner = {{"method", "m"}, {"args", json::parse("{\"a\": " + std::string(200, '[') + std::string(200, ']') + "}")}};
  auto deep_oslo = o->translate(message(json{{"oslo.version", "2.0"}, {"oslo.message", inner.dump()}}.dump()));
  EXPECT_NE(deep_oslo.error.find("deeper than 128"), std::string::npos) << deep_oslo.error;
  const json fine = {{"method", "m"}, {"args", {{"a", json::array({json::array({1})})}}}};
  EXPECT_EQ(o->translate(message(json{{"oslo.version", "2.0"}, {"oslo.message", fine.dump()}}.dump())).kind,
            Translation::Kind::forward);
}

// forwarders[].format picks the format once: the same message, read three ways.
TEST(Format, IsChosenByForwardersFormat) {
  auto cfg = vcd_config();
  cfg.oslo.topic = "t";
  const auto d = message("not json");
  cfg.format = ForwarderFormat::raw;
  EXPECT_EQ(make_format(cfg)->translate(d).kind, Translation::Kind::forward);
  cfg.format = ForwarderFormat::vcd;
  auto vcd = make_format(cfg)->translate(d);
  EXPECT_EQ(json::parse(vcd.answer.body)["minorErrorCode"], "BAD_REQUEST");
  cfg.format = ForwarderFormat::oslo;
  auto oslo = make_format(cfg)->translate(d);
  EXPECT_EQ(json::parse(oslo.answer.body)["error"], "bad message");
  EXPECT_TRUE(oslo.error.starts_with("not an oslo.messaging request")) << oslo.error;
}

}  // namespace
}  // namespace warren::forward
