#include "http/wire_connection.h"

#include <event2/event.h>
#include <event2/util.h>
#include <fmt/format.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <ctime>

#include "http/status_codes.h"
#include "json.h"

namespace warren::http {

std::string_view http_reason(int code) {
  switch (code) {
#define WARREN_STATUS_REASON(arg, n, reason, note) \
  case n: return reason;
    WARREN_HTTP_STATUSES(WARREN_STATUS_REASON, )
#undef WARREN_STATUS_REASON
    default: return "Unknown";
  }
}

namespace {

constexpr size_t kReadSize = 65536;
constexpr size_t kKeptReadBuffer = 4096;  // a publish's head and a small body
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
// An answer's head without headers of its own: status line, Date, Content-Length and -Type,
// Connection.
constexpr size_t kUsualHead = 256;

// RFC 9110's Date, made once a second.
std::string_view http_date() {
  static time_t made_at = 0;
  static char date[64];
  const time_t now = time(nullptr);
  if (now != made_at) {
    tm utc;
    gmtime_r(&now, &utc);
    evutil_date_rfc1123(date, sizeof date, &utc);
    made_at = now;
  }
  return date;
}

void append_number(std::string& out, uint64_t n) {
  char digits[20];
  out.append(digits, std::to_chars(digits, digits + sizeof digits, n).ptr);
}

void append_field(std::string& out, std::string_view name, std::string_view value) {
  out += name;
  out += ": ";
  out += value;
  out += "\r\n";
}

double seconds(const timeval& tv) { return static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6; }

std::string_view connection_line(bool close, bool http10) {
  if (close) return "Connection: close\r\n";
  return http10 ? "Connection: keep-alive\r\n" : "";
}

}  // namespace

WireConnection::WireConnection(Loop& loop, Fd fd, WireLimits limits, WireTimeouts timeouts, Owner& owner)
    : loop_(loop), fd_(std::move(fd)), reader_(limits), timeouts_(timeouts), owner_(owner),
      output_budget_(limits.answers) {
  evutil_make_socket_nonblocking(fd_.get());
  read_event_.reset(event_new(loop_.base(), fd_.get(), EV_READ | EV_PERSIST, on_readable, this));
  write_event_.reset(event_new(loop_.base(), fd_.get(), EV_WRITE | EV_PERSIST, on_writable, this));
  flush_event_.reset(event_new(loop_.base(), -1, 0, on_flush, this));
  clock_event_.reset(evtimer_new(loop_.base(), on_clock, this));
  if (!read_event_ || !write_event_ || !flush_event_ || !clock_event_) abort();  // no memory
  event_add(read_event_.get(), nullptr);
  set_clock();
}

void WireConnection::on_readable(evutil_socket_t, short, void* arg) { static_cast<WireConnection*>(arg)->read_some(); }
void WireConnection::on_flush(evutil_socket_t, short, void* arg) { static_cast<WireConnection*>(arg)->flush(); }

void WireConnection::on_writable(evutil_socket_t, short what, void* arg) {
  auto* self = static_cast<WireConnection*>(arg);
  // The client took none of our bytes for http.idle_connection_timeout.
  if (what & EV_TIMEOUT) return self->close_now();
  self->flush();
}

void WireConnection::on_clock(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<WireConnection*>(arg);
  const Clock clock = std::exchange(self->clock_, Clock::none);
  if (clock == Clock::idle) return self->close_now();
  self->owner_.on_request_timeout(*self);
  self->refuse(408, "request timeout",
               fmt::format("the request was not received whole within http.request_timeout ({} s)",
                           seconds(self->timeouts_.request)));
}

void WireConnection::read_some() {
  char buf[kReadSize];
  const ssize_t n = read(fd_.get(), buf, sizeof buf);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n < 0) return close_now();
  if (n == 0) {
    // The client sent all it will. What it is owed still goes out (it may only have shut down
    // its side), up to a stream, which would wait for ever (flush).
    peer_done_ = true;
    stop_reading();
    return queue_flush();
  }
  in_.append(buf, static_cast<size_t>(n));
  parse();
  // Between requests a connection keeps a small buffer only: one that once read a big body
  // kept its 64 KiB, and 800 idle keep-alive clients held 57 MiB of a worker.
  if (in_.empty() && in_.capacity() > kKeptReadBuffer) std::string().swap(in_);
  set_clock();
}

bool WireConnection::can_take_more() const {
  return answers_.size() < kMaxInFlight && out_.size() < kMaxUnsent && !held_back();
}

bool WireConnection::held_back() const {
  return output_budget_ && output_budget_->over() && !(answers_.empty() && out_.empty());
}

size_t WireConnection::output_share() const {
  // An answer not given yet counts as room for one: a route may answer a pass later (/stats
  // does), and clients let in while the buffer was not full, each owed kMaxInFlight answers of
  // 22 KiB, held 70 MiB over it once the answers came.
  constexpr size_t kAnswerRoom = kMaxUnsent / kMaxInFlight;
  const auto not_given = std::ranges::count_if(answers_, [](const Answer& a) { return !a.ready; });
  return pending_output() + static_cast<size_t>(not_given) * kAnswerRoom;
}

