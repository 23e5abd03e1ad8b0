#include "json.h"

#include <gtest/gtest.h>

namespace warren {
namespace {

using nlohmann::json;

TEST(JsonText, InvalidUtf8IsReplacedNotThrown) {
  // A Basic-auth user name of bytes ff fe: dump() throws type_error 316 on it.
  const json user{{"user", "\xff\xfe"}};
  EXPECT_THROW((void)user.dump(), json::type_error);
  EXPECT_EQ(json_text(user), "{\"user\":\"\xEF\xBF\xBD\xEF\xBF\xBD\"}");
}

TEST(JsonText, EveryKindOfBadSequenceAndKeysToo) {
  // a truncated sequence, an overlong one, a lone continuation byte, a surrogate, in a key
  const json j{{"a\xC3", json::array({"x\xC0\xAFy", "\x80", "\xED\xA0\x80"})}};
  const std::string text = json_text(j);
  // parse() refuses invalid UTF-8: what it reads back is valid text
  const json back = json::parse(text);
  EXPECT_EQ(back.begin().key(), "a\xEF\xBF\xBD");
  for (const auto& s : back.begin().value()) EXPECT_NE(s.get<std::string>().find("\xEF\xBF\xBD"), std::string::npos);
}

TEST(JsonText, ValidTextIsUnchangedAndIndentWorks) {
  const json j{{"name", "caf\xC3\xA9 \xF0\x9F\x90\x87"}, {"n", 7}};
  EXPECT_EQ(json_text(j), j.dump());
  EXPECT_EQ(json_text(j, 2), j.dump(2));
}

}  // namespace
}  // namespace warren

namespace warren {
namespace {

TEST(JsonParse, RefusesWhatNestsDeeperThanTheLimitBeforeBuildingIt) {
  const std::string ok = std::string(kMaxJsonDepth, '[') + std::string(kMaxJsonDepth, ']');
  const std::string deep = std::string(kMaxJsonDepth + 1, '[') + std::string(kMaxJsonDepth + 1, ']');
  EXPECT_FALSE(json_parse(ok).is_discarded());
  EXPECT_TRUE(json_parse(deep).is_discarded());
  EXPECT_TRUE(json_parse(std::string(1000000, '[') + std::string(1000000, ']')).is_discarded());
  EXPECT_TRUE(json_parse("not json").is_discarded());
  // the nested key's string is JSON text and is walked too
  nlohmann::json envelope = {{"oslo.message", deep}};
  EXPECT_FALSE(json_nests_within(json_text(envelope), kMaxJsonDepth, "oslo.message"));
  EXPECT_TRUE(json_nests_within(json_text(envelope), kMaxJsonDepth));
}

// nlohmann stops at a NUL byte and parses what came before it: the rest would be dropped
// unread ({"body":"a"} NUL {"body":"b"} on one batch line was one message).
TEST(JsonParse, ARawNulByteIsNotJson) {
  using namespace std::string_literals;
  EXPECT_TRUE(json_parse("{\"body\":\"a\"}\0{\"body\":\"b\"}"s).is_discarded());
  EXPECT_TRUE(json_parse("1\0junk"s).is_discarded());
  EXPECT_TRUE(json_parse("\0"s).is_discarded());
  EXPECT_EQ(json_parse(R"({"body":"\u0000"})")["body"], "\0"s);
}

TEST(JsonParse, BracketsInsideStringsAreNotNesting) {
  const std::string brackets(1000, '[');
  EXPECT_EQ(json_parse(R"({"body":")" + brackets + R"("})")["body"], brackets);
  // an escaped quote does not end the string; an escaped backslash before the quote does
  EXPECT_EQ(json_parse(R"(["\")" + brackets + R"("])")[0], "\"" + brackets);
  const std::string deep = std::string(kMaxJsonDepth + 1, '[') + std::string(kMaxJsonDepth + 1, ']');
  EXPECT_TRUE(json_parse(R"(["\\",)" + deep + "]").is_discarded());
}

}  // namespace
}  // namespace warren
