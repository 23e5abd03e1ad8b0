// oslo.messaging messages from the broker: the envelope ({"oslo.version", "oslo.message": a
// JSON string}, or an old bare dict) read as a request (what a `format: oslo` forwarder
// consumes: translated to the backend request, its reply, its heartbeat and the heartbeat
// timer) and as a reply (what /rpc's reply queue consumes: result, failure, ending); and the
// same bytes as a backend's answer turned into an oslo result or failure. What parses must
// come out of our own encoder and parse again the same.
#include <cmath>

#include "amqp/types.h"
#include "loop.h"
#include "core/oslo.h"
#include "forward/format.h"
#include "forward/format_oslo.h"
#include "fuzz.h"

using namespace warren;
namespace oslo = core::oslo;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

void as_request(std::string_view body) {
  auto parsed = oslo::parse_request(body);
  auto* r = std::get_if<oslo::Request>(&parsed);
  if (!r) return;
  std::optional<int> timeout;
  if (r->timeout && std::isfinite(*r->timeout) && std::abs(*r->timeout) < 1e9)
    timeout = static_cast<int>(*r->timeout);
  auto again = oslo::parse_request(
      oslo::envelope(oslo::request_message(r->call, r->msg_id, r->reply_q, timeout, r->unique_id)));
  auto* back = std::get_if<oslo::Request>(&again);
  check(back != nullptr);
  check(back->call.method == r->call.method && back->call.args == r->call.args &&
        back->call.context == r->call.context && back->call.version == r->call.version &&
        back->call.name_space == r->call.name_space && back->msg_id == r->msg_id &&
        back->unique_id == r->unique_id);
  // A cast carries no reply queue on the way out, whatever it came with.
  if (!r->msg_id.empty()) check(back->reply_q == r->reply_q);
}

void as_reply(std::string_view body) {
  auto parsed = oslo::parse_reply(body);
  auto* r = std::get_if<oslo::Reply>(&parsed);
  if (!r) return;
  (void)r->is_heartbeat();
  auto again = oslo::parse_reply(oslo::envelope(
      oslo::reply_message(r->msg_id, r->result, r->failure, r->ending, r->unique_id)));
  auto* back = std::get_if<oslo::Reply>(&again);
  check(back != nullptr);
  check(back->msg_id == r->msg_id && back->unique_id == r->unique_id && back->ending == r->ending &&
        back->failure.has_value() == r->failure.has_value());
  if (r->failure) check(back->failure->class_name == r->failure->class_name);
}

// As the forwarder: translate, then the reply to a 2xx (the input as the backend's body), to a
// 500 and to a timeout, the heartbeat, and the heartbeat interval as a libevent timer.
void as_forwarded(std::string_view body) {
  static const ForwarderConfig config = [] {
    ForwarderConfig c;
    c.name = "fuzz";
    c.format = ForwarderFormat::oslo;
    c.backend.url = "http://127.0.0.1:9/rpc/";
    c.oslo.topic = "fuzz";
    c.oslo.server = "host";
    return c;
  }();
  static const auto format = forward::make_format(config);
  amqp::Delivery message;
  message.body = std::string(body);
  const auto t = format->translate(message);
  if (t.oslo) {
    check(std::isfinite(t.oslo->heartbeat) && t.oslo->heartbeat >= 0);
    const timeval tv = to_timeval(t.oslo->heartbeat);
    check(tv.tv_sec >= 0 && tv.tv_usec >= 0 && tv.tv_usec < 1000000);
  }
  forward::BackendResponse ok;
  ok.status = 200;
  ok.content_type = "application/json";
  ok.body = message.body;
  forward::BackendResponse failed;
  failed.status = 500;
  failed.body = message.body;
  forward::BackendResponse timed_out;
  timed_out.failure = forward::BackendResponse::Failure::timeout;
  timed_out.error = "timed out";
  if (t.kind == forward::Translation::Kind::answer) {
    (void)format->reply(message, t, t.answer);
  } else {
    for (const auto* r : {&ok, &failed, &timed_out})
      if (auto reply = format->reply(message, t, *r))
        check(!std::holds_alternative<std::string>(oslo::parse_reply(reply->body)));
  }
  if (auto beat = format->heartbeat(t)) {
    auto parsed = oslo::parse_reply(beat->body);
    check(std::holds_alternative<oslo::Reply>(parsed) &&
          std::get<oslo::Reply>(parsed).is_heartbeat());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body = fuzz::as_text(data, size);
  as_request(body);
  as_reply(body);
  as_forwarded(body);
  (void)oslo::parse_failure(nlohmann::json(std::string(body)));
  return 0;
}
