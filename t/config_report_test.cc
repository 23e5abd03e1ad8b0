// config_check.h's ConfigReport, the seam between the loader and the semantic check: a problem
// on a key the file did not give lands on its nearest given parent's line, and the report
// comes out in line order, problems on one line in the order they were found.
#include <gtest/gtest.h>

#include "config_check.h"

namespace warren {
namespace {

TEST(ConfigReport, LineOfFallsBackToTheNearestGivenParent) {
  ConfigReport report("w.yml");
  report.given("forwarders", 4);
  report.given("forwarders[1]", 9);
  report.given("forwarders[1].backend", 12);
  EXPECT_EQ(report.line_of("forwarders[1].backend"), 12);
  EXPECT_EQ(report.line_of("forwarders[1].backend.key"), 12);
  EXPECT_EQ(report.line_of("forwarders[1].retry.max_delay"), 9);
  EXPECT_EQ(report.line_of("forwarders[0].queue"), 4);
  EXPECT_EQ(report.line_of("broker.tls.ca"), 0);  // a default: no line
  EXPECT_TRUE(report.is_given("forwarders[1]"));
  EXPECT_FALSE(report.is_given("forwarders[1].queue"));
}

TEST(ConfigReport, ErrorsComeOutInLineOrderStableWithinALine) {
  ConfigReport report("w.yml");
  report.given("http.ports", 7);
  EXPECT_TRUE(report.ok());
  report.error(9, "b", "second at 9");
  report.error_at("http.ports[1]", "at 7");
  report.error(9, "a", "third at 9");
  report.error_at("rpc.timeout", "no line");
  EXPECT_FALSE(report.ok());
  std::vector<std::string> texts;
  for (const auto& e : std::move(report).take_errors()) texts.push_back(e.text());
  EXPECT_EQ(texts, (std::vector<std::string>{"w.yml: rpc.timeout: no line",
                                             "w.yml:7: http.ports[1]: at 7",
                                             "w.yml:9: b: second at 9", "w.yml:9: a: third at 9"}));
}

}  // namespace
}  // namespace warren
