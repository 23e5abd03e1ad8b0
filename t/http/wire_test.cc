#include "http/wire.h"

#include <gtest/gtest.h>

#include <string>

namespace warren::http {
namespace {

constexpr WireLimits kLimits{1024, 64};

// Feeds `bytes` `step` at a time, as reads of that size would deliver them, until the reader
// stops; what it consumed.
size_t feed_in_steps(RequestReader& reader, std::string_view bytes, size_t step) {
  size_t used = 0;
  while (used < bytes.size() && reader.state() == RequestReader::State::reading) {
    const size_t n = reader.feed(bytes.substr(used, std::min(step, bytes.size() - used)));
    used += n;
    if (n == 0) break;
  }
  return used;
}

TEST(RequestReader, ReadsAPublishWithItsBodyWhateverTheReadSizes) {
  const std::string wire =
      "POST /%2f/amq.default/q?x=1 HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\n"
      "Authorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\nContent-Length: 5\r\n\r\nhello";
  for (size_t step : {wire.size(), size_t{1}, size_t{7}}) {
    RequestReader reader(kLimits);
    EXPECT_EQ(feed_in_steps(reader, wire, step), wire.size()) << step;
    ASSERT_EQ(reader.state(), RequestReader::State::complete) << step;
    const WireRequest r = reader.take();
    EXPECT_EQ(r.method, "POST");
    EXPECT_EQ(r.target, "/%2f/amq.default/q?x=1");
    EXPECT_EQ(r.body, "hello");
    EXPECT_EQ(r.header("content-type"), "text/plain");
    EXPECT_EQ(r.header("AUTHORIZATION"), "Basic Z3Vlc3Q6Z3Vlc3Q=");
    EXPECT_EQ(r.header("X-Missing"), "");
    EXPECT_EQ(r.headers.size(), 4u);
    EXPECT_TRUE(r.keep_alive);
  }
}

TEST(RequestReader, StopsAfterEachPipelinedRequest) {
  const std::string first = "GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n";
  const std::string second = "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
  const std::string wire = first + second;
  RequestReader reader(kLimits);
  const size_t used = reader.feed(wire);
  ASSERT_EQ(reader.state(), RequestReader::State::complete);
  EXPECT_EQ(reader.take().target, "/healthz");
  EXPECT_EQ(reader.feed(std::string_view(wire).substr(used)), wire.size() - used);
  ASSERT_EQ(reader.state(), RequestReader::State::complete);
  const WireRequest r = reader.take();
  EXPECT_EQ(r.target, "/a");
  EXPECT_EQ(r.body, "abcde");
}

TEST(RequestReader, KeepAliveAsHttpSaysIt) {
  struct Case { const char* wire; bool keep_alive; };
  for (const Case& c : {Case{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", true},
                        Case{"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false},
                        Case{"GET / HTTP/1.0\r\n\r\n", false},
                        Case{"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
                        Case{"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", false}}) {
    RequestReader reader(kLimits);
    reader.feed(c.wire);
    ASSERT_EQ(reader.state(), RequestReader::State::complete) << c.wire;
    EXPECT_EQ(reader.take().keep_alive, c.keep_alive) << c.wire;
  }
}

TEST(RequestReader, HeadersOverTheLimitAre431AsTheyArrive) {
  RequestReader reader(kLimits);
  const std::string wire = "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(2000, 'x') + "\r\n\r\n";
  const size_t used = reader.feed(wire);
  EXPECT_EQ(reader.state(), RequestReader::State::refused);
  EXPECT_EQ(reader.refused_status(), 431);
  EXPECT_NE(reader.refused_reason().find("http.max_header_size (1024)"), std::string::npos);
  EXPECT_LT(used, wire.size());
}

TEST(RequestReader, ABodyOverTheLimitIs413BeforeItIsRead) {
  RequestReader reader(kLimits);
  const std::string head = "POST /q HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n";
  EXPECT_LE(reader.feed(head + "xxxx"), head.size());  // not a byte of the body
  EXPECT_EQ(reader.state(), RequestReader::State::refused);
  EXPECT_EQ(reader.refused_status(), 413);

  RequestReader chunked(kLimits);
  chunked.feed("POST /q HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n" + std::string(64, 'x') +
               "\r\n1\r\nx\r\n0\r\n\r\n");
  EXPECT_EQ(chunked.state(), RequestReader::State::refused);
  EXPECT_EQ(chunked.refused_status(), 413);
}

TEST(RequestReader, AmbiguousFramingIs400) {
  for (const char* wire : {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
                           "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                           "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc",
                           "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc",
                           "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"}) {
    RequestReader reader(kLimits);
    reader.feed(wire);
    EXPECT_EQ(reader.state(), RequestReader::State::refused) << wire;
    EXPECT_EQ(reader.refused_status(), 400) << wire;
  }
}

TEST(RequestReader, AFoldedHeaderLineIs400WhereverTheReadEnds) {
  const std::string wire = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n";
  for (size_t step : {wire.size(), size_t{1}, size_t{3}}) {
    RequestReader reader(kLimits);
    feed_in_steps(reader, wire, step);
    EXPECT_EQ(reader.state(), RequestReader::State::refused) << step;
    EXPECT_TRUE(reader.refused_framing()) << step;
  }
  // A body may hold "\n " as it likes.
  RequestReader reader(kLimits);
  reader.feed("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\na\n b");
  EXPECT_EQ(reader.state(), RequestReader::State::complete);
}

TEST(RequestReader, HostileBytesAre400NeverACrash) {
  for (std::string wire : {std::string("\x00\x01\x02 / HTTP/1.1\r\nHost: x\r\n\r\n", 18),
                           std::string("GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n"), std::string("GET / HTTP/1.1\r\nHost: x\r\nBad Name: x\r\n\r\n"),
                           std::string("GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n")}) {
    RequestReader reader(kLimits);
    reader.feed(wire);
    EXPECT_EQ(reader.state(), RequestReader::State::refused) << wire;
    EXPECT_EQ(reader.refused_status(), 400) << wire;
  }
  for (const char* hosts : {"", "Host: a\r\nHost: b\r\n"}) {  // RFC 9112 3.2: exactly one
    RequestReader reader(kLimits);
    reader.feed(std::string("GET / HTTP/1.1\r\n") + hosts + "\r\n");
    EXPECT_EQ(reader.refused_status(), 400) << hosts;
  }
  RequestReader reader(kLimits);
  reader.feed("GET / HTTP/9.9\r\n\r\n");
  EXPECT_EQ(reader.refused_status(), 505);
}

// http.max_body_buffer: the body bytes every reader of a worker holds, counted as they arrive.
TEST(RequestReader, ABodyWithNoRoomInTheWorkersBudgetIs503) {
  ByteBudget budget(100);
  const WireLimits limits{1024, 64, &budget};
  const auto head = [](size_t length) {
    return "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: " + std::to_string(length) + "\r\n\r\n";
  };
  RequestReader first(limits), second(limits), third(limits);
  first.feed(head(60) + std::string(50, 'a'));  // 50 held, 10 to come
  EXPECT_EQ(budget.held(), 50u);
  second.feed(head(60));  // 50 + 60 > 100: refused before a byte of its body
  ASSERT_EQ(second.state(), RequestReader::State::refused);
  EXPECT_EQ(second.refused_status(), 503);
  EXPECT_NE(second.refused_reason().find("http.max_body_buffer (100 bytes)"), std::string::npos);
  third.feed(head(40) + std::string(40, 'c'));  // fits
  ASSERT_EQ(third.state(), RequestReader::State::complete);
  EXPECT_EQ(budget.held(), 90u);
  EXPECT_EQ(third.take().body, std::string(40, 'c'));  // handed over: out of the budget
  EXPECT_EQ(budget.held(), 50u);
  // Heads let in together are held to the budget as their bodies come.
  RequestReader chunked(limits);
  chunked.feed("POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3c\r\n" + std::string(60, 'x'));
  ASSERT_EQ(chunked.state(), RequestReader::State::refused);
  EXPECT_EQ(chunked.refused_status(), 503);
  EXPECT_EQ(budget.held(), 50u);
  {
    RequestReader gone(limits);
    gone.feed(head(40) + std::string(30, 'g'));
    EXPECT_EQ(budget.held(), 80u);
  }  // a connection closed mid-body gives its room back
  EXPECT_EQ(budget.held(), 50u);
  first.feed(std::string(10, 'a'));
  ASSERT_EQ(first.state(), RequestReader::State::complete);
  EXPECT_EQ(first.take().body, std::string(60, 'a'));
  EXPECT_EQ(budget.held(), 0u);
}

}  // namespace
}  // namespace warren::http