void WireConnection::count_output(size_t bytes) {
  if (!output_budget_) return;
  output_budget_->give_back(std::exchange(output_counted_, bytes));
  output_budget_->hold(bytes);
}

bool WireConnection::behind_alone() const {
  // An answer that may end with the connection (an HTTP/1.0 one, a stream that may be cut):
  // nothing after its request is taken before it is given, so that nothing handed over is
  // left unanswered.
  return !answers_.empty() && answers_.back().alone;
}

void WireConnection::answer_alone(uint64_t seq) {
  if (Answer* a = owed(seq)) a->alone = true;
}

void WireConnection::parse() {
  while (reading_ && !closed_ && can_take_more() && !behind_alone() && !in_.empty()) {
    in_.erase(0, reader_.feed(in_));
    if (reader_.state() == RequestReader::State::refused) {
      owner_.on_refused(*this, reader_);
      return refuse(reader_.refused_status(), reader_.refused_error(), reader_.refused_reason());
    }
    if (reader_.state() != RequestReader::State::complete) return send_continue();
    WireRequest request = reader_.take();
    Answer& a = answers_.emplace_back();
    a.seq = next_seq_++;
    a.head = request.method == "HEAD";
    a.http10 = request.http_minor == 0;
    a.alone = a.http10;
    if (!request.keep_alive || last_request_next_) stop_reading();
    count_output(output_share());  // room for its answer, which may come in a later pass
    owner_.on_request(*this, answers_.back().seq, std::move(request));
  }
  update_reading();
}

void WireConnection::update_reading() {
  // Too many answers owed, or a client not reading them: its socket waits (its bytes stay in
  // the kernel, and its window closes) until they go out.
  if (!reading_ || closed_) return;
  const bool held_back_now = held_back();
  if (held_back_now && !was_held_back_) owner_.on_output_full(*this);
  was_held_back_ = held_back_now;
  // Behind an answer given alone, only once more has come (an HTTP/1.0 keep-alive client that
  // waits for each answer costs no epoll_ctl).
  const bool on = can_take_more() && !(behind_alone() && !in_.empty());
  if (on == read_on_) return;
  read_on_ = on;
  if (!on) return (void)event_del(read_event_.get());
  event_add(read_event_.get(), nullptr);
  parse();  // pipelined requests already read
}

void WireConnection::send_continue() {
  // Only when nothing is owed before it: an interim answer may not overtake earlier ones. A
  // client not told goes on after a second of its own (curl does).
  if (!reader_.take_continue() || !answers_.empty() || !out_.empty()) return;
  out_ = kContinue;
  flush();
}

void WireConnection::stop_reading() {
  reading_ = false;
  event_del(read_event_.get());
  in_.clear();
}

void WireConnection::refuse(int status, const std::string& error, const std::string& detail) {
  stop_reading();
  reader_.drop_body();  // a 408's half-read body too: the answer may wait long for its client
  WireReply r;
  r.status = status;
  r.content_type = "application/json";
  const std::string body = json_text({{"error", error}, {"detail", detail}});
  r.body = body;
  answers_.emplace_back().seq = next_seq_++;
  reply(answers_.back().seq, std::move(r));
}

WireConnection::Answer* WireConnection::owed(uint64_t seq) {
  for (Answer& a : answers_)
    if (a.seq == seq) return &a;
  return nullptr;
}

void WireConnection::reply(uint64_t seq, WireReply reply) {
  Answer* a = owed(seq);
  if (!a || a->ready) return;
  if (a->streaming && a->http10) stop_reading();  // a 1.0 stream ends with the connection
  std::string& out = a->bytes;
  // Appended in place, in one allocation for most answers: formatting each line into a string
  // of its own was a twentieth of a worker's instructions for a 204.
  out.reserve(kUsualHead + reply.body.size());
  out += "HTTP/1.1 ";
  append_number(out, reply.status);
  out += ' ';
  out += http_reason(reply.status);
  out += "\r\nDate: ";
  out += http_date();
  out += "\r\n";
  if (a->streaming) {
    if (!a->http10) out += "Transfer-Encoding: chunked\r\n";
  } else if (reply.status != 204 && reply.status != 304) {  // RFC 9110 8.6: never with those
    out += "Content-Length: ";
    append_number(out, reply.body.size());
    out += "\r\n";
  }
  if (!reply.content_type.empty()) append_field(out, "Content-Type", reply.content_type);
  // Every 503 of warren's, a route's or the reader's, is worth retrying shortly.
  if (reply.status == 503) append_field(out, "Retry-After", "1");
  for (const auto& [name, value] : reply.headers) append_field(out, name, value);
  // Not the last now, it may turn out to be (say_close).
  a->says_close = last(*a);
  a->connection_at = out.size();
  out += connection_line(a->says_close, a->http10);
  out += "\r\n";
  if (!a->head) out.append(reply.body);  // HEAD: the same headers, no body
  a->ready = true;
  queue_flush();
}

