#include "forward/rewrite.h"

#include <fmt/format.h>

namespace warren::forward {
namespace {

std::string pcre2_error_text(int code) {
  PCRE2_UCHAR text[256];
  if (pcre2_get_error_message(code, text, sizeof text) < 0) return fmt::format("PCRE2 error {}", code);
  return reinterpret_cast<const char*>(text);
}

struct Compiled {
  Pcre2CodePtr code;
  std::string error;
};

Compiled compile(std::string_view pattern) {
  int code = 0;
  PCRE2_SIZE offset = 0;
  Compiled c;
  c.code.reset(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), 0, &code,
                             &offset, nullptr));
  if (!c.code) c.error = fmt::format("{} at offset {}", pcre2_error_text(code), offset);
  return c;
}

}  // namespace

std::optional<std::string> Rewrite::check(std::string_view from) {
  auto c = compile(from);
  if (c.code) return std::nullopt;
  return c.error;
}

Rewrite::Rewrite(std::string_view from, std::string_view to) : to_(to) {
  if (from.empty()) return;
  code_ = compile(from).code;
  if (!code_) return;
  // Without JIT support (or memory for it) pcre2_match interprets, on the heap: still safe.
  (void)pcre2_jit_compile(code_.get(), PCRE2_JIT_COMPLETE);
  match_.reset(pcre2_match_data_create_from_pattern(code_.get(), nullptr));
  context_.reset(pcre2_match_context_create(nullptr));
  if (!match_ || !context_) abort();  // out of memory
  pcre2_set_match_limit(context_.get(), kRewriteMatchLimit);
}

std::optional<std::string> Rewrite::apply(std::string_view path, std::string* error) const {
  if (!code_) return std::string(path);
  std::string out(path.size() + to_.size() + 64, '\0');
  for (int pass = 0; pass < 2; ++pass) {
    PCRE2_SIZE length = out.size();
    const int rc = pcre2_substitute(
        code_.get(), reinterpret_cast<PCRE2_SPTR>(path.data()), path.size(), 0,
        PCRE2_SUBSTITUTE_OVERFLOW_LENGTH | PCRE2_SUBSTITUTE_UNSET_EMPTY, match_.get(), context_.get(),
        reinterpret_cast<PCRE2_SPTR>(to_.data()), to_.size(), reinterpret_cast<PCRE2_UCHAR*>(out.data()),
        &length);
    if (rc >= 0) {
      out.resize(length);
      return out;
    }
    // Too small: `length` is now what it needs; the second pass has it.
    if (rc == PCRE2_ERROR_NOMEMORY && pass == 0) {
      out.assign(length, '\0');
      continue;
    }
    *error = fmt::format("rewrite.from failed on the path: {}", pcre2_error_text(rc));
    return std::nullopt;
  }
  *error = "rewrite.from failed on the path: the result did not fit";
  return std::nullopt;
}

}  // namespace warren::forward
