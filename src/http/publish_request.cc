#include "http/publish_request.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <utility>

#include "http/server.h"
#include "json.h"

namespace warren {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A percent-decoded copy; nullopt for malformed input ('%' not followed by two hex digits).
// Not evhttp_uridecode: it copies a malformed '%' through as is, so "%zz" would name a vhost.
// Escapes are found with memchr (string_view::find) and what lies between is copied a run at
// a time: a byte loop here was a twentieth of a worker's instructions for a form publish.
std::optional<std::string> uri_decode(std::string_view s, bool plus_is_space) {
  constexpr size_t npos = std::string_view::npos;
  std::string out;
  out.reserve(s.size());
  size_t percent = s.find('%'), plus = plus_is_space ? s.find('+') : npos;
  for (size_t i = 0;;) {
    const size_t at = std::min(percent, plus);
    out.append(s.substr(i, at - i));
    if (at == npos) return out;
    if (at == plus) {
      out += ' ';
      i = at + 1;
      plus = s.find('+', i);
      continue;
    }
    // An escape's two hex digits are neither '%' nor '+': `plus` cannot point inside it.
    if (s.size() - at < 3) return std::nullopt;
    const int hi = hex_value(s[at + 1]), lo = hex_value(s[at + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i = at + 3;
    percent = s.find('%', i);
  }
}

HttpError bad_field(const std::string& field, const std::string& why) {
  return {400, "bad field", field + ": " + why};
}

template <typename T>
std::optional<T> parse_number(const std::string& text, T min, T max) {
  T value{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || value < min || value > max)
    return std::nullopt;
  return value;
}

// CR or LF in a property or header would become a header line of its own wherever the message
// turns back into HTTP (forwarders, other consumers): refused at the door.
bool has_crlf(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; }

// The first key or string value holding CR/LF anywhere in a headers object, or nullopt.
std::optional<std::string> crlf_in_json(const nlohmann::json& j, int depth = 0) {
  if (depth > 64) return std::string("(nested too deep)");
  if (j.is_string()) {
    if (has_crlf(j.get_ref<const std::string&>())) return std::string("a value");
  } else if (j.is_object()) {
    for (const auto& [k, v] : j.items()) {
      if (has_crlf(k)) return "a name";
      if (auto bad = crlf_in_json(v, depth + 1)) return k;
    }
  } else if (j.is_array()) {
    for (const auto& v : j)
      if (auto bad = crlf_in_json(v, depth + 1)) return bad;
  }
  return std::nullopt;
}

std::optional<HttpError> set_headers(std::optional<nlohmann::json>& slot, const std::string& key,
                                     nlohmann::json value) {
  if (auto bad = crlf_in_json(value))
    return bad_field(key, fmt::format("CR or LF in header {}", *bad));
  slot = std::move(value);
  return std::nullopt;
}

// AMQP short strings are at most 255 bytes.
std::optional<HttpError> set_short(std::optional<std::string>& slot, const std::string& key,
                                   const std::string& value) {
  if (value.size() > 255) return bad_field(key, "longer than 255 bytes");
  if (has_crlf(value)) return bad_field(key, "CR or LF is not allowed");
  slot = value;
  return std::nullopt;
}

// The fields that are AMQP short-string properties, set as they come.
constexpr std::pair<std::string_view, std::optional<std::string> amqp::Properties::*>
    kShortStringFields[] = {
        {"app_id", &amqp::Properties::app_id},
        {"content_encoding", &amqp::Properties::content_encoding},
        {"content_type", &amqp::Properties::content_type},
        {"correlation_id", &amqp::Properties::correlation_id},
        {"message_id", &amqp::Properties::message_id},
        {"reply_to", &amqp::Properties::reply_to},
        {"type", &amqp::Properties::type},
        {"user_id", &amqp::Properties::user_id},
};

// The field name from a part's `Content-Disposition: form-data; name="..."`: the parameter
// exactly called name, so that a `filename="..."` before it is not taken for it.
std::optional<std::string_view> multipart_name(std::string_view head) {
  for (size_t at = head.find("name=\""); at != std::string_view::npos;
       at = head.find("name=\"", at + 1)) {
    if (at > 0 && head[at - 1] != ';' && head[at - 1] != ' ' && head[at - 1] != '\t') continue;
    auto name = head.substr(at + 6);
    const size_t quote = name.find('"');
    if (quote == std::string_view::npos) return std::nullopt;
    return name.substr(0, quote);
  }
  return std::nullopt;
}

}  // namespace

std::variant<PublishPath, HttpError> parse_publish_path(std::string_view raw_path) {
  // Made only when it is the answer: its strings were a third of this function's cost.
  const auto shape = [] {
    return HttpError{404, "not found", "expected /{vhost}/{exchange}/{routing_key} (vhost \"/\" is %2f)"};
  };
  if (raw_path.empty() || raw_path[0] != '/') return shape();
  // Every segment is decoded, so that a malformed one is a 400 even where there are too many.
  std::string segments[3];
  size_t count = 0;
  for (std::string_view rest = raw_path.substr(1);;) {
    const size_t slash = rest.find('/');
    auto decoded = uri_decode(rest.substr(0, slash), false);
    if (!decoded) return HttpError{400, "bad path", "malformed percent-encoding"};
    if (count < 3) segments[count] = std::move(*decoded);
    ++count;
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  if (count < 2 || count > 3 || segments[0].empty() || segments[1].empty()) return shape();
  PublishPath p;
  p.vhost = std::move(segments[0]);
  p.exchange = segments[1] == "amq.default" ? "" : std::move(segments[1]);
  p.batch = count == 2;
  p.routing_key = std::move(segments[2]);
  // AMQP short strings: a longer vhost cannot even be sent in connection.open.
  if (p.vhost.size() > 255 || p.exchange.size() > 255 || p.routing_key.size() > 255)
    return HttpError{400, "bad path", "vhost, exchange and routing key are at most 255 bytes"};
  return p;
}

std::string media_type(std::string_view content_type) {
  std::string_view type = content_type.substr(0, content_type.find(';'));
  while (!type.empty() && (type.front() == ' ' || type.front() == '\t')) type.remove_prefix(1);
  while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.remove_suffix(1);
  std::string out(type);
  // ASCII only, as the grammar is (RFC 9110 8.3.1): std::tolower asks the locale per byte.
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

bool parse_form(std::string_view text, std::map<std::string, std::string>* fields) {
  while (!text.empty()) {
    const size_t amp = text.find('&');
    std::string_view pair = text.substr(0, amp);
    text = amp == std::string_view::npos ? std::string_view{} : text.substr(amp + 1);
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    auto key = uri_decode(pair.substr(0, eq), true);
    auto value = uri_decode(eq == std::string_view::npos ? "" : pair.substr(eq + 1), true);
    if (!key || !value) return false;
    (*fields)[*key] = std::move(*value);
  }
  return true;
}

std::string parse_multipart(std::string_view content_type, std::string_view body,
                            std::map<std::string, std::string>* fields) {
  auto at = content_type.find("boundary=");
  if (at == std::string_view::npos) return "multipart/form-data without a boundary";
  std::string_view boundary = content_type.substr(at + 9);
  boundary = boundary.substr(0, boundary.find(';'));
  if (boundary.size() >= 2 && boundary.front() == '"') boundary = boundary.substr(1, boundary.size() - 2);
  if (boundary.empty() || boundary.size() > 70) return "bad multipart boundary";
  const std::string delimiter = "--" + std::string(boundary);
  size_t pos = body.find(delimiter);
  if (pos == std::string_view::npos) return "multipart body without its boundary";
  for (;;) {
    pos += delimiter.size();
    if (body.substr(pos, 2) == "--") return {};  // the closing delimiter
    if (body.substr(pos, 2) != "\r\n") return "malformed multipart delimiter line";
    pos += 2;
    const size_t head_end = body.find("\r\n\r\n", pos);
    if (head_end == std::string_view::npos) return "multipart part without a blank line";
    std::string_view head = body.substr(pos, head_end - pos);
    const size_t next = body.find("\r\n" + delimiter, head_end + 4);
    if (next == std::string_view::npos) return "multipart part without a closing boundary";
    std::string_view value = body.substr(head_end + 4, next - head_end - 4);
    auto name = multipart_name(head);
    if (!name) return "multipart part without a name";
    (*fields)[std::string(*name)] = std::string(value);
    pos = next + 2;
  }
}

std::optional<HttpError> apply_field(core::Message& m, const std::string& field, std::string value) {
  // `content-type` is `content_type`: statelessd's own curl example sends the hyphenated
  // spelling (statelessd dropped it silently; warren rejects unknown fields, so it would
  // answer 400 to the README's first example). Errors name the field as the client spelt it.
  std::string key = field;
  std::replace(key.begin(), key.end(), '-', '_');
  auto& p = m.properties;
  for (const auto& [name, property] : kShortStringFields)
    if (key == name) return set_short(p.*property, field, value);
  if (key == "body") {
    m.body = std::move(value);
  } else if (key == "delivery_mode") {
    auto v = parse_number<int>(value, 1, 2);
    if (!v) return bad_field(field, "must be 1 (transient) or 2 (persistent)");
    p.delivery_mode = static_cast<uint8_t>(*v);
  } else if (key == "priority") {
    auto v = parse_number<int>(value, 0, 255);
    if (!v) return bad_field(field, "must be an integer from 0 to 255");
    p.priority = static_cast<uint8_t>(*v);
  } else if (key == "timestamp") {
    auto v = parse_number<uint64_t>(value, 0, UINT64_MAX);
    if (!v) return bad_field(field, "must be Unix seconds (a non-negative integer)");
    p.timestamp = *v;
  } else if (key == "expire" || key == "expiration") {
    auto v = parse_number<uint64_t>(value, 0, UINT32_MAX);
    if (!v) return bad_field(field, "must be milliseconds (a non-negative integer)");
    p.expiration = std::to_string(*v);
  } else if (key == "headers") {
    auto j = json_parse(value);
    if (j.is_discarded() || !j.is_object())
      return bad_field(field, fmt::format("must be a JSON object (nesting at most {} levels)", kMaxJsonDepth));
    return set_headers(p.headers, field, std::move(j));
  } else if (key == "mandatory") {
    if (value == "1" || value == "true") m.mandatory = true;
    else if (value == "0" || value == "false" || value.empty()) m.mandatory = false;
    else return bad_field(field, "must be 1 or 0");
  } else {
    return bad_field(field, "unknown field");
  }
  return std::nullopt;
}

std::optional<HttpError> apply_json_item(core::Message& m, const nlohmann::json& item) {
  if (!item.is_object()) return HttpError{400, "bad message", "each message must be a JSON object"};
  for (const auto& [key, value] : item.items()) {
    if (key == "routing_key") {
      if (!value.is_string()) return bad_field(key, "must be a string");
      m.routing_key = value.get<std::string>();
      if (m.routing_key.size() > 255) return bad_field(key, "longer than 255 bytes");
      continue;
    }
    if (key == "headers") {
      if (!value.is_object()) return bad_field(key, "must be a JSON object");
      if (auto error = set_headers(m.properties.headers, key, value)) return error;
      continue;
    }
    std::string text;
    if (value.is_string()) text = value.get<std::string>();
    else if (value.is_number_integer() || value.is_number_unsigned()) text = json_text(value);
    else if (value.is_boolean()) text = value.get<bool>() ? "1" : "0";
    else return bad_field(key, "must be a string or an integer");
    if (auto error = apply_field(m, key, std::move(text))) return error;
  }
  return std::nullopt;
}

namespace {

// One NDJSON line read straight into a Message through nlohmann's SAX interface, as
// apply_json_item reads the line's parsed value, without building that value: building and
// freeing each line's json was a fifth of a worker's instructions in batches (callgrind).
// Only the plain case is read here: an object of strings, integers and booleans, each key
// once, every field good. Anything else (headers, a nested or null value, a repeated key, a
// bad field, a line that is no object) stops the reader, and the line goes the general way,
// json_parse then apply_json_item, which gives the same message or the same error.
class PlainMessageReader final : public nlohmann::json_sax<nlohmann::json> {
 public:
  // False when the line is not the plain case (the message is then half set: start it again).
  bool read(std::string_view line, core::Message& m) {
    if (line.find('\0') != std::string_view::npos) return false;  // json_parse refuses it
    m_ = &m;
    keys_.clear();
    in_object_ = false;
    return nlohmann::json::sax_parse(line, this);
  }

  bool string(string_t& s) override { return field(std::move(s), true); }
  bool number_integer(number_integer_t v) override { return field(std::to_string(v)); }
  bool number_unsigned(number_unsigned_t v) override { return field(std::to_string(v)); }
  bool boolean(bool v) override { return field(v ? "1" : "0"); }
  bool null() override { return false; }
  bool number_float(number_float_t, const string_t&) override { return false; }
  bool binary(binary_t&) override { return false; }
  bool key(string_t& k) override {
    if (std::find(keys_.begin(), keys_.end(), k) != keys_.end()) return false;
    keys_.push_back(std::move(k));
    return true;
  }
  bool start_object(std::size_t) override { return !std::exchange(in_object_, true); }
  bool end_object() override { return true; }
  bool start_array(std::size_t) override { return false; }
  bool end_array() override { return false; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }

 private:
  bool field(std::string value, bool is_string = false) {
    if (!in_object_ || keys_.empty()) return false;
    const std::string& key = keys_.back();
    if (key == "headers") return false;
    if (key == "routing_key") {
      if (!is_string) return false;
      m_->routing_key = std::move(value);
      return m_->routing_key.size() <= 255;
    }
    return !apply_field(*m_, key, std::move(value));
  }

  core::Message* m_ = nullptr;
  std::vector<std::string> keys_;  // of this line, in order: a field's is the last
  bool in_object_ = false;
};

HttpError message_error(size_t index, const HttpError& e) {
  return {e.status, e.error, fmt::format("message {}: {}", index, e.detail)};
}

// Every line is checked as JSON before any message is judged: a line that is not JSON is the
// error even when an earlier message is bad.
std::variant<std::vector<core::Message>, HttpError> ndjson_messages(const std::string& exchange,
                                                                    std::string_view body) {
  std::vector<core::Message> messages;
  std::optional<HttpError> first_bad;
  PlainMessageReader reader;
  for (size_t line_no = 1; !body.empty(); ++line_no) {
    const size_t nl = body.find('\n');
    std::string_view line = body.substr(0, nl);
    body = nl == std::string_view::npos ? std::string_view{} : body.substr(nl + 1);
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    core::Message& m = messages.emplace_back();
    m.exchange = exchange;
    if (reader.read(line, m)) continue;
    m = core::Message{};
    m.exchange = exchange;
    auto item = json_parse(line);
    if (item.is_discarded())
      return HttpError{400, "bad batch", fmt::format("line {} is not JSON nesting at most {} levels",
                                                     line_no, kMaxJsonDepth)};
    if (auto e = apply_json_item(m, item); e && !first_bad) first_bad = message_error(messages.size() - 1, *e);
  }
  if (first_bad) return std::move(*first_bad);
  if (messages.empty()) return HttpError{400, "bad batch", "no messages"};
  return messages;
}

std::variant<std::vector<core::Message>, HttpError> array_messages(const std::string& exchange,
                                                                   std::string_view body) {
  auto items = json_parse(body);
  if (items.is_discarded() || !items.is_array())
    return HttpError{400, "bad batch",
                     fmt::format("the body must be a JSON array of messages (nesting at most {} levels)",
                                 kMaxJsonDepth)};
  if (items.empty()) return HttpError{400, "bad batch", "no messages"};
  std::vector<core::Message> messages(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    messages[i].exchange = exchange;
    if (auto e = apply_json_item(messages[i], items[i])) return message_error(i, *e);
  }
  return messages;
}

}  // namespace

std::variant<std::vector<core::Message>, HttpError> batch_messages(const std::string& exchange,
                                                                   std::string_view content_type,
                                                                   std::string_view body) {
  const std::string type = media_type(content_type);
  if (type == "application/x-ndjson") return ndjson_messages(exchange, body);
  if (type == "application/json") return array_messages(exchange, body);
  return HttpError{415, "unsupported media type",
                   "a batch is application/json (an array) or application/x-ndjson"};
}

}  // namespace warren
