// HTTP's field syntax (RFC 9110), for what comes in (request header names) and what goes out
// (header names and values built from AMQP messages).
#pragma once

#include <algorithm>
#include <cctype>
#include <string_view>

namespace warren {

// A token (section 5.6.2): a method, a field name.
inline bool is_token(std::string_view s) {
  constexpr std::string_view kSymbols = "!#$%&'*+-.^_`|~";
  return !s.empty() && std::all_of(s.begin(), s.end(), [&](unsigned char c) {
    return std::isalnum(c) || kSymbols.find(static_cast<char>(c)) != std::string_view::npos;
  });
}

}  // namespace warren
