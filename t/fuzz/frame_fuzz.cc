// The master/worker frame decoder, fed in pieces as a socket would deliver them (the first
// byte sets the piece size).
#include "channel.h"
#include "fuzz.h"

using namespace warren;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t piece = data[0] % 32 + 1;
  std::string_view rest = fuzz::as_text(data + 1, size - 1);
  FrameDecoder decoder;
  while (!rest.empty() && !decoder.broken()) {
    decoder.feed(rest.substr(0, piece));
    rest.remove_prefix(std::min(piece, rest.size()));
    for (int i = 0; i < 1000; ++i)
      if (!decoder.next()) break;
  }
  return 0;
}
