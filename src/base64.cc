#include "base64.h"

#include <openssl/evp.h>

#include <algorithm>
#include <iterator>

namespace warren {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; }

}  // namespace

std::string base64_encode(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(data.data()),
                                static_cast<int>(data.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  // White space is taken out, in a copy only when there is some (a Basic credential, decoded
  // for every request, has none).
  std::string compact;
  std::string_view in = text;
  if (std::any_of(text.begin(), text.end(), is_space)) {
    std::copy_if(text.begin(), text.end(), std::back_inserter(compact), [](char c) { return !is_space(c); });
    in = compact;
  }
  if (in.size() % 4 != 0) return std::nullopt;
  // EVP_DecodeBlock decodes padding as zero bytes and takes "====" for two of them: count the
  // padding here, where it may be (the last two places) and how much (two at most).
  size_t padding = 0;
  while (padding < in.size() && in[in.size() - 1 - padding] == '=') ++padding;
  if (padding > 2 || in.find('=') < in.size() - padding) return std::nullopt;
  if (in.empty()) return std::string();
  std::string out(in.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()),
                                static_cast<int>(in.size()));
  if (n < 0) return std::nullopt;
  out.resize(static_cast<size_t>(n) - padding);
  return out;
}

}  // namespace warren
