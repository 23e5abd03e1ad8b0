// One client connection of the HTTP server (http/wire_connection.h) over a socketpair on a real
// event loop, driven by a script: what the client sends (in pieces), reads, half-closes or
// closes; what the routes do with each request handed over (answer at once or later, in any
// order, stream, answer twice); what the server does to the connection (close after what is
// owed, close when idle, cut); and loop passes. At the end every request is answered, the client
// half-closes and the loop runs until the connection closes. What must hold whatever the script:
//   - answers reach the client in request order, each at most once;
//   - nothing follows an answer that says "Connection: close";
//   - no more than kMaxInFlight requests are handed over and unanswered;
//   - none is handed over behind an answer given alone (HTTP/1.0, answer_alone) before it is over;
//   - on_closed comes once, and the connection closes once the client has sent all it will;
//   - unless it was cut (by the server, or a client that left or has gone with a stream owed),
//     every request handed over is answered before the connection closes;
//   - its share of the worker's http.max_output_buffer is given back whole when it closes.
//
// The script: byte 0 sets the mode (bit 0: each request answered as it is handed over; bit 1:
// http.request_timeout 0, so a request not whole in one pass is a 408; bit 2:
// http.idle_connection_timeout 0, idle closes and write time-outs at once; bit 3: small limits;
// bit 4: every request given alone, as a route that may stream gives it; bit 5: the worker's
// http.max_output_buffer, 4 KiB, held full by other connections, so that any unsent answer
// stops reading until it goes),
// then one op per byte (op % 10) with its argument bytes.
#include <event2/event.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fuzz.h"
#include "http/wire_connection.h"
#include "loop.h"

using namespace warren;
using http::WireConnection;

namespace {

constexpr int kStatuses[] = {200, 204, 304, 400, 404, 500, 503, 201};
constexpr size_t kFinalPasses = 20000;

class Script {
 public:
  explicit Script(std::string_view in) : in_(in) {}
  bool done() const { return in_.empty(); }
  uint8_t byte() {
    if (in_.empty()) return 0;
    const uint8_t b = static_cast<uint8_t>(in_[0]);
    in_.remove_prefix(1);
    return b;
  }
  std::string_view bytes(size_t n) {
    const std::string_view out = in_.substr(0, n);
    in_.remove_prefix(out.size());
    return out;
  }

 private:
  std::string_view in_;
};

struct Harness final : WireConnection::Owner {
  enum class State { owed, streaming, done };
  struct Request {
    uint64_t seq = 0;
    State state = State::owed;
    bool http10 = false;
    bool alone = false;
  };

  Loop loop;
  Fd client;
  std::unique_ptr<WireConnection> conn;
  std::vector<Request> requests;  // handed over, in order
  bool answer_at_once = false;
  bool all_alone = false;
  bool closed = false;
  bool cut = false;          // answers may be lost: the server cut, or the client went
  bool client_shut = false;  // the client sent all it will
  bool client_gone = false;  // the client closed its socket
  bool client_eof = false;   // the client read the connection's end
  std::optional<uint64_t> ends_connection;  // an HTTP/1.0 stream: the last answer
  std::string to_send;  // what the client has yet to write
  std::string got;      // what the client has read

  void on_request(WireConnection& c, uint64_t seq, http::WireRequest&& r) override {
    if (&c != conn.get() || closed) abort();
    if (!requests.empty() && seq <= requests.back().seq) abort();  // handed over in order
    for (const Request& q : requests)
      if (q.alone && q.state != State::done) abort();  // read behind an answer given alone
    requests.push_back({seq, State::owed, r.http_minor == 0, r.http_minor == 0 || all_alone});
    if (all_alone) c.answer_alone(seq);
    size_t unanswered = 0;
    for (const Request& q : requests) unanswered += q.state != State::done;
    if (unanswered > WireConnection::kMaxInFlight) abort();
    if (answer_at_once) reply(requests.size() - 1, 0, 0);
  }
  void on_refused(WireConnection&, const http::RequestReader& reader) override {
    const int s = reader.refused_status();
    if (s != 400 && s != 413 && s != 431 && s != 505) abort();
  }
  void on_request_timeout(WireConnection&) override {}
  void on_output_full(WireConnection&) override {}
  void on_closed(WireConnection&) override {
    if (closed) abort();  // once
    closed = true;
  }

  Request* pick(uint8_t b) { return requests.empty() ? nullptr : &requests[b % requests.size()]; }

  void reply(size_t index, uint8_t how, uint8_t length) {
    Request& q = requests[index];
    const int status = kStatuses[how % std::size(kStatuses)];
    // 204 and 304 have no Content-Length: a body would break the framing (the routes give none).
    const std::string body(status == 204 || status == 304 ? 0 : length, 'b');
    // Answered twice (the second must be dropped), or a stream answered as a whole: both ignored.
    conn->reply(q.seq, {status, "text/plain", {{"X-Seq", std::to_string(q.seq)}}, body});
    if (q.state == State::owed) q.state = State::done;
  }

  void stream_start(Request& q) {
    conn->stream_start(q.seq, {200, "text/event-stream", {{"X-Seq", std::to_string(q.seq)}}, ""});
    if (q.state != State::owed) return;
    q.state = State::streaming;
    if (q.http10 && !ends_connection) ends_connection = q.seq;
    // A stream for a client that has gone is cut, and what is after it.
    cut = cut || client_shut;
  }

  void stream_end(Request& q) {
    conn->stream_end(q.seq);
    if (q.state == State::streaming) q.state = State::done;
  }

