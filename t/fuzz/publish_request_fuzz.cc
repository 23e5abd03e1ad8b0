// The publish route's parsers of client input: the path, Basic credentials, form and query
// decoding, multipart bodies, and every field's value. First byte picks the parser.
#include "fuzz.h"
#include "http/publish_request.h"

using namespace warren;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t which = data[0];
  const std::string_view text = fuzz::as_text(data + 1, size - 1);
  switch (which % 5) {
    case 0:
      (void)parse_publish_path(text);
      break;
    case 1:
      (void)parse_basic_auth(text, "/");
      break;
    case 2: {
      std::map<std::string, std::string> fields;
      if (parse_form(text, &fields)) {
        core::Message m;
        for (const auto& [k, v] : fields) (void)apply_field(m, k, v);
      }
      break;
    }
    case 3: {
      auto [content_type, body] = fuzz::split2(text);
      std::map<std::string, std::string> fields;
      (void)parse_multipart(content_type, body, &fields);
      break;
    }
    case 4: {
      auto [key, value] = fuzz::split2(text);
      core::Message m;
      (void)apply_field(m, std::string(key), std::string(value));
      break;
    }
  }
  return 0;
}
