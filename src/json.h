// The one way warren writes JSON as text. nlohmann's dump() throws on a string that is not
// UTF-8, and such strings come from outside (a Basic-auth user name, an exchange name, a
// broker's error text echoing either): written through here, each invalid byte becomes U+FFFD
// and nothing throws.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace warren {

// `indent` as dump()'s: -1 for one line, N for pretty-printing with N spaces.
std::string json_text(const nlohmann::json& value, int indent = -1);

}  // namespace warren
