// The one way warren writes JSON as text, and the one way it reads JSON that comes from outside.
// nlohmann's dump() throws on a string that is not UTF-8, and such strings come from outside (a
// Basic-auth user name, an exchange name, a broker's error text echoing either): written
// through here, each invalid byte becomes U+FFFD and nothing throws. nlohmann builds, copies and
// dumps nested values recursively: 40000 '[' in a request overflowed a worker's stack, so what
// nests deeper than kMaxJsonDepth is refused before anything is built.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace warren {

// `indent` as dump()'s: -1 for one line, N for pretty-printing with N spaces.
std::string json_text(const nlohmann::json& value, int indent = -1);

inline constexpr size_t kMaxJsonDepth = 128;

// Walks the text without building it: false when arrays and objects nest deeper than
// `max_depth`. The string value of `nested_key` is walked as JSON too (oslo's envelope carries
// its message as JSON text). Text that is not JSON passes: the parse that follows says so.
bool json_nests_within(std::string_view text, size_t max_depth = kMaxJsonDepth,
                       std::string_view nested_key = {});

// JSON from outside: a discarded value (is_discarded()) when the text is not JSON (a raw NUL
// byte included) or nests deeper than kMaxJsonDepth. Never throws.
nlohmann::json json_parse(std::string_view text);

}  // namespace warren
