#include "core/oslo.h"

#include <openssl/rand.h>

#include <fmt/format.h>

#include "json.h"

namespace warren::core::oslo {
namespace {

using nlohmann::json;

// The string fields of a message dict: a missing or null one is absent, as oslo writes them;
// one of another type makes the message wrong, and the first such field names the error.
class StringFields {
 public:
  explicit StringFields(const json& message) : message_(message) {}

  std::optional<std::string> optional(const char* key) {
    auto it = message_.find(key);
    if (it == message_.end() || it->is_null()) return std::nullopt;
    if (it->is_string()) return it->get<std::string>();
    if (error_.empty()) error_ = fmt::format("{}: not a string", key);
    return std::nullopt;
  }
  std::string text(const char* key) { return optional(key).value_or(""); }
  const std::string& error() const { return error_; }

 private:
  const json& message_;
  std::string error_;
};

// A message read from a body, or why it could not be.
template <class Message>
using Parsed = std::variant<Message, std::string>;

// The message dict of a body (unwrap), then `read` on it.
template <class Message>
Parsed<Message> parse_body(std::string_view body, Parsed<Message> (*read)(const json&)) {
  auto unwrapped = unwrap(body);
  if (auto* error = std::get_if<std::string>(&unwrapped)) return *error;
  return read(std::get<json>(unwrapped));
}

Parsed<Request> read_request(const json& m) {
  StringFields fields(m);
  Request r;
  r.call.method = fields.text("method");
  r.call.version = fields.optional("version");
  r.call.name_space = fields.optional("namespace");
  r.msg_id = fields.text("_msg_id");
  r.reply_q = fields.text("_reply_q");
  r.unique_id = fields.text("_unique_id");
  if (!fields.error().empty()) return fields.error();
  if (r.call.method.empty()) return std::string("method: missing");
  if (auto it = m.find("args"); it != m.end() && !it->is_null()) {
    if (!it->is_object()) return std::string("args: not an object");
    r.call.args = *it;
  }
  if (!r.msg_id.empty() && r.reply_q.empty()) return std::string("_reply_q: missing with _msg_id");
  if (auto it = m.find("_timeout"); it != m.end() && it->is_number()) r.timeout = it->get<double>();
  for (const auto& [key, value] : m.items())
    if (key.starts_with(kContextPrefix)) r.call.context[key.substr(kContextPrefix.size())] = value;
  return r;
}

Parsed<Reply> read_reply(const json& m) {
  StringFields fields(m);
  Reply r;
  r.msg_id = fields.text("_msg_id");
  r.unique_id = fields.text("_unique_id");
  if (!fields.error().empty()) return fields.error();
  if (r.msg_id.empty()) return std::string("_msg_id: missing");
  if (auto it = m.find("result"); it != m.end()) r.result = *it;
  if (auto it = m.find("failure"); it != m.end() && !it->is_null()) r.failure = parse_failure(*it);
  // oslo reads a missing `ending` as false (it keeps waiting), and so do we.
  if (auto it = m.find("ending"); it != m.end()) r.ending = it->is_boolean() ? it->get<bool>() : false;
  return r;
}

}  // namespace

std::string new_id() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) abort();  // no randomness: nothing sensible to do
  b[6] = (b[6] & 0x0f) | 0x40;  // version 4
  b[8] = (b[8] & 0x3f) | 0x80;  // RFC 4122 variant
  std::string hex;
  hex.reserve(32);
  for (unsigned char c : b) hex += fmt::format("{:02x}", c);
  return hex;
}

std::string envelope(const json& message) {
  return json_text(json{{kVersionKey, kEnvelopeVersion}, {kMessageKey, json_text(message)}});
}

