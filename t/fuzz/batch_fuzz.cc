// Batch bodies: a JSON array or NDJSON (first byte picks), then each item as a message, and
// the answer written as the daemon writes it (json_text: item text that is not UTF-8 is
// replaced, never thrown on).
#include "fuzz.h"
#include "http/publish_request.h"
#include "json.h"

using namespace warren;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const char* type = data[0] & 1 ? "application/x-ndjson" : "application/json";
  auto result = parse_batch(type, fuzz::as_text(data + 1, size - 1));
  if (auto* error = std::get_if<HttpError>(&result))
    (void)json_text({{"error", error->error}, {"detail", error->detail}});
  if (auto* items = std::get_if<std::vector<nlohmann::json>>(&result)) {
    nlohmann::json results = nlohmann::json::array();
    for (const auto& item : *items) {
      core::Message m;
      auto e = apply_json_item(m, item);
      results.push_back(e ? nlohmann::json{{"status", e->status}, {"error", e->error}, {"detail", e->detail}}
                          : nlohmann::json{{"status", 204}, {"routing_key", m.routing_key}});
    }
    (void)json_text({{"results", results}});
  }
  return 0;
}
