// The libFuzzer entry point every t/fuzz/*_fuzz.cc defines. `make fuzz` links them with clang's
// libFuzzer; `make check` links them with replay_main.cc, which runs each file of the seed
// corpus t/fuzz/<target>/ through it, so the corpora are regression tests without clang.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace warren::fuzz {

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Splits the input at the first NUL: two independent strings from one input.
inline std::pair<std::string_view, std::string_view> split2(std::string_view s) {
  const size_t nul = s.find('\0');
  if (nul == std::string_view::npos) return {s, {}};
  return {s.substr(0, nul), s.substr(nul + 1)};
}

}  // namespace warren::fuzz
