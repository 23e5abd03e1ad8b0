#include "http/wire_connection.h"

#include <event2/event.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace warren::http {
namespace {

// A WireConnection on one end of a socketpair, the test as its client on the other.
class WireConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    client_ = Fd(sv[1]);
    server_fd_ = Fd(sv[0]);
  }

  using Handler = std::function<void(WireConnection&, uint64_t seq, WireRequest&&)>;

  // The server side as the test sees it: requests to `handler`, the rest noted.
  struct Owner final : WireConnection::Owner {
    WireConnectionTest* test;
    Handler handler;
    void on_request(WireConnection& c, uint64_t seq, WireRequest&& r) override { handler(c, seq, std::move(r)); }
    void on_refused(WireConnection&, const RequestReader& reader) override { test->refused_ = reader.refused_status(); }
    void on_request_timeout(WireConnection&) override { test->refused_ = 408; }
    void on_output_full(WireConnection&) override { ++test->output_full_; }
    void on_closed(WireConnection&) override { test->closed_ = true; }
  };

  void start(Handler handler, WireLimits limits = {1024, 1 << 20},
             WireTimeouts timeouts = {{5, 0}, {5, 0}}) {
    owner_.test = this;
    owner_.handler = std::move(handler);
    conn_ = std::make_unique<WireConnection>(loop_, std::move(server_fd_), limits, timeouts, owner_);
  }

  void send_text(const std::string& text) {
    ASSERT_EQ(send(client_.get(), text.data(), text.size(), MSG_NOSIGNAL), static_cast<ssize_t>(text.size()))
        << "the server closed";
  }

  // Runs the loop and reads what the client gets until `done` holds (or 2 s pass, or EOF).
  template <class Done>
  std::string receive(Done done) {
    std::string got;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    evutil_make_socket_nonblocking(client_.get());
    while (!done(got) && std::chrono::steady_clock::now() < deadline) {
      event_base_loop(loop_.base(), EVLOOP_NONBLOCK);
      char buf[65536];
      const ssize_t n = read(client_.get(), buf, sizeof buf);
      if (n == 0) break;
      if (n > 0) got.append(buf, static_cast<size_t>(n));
    }
    return got;
  }

  static size_t count(const std::string& s, const std::string& what) {
    size_t n = 0;
    for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
    return n;
  }

  Loop loop_;
  Fd client_, server_fd_;
  Owner owner_;
  std::unique_ptr<WireConnection> conn_;
  bool closed_ = false;
  int refused_ = 0;
  int output_full_ = 0;
};

TEST_F(WireConnectionTest, PipelinedRequestsAreAnsweredInOrderWhateverOrderTheAnswersCome) {
  start([this](WireConnection& c, uint64_t seq, WireRequest&& r) {
    WireReply reply{204, "", {{"X-Target", r.target}}, ""};
    if (r.target == "/2") return c.reply(seq, reply);  // at once
    loop_.defer([&c, seq, reply] { c.reply(seq, reply); });  // a pass later
  });
  send_text("POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\naPOST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
            "GET /3 HTTP/1.1\r\nHost: x\r\n\r\n");
  const std::string got = receive([](const std::string& s) { return count(s, "HTTP/1.1 204") == 3; });
  ASSERT_EQ(count(got, "HTTP/1.1 204"), 3u) << got;
  EXPECT_LT(got.find("X-Target: /1"), got.find("X-Target: /2"));
  EXPECT_LT(got.find("X-Target: /2"), got.find("X-Target: /3"));
  EXPECT_FALSE(closed_);
}

