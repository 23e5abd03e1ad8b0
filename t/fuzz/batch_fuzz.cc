// Batch bodies: a JSON array or NDJSON (first byte picks), each item as a message, and the
// answer written as the daemon writes it (json_text: item text that is not UTF-8 is replaced,
// never thrown on). NDJSON lines that are plain objects are read without building a json value
// (PlainMessageReader), the rest the general way: when every line is JSON, the same items as a
// JSON array (always the general way) must give the same messages or the same error.
#include <nlohmann/json.hpp>

#include "fuzz.h"
#include "http/publish_request.h"
#include "json.h"

using namespace warren;

namespace {

using Result = std::variant<std::vector<core::Message>, HttpError>;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

void answer(const Result& result) {
  if (auto* error = std::get_if<HttpError>(&result)) {
    (void)json_text({{"error", error->error}, {"detail", error->detail}});
    return;
  }
  nlohmann::json results = nlohmann::json::array();
  for (const auto& m : std::get<std::vector<core::Message>>(result))
    results.push_back({{"status", 204}, {"routing_key", m.routing_key}});
  (void)json_text({{"results", results}});
}

// The NDJSON body's lines as one JSON array, or nothing when a line is not JSON by itself.
std::optional<std::string> as_array(std::string_view body) {
  std::string array = "[";
  while (!body.empty()) {
    const size_t nl = body.find('\n');
    std::string_view line = body.substr(0, nl);
    body = nl == std::string_view::npos ? std::string_view{} : body.substr(nl + 1);
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    if (json_parse(line).is_discarded()) return std::nullopt;
    if (array.size() > 1) array += ',';
    array += line;
  }
  return array + "]";
}

void same(const Result& a, const Result& b) {
  check(a.index() == b.index());
  if (auto* e = std::get_if<HttpError>(&a)) {
    const auto& f = std::get<HttpError>(b);
    check(e->status == f.status && e->detail == f.detail);
    return;
  }
  const auto& x = std::get<std::vector<core::Message>>(a);
  const auto& y = std::get<std::vector<core::Message>>(b);
  check(x.size() == y.size());
  for (size_t i = 0; i < x.size(); ++i)
    check(x[i].routing_key == y[i].routing_key && x[i].body == y[i].body &&
          x[i].mandatory == y[i].mandatory && x[i].properties == y[i].properties);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool ndjson = data[0] & 1;
  const std::string_view body = fuzz::as_text(data + 1, size - 1);
  const Result result = batch_messages("ex", ndjson ? "application/x-ndjson" : "application/json", body);
  answer(result);
  if (!ndjson) return 0;
  if (auto array = as_array(body))
    same(result, batch_messages("ex", "application/json", *array));
  return 0;
}
