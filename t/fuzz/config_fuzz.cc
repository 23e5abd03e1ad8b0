// The YAML configuration: syntax, structure, types and the semantic checks.
#include "config.h"
#include "fuzz.h"

using namespace warren;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto result = config_parse(std::string(fuzz::as_text(data, size)), "fuzz.yml");
  for (const auto& e : result.errors) (void)e.text();
  return 0;
}
