// Batch bodies: a JSON array or NDJSON (first byte picks), then each item as a message.
#include "fuzz.h"
#include "http/publish_request.h"

using namespace warren;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const char* type = data[0] & 1 ? "application/x-ndjson" : "application/json";
  auto result = parse_batch(type, fuzz::as_text(data + 1, size - 1));
  if (auto* items = std::get_if<std::vector<nlohmann::json>>(&result)) {
    for (const auto& item : *items) {
      core::Message m;
      (void)apply_json_item(m, item);
    }
  }
  return 0;
}
