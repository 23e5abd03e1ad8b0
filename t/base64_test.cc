#include "base64.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace warren {
namespace {

TEST(Base64, RoundTripsEveryLength) {
  std::string data;
  for (int i = 0; i < 40; ++i) {
    EXPECT_EQ(base64_decode(base64_encode(data)), data) << i;
    data += static_cast<char>(i * 37);
  }
}

TEST(Base64, PaddingIsCountedWhereItMayBe) {
  EXPECT_EQ(base64_decode("Zm9vYg=="), "foob");
  EXPECT_EQ(base64_decode("Zm9vYmE="), "fooba");
  EXPECT_EQ(base64_decode(""), "");
  // "====" decoded to bytes out of nothing in one of the two decoders this replaces
  EXPECT_EQ(base64_decode("===="), std::nullopt);
  EXPECT_EQ(base64_decode("Zm9v===="), std::nullopt);
  EXPECT_EQ(base64_decode("Zg=vYmE="), std::nullopt);  // '=' inside
  EXPECT_EQ(base64_decode("Zm9"), std::nullopt);       // not whole quads
  EXPECT_EQ(base64_decode("Zm9*"), std::nullopt);
}

TEST(Base64, WhitespaceAnywhereIsIgnored) {
  EXPECT_EQ(base64_decode(" Zm9v\r\nYmFy \t"), "foobar");
}

TEST(Base64, RoundTripsAndRejectsGarbage) {
  for (std::string s : std::vector<std::string>{"", "a", "ab", "abc", "abcd", std::string("\0\xff\x10", 3)})
    EXPECT_EQ(base64_decode(base64_encode(s)), s);
  EXPECT_EQ(base64_encode("hello"), "aGVsbG8=");
  EXPECT_FALSE(base64_decode("abc"));
  EXPECT_FALSE(base64_decode("ab!="));
}

}  // namespace
}  // namespace warren
