// oslo.messaging's wire format on RabbitMQ (its rabbit driver, envelope version 2.0): request and
// reply messages in both directions, so that the calling side (core/rpc) and a serving side
// (a `format: oslo` forwarder) share one codec. Pure functions, no I/O: t/core/oslo_test.cc.
//
//   body   = {"oslo.version": "2.0", "oslo.message": "<the message dict as a JSON string>"}
//   request: {"method", "args", ["namespace"], ["version"], ["_msg_id", "_reply_q", "_timeout"]
//             (calls only), "_unique_id", "_context_<key>" per context key}
//   reply:   {"result", "failure" (null or a JSON string), "ending", "_msg_id", "_unique_id"}
// man/warren-rpc.7 describes the same for people writing a client in another language.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "amqp/codec.h"

namespace warren::core::oslo {

inline constexpr std::string_view kEnvelopeVersion = "2.0";
inline constexpr std::string_view kVersionKey = "oslo.version";
inline constexpr std::string_view kMessageKey = "oslo.message";
inline constexpr std::string_view kContextPrefix = "_context_";
// oslo's rabbit driver: the topic exchange when a target names none (`control_exchange`).
inline constexpr std::string_view kDefaultExchange = "openstack";
// A reply queue (and a fanout queue) unused this long goes away: rabbit_transient_queues_ttl.
inline constexpr int kTransientQueueTtlMs = 1800 * 1000;

// What a caller asks a server to run.
struct Call {
  std::string method;
  nlohmann::json args = nlohmann::json::object();
  nlohmann::json context = nlohmann::json::object();
  std::optional<std::string> version;   // "1.0" when absent, for the server
  std::optional<std::string> name_space;  // `namespace` on the wire
};

// A request as a server sees it: the call plus the fields that say where to reply.
struct Request {
  Call call;
  std::string msg_id;   // empty for a cast: no reply is expected
  std::string reply_q;  // the caller's reply queue (default exchange, routing key = name)
  std::string unique_id;
  std::optional<double> timeout;  // `_timeout`: the caller wants heartbeats every timeout/2
};

// A remote exception as oslo serializes it (serialize_remote_exception).
struct Failure {
  std::string class_name;  // `class`
  std::string module;
  std::string message;
  nlohmann::json args = nlohmann::json::array();
  nlohmann::json kwargs = nlohmann::json::object();
  std::vector<std::string> traceback;  // `tb`: lines of a Python traceback
};

struct Reply {
  std::string msg_id;
  std::string unique_id;
  nlohmann::json result;  // null when none (a heartbeat, a failure, or a method returning None)
  std::optional<Failure> failure;
  bool ending = false;  // false: a heartbeat or the first half of an old two-part reply
  bool is_heartbeat() const { return !ending && result.is_null() && !failure; }
};

// A fresh id as oslo makes them: uuid4().hex, 32 lowercase hex digits.
std::string new_id();

// The envelope around a message dict (serialize_msg) and back (deserialize_msg: a body that is a
// JSON object without both envelope keys is taken as the message itself, as oslo does).
std::string envelope(const nlohmann::json& message);
std::variant<nlohmann::json, std::string> unwrap(std::string_view body);

// The request message dict. msg_id empty: a cast (no _msg_id, _reply_q, _timeout). timeout:
// `_timeout` in whole seconds, null when absent.
nlohmann::json request_message(const Call& call, const std::string& msg_id,
                               const std::string& reply_q, std::optional<int> timeout,
                               const std::string& unique_id);
// The message dict of a request body, checked: method a string, args an object, ...
std::variant<Request, std::string> parse_request(std::string_view body);

nlohmann::json reply_message(const std::string& msg_id, const nlohmann::json& result,
                             const std::optional<Failure>& failure, bool ending,
                             const std::string& unique_id);
std::variant<Reply, std::string> parse_reply(std::string_view body);

// `failure` as it goes on the wire: a JSON string of class, module, message, tb, args, kwargs.
std::string failure_text(const Failure& failure);
// Lenient: a JSON string (oslo), an object, or plain text (class "RemoteError").
Failure parse_failure(const nlohmann::json& value);

// The properties oslo's rabbit driver (kombu) sets on requests and replies: JSON in UTF-8,
// persistent, priority 0, empty headers, and for a call its timeout as the expiration in ms.
amqp::Properties message_properties(std::optional<double> expiration_seconds);

}  // namespace warren::core::oslo