void WireConnection::say_close(Answer& a) {
  a.bytes.replace(a.connection_at, connection_line(false, a.http10).size(), connection_line(true, a.http10));
  a.says_close = true;
}

void WireConnection::stream_start(uint64_t seq, WireReply head) {
  Answer* a = owed(seq);
  if (!a || a->ready) return;
  a->streaming = true;
  head.body = {};
  reply(seq, std::move(head));
}

void WireConnection::stream_write(uint64_t seq, std::string_view data) {
  Answer* a = owed(seq);
  if (!a || !a->streaming || data.empty()) return;
  if (!a->http10) a->bytes += fmt::format("{:x}\r\n", data.size());
  a->bytes.append(data);
  if (!a->http10) a->bytes += "\r\n";
  queue_flush();
}

void WireConnection::stream_end(uint64_t seq) {
  Answer* a = owed(seq);
  if (!a || !a->streaming) return;
  if (!a->http10) a->bytes += "0\r\n\r\n";
  a->streaming = false;
  queue_flush();
}

size_t WireConnection::pending_output() const {
  size_t n = out_.size();
  for (const Answer& a : answers_) n += a.bytes.size();
  return n;
}

void WireConnection::queue_flush() {
  if (closed_) return;
  // Counted now: the next request read in this pass may find the worker's buffer full.
  count_output(output_share());
  // At the end of this loop pass: the answers given in it go out in one write.
  event_active(flush_event_.get(), 0, 0);
}

void WireConnection::flush() {
  if (closed_) return;
  while (!answers_.empty() && answers_.front().ready) {
    Answer& a = answers_.front();
    if (a.streaming && peer_done_) break;  // to nobody: closed once what is before it is out
    if (!a.head_out && last(a) && !a.says_close) say_close(a);
    a.head_out = true;
    if (out_.empty()) out_.swap(a.bytes);  // the usual case: no copy
    else out_ += a.bytes;
    a.bytes.clear();
    if (a.streaming) break;
    answers_.pop_front();
  }
  bool full = false;  // the socket takes no more now
  while (!out_.empty() && !full) {
    const ssize_t n = send(fd_.get(), out_.data(), out_.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    full = n < 0 && errno == EAGAIN;
    if (n < 0 && !full) return close_now();
    if (n > 0) out_.erase(0, static_cast<size_t>(n));
  }
  count_output(output_share());
  if (full) {
    if (!event_pending(write_event_.get(), EV_WRITE, nullptr)) event_add(write_event_.get(), &timeouts_.idle);
    update_reading();
    return set_clock();
  }
  if (event_pending(write_event_.get(), EV_WRITE, nullptr)) event_del(write_event_.get());
  // A stream for a client that has gone would never end.
  const bool stream_to_nobody = peer_done_ && !answers_.empty() && answers_.front().streaming;
  if ((!reading_ && answers_.empty()) || stream_to_nobody || (close_when_idle_ && idle())) return close_now();
  update_reading();
  set_clock();
}

bool WireConnection::idle() const {
  return !reader_.in_message() && in_.empty() && answers_.empty() && out_.empty();
}

void WireConnection::close_after_owed() {
  if (closed_ || !reading_) return;
  if (answers_.empty()) {
    last_request_next_ = true;
    return;
  }
  stop_reading();
  queue_flush();  // the last may be waiting in out_ already
}

void WireConnection::close_when_idle() {
  close_when_idle_ = true;
  if (idle()) close_now();
}

void WireConnection::set_clock() {
  if (closed_) return;
  Clock want = Clock::none;
  if (reading_ && reader_.in_message()) want = Clock::request;
  else if (reading_ && idle()) want = Clock::idle;
  // A request's clock runs from its first byte: more bytes do not restart it.
  if (want == clock_) return;
  clock_ = want;
  if (want == Clock::none) evtimer_del(clock_event_.get());
  else evtimer_add(clock_event_.get(), want == Clock::request ? &timeouts_.request : &timeouts_.idle);
}

void WireConnection::close_now() {
  if (closed_) return;
  closed_ = true;
  event_del(read_event_.get());
  event_del(write_event_.get());
  event_del(flush_event_.get());
  evtimer_del(clock_event_.get());
  // Unread bytes at close() make the kernel reset the connection, which may destroy our last
  // answer before the client reads it: say we are done, and take what has arrived (bounded).
  shutdown(fd_.get(), SHUT_WR);
  char sink[4096];
  for (int i = 0; i < 16 && recv(fd_.get(), sink, sizeof sink, MSG_DONTWAIT) > 0; ++i) {
  }
  fd_ = Fd();
  count_output(0);  // what was owed is dropped with the connection
  // The body half read goes now, not when the loop frees the connection, which may be after
  // the budget it was counted in.
  reader_.drop_body();
  owner_.on_closed(*this);
}

}  // namespace warren::http
