// Base64 (RFC 4648) over OpenSSL's EVP_EncodeBlock/EVP_DecodeBlock: the one codec for HTTP Basic
// credentials and vCD message bodies.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace warren {

std::string base64_encode(std::string_view data);
// ASCII whitespace anywhere is ignored (vCD wraps long bodies); the rest must be whole quads with
// at most two '=', only at the end. Anything else is nullopt, never a guess.
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace warren