  void client_send() {
    while (!to_send.empty() && !client_shut && !client_gone) {
      const ssize_t n = send(client.get(), to_send.data(), to_send.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n <= 0) return;  // full (the server reads no more, or later), or closed
      to_send.erase(0, static_cast<size_t>(n));
    }
  }

  // True when something was read.
  bool client_read() {
    if (client_gone || client_eof) return false;
    char buf[65536];
    const ssize_t n = recv(client.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) client_eof = true;
    if (n <= 0) return false;
    got.append(buf, static_cast<size_t>(n));
    return true;
  }

  void pass() {
    client_send();
    event_base_loop(loop.base(), EVLOOP_NONBLOCK);
  }

  void run(Script& s) {
    while (!s.done()) {
      const uint8_t op = s.byte() % 10;
      if (op == 0) {
        to_send.append(s.bytes(s.byte() + 1u));
        client_send();
      } else if (op == 1) {
        pass();
      } else if (op == 2) {
        while (client_read()) {
        }
      } else if (op == 7) {
        client_send();
        shutdown(client.get(), SHUT_WR);
        client_shut = true;
        for (const Request& q : requests) cut = cut || q.state == State::streaming;
      } else if (op == 9) {
        client = Fd();
        client_gone = cut = true;
        return;
      } else if (closed) {
        s.byte();  // the server's side is over: nothing more to do on it
      } else if (op == 3) {
        const uint8_t which = s.byte(), how = s.byte(), length = s.byte();
        if (!requests.empty()) reply(which % requests.size(), how, length);
      } else if (op == 4) {
        if (Request* q = pick(s.byte())) stream_start(*q);
      } else if (op == 5) {
        const uint8_t which = s.byte(), length = s.byte();
        if (Request* q = pick(which)) conn->stream_write(q->seq, std::string(length, 'd'));
      } else if (op == 6) {
        if (Request* q = pick(s.byte())) stream_end(*q);
      } else if (op == 8) {
        const uint8_t what = s.byte() % 3;
        if (what == 0) conn->close_after_owed();
        if (what == 1) conn->close_when_idle();
        if (what == 2) {
          conn->close();
          cut = true;
        }
      }
    }
  }

  // Everything answered, the client done sending: the connection must answer and close.
  void finish() {
    answer_at_once = true;  // those handed over from now on
    if (!closed) {
      for (size_t i = 0; i < requests.size(); ++i) {
        if (requests[i].state == State::owed) reply(i, 0, 3);
        if (requests[i].state == State::streaming) stream_end(requests[i]);
      }
    }
    if (!client_gone && !client_shut) {
      client_send();
      shutdown(client.get(), SHUT_WR);
      client_shut = true;
    }
    for (size_t i = 0; i < kFinalPasses && !(closed && (client_eof || client_gone)); ++i) {
      pass();
      while (client_read()) {
      }
    }
    if (!closed) abort();  // the client sent all it will and is owed nothing: the connection hangs
  }

  void check() const {
    if (client_gone) return;
    // The answers' numbers, in the order they came.
    std::vector<uint64_t> seqs;
    constexpr std::string_view kSeq = "\r\nX-Seq: ";
    for (size_t at = got.find(kSeq); at != std::string::npos; at = got.find(kSeq, at + 1))
      seqs.push_back(std::strtoull(got.c_str() + at + kSeq.size(), nullptr, 10));
    // In order, once each: the first of those handed over.
    if (seqs.size() > requests.size()) abort();
    for (size_t i = 0; i < seqs.size(); ++i)
      if (seqs[i] != requests[i].seq) abort();
    if (!cut && seqs.size() != requests.size()) abort();  // a request handed over, never answered
    // An HTTP/1.0 stream is the last answer, and says so.
    if (ends_connection && std::find(seqs.begin(), seqs.end(), *ends_connection) != seqs.end()) {
      if (seqs.back() != *ends_connection) abort();
      const size_t at = got.rfind(kSeq);
      if (got.find("\r\nConnection: close\r\n", at) > got.find("\r\n\r\n", at)) abort();
    }
    // Nothing after an answer that closes: no status line (a refusal's detail may say HTTP/1.1).
    const size_t close = got.find("\r\nConnection: close\r\n");
    if (close == std::string::npos) return;
    constexpr std::string_view kStatusLine = "HTTP/1.1 ";
    for (size_t at = got.find(kStatusLine, close); at != std::string::npos; at = got.find(kStatusLine, at + 1))
      if (at + kStatusLine.size() < got.size() && std::isdigit(static_cast<unsigned char>(got[at + kStatusLine.size()])))
        abort();
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Script script(fuzz::as_text(data, size));
  const uint8_t mode = script.byte();
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) abort();
  Harness h;
  h.client = Fd(sv[1]);
  h.answer_at_once = mode & 1;
  h.all_alone = mode & 16;
  http::WireLimits limits = (mode & 8) ? http::WireLimits{128, 64} : http::WireLimits{1024, 4096};
  http::ByteBudget unsent(4096);
  const size_t others = (mode & 32) ? unsent.limit() : 0;
  unsent.hold(others);
  limits.answers = &unsent;
  const timeval never{3600, 0}, now{0, 0};
  const http::WireTimeouts timeouts{(mode & 2) ? now : never, (mode & 4) ? now : never};
  // An idle clock of 0 cuts a client that does not take our bytes at once.
  h.cut = mode & 4;
  h.conn = std::make_unique<WireConnection>(h.loop, Fd(sv[0]), limits, timeouts, h);
  h.run(script);
  h.finish();
  if (unsent.held() != others) abort();  // closed: what it held is given back
  h.check();
  h.conn.reset();
  return 0;
}
