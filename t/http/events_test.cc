#include "http/events.h"

#include <gtest/gtest.h>

namespace warren {
namespace {

TEST(SseFormat, FieldsAndOneDataLinePerBodyLine) {
  EXPECT_EQ(sse_format({"m1", "tick", "a\nb"}), "id: m1\nevent: tick\ndata: a\ndata: b\n\n");
}

TEST(SseFormat, EveryLineBreakKindEndsALine) {
  EXPECT_EQ(sse_format({"", "", "a\r\nb\rc\nd"}), "data: a\ndata: b\ndata: c\ndata: d\n\n");
}

TEST(SseFormat, EmptyBodyAndTrailingBreak) {
  EXPECT_EQ(sse_format({"", "", ""}), "data: \n\n");
  EXPECT_EQ(sse_format({"", "", "x\n"}), "data: x\ndata: \n\n");
}

TEST(SseFormat, IdAndTypeCannotInjectFields) {
  EXPECT_EQ(sse_format({"1\ndata: evil", "t\r\nid: 2", "ok"}), "id: 1\nevent: t\ndata: ok\n\n");
}

}  // namespace
}  // namespace warren
