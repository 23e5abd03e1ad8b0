// A forwarder's path rewrite (rewrite.from -> rewrite.to) with PCRE2: compiled once per
// forwarder (JIT when the library has it) and matched under a match limit, so a hostile path
// costs bounded time and never recurses on the machine stack (std::regex did, once per
// character: a 100 kB path overflowed a worker's stack).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "handles.h"

namespace warren::forward {

// pcre2_match steps one rewrite may take: far more than any sane pattern needs on a path of
// forwarders[].max_path bytes, far less than a second of backtracking.
inline constexpr uint32_t kRewriteMatchLimit = 1'000'000;

class Rewrite {
 public:
  // `from` empty: no rewrite. A pattern that does not compile leaves it inactive; the config
  // check (rewrite_check) refuses such a file before any forwarder starts.
  Rewrite(std::string_view from, std::string_view to);

  // The error text for a pattern PCRE2 cannot compile (with the offset), nullopt when it
  // compiles.
  static std::optional<std::string> check(std::string_view from);

  // `path` with the first match of `from` replaced by `to` ($1, ${name}, $0, $$ as PCRE2's
  // pcre2_substitute reads them); unchanged when nothing matches. nullopt with `error` set when
  // the match gave up (the match limit) or the replacement names a group that does not exist.
  std::optional<std::string> apply(std::string_view path, std::string* error) const;

 private:
  std::string to_;
  Pcre2CodePtr code_;
  Pcre2MatchDataPtr match_;
  Pcre2MatchContextPtr context_;
};

}  // namespace warren::forward
