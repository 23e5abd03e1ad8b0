// The publish route's parsers of client input: the path, Basic credentials, form and query
// decoding, multipart bodies, and every field's value. First byte picks the parser. What the
// daemon writes as JSON from them (error bodies, the user name in /stats) goes through
// json_text, as there: client bytes that are not UTF-8 must not throw.
#include "fuzz.h"
#include "http/publish_request.h"
#include "json.h"

using namespace warren;

namespace {
void answer(const std::optional<HttpError>& e) {
  if (e) (void)json_text({{"error", e->error}, {"detail", e->detail}});
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t which = data[0];
  const std::string_view text = fuzz::as_text(data + 1, size - 1);
  switch (which % 5) {
    case 0: {
      auto path = parse_publish_path(text);
      if (auto* e = std::get_if<HttpError>(&path)) answer(*e);
      else (void)json_text({{"exchange", std::get<PublishPath>(path).exchange}});
      break;
    }
    case 1:
      if (auto who = parse_basic_auth(text, "/"))
        (void)json_text({{"connections", {{who->vhost + ":" + who->username, 1}}}});
      break;
    case 2: {
      std::map<std::string, std::string> fields;
      if (parse_form(text, &fields)) {
        core::Message m;
        for (const auto& [k, v] : fields) answer(apply_field(m, k, v));
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
      answer(apply_field(m, std::string(key), std::string(value)));
      break;
    }
  }
  return 0;
}
