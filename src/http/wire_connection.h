// One client connection of warren's HTTP/1.1 server: the socket, one read buffer, the
// RequestReader, and the answers written in request order. Built to cost the kernel as little
// as possible per request (issue 14): read interest stays on (no epoll_ctl per request), an
// answer is written in the loop pass it is given, the answers of one pass go out in one send,
// and write interest is asked for only when the socket is full. Pipelined requests are handed
// over as they are read (up to kMaxInFlight at once, then reading pauses) and answered in order,
// except behind an answer that may end the connection (HTTP/1.0, a stream: answer_alone).
//
// It also keeps the connection's clocks:
//   http.request_timeout          from a request's first byte to its last: else 408, and closed
//                                 (a client trickling a request a byte at a time holds nothing)
//   http.idle_connection_timeout  with no request under way and nothing owed: closed silently,
//                                 as nginx does; and a client that takes none of our bytes for
//                                 that long is cut off
// and its share of the worker's http.max_output_buffer: while the answers clients have not
// taken are over it, a connection that owes an answer or has bytes unsent reads no request until
// they are out (each connection was bounded alone, and 200 clients reading nothing held 100 MiB).
// A refused request (400, 413, 431, 503, 505) is answered and the connection closed; so is a
// request that asked for it (RFC 9112 9.6), after its answer. However the connection comes to
// close, nothing is read after the request that closes it, and every request read before is
// answered, in order, the last answer saying "Connection: close": a request the client sees
// no answer to was never handed over, so it may safely send it again.
#pragma once

#include <sys/time.h>

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "handles.h"
#include "http/wire.h"
#include "loop.h"

namespace warren::http {

struct WireReply {
  int status = 200;
  std::string content_type;  // none when empty
  std::vector<std::pair<std::string, std::string>> headers;
  std::string_view body;  // copied once, into the answer's bytes, by reply()
};

struct WireTimeouts {
  timeval request;
  timeval idle;
};

class WireConnection : NonCopyable {
 public:
  // What the server is told. Each request comes with the number its answer is given with
  // (reply(), now or from a later pass, in any order).
  class Owner {
   public:
    virtual void on_request(WireConnection& conn, uint64_t seq, WireRequest&& request) = 0;
    // A request refused as it was read (answered here, with the reader's error), or one not
    // whole within http.request_timeout (408): for the counters.
    virtual void on_refused(WireConnection& conn, const RequestReader& reader) = 0;
    virtual void on_request_timeout(WireConnection& conn) = 0;
    // It stopped reading: the worker's http.max_output_buffer is full, some of it its own.
    virtual void on_output_full(WireConnection& conn) = 0;
    // The connection is over (the peer left, a write failed, a clock ran out, or it closed
    // after its last answer). The owner frees it through the loop, not in this call.
    virtual void on_closed(WireConnection& conn) = 0;

   protected:
    ~Owner() = default;
  };

  static constexpr size_t kMaxInFlight = 16;
  static constexpr size_t kMaxUnsent = 256 * 1024;  // then reading pauses until the client reads

  WireConnection(Loop& loop, Fd fd, WireLimits limits, WireTimeouts timeouts, Owner& owner);
  ~WireConnection() { count_output(0); }

  void reply(uint64_t seq, WireReply reply);
  // A long answer (Server-Sent Events): the head now, the body as it comes, chunked (HTTP/1.0:
  // as is, and the connection closes at the end).
  void stream_start(uint64_t seq, WireReply head);
  void stream_write(uint64_t seq, std::string_view data);
  void stream_end(uint64_t seq);
  // Nothing pipelined behind this request is read before its answer is over: an answer that
  // may become a stream, which a cut ends with the connection (what was handed over behind it
  // would go unanswered). HTTP/1.0 requests are answered alone anyway.
  void answer_alone(uint64_t seq);
  // Bytes given and not yet taken by the socket.
  size_t pending_output() const;
  // Cuts the connection now: what is owed is dropped. on_closed follows.
  void close() { close_now(); }
  // Reads no request after those owed, answers them and closes after the last; with none
  // owed, the next request read is the last (one on its way as a worker begins to stop, or
  // every one with http.keep_alive off).
  void close_after_owed();
  // Closes it once nothing is under way (now, if nothing is): a worker that stops.
  void close_when_idle();
  // No request under way, nothing owed, nothing unsent.
  bool idle() const;

 private:
  struct Answer {
    uint64_t seq = 0;
    bool ready = false;      // the bytes are in, or a stream's head is
    bool head = false;       // a HEAD request: no body
    bool http10 = false;     // HTTP/1.0: no chunked streams, "Connection: keep-alive" said
    bool alone = false;      // nothing behind it is read before it is over (answer_alone)
    bool streaming = false;  // more bytes will come, until stream_end
    bool says_close = false;   // its head says "Connection: close"
    bool head_out = false;     // its head has gone to out_
    size_t connection_at = 0;  // where in bytes its head says (or would say) Connection
    std::string bytes;         // not yet moved to out_
  };

  static void on_readable(evutil_socket_t, short, void* arg);
  static void on_writable(evutil_socket_t, short what, void* arg);
  static void on_flush(evutil_socket_t, short, void* arg);
  static void on_clock(evutil_socket_t, short, void* arg);
  void read_some();
  bool can_take_more() const;
  // http.max_output_buffer is full and this connection owes answers: it reads no request.
  bool held_back() const;
  // What it counts in http.max_output_buffer: its bytes unsent, and room for each answer owed.
  size_t output_share() const;
  // Its count made `bytes` (output_share(), or 0 once closed).
  void count_output(size_t bytes);
  bool behind_alone() const;
  void update_reading();
  void parse();
  void send_continue();
  // The answer is the last the connection gives.
  bool last(const Answer& a) const { return !reading_ && &a == &answers_.back(); }
  // Its head, not yet sent, says "Connection: close": it turned out to be the last.
  static void say_close(Answer& a);
  void refuse(int status, const std::string& error, const std::string& detail);
  Answer* owed(uint64_t seq);
  void queue_flush();
  void flush();
  void stop_reading();
  void set_clock();
  void close_now();

  Loop& loop_;
  Fd fd_;
  RequestReader reader_;
  WireTimeouts timeouts_;
  Owner& owner_;
  ByteBudget* output_budget_;  // none: unbounded
  size_t output_counted_ = 0;  // this connection's share of it
  std::string in_;  // bytes read and not yet parsed
  std::deque<Answer> answers_;
  std::string out_;  // answers ready in order and not yet taken by the socket
  uint64_t next_seq_ = 0;
  // False once no request is to be read after those owed (one asked to close, was refused,
  // the client sent all it will, or the server is done): the connection closes after the last.
  bool reading_ = true;
  bool read_on_ = true;   // read interest: off while the client has too much to take
  bool last_request_next_ = false;  // the next request read is the last
  bool closed_ = false;
  bool was_held_back_ = false;  // seen held_back(): counted once until it is not
  bool close_when_idle_ = false;
  bool peer_done_ = false;  // the client has sent all it will (EOF)
  enum class Clock { none, request, idle } clock_ = Clock::none;
  EventPtr read_event_;
  EventPtr write_event_;
  EventPtr flush_event_;
  EventPtr clock_event_;
};

// The reason phrase of a status on the list (src/http/status_codes.h), else "Unknown".
std::string_view http_reason(int code);

}  // namespace warren::http
