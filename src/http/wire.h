// HTTP/1.1 requests read from a connection's bytes with http-parser (libhttp-parser-dev), one at
// a time. It owns no socket and no buffer: the connection feeds it what it read and
// drops what it consumed. It stops after each complete request, so that pipelined requests are
// answered in order, and refuses what the routes must never see:
//   431  the request line and headers over http.max_header_size (counted as they arrive)
//   413  a body over http.max_body (a Content-Length over it before the body is read)
//   400  anything http-parser refuses, framing included: Content-Length twice or with
//        Transfer-Encoding, a Transfer-Encoding other than a final "chunked", a header name
//        that is no token (RFC 9112 6.3)
//   505  an HTTP version other than 1.x
//   503  a body the worker has no room for within http.max_body_buffer: before it is read when
//        its Content-Length says so, else (chunked, or heads let in together) as it arrives
#pragma once

#include <http_parser.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace warren::http {

struct WireRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // the request-target as sent: "/%2f/x/y?z=1"
  std::vector<std::pair<std::string, std::string>> headers;  // in order, names as sent
  std::string body;    // without its chunked framing
  unsigned http_major = 1, http_minor = 1;
  bool keep_alive = true;  // HTTP/1.1 without "Connection: close", or 1.0 with keep-alive
  bool expects_continue = false;  // "Expect: 100-continue" on HTTP/1.1, with a body to come
  size_t head_bytes = 0;   // the request line and headers, as http.max_header_size counts them

  // The first header of that name, whatever its case; "" without one.
  std::string_view header(std::string_view name) const;
};

// Bytes a worker holds for all its connections together, against a limit from the config:
// what bounds a worker's memory against many clients each within its own limits.
//   http.max_body_buffer    bodies being read, each under http.max_body (400 clients sending
//                           1 MiB at once held 400 MiB): one with no room is refused (take)
//   http.max_output_buffer  answers clients have not taken, each connection's under 256 KiB
//                           (200 clients not reading held 139 MiB): they are held anyway
//                           (hold), and a connection with some stops reading while over()
class ByteBudget {
 public:
  explicit ByteBudget(size_t limit) : limit_(limit) {}
  bool fits(size_t n) const { return held_ + n <= limit_; }
  bool take(size_t n) {
    if (!fits(n)) return false;
    held_ += n;
    return true;
  }
  void hold(size_t n) { held_ += n; }
  void give_back(size_t n) { held_ -= n; }
  bool over() const { return held_ > limit_; }
  size_t limit() const { return limit_; }
  size_t held() const { return held_; }

 private:
  size_t limit_;
  size_t held_ = 0;
};

struct WireLimits {
  size_t max_head;  // http.max_header_size
  size_t max_body;  // http.max_body
  ByteBudget* bodies = nullptr;   // the worker's http.max_body_buffer; none: unbounded
  ByteBudget* answers = nullptr;  // the worker's http.max_output_buffer; none: unbounded
};

class RequestReader {
 public:
  enum class State { reading, complete, refused };

  explicit RequestReader(WireLimits limits);
  ~RequestReader() { drop_body(); }
  RequestReader(const RequestReader&) = delete;
  RequestReader& operator=(const RequestReader&) = delete;

  // Reads from `data` until a request is complete, refused or `data` ends; returns the bytes
  // consumed. What follows a complete request is the next one's: feed it after take().
  size_t feed(std::string_view data);
  State state() const { return state_; }
  // The complete request; reading starts on the next one. Its body leaves the budget with it.
  WireRequest take();
  // The body read so far is let go, and its room in the budget: nothing more is read (a
  // refused request, a clock run out).
  void drop_body();
  // A request has begun and is not complete yet: its clock (http.request_timeout) runs.
  bool in_message() const { return in_message_; }
  // True once per request, when its head is read and it waits for "100 Continue" to send the body.
  bool take_continue() { return std::exchange(continue_due_, false); }
  // Once refused: the status (400, 413, 431, 503, 505), the error and its detail for the client, and
  // whether it was the framing (RFC 9112 6.3). The connection closes after the answer: where the
  // next request would start is not known.
  int refused_status() const { return refused_status_; }
  const std::string& refused_error() const { return refused_error_; }
  const std::string& refused_reason() const { return refused_reason_; }
  bool refused_framing() const { return refused_framing_; }

 private:
  static int on_message_begin(http_parser* p);
  static int on_url(http_parser* p, const char* at, size_t n);
  static int on_header_field(http_parser* p, const char* at, size_t n);
  static int on_header_value(http_parser* p, const char* at, size_t n);
  static int on_headers_complete(http_parser* p);
  static int on_body(http_parser* p, const char* at, size_t n);
  static int on_message_complete(http_parser* p);

  // What makes the head's framing one a proxy could read otherwise, or nullptr.
  const char* framing_problem() const;
  size_t host_count() const;
  // True once `data`, the next bytes of the head, folds a line (obs-fold).
  bool head_has_fold(std::string_view data);
  // Counts `n` more bytes of head; false (and refused with 431) past the limit.
  bool add_head(size_t n);
  int refuse(int status, std::string error, std::string reason);
  int refuse_framing(std::string reason);
  int refuse_no_room();
  // Counts `n` more bytes of body in the worker's budget; false when it has no room.
  bool hold_body(size_t n);
  // What the body holds in the budget goes back (the body itself stays).
  void give_back_body();

  WireLimits limits_;
  http_parser parser_;
  WireRequest request_;
  size_t body_held_ = 0;      // of request_.body, counted in limits_.bodies
  size_t declared_body_ = 0;  // its Content-Length (http-parser counts its own down)
  bool in_value_ = false;  // the last header callback was for a value
  bool in_message_ = false;
  bool continue_due_ = false;
  // The obs-fold scan of the current head: where it is.
  bool head_scanned_ = false;
  bool seen_line_ = false;
  bool in_line_ = false;  // a line with a byte besides CR is under way
  State state_ = State::reading;
  int refused_status_ = 0;
  bool refused_framing_ = false;
  std::string refused_error_;
  std::string refused_reason_;
};

}  // namespace warren::http
