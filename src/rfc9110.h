// HTTP's field syntax (RFC 9110), for what comes in (request header names) and what goes out
// (header names and values built from AMQP messages).
#pragma once

#include <algorithm>
#include <array>
#include <string_view>

#include <strings.h>

namespace warren {

// A token (section 5.6.2): a method, a field name. A table, not std::isalnum: every header
// name of every request is checked, and isalnum asks the locale per byte.
inline bool is_token(std::string_view s) {
  static constexpr auto kTchar = [] {
    std::array<bool, 256> t{};
    for (int c = '0'; c <= '9'; ++c) t[c] = true;
    for (int c = 'a'; c <= 'z'; ++c) t[c] = t[c - 'a' + 'A'] = true;
    for (const char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
    return t;
  }();
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return kTchar[c]; });
}

// Field names and the tokens of their values compare without case (section 5.1), in ASCII.
inline bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace warren
