// Message <-> HTTP translation for forwarders: one Format per forwarder, chosen once from
// forwarders[].format. A consumed message becomes a backend request (or an answer warren gives
// itself: a message it cannot parse, a vCD request its checks refuse), and a backend response
// becomes the reply message. One file per format: format_raw.cc, format_vcd.cc, format_oslo.cc.
// Pure: no I/O, no clock; unit-tested in t/forward/formats_test.cc and oslo_format_test.cc.
//
//   raw  method from header x-http-method (POST), path from x-http-path appended to backend.url
//        after `rewrite`, body = message body, properties as X-AMQP-* headers. The reply goes to
//        reply_to on the default exchange (or header replyToExchange): correlation_id kept,
//        status in header x-http-status, the response body and Content-Type as they came.
//   vcd  vCloud Director API extension messages: body [request, context] (see format_vcd.cc).
//   oslo oslo.messaging RPC requests: `args` POSTed as JSON to backend.url/<method>, the answer
//        sent back as an oslo reply to _reply_q (see forward/format_oslo.h).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "amqp/codec.h"
#include "amqp/types.h"
#include "config.h"
#include "core/forwarder.h"
#include "forward/backend_url.h"
#include "forward/rewrite.h"
#include "forward/vcd_checks.h"
#include "handles.h"
#include "rfc9110.h"

namespace warren::forward {

// One HTTP request for a backend, before curl sees it.
struct BackendRequest {
  std::string method = "POST";
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // Response headers the caller wants back in BackendResponse::headers (vCD's session tokens).
  std::vector<std::string> response_headers;
  // A 3xx answer followed (up to kMaxRedirects, http and https only, never to another origin)
  // rather than returned: vcdextproxy's HTTP library did so, and vCD cannot follow a backend's
  // Location.
  bool follow_redirects = false;
};

// How a backend answered. status 0: no answer; `failure` and `error` say why.
struct BackendResponse {
  enum class Failure { none, connect, timeout, other };
  int status = 0;
  std::string content_type;
  std::string body;
  Failure failure = Failure::none;
  std::string error;
  std::map<std::string, std::string> headers;  // BackendRequest::response_headers that came
};

// The status a failure is reported with: 503 when the backend could not be reached, 504 on a
// timeout, 502 for anything else that gave no usable answer.
int failure_status(const BackendResponse& response);

// oslo: where the reply goes. msg_id empty: a cast, nothing to reply. (At namespace scope: clang
// cannot emplace a nested struct with default member initializers inside its enclosing class.)
struct OsloCaller {
  std::string msg_id, reply_q, unique_id;
  double heartbeat = 0;  // seconds between heartbeat replies while the backend runs; 0: none
};

// What a format made of one message.
struct Translation {
  enum class Kind {
    forward,  // send `request` to the backend
    answer,   // warren answers itself with `answer` (a 4xx): nothing goes to the backend
  };
  Kind kind = Kind::forward;
  BackendRequest request;
  BackendResponse answer;
  bool invalid = false;    // the answer is because the message could not be parsed
  std::string error;       // why an answer was given, for logs and dead-letter headers
  std::string request_id;  // vcd: the request's id, echoed in the reply
  std::optional<OsloCaller> oslo;
  // A caller waits for the answer (an oslo call, a vCD request): whatever the backend answered
  // (or failed with) is final, replied and acked; no retry, no dead letter.
  bool final_answer = false;
  // vcd: what only vCD's API can check, run before the request goes (forward/vcd_api.h).
  std::optional<VcdChecks> vcd_checks;
};

// A reply message to publish. Heartbeats are mandatory (oslo's are, so a reply queue that is
// gone shows); core/forwarder publishes every final reply mandatory: a reply nobody can
// receive answered nobody.
using Reply = core::Message;

// What one forwarder's format does with messages; made once per forwarder by make_format.
class Format : NonCopyable {
 public:
  virtual ~Format() = default;

  virtual Translation translate(const amqp::Delivery& message) const = 0;
  // The reply for a message whose sender waits for one; nullopt when nobody does. `response` is
  // the backend's, or translation.answer for Kind::answer.
  virtual std::optional<Reply> reply(const amqp::Delivery& message, const Translation& translation,
                                     const BackendResponse& response) const = 0;
  // The heartbeat reply for a call still under way (oslo); nullopt: none to send.
  virtual std::optional<Reply> heartbeat(const Translation& translation) const;
  // What the forwarder declares and consumes: raw and vcd their `queue`, declared as `declare`
  // says; oslo the queues of forward/format_oslo.h.
  virtual std::vector<core::ConsumeQueue> consume_plan() const;

  // The backend URL for a request path (no query) and query (without '?'): `path` after
  // rewrite.from -> rewrite.to, on backend.url's path (see forward/backend_url.h). nullopt with
  // `error` set when the rewrite fails or its result cannot be sent.
  std::optional<std::string> target_url(std::string_view path, std::string_view query,
                                        std::string* error) const;

 protected:
  // `config` must outlive the format. Its rewrite pattern is compiled and backend.url parsed
  // once, here (the config check already proved both are good).
  explicit Format(const ForwarderConfig& config);

  // Why a vcd or oslo message body cannot be parsed safely (over forwarders[].max_body, or
  // nested deeper than kMaxJsonDepth, `nested_key`'s string value parsed as JSON too), or nullopt.
  std::optional<std::string> json_body_problem(std::string_view body, std::string_view nested_key) const;

  const ForwarderConfig& config_;

 private:
  Rewrite rewrite_;
  BackendUrl backend_url_;
};

// The format forwarders[].format names, for `config` (which must outlive it).
std::unique_ptr<Format> make_format(const ForwarderConfig& config);
// One per format file; make_format picks.
std::unique_ptr<Format> make_raw_format(const ForwarderConfig& config);
std::unique_ptr<Format> make_vcd_format(const ForwarderConfig& config);
std::unique_ptr<Format> make_oslo_format(const ForwarderConfig& config);

// Longest x-http-method (and vCD request.method): no HTTP method comes close.
inline constexpr size_t kMaxMethodLength = 32;

// Checks and conversions the formats share (is_token is in rfc9110.h). is_header_value: no CR,
// LF or NUL. header_text: a header table value as header text, strings as they are, anything
// else as JSON. is_path: a request target, printable ASCII without spaces, empty or starting
// with '/'. ascii_upper: an HTTP method as it is sent.
bool is_header_value(std::string_view s);
std::string header_text(const nlohmann::json& v);
bool is_path(std::string_view s);
std::string ascii_upper(std::string s);

// A message warren cannot read: answered 400 {"error": "bad message", "detail": error}.
Translation bad_message(std::string error);
// The reply to a raw or vcd message's sender, without its body: to reply_to on the default
// exchange (or on header replyToExchange), correlation_id kept. nullopt: no reply_to.
std::optional<Reply> reply_to_sender(const amqp::Delivery& message);

}  // namespace warren::forward
