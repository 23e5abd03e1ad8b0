// What a vcd request leaves to vCD's API (forward/vcd_checks.h): pure, no API, no broker.
#include <gtest/gtest.h>

#include "base64.h"
#include "forward/format.h"
#include "forward/vcd_checks.h"
#include "t/forward/format_fixture.h"

namespace warren::forward {
namespace {

using nlohmann::json;

ForwarderConfig vcd_api_config() {
  ForwarderConfig f;
  f.name = f.queue = "example1";
  f.backend.url = "http://127.0.0.1:9000/api";
  f.format = ForwarderFormat::vcd;
  f.vcd.extension = "example1";
  f.vcd.required_rights = {"urn:vcloud:right:ext-use", "UI Plugins: View"};
  f.vcd.api.url = "https://vcd.example.com";
  return f;
}

amqp::Delivery message(const json& headers, const json& rights, json org = "urn:vcloud:org:acme") {
  json request = {{"id", "req-1"},     {"method", "GET"},  {"requestUri", "/api/example1/vms"},
                  {"queryString", ""}, {"body", ""},       {"headers", headers}};
  json context = {{"user", "urn:vcloud:user:bob"}, {"org", std::move(org)}, {"rights", rights}};
  amqp::Delivery d;
  d.body = json::array({request, context}).dump();
  d.properties.reply_to = "r";
  return d;
}

using VcdChecksTest = FormatFixture<vcd_api_config>;

TEST_F(VcdChecksTest, RightNamesAreLeftToTheApiAndUrnsAreCheckedAtOnce) {
  auto tr = format()->translate(message(json::object(), {"urn:vcloud:right:ext-use"}));
  ASSERT_EQ(tr.kind, Translation::Kind::forward) << tr.error;
  ASSERT_TRUE(tr.vcd_checks);
  EXPECT_EQ(tr.vcd_checks->right_names, std::vector<std::string>{"UI Plugins: View"});
  EXPECT_EQ(tr.vcd_checks->rights, std::vector<std::string>{"urn:vcloud:right:ext-use"});
  EXPECT_FALSE(tr.vcd_checks->check_org);
  // A URN the user lacks is still refused without asking vCD.
  tr = format()->translate(message(json::object(), json::array()));
  EXPECT_EQ(tr.answer.status, 403);
  EXPECT_FALSE(tr.vcd_checks);
}

TEST_F(VcdChecksTest, NothingForTheApiWithoutNamesOrOrgCheck) {
  cfg.vcd.required_rights = {"urn:vcloud:right:ext-use"};
  auto tr = format()->translate(message(json::object(), {"urn:vcloud:right:ext-use"}));
  ASSERT_EQ(tr.kind, Translation::Kind::forward);
  EXPECT_FALSE(tr.vcd_checks);
}

TEST_F(VcdChecksTest, TheUsersOwnTokenComesFromTheRequestHeaders) {
  cfg.vcd.check_org_membership = true;
  cfg.vcd.required_rights.clear();
  struct Case {
    json headers;
    std::string header, token;
  } cases[] = {
      {{{"x-vcloud-authorization", "tok1"}}, "x-vcloud-authorization", "tok1"},
      {{{"X-VCLOUD-AUTHORIZATION", {"tok2", "ignored"}}}, "x-vcloud-authorization", "tok2"},
      {{{"Authorization", "Bearer eyJ.x"}}, "Authorization", "Bearer eyJ.x"},
      {{{"Authorization", "Basic dTpw"}}, "", ""},  // a password is never passed on
      // A token that would add a header to the request to vCD is no token.
      {{{"x-vcloud-authorization", "tok\r\nX-Evil: 1"}}, "", ""},
      {{{"Authorization", "Bearer a\nb"}}, "", ""},
      {json::object(), "", ""},
  };
  for (const auto& c : cases) {
    auto tr = format()->translate(message(c.headers, json::array()));
    ASSERT_TRUE(tr.vcd_checks) << c.headers;
    EXPECT_TRUE(tr.vcd_checks->check_org);
    EXPECT_EQ(tr.vcd_checks->org, "urn:vcloud:org:acme");
    EXPECT_EQ(tr.vcd_checks->token_header, c.header) << c.headers;
    EXPECT_EQ(tr.vcd_checks->token, c.token) << c.headers;
  }
  // context.org as an object carrying its id, as some vCD versions send it.
  auto tr = format()->translate(message(json::object(), json::array(), {{"id", "urn:vcloud:org:o2"}}));
  ASSERT_TRUE(tr.vcd_checks);
  EXPECT_EQ(tr.vcd_checks->org, "urn:vcloud:org:o2");
}

TEST(VcdChecks, ARightIsAnIdWhenItIsAUrnOrAUuidAndANameOtherwise) {
  EXPECT_TRUE(is_right_id("urn:vcloud:right:0b8a5fdc-2cd9-4d36-b3a7-6c6c1c4f4ef0"));
  EXPECT_TRUE(is_right_id("0b8a5fdc-2cd9-4d36-b3a7-6c6c1c4f4ef0"));
  EXPECT_FALSE(is_right_id("UI Plugins: View"));
  EXPECT_FALSE(is_right_id("0b8a5fdc-2cd9-4d36-b3a7-6c6c1c4f4efX"));
  EXPECT_FALSE(is_right_id("0b8a5fdc02cd9-4d36-b3a7-6c6c1c4f4ef0"));
  const std::vector<std::string> held{"urn:vcloud:right:aaa", "bbb"};
  EXPECT_TRUE(holds_right(held, "urn:vcloud:right:aaa"));
  EXPECT_TRUE(holds_right(held, "aaa"));
  EXPECT_TRUE(holds_right(held, "urn:vcloud:right:bbb"));
  EXPECT_FALSE(holds_right(held, "urn:vcloud:org:aaa"));  // two URNs: equal or nothing
  EXPECT_FALSE(holds_right(held, "ccc"));
}

TEST_F(VcdChecksTest, ABareUuidIsCheckedAtOnceLikeAUrn) {
  cfg.vcd.required_rights = {"0b8a5fdc-2cd9-4d36-b3a7-6c6c1c4f4ef0"};
  auto tr = format()->translate(message(json::object(), {"urn:vcloud:right:0b8a5fdc-2cd9-4d36-b3a7-6c6c1c4f4ef0"}));
  EXPECT_EQ(tr.kind, Translation::Kind::forward) << tr.error;
  EXPECT_FALSE(tr.vcd_checks);
  tr = format()->translate(message(json::object(), {"urn:vcloud:right:other"}));
  EXPECT_EQ(tr.answer.status, 403);
}

TEST(VcdChecks, UrnIdIsTheLastPart) {
  EXPECT_EQ(urn_id("urn:vcloud:org:1234-ab"), "1234-ab");
  EXPECT_EQ(urn_id("1234-ab"), "1234-ab");
  EXPECT_EQ(urn_id("urn:"), "");
  // With the type's prefix (org_id, user_id): a URN of another type stays as it came.
  EXPECT_EQ(urn_id("urn:vcloud:org:1234-ab", "urn:vcloud:org:"), "1234-ab");
  EXPECT_EQ(urn_id("urn:vcloud:user:1234-ab", "urn:vcloud:org:"), "urn:vcloud:user:1234-ab");
}

TEST(VcdChecks, ARefusalIsVcdsErrorDocument) {
  auto r = vcd_error_response(403, "ACCESS_TO_RESOURCE_IS_FORBIDDEN", "the user lacks the right \"X\"");
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.content_type, "application/json");
  auto j = json::parse(r.body);
  EXPECT_EQ(j["majorErrorCode"], 403);
  EXPECT_EQ(j["message"], "the user lacks the right \"X\"");
}

}  // namespace
}  // namespace warren::forward
