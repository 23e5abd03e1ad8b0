#include "http/wire_connection.h"

#include <event2/event.h>
#include <fmt/format.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "json.h"

namespace warren::http {
namespace {

constexpr size_t kReadSize = 65536;

std::string serialize(int status, const WireReply& r, bool head, bool close) {
  std::string out = fmt::format("HTTP/1.1 {} {}\r\nContent-Length: {}\r\n", status,
                                http_status_str(static_cast<http_status>(status)), r.body.size());
  if (!r.content_type.empty()) out += fmt::format("Content-Type: {}\r\n", r.content_type);
  for (const auto& [name, value] : r.headers) out += fmt::format("{}: {}\r\n", name, value);
  if (close) out += "Connection: close\r\n";
  out += "\r\n";
  if (!head) out += r.body;  // HEAD: the same headers, no body
  return out;
}

}  // namespace

WireConnection::WireConnection(Loop& loop, Fd fd, WireLimits limits, Handler handler, Closed closed)
    : loop_(loop), fd_(std::move(fd)), reader_(limits), handler_(std::move(handler)), closed_(std::move(closed)) {
  evutil_make_socket_nonblocking(fd_.get());
  read_event_.reset(event_new(loop_.base(), fd_.get(), EV_READ | EV_PERSIST, on_readable, this));
  write_event_.reset(event_new(loop_.base(), fd_.get(), EV_WRITE | EV_PERSIST, on_writable, this));
  flush_event_.reset(event_new(loop_.base(), -1, 0, on_flush, this));
  event_add(read_event_.get(), nullptr);
}

WireConnection::~WireConnection() = default;

void WireConnection::on_readable(evutil_socket_t, short, void* arg) { static_cast<WireConnection*>(arg)->read_some(); }
void WireConnection::on_writable(evutil_socket_t, short, void* arg) { static_cast<WireConnection*>(arg)->flush(); }
void WireConnection::on_flush(evutil_socket_t, short, void* arg) { static_cast<WireConnection*>(arg)->flush(); }

void WireConnection::read_some() {
  char buf[kReadSize];
  const ssize_t n = read(fd_.get(), buf, sizeof buf);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) return close_now();  // the peer left, or the socket failed
  in_.append(buf, static_cast<size_t>(n));
  parse();
}

void WireConnection::parse() {
  while (reading_ && answers_.size() < kMaxInFlight && !in_.empty()) {
    in_.erase(0, reader_.feed(in_));
    if (reader_.state() == RequestReader::State::refused) return refuse();
    if (reader_.state() != RequestReader::State::complete) return;
    WireRequest request = reader_.take();
    const uint64_t seq = next_seq_++;
    answers_.push_back(Answer{seq, false, !request.keep_alive, request.method == "HEAD", {}});
    if (!request.keep_alive) {
      reading_ = false;
      event_del(read_event_.get());
      in_.clear();
    }
    handler_(*this, seq, std::move(request));
  }
  // Too many answers owed: the socket waits (its bytes stay in the kernel) until some go out.
  if (reading_ && answers_.size() >= kMaxInFlight) event_del(read_event_.get());
}

void WireConnection::refuse() {
  reading_ = false;
  event_del(read_event_.get());
  in_.clear();
  WireReply r;
  r.content_type = "application/json";
  r.body = json_text({{"error", reader_.refused_status() == 400 ? "bad request" : "refused"},
                      {"detail", reader_.refused_reason()}});
  answers_.push_back(Answer{next_seq_++, true, true, false, serialize(reader_.refused_status(), r, false, true)});
  queue_flush();
}

void WireConnection::reply(uint64_t seq, WireReply reply) {
  for (Answer& a : answers_) {
    if (a.seq != seq || a.ready) continue;
    a.bytes = serialize(reply.status, reply, a.head, a.close);
    a.ready = true;
    return queue_flush();
  }
}

void WireConnection::queue_flush() {
  // At the end of this loop pass: the answers given in it go out in one write.
  if (!closed_called_) event_active(flush_event_.get(), 0, 0);
}

void WireConnection::flush() {
  if (closed_called_) return;
  const bool was_full = answers_.size() >= kMaxInFlight;
  while (!answers_.empty() && answers_.front().ready) {
    out_ += answers_.front().bytes;
    closing_ = closing_ || answers_.front().close;
    answers_.pop_front();
  }
  while (!out_.empty()) {
    const ssize_t n = send(fd_.get(), out_.data(), out_.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      if (!event_pending(write_event_.get(), EV_WRITE, nullptr)) event_add(write_event_.get(), nullptr);
      return;
    }
    if (n < 0) return close_now();
    out_.erase(0, static_cast<size_t>(n));
  }
  if (event_pending(write_event_.get(), EV_WRITE, nullptr)) event_del(write_event_.get());
  if (closing_) return close_now();
  if (was_full && reading_ && answers_.size() < kMaxInFlight) {
    event_add(read_event_.get(), nullptr);
    parse();  // pipelined requests already read
  }
}

void WireConnection::close_now() {
  if (closed_called_) return;
  closed_called_ = true;
  event_del(read_event_.get());
  event_del(write_event_.get());
  event_del(flush_event_.get());
  fd_ = Fd();
  closed_(*this);
}

}  // namespace warren::http
