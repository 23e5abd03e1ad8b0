// One client connection of the lean HTTP path (issue 14): the socket, one read buffer, the
// RequestReader, and the answers written in request order. Built to cost the kernel as little
// as possible per request: read interest stays on (no epoll_ctl per request), an answer is
// written in the loop pass it is given, the answers of one pass go out in one writev, and
// write interest is asked for only when the socket is full. Pipelined requests are handed over
// as they are read (up to kMaxInFlight at once, then reading pauses) and answered in order.
// A refused request (400, 413, 431, 505) is answered and the connection closed; so is a
// request that asked for it, after its answer.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "handles.h"
#include "http/wire.h"
#include "loop.h"

namespace warren::http {

struct WireReply {
  int status = 200;
  std::string content_type;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

class WireConnection : NonCopyable {
 public:
  // Each request, with the number its answer is given with; answered through reply(), now or
  // from a later pass, in any order.
  using Handler = std::function<void(WireConnection&, uint64_t seq, WireRequest&&)>;
  // The connection is over (the peer left, a write failed, or it closed after its last
  // answer); the owner may free it, through the loop (defer_delete), not in this call.
  using Closed = std::function<void(WireConnection&)>;

  static constexpr size_t kMaxInFlight = 16;

  WireConnection(Loop& loop, Fd fd, WireLimits limits, Handler handler, Closed closed);
  ~WireConnection();

  void reply(uint64_t seq, WireReply reply);
  size_t in_flight() const { return answers_.size(); }

 private:
  struct Answer {
    uint64_t seq;
    bool ready = false;
    bool close = false;  // the connection closes after this answer
    bool head = false;   // a HEAD request: no body
    std::string bytes;   // status line, headers and body
  };

  static void on_readable(evutil_socket_t, short, void* arg);
  static void on_writable(evutil_socket_t, short, void* arg);
  static void on_flush(evutil_socket_t, short, void* arg);
  void read_some();
  void parse();
  void refuse();
  void queue_flush();
  void flush();
  void close_now();

  Loop& loop_;
  Fd fd_;
  RequestReader reader_;
  Handler handler_;
  Closed closed_;
  std::string in_;  // bytes read and not yet parsed
  std::deque<Answer> answers_;
  std::string out_;  // answers ready in order and not yet taken by the socket
  uint64_t next_seq_ = 0;
  bool reading_ = true;   // false once a request asked to close, or was refused
  bool closing_ = false;  // the answer that closes the connection is in out_
  bool closed_called_ = false;
  EventPtr read_event_;
  EventPtr write_event_;
  EventPtr flush_event_;
};

}  // namespace warren::http
