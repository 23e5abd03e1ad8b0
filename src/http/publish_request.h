// HTTP publish requests (statelessd's API) into core publish calls: the path, the Basic
// credentials, and the message fields from a form, a multipart form or the query string.
// Pure translation, no I/O: unit-tested in t/http/publish_request_test.cc.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/publisher.h"
#include "http/request.h"

namespace warren {

// "/{vhost}/{exchange}/{routing_key}" (or two segments for a batch), each percent-decoded;
// "amq.default" names the default exchange "".
struct PublishPath {
  std::string vhost, exchange, routing_key;
  bool batch = false;  // no routing key segment: the body is a batch
};
std::variant<PublishPath, HttpError> parse_publish_path(std::string_view raw_path);

// The media type of a Content-Type value, lower-cased, without its parameters:
// "Application/JSON; charset=utf-8" is "application/json" (media types ignore case).
std::string media_type(std::string_view content_type);

// application/x-www-form-urlencoded (also a query string): keys and values percent-decoded,
// '+' as space. Repeated keys keep the last value. False for a '%' without two hex digits.
[[nodiscard]] bool parse_form(std::string_view text, std::map<std::string, std::string>* fields);
// multipart/form-data (PHP's curl sends this for an array of fields), `content_type` carrying
// the boundary. Returns an error text, empty on success.
std::string parse_multipart(std::string_view content_type, std::string_view body,
                            std::map<std::string, std::string>* fields);

// Sets one statelessd field (body, app_id, ..., headers, mandatory) on the message; an unknown
// key or a bad value is a 400 naming the field. `content-type` spells `content_type` too.
std::optional<HttpError> apply_field(core::Message& message, const std::string& key,
                                     std::string value);

// One batch item: a JSON object with `routing_key`, `body` and any field above.
std::optional<HttpError> apply_json_item(core::Message& message, const nlohmann::json& item);

// A batch body, a JSON array or one JSON object per line (application/x-ndjson), into its
// messages to `exchange`, every one checked: a line that is not JSON (400 naming the line) or
// else the first bad item (400 naming its index) is the error, so that a bad batch publishes
// nothing.
std::variant<std::vector<core::Message>, HttpError> batch_messages(const std::string& exchange,
                                                                   std::string_view content_type,
                                                                   std::string_view body);

}  // namespace warren
