// The master/worker frame decoder, fed in pieces as a socket would deliver them (the first
// byte sets the piece size); each snapshot frame through the master's decoding. A frame that
// does not decode may only throw a JSON error (the channel drops it), and a decoder never holds
// more than one frame's worth.
#include <cstdlib>

#include "proc/channel.h"
#include "fuzz.h"
#include "stats.h"

using namespace warren;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t piece = data[0] % 32 + 1;
  std::string_view rest = fuzz::as_text(data + 1, size - 1);
  FrameDecoder decoder;
  while (!rest.empty() && !decoder.broken()) {
    decoder.feed(rest.substr(0, piece));
    rest.remove_prefix(std::min(piece, rest.size()));
    for (int i = 0; i < 1000; ++i) {
      auto frame = decoder.next();
      if (!frame) break;
      if (frame->type != FrameType::snapshot) continue;
      try {
        Snapshot::from_json(nlohmann::json::parse(frame->payload));
      } catch (const nlohmann::json::exception&) {
      }
    }
    if (decoder.buffered() > FrameDecoder::kMaxFrame + 4 + piece) abort();
  }
  return 0;
}