std::variant<json, std::string> unwrap(std::string_view body) {
  json outer = json_parse(body);
  if (outer.is_discarded()) return std::string("the body is not JSON");
  if (!outer.is_object()) return std::string("the body is not a JSON object");
  auto version = outer.find(kVersionKey);
  auto inner = outer.find(kMessageKey);
  if (version == outer.end() || inner == outer.end()) return outer;  // an old, unenveloped message
  // oslo accepts any 2.x: same major, minor not above its own.
  if (!version->is_string() || !version->get<std::string>().starts_with("2."))
    return fmt::format("unsupported envelope version {}", json_text(*version));
  if (!inner->is_string()) return std::string("oslo.message: not a string");
  json message = json_parse(inner->get<std::string>());
  if (message.is_discarded() || !message.is_object())
    return std::string("oslo.message: not a JSON object");
  return message;
}

json request_message(const Call& call, const std::string& msg_id, const std::string& reply_q,
                     std::optional<int> timeout, const std::string& unique_id) {
  // Keys in the order oslo writes them; receivers do not care, people reading a capture do.
  json m = json::object();
  m["method"] = call.method;
  m["args"] = call.args.is_null() ? json::object() : call.args;
  if (call.name_space) m["namespace"] = *call.name_space;
  if (call.version) m["version"] = *call.version;
  if (!msg_id.empty()) {
    m["_msg_id"] = msg_id;
    m["_reply_q"] = reply_q;
    m["_timeout"] = timeout ? json(*timeout) : json(nullptr);
  }
  m["_unique_id"] = unique_id;
  if (call.context.is_object())
    for (const auto& [key, value] : call.context.items()) m[std::string(kContextPrefix) + key] = value;
  return m;
}

std::variant<Request, std::string> parse_request(std::string_view body) {
  return parse_body(body, read_request);
}

json reply_message(const std::string& msg_id, const json& result, const std::optional<Failure>& failure,
                   bool ending, const std::string& unique_id) {
  json m = json::object();
  m["result"] = result;
  m["failure"] = failure ? json(failure_text(*failure)) : json(nullptr);
  m["ending"] = ending;
  m["_msg_id"] = msg_id;
  m["_unique_id"] = unique_id;
  return m;
}

std::variant<Reply, std::string> parse_reply(std::string_view body) {
  return parse_body(body, read_reply);
}

std::string failure_text(const Failure& f) {
  return json_text(json{{"class", f.class_name},
                   {"module", f.module},
                   {"message", f.message},
                   {"tb", f.traceback},
                   {"args", f.args.is_array() ? f.args : json::array()},
                   {"kwargs", f.kwargs.is_object() ? f.kwargs : json::object()}});
}

Failure parse_failure(const json& value) {
  Failure f;
  json data = value;
  if (value.is_string()) {
    data = json_parse(value.get<std::string>());
    if (data.is_discarded() || !data.is_object()) {
      f.class_name = "RemoteError";
      f.message = value.get<std::string>();
      return f;
    }
  }
  if (!data.is_object()) {
    f.class_name = "RemoteError";
    f.message = json_text(value);
    return f;
  }
  auto text = [&](const char* key) {
    auto it = data.find(key);
    return it != data.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  f.class_name = text("class");
  f.module = text("module");
  f.message = text("message");
  if (auto it = data.find("args"); it != data.end() && it->is_array()) f.args = *it;
  if (auto it = data.find("kwargs"); it != data.end() && it->is_object()) f.kwargs = *it;
  if (auto it = data.find("tb"); it != data.end() && it->is_array())
    for (const auto& line : *it)
      if (line.is_string()) f.traceback.push_back(line.get<std::string>());
  if (f.class_name.empty()) f.class_name = "RemoteError";
  return f;
}

amqp::Properties message_properties(std::optional<double> expiration_seconds) {
  amqp::Properties p;
  p.content_type = "application/json";
  p.content_encoding = "utf-8";
  p.delivery_mode = 2;
  p.priority = 0;
  p.headers = json::object();
  // kombu: str(int(expiration * 1000))
  if (expiration_seconds) p.expiration = std::to_string(static_cast<int64_t>(*expiration_seconds * 1000));
  return p;
}

}  // namespace warren::core::oslo