TEST_F(WireConnectionTest, ARefusedRequestIsAnsweredAndTheConnectionCloses) {
  bool handled = false;
  start([&handled](WireConnection&, uint64_t, WireRequest&&) { handled = true; }, {64, 1024});
  send_text("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(200, 'x') + "\r\n\r\n");
  const std::string got = receive([this](const std::string&) { return closed_; });
  EXPECT_EQ(got.rfind("HTTP/1.1 431 ", 0), 0u) << got;
  EXPECT_NE(got.find("Connection: close"), std::string::npos);
  EXPECT_NE(got.find("http.max_header_size (64)"), std::string::npos);
  EXPECT_TRUE(closed_);
  EXPECT_FALSE(handled);
  EXPECT_EQ(refused_, 431);
}

TEST_F(WireConnectionTest, ConnectionCloseIsHonouredAfterTheAnswer) {
  start([](WireConnection& c, uint64_t seq, WireRequest&&) { c.reply(seq, {200, "text/plain", {}, "bye"}); });
  send_text("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /ignored HTTP/1.1\r\nHost: x\r\n\r\n");
  const std::string got = receive([this](const std::string&) { return closed_; });
  EXPECT_EQ(count(got, "HTTP/1.1 200"), 1u) << got;
  EXPECT_NE(got.find("Connection: close\r\n\r\nbye"), std::string::npos) << got;
  EXPECT_TRUE(closed_);
}

TEST_F(WireConnectionTest, AnAnswerLargerThanTheSocketTakesGoesOutWhole) {
  const std::string big(4 << 20, 'z');
  start([&big](WireConnection& c, uint64_t seq, WireRequest&&) { c.reply(seq, {200, "", {}, big}); });
  send_text("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  const std::string got = receive([&big](const std::string& s) { return s.size() >= big.size(); });
  EXPECT_EQ(got.size() - got.find("\r\n\r\n") - 4, big.size());
  EXPECT_FALSE(closed_);
}

TEST_F(WireConnectionTest, AnswersUnsentOverTheWorkersOutputBufferStopReadingUntilTheyGo) {
  // Other connections hold the worker's http.max_output_buffer full: this one, once it holds
  // an answer it could not send, reads no request until the client takes it.
  ByteBudget unsent(1 << 20);
  unsent.hold(unsent.limit());
  const std::string big(1 << 20, 'z');
  int handled = 0;
  start([&](WireConnection& c, uint64_t seq, WireRequest&&) {
    ++handled;
    c.reply(seq, {200, "", {}, big});
  }, {1024, 1 << 20, nullptr, &unsent});
  send_text("GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n"
            "GET /3 HTTP/1.1\r\nHost: x\r\n\r\n");
  for (int i = 0; i < 20; ++i) event_base_loop(loop_.base(), EVLOOP_NONBLOCK);
  EXPECT_EQ(handled, 1);
  EXPECT_EQ(output_full_, 1);
  EXPECT_GT(unsent.held(), unsent.limit());
  // The client reads: each answer goes, and the next request is read.
  const std::string got = receive([&](const std::string& s) { return s.size() >= 3 * big.size(); });
  EXPECT_EQ(count(got, "HTTP/1.1 200 "), 3u);
  EXPECT_EQ(handled, 3);
  EXPECT_EQ(unsent.held(), unsent.limit());  // all sent: its share is given back
  // Closed with an answer unsent: given back too.
  send_text("GET /4 HTTP/1.1\r\nHost: x\r\n\r\n");
  for (int i = 0; i < 20 && handled < 4; ++i) event_base_loop(loop_.base(), EVLOOP_NONBLOCK);
  EXPECT_GT(unsent.held(), unsent.limit());
  conn_.reset();
  EXPECT_EQ(unsent.held(), unsent.limit());
}

TEST_F(WireConnectionTest, AServerCloseAnswersEveryRequestReadAndOnlyTheLastAnswerCloses) {
  // A worker that stops: the requests read (maybe published) are all answered, in order; the
  // last answer says Connection: close; nothing sent after is read, so the client may retry it.
  std::vector<uint64_t> owed;
  start([&owed](WireConnection&, uint64_t seq, WireRequest&&) { owed.push_back(seq); });
  send_text("POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
            "POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
            "POST /3 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  receive([&owed](const std::string&) { return owed.size() == 3; });
  ASSERT_EQ(owed.size(), 3u);
  conn_->close_after_owed();
  conn_->reply(owed[0], {204, "", {{"X-N", "1"}}, ""});
  std::string got = receive([](const std::string& s) { return s.find("\r\n\r\n") != std::string::npos; });
  send_text("POST /late HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  conn_->reply(owed[2], {204, "", {{"X-N", "3"}}, ""});
  got += receive([](const std::string& s) { return s.find("\r\n\r\n") != std::string::npos; });
  conn_->reply(owed[1], {204, "", {{"X-N", "2"}}, ""});
  got += receive([this](const std::string&) { return closed_; });
  EXPECT_EQ(count(got, "HTTP/1.1 204"), 3u) << got;
  EXPECT_EQ(count(got, "Connection: close"), 1u) << got;
  EXPECT_NE(got.find("X-N: 3\r\nConnection: close\r\n\r\n"), std::string::npos) << got;
  EXPECT_LT(got.find("X-N: 1"), got.find("X-N: 2"));
  EXPECT_TRUE(closed_);
  EXPECT_EQ(owed.size(), 3u) << "a request sent after the close was read";
}

TEST_F(WireConnectionTest, AServerCloseWithNothingOwedMakesTheNextRequestTheLast) {
  size_t requests = 0;
  start([&requests](WireConnection& c, uint64_t seq, WireRequest&&) {
    ++requests;
    c.reply(seq, {200, "text/plain", {}, "ok"});
  });
  conn_->close_after_owed();
  send_text("GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n");
  const std::string got = receive([this](const std::string&) { return closed_; });
  EXPECT_EQ(count(got, "HTTP/1.1 200"), 1u) << got;
  EXPECT_NE(got.find("Connection: close\r\n\r\nok"), std::string::npos) << got;
  EXPECT_EQ(requests, 1u);
  EXPECT_TRUE(closed_);
}

TEST_F(WireConnectionTest, AnHttp10StreamEndsTheConnectionAndNothingAfterItIsRead) {
  size_t requests = 0;
  start([this, &requests](WireConnection& c, uint64_t seq, WireRequest&&) {
    ++requests;
    loop_.defer([&c, seq] {  // once what the client sent is all read
      c.stream_start(seq, {200, "text/event-stream", {}, ""});
      c.stream_write(seq, "data: 1\n\n");
      c.stream_end(seq);
    });
  });
  send_text("GET /s HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /t HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  const std::string got = receive([this](const std::string&) { return closed_; });
  EXPECT_EQ(count(got, "HTTP/1.1 200"), 1u) << got;
  EXPECT_NE(got.find("Connection: close\r\n\r\ndata: 1\n\n"), std::string::npos) << got;
  EXPECT_EQ(requests, 1u);
  EXPECT_TRUE(closed_);
}

TEST_F(WireConnectionTest, HeadGetsTheHeadersWithoutTheBody) {
  start([](WireConnection& c, uint64_t seq, WireRequest&&) { c.reply(seq, {200, "text/plain", {}, "body"}); });
  send_text("HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
  const std::string got = receive([](const std::string& s) { return s.find("body") != std::string::npos; });
  EXPECT_EQ(count(got, "Content-Length: 4"), 2u) << got;
  EXPECT_EQ(count(got, "body"), 1u) << got;
}

TEST_F(WireConnectionTest, ARequestNotWholeInTimeIs408AndClosed) {
  bool handled = false;
  start([&handled](WireConnection&, uint64_t, WireRequest&&) { handled = true; }, {1024, 1024},
        {{0, 200000}, {5, 0}});
  send_text("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ");
  const std::string got = receive([this](const std::string&) { return closed_; });
  EXPECT_EQ(got.rfind("HTTP/1.1 408 Request Timeout\r\n", 0), 0u) << got;
  EXPECT_NE(got.find("http.request_timeout (0.2 s)"), std::string::npos) << got;
  EXPECT_EQ(refused_, 408);
  EXPECT_FALSE(handled);
}

TEST_F(WireConnectionTest, A408BehindAnOwedAnswerComesAfterIt) {
  std::vector<uint64_t> owed;
  start([&owed](WireConnection&, uint64_t seq, WireRequest&&) { owed.push_back(seq); }, {1024, 1024},
        {{0, 200000}, {5, 0}});
  send_text("POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nX-Slow: ");
  receive([this](const std::string&) { return refused_ == 408; });
  ASSERT_EQ(owed.size(), 1u);
  conn_->reply(owed[0], {204, "", {}, ""});
  const std::string got = receive([this](const std::string&) { return closed_; });
  EXPECT_EQ(got.rfind("HTTP/1.1 204 ", 0), 0u) << got;
  EXPECT_NE(got.find("\r\n\r\nHTTP/1.1 408 "), std::string::npos) << got;
  EXPECT_EQ(count(got, "Connection: close"), 1u) << got;
  EXPECT_TRUE(closed_);
}

TEST_F(WireConnectionTest, AnIdleConnectionIsClosedWithoutAWordButNotWhileAnAnswerIsOwed) {
  uint64_t owed = 0;
  start([&owed](WireConnection&, uint64_t seq, WireRequest&&) { owed = seq + 1; }, {1024, 1024},
        {{5, 0}, {0, 200000}});
  send_text("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  receive([](const std::string&) { return false; });  // 2 s: ten idle timeouts
  EXPECT_FALSE(closed_) << "closed while an answer was owed";
  conn_->reply(owed - 1, {204, "", {}, ""});
  const std::string got = receive([this](const std::string&) { return closed_; });
  EXPECT_EQ(got.rfind("HTTP/1.1 204 ", 0), 0u) << got;
  EXPECT_TRUE(closed_);
  EXPECT_EQ(got.find("408"), std::string::npos) << got;
}

TEST_F(WireConnectionTest, AStreamIsChunkedAndOthersWaitBehindIt) {
  start([](WireConnection& c, uint64_t seq, WireRequest&& r) {
    if (r.target != "/stream") return c.reply(seq, {200, "", {}, "after"});
    c.stream_start(seq, {200, "text/event-stream", {}, ""});
    c.stream_write(seq, "data: 1\n\n");
    c.stream_end(seq);
  });
  send_text("GET /stream HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n");
  const std::string got = receive([](const std::string& s) { return s.find("after") != std::string::npos; });
  EXPECT_NE(got.find("Transfer-Encoding: chunked\r\n"), std::string::npos) << got;
  EXPECT_NE(got.find("\r\n\r\n9\r\ndata: 1\n\n\r\n0\r\n\r\nHTTP/1.1 200 "), std::string::npos) << got;
}

TEST_F(WireConnectionTest, NothingBehindAnAnswerGivenAloneIsReadBeforeItIsOver) {
  // A stream may be cut, and its connection with it: a request read behind it would have been
  // handed over (maybe published) and never answered. Once the stream is over, it is read.
  std::vector<std::string> targets;
  uint64_t stream = 0;
  start([&](WireConnection& c, uint64_t seq, WireRequest&& r) {
    targets.push_back(r.target);
    if (r.target != "/stream") return c.reply(seq, {200, "", {}, "after"});
    stream = seq;
    c.answer_alone(seq);
    c.stream_start(seq, {200, "text/event-stream", {}, ""});
  });
  send_text("GET /stream HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string got = receive([](const std::string& s) { return s.find("\r\n\r\n") != std::string::npos; });
  for (int pass = 0; pass < 10; ++pass) event_base_loop(loop_.base(), EVLOOP_NONBLOCK);
  EXPECT_EQ(targets.size(), 1u) << "a request behind the stream was read";
  conn_->stream_end(stream);
  got += receive([](const std::string& s) { return s.find("after") != std::string::npos; });
  EXPECT_EQ(targets.size(), 2u);
  EXPECT_NE(got.find("0\r\n\r\nHTTP/1.1 200 "), std::string::npos) << got;
}

TEST_F(WireConnectionTest, AClientThatShutsItsSideStillGetsWhatItIsOwed) {
  start([this](WireConnection& c, uint64_t seq, WireRequest&&) {
    loop_.defer([&c, seq] { c.reply(seq, {204, "", {}, ""}); });
  });
  send_text("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx");
  shutdown(client_.get(), SHUT_WR);
  const std::string got = receive([this](const std::string&) { return closed_; });
  EXPECT_EQ(got.rfind("HTTP/1.1 204 ", 0), 0u) << got;
  EXPECT_TRUE(closed_);
}

TEST_F(WireConnectionTest, AnExpectedBodyIsAskedForWithContinue) {
  start([](WireConnection& c, uint64_t seq, WireRequest&& r) { c.reply(seq, {200, "", {}, r.body}); });
  send_text("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
  std::string got = receive([](const std::string& s) { return s.find("\r\n\r\n") != std::string::npos; });
  EXPECT_EQ(got, "HTTP/1.1 100 Continue\r\n\r\n");
  send_text("abc");
  got = receive([](const std::string& s) { return s.find("abc") != std::string::npos; });
  EXPECT_EQ(got.rfind("HTTP/1.1 200 ", 0), 0u) << got;
}

}  // namespace
}  // namespace warren::http
