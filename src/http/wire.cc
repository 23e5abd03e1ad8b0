#include "http/wire.h"

#include <fmt/format.h>

#include <algorithm>
#include <climits>

#include "rfc9110.h"

namespace warren::http {
namespace {

RequestReader& reader_of(http_parser* p) { return *static_cast<RequestReader*>(p->data); }

// What http.max_header_size counts besides the target, names and values: a request line's two
// spaces, version and CRLF (its method is left out), a header line's ": " and CRLF.
constexpr size_t kRequestLineOverhead = 1 + 1 + 8 + 2;
constexpr size_t kHeaderLineOverhead = 2 + 2;
// Room made for a request's headers at once: growing the list one by one cost three
// allocations a request (curl, wrk and PHP send 3 to 6).
constexpr size_t kUsualHeaders = 8;

// http-parser's refusals of a request's framing (RFC 9112 section 6.3): a proxy in front may
// frame it otherwise, so what follows is not trusted to start where the parser thinks.
bool is_framing_error(http_errno e) {
  return e == HPE_UNEXPECTED_CONTENT_LENGTH || e == HPE_INVALID_CONTENT_LENGTH ||
         e == HPE_INVALID_TRANSFER_ENCODING || e == HPE_INVALID_CHUNK_SIZE || e == HPE_INVALID_HEADER_TOKEN;
}

}  // namespace

std::string_view WireRequest::header(std::string_view name) const {
  for (const auto& [key, value] : headers)
    if (iequals(key, name)) return value;
  return {};
}

RequestReader::RequestReader(WireLimits limits) : limits_(limits) {
  http_parser_init(&parser_, HTTP_REQUEST);
  parser_.data = this;
}

int RequestReader::refuse(int status, std::string error, std::string reason) {
  state_ = State::refused;
  drop_body();  // nothing more is read: the connection closes after the answer
  refused_status_ = status;
  refused_error_ = std::move(error);
  refused_reason_ = std::move(reason);
  // http-parser stops with HPE_CB_* (from on_headers_complete, 1 and 2 would mean "no body" and
  // "upgrade", not "stop").
  return -1;
}

int RequestReader::refuse_no_room() {
  return refuse(503, "service unavailable",
                fmt::format("the worker holds request bodies up to http.max_body_buffer ({} bytes) "
                            "and has no room for this one now: retry shortly",
                            limits_.bodies->limit()));
}

bool RequestReader::hold_body(size_t n) {
  if (!limits_.bodies) return true;
  if (!limits_.bodies->take(n)) return false;
  body_held_ += n;
  return true;
}

void RequestReader::give_back_body() {
  if (body_held_) limits_.bodies->give_back(std::exchange(body_held_, 0));
}

void RequestReader::drop_body() {
  give_back_body();
  std::string().swap(request_.body);
}

int RequestReader::refuse_framing(std::string reason) {
  refused_framing_ = true;
  return refuse(400, "bad framing", reason + " (RFC 9112 section 6.3)");
}

bool RequestReader::add_head(size_t n) {
  request_.head_bytes += n;
  if (request_.head_bytes <= limits_.max_head) return true;
  refuse(431, "request header fields too large",
         fmt::format("the request line and headers are over http.max_header_size ({})", limits_.max_head));
  return false;
}

int RequestReader::on_message_begin(http_parser* p) {
  auto& self = reader_of(p);
  self.request_ = WireRequest{};
  self.request_.headers.reserve(kUsualHeaders);
  self.in_value_ = false;
  self.in_message_ = true;
  return 0;
}

int RequestReader::on_url(http_parser* p, const char* at, size_t n) {
  auto& self = reader_of(p);
  if (self.request_.target.empty() && !self.add_head(kRequestLineOverhead)) return -1;
  if (!self.add_head(n)) return -1;
  self.request_.target.append(at, n);
  return 0;
}

int RequestReader::on_header_field(http_parser* p, const char* at, size_t n) {
  auto& self = reader_of(p);
  if (!self.add_head(n)) return -1;
  // A name arrives in pieces when a read ends inside it; a new one starts after a value.
  if (self.in_value_ || self.request_.headers.empty()) {
    if (!self.add_head(kHeaderLineOverhead)) return -1;
    self.request_.headers.emplace_back();
  }
  self.in_value_ = false;
  self.request_.headers.back().first.append(at, n);
  return 0;
}

int RequestReader::on_header_value(http_parser* p, const char* at, size_t n) {
  auto& self = reader_of(p);
  if (!self.add_head(n)) return -1;
  self.in_value_ = true;
  self.request_.headers.back().second.append(at, n);
  return 0;
}

int RequestReader::on_headers_complete(http_parser* p) {
  auto& self = reader_of(p);
  if (!self.add_head(2)) return -1;  // the empty line
  if (p->http_major != 1)
    return self.refuse(505, "http version not supported",
                       fmt::format("HTTP/{}.{} is not served", p->http_major, p->http_minor));
  if (const char* problem = self.framing_problem()) return self.refuse_framing(problem);
  if (p->http_minor >= 1 && self.host_count() != 1)
    return self.refuse(400, "bad request", "an HTTP/1.1 request has one Host header (RFC 9112 section 3.2)");
  self.request_.method = http_method_str(static_cast<http_method>(p->method));
  self.request_.http_major = p->http_major;
  self.request_.http_minor = p->http_minor;
  self.request_.keep_alive = http_should_keep_alive(p) != 0;
  const bool chunked = (p->flags & F_CHUNKED) != 0;
  // Refused before a byte of the body is read: the client may be sending gigabytes.
  if (!chunked && p->content_length != ULLONG_MAX && p->content_length > self.limits_.max_body)
    return self.refuse(413, "payload too large",
                       fmt::format("the body is {} bytes, over http.max_body ({})", p->content_length,
                                   self.limits_.max_body));
  const bool body_follows = chunked || (p->content_length != ULLONG_MAX && p->content_length > 0);
  self.declared_body_ = body_follows && !chunked ? p->content_length : 0;
  // Refused before a byte of it is read when the worker has no room for it now; the room is
  // taken as the bytes come (a head alone, its body never sent, holds nothing).
  if (body_follows && !chunked && self.limits_.bodies && !self.limits_.bodies->fits(p->content_length))
    return self.refuse_no_room();
  self.continue_due_ = body_follows && p->http_minor >= 1 &&
                       iequals(self.request_.header("Expect"), "100-continue");
  return 0;
}

size_t RequestReader::host_count() const {
  return std::count_if(request_.headers.begin(), request_.headers.end(),
                       [](const auto& h) { return iequals(h.first, "Host"); });
}

const char* RequestReader::framing_problem() const {
  size_t encodings = 0;
  for (const auto& [name, value] : request_.headers) {
    // http-parser takes "Bad Name: x" for a field "Bad Name"; a proxy in front may not.
    if (!is_token(name)) return "a header name with a space, a control character or a separator";
    if (!iequals(name, "Transfer-Encoding")) continue;
    // http-parser takes "gzip, chunked", and chunked in two lines; warren decodes chunked alone,
    // and a proxy may read either otherwise.
    if (++encodings > 1) return "more than one Transfer-Encoding";
    if (!iequals(value, "chunked")) return "Transfer-Encoding other than \"chunked\"";
  }
  return nullptr;
}

int RequestReader::on_body(http_parser* p, const char* at, size_t n) {
  auto& self = reader_of(p);
  if (self.request_.body.size() + n > self.limits_.max_body)
    return self.refuse(413, "payload too large",
                       fmt::format("the chunked body is over http.max_body ({})", self.limits_.max_body));
  if (!self.hold_body(n)) return self.refuse_no_room();
  // A declared length is made room for once: growing by doubling held up to twice the body.
  if (self.request_.body.empty() && self.declared_body_) self.request_.body.reserve(self.declared_body_);
  self.request_.body.append(at, n);
  return 0;
}

int RequestReader::on_message_complete(http_parser* p) {
  auto& self = reader_of(p);
  if (self.state_ == State::refused) return -1;
  self.state_ = State::complete;
  self.in_message_ = false;
  self.continue_due_ = false;
  http_parser_pause(p, 1);  // one request at a time: the next waits for take()
  return 0;
}

bool RequestReader::head_has_fold(std::string_view data) {
  // A line of the head that starts with a space or a tab continues the one before (obs-fold,
  // RFC 9112 5.2). http-parser joins them; a proxy in front may not, so it is refused as
  // framing. The scan stops at the empty line that ends the head: the body is not looked at.
  // Only a line's first bytes matter: from there it jumps to the next line feed.
  while (!data.empty() && !head_scanned_) {
    if (!in_line_) {
      const char c = data.front();
      if (c == '\r' || c == '\n') {
        if (c == '\n') head_scanned_ = seen_line_;  // an empty line ends the head
        data.remove_prefix(1);
        continue;
      }
      if (seen_line_ && (c == ' ' || c == '\t')) return true;
      in_line_ = true;
    }
    const size_t lf = data.find('\n');
    if (lf == std::string_view::npos) return false;
    data.remove_prefix(lf + 1);
    seen_line_ = true;
    in_line_ = false;
  }
  return false;
}

size_t RequestReader::feed(std::string_view data) {
  if (state_ != State::reading || data.empty()) return 0;
  if (head_has_fold(data)) {
    refuse_framing("a header line folded onto the next (obs-fold)");
    return 0;
  }
  static const http_parser_settings settings = [] {
    http_parser_settings s{};
    s.on_message_begin = on_message_begin;
    s.on_url = on_url;
    s.on_header_field = on_header_field;
    s.on_header_value = on_header_value;
    s.on_headers_complete = on_headers_complete;
    s.on_body = on_body;
    s.on_message_complete = on_message_complete;
    return s;
  }();
  const size_t used = http_parser_execute(&parser_, &settings, data.data(), data.size());
  const auto error = HTTP_PARSER_ERRNO(&parser_);
  if (state_ == State::reading && error != HPE_OK) {
    if (is_framing_error(error)) refuse_framing(http_errno_description(error));
    else refuse(400, "bad request", http_errno_description(error));
  } else if (parser_.upgrade) {
    // http-parser reads nothing past a request that asks to switch protocols. warren never
    // switches: such a request is answered as any other, and then the connection closes.
    if (state_ == State::complete) request_.keep_alive = false;
    else refuse(400, "bad request", "a protocol upgrade without a complete request");
  }
  return used;
}

WireRequest RequestReader::take() {
  // From here the body is the route's: what holds it is bounded there (broker.max_output_buffer,
  // http.max_in_flight).
  give_back_body();
  WireRequest out = std::move(request_);
  request_ = WireRequest{};
  in_value_ = false;
  head_scanned_ = seen_line_ = false;
  in_line_ = false;
  state_ = State::reading;
  http_parser_pause(&parser_, 0);
  return out;
}

}  // namespace warren::http
