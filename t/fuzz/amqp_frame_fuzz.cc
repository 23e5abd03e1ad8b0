// The AMQP receive side: bytes from the broker's socket through librabbitmq's frame parser as
// the connection feeds it (after the protocol header; the first byte sets the piece size).
#include "amqp/codec.h"
#include "fuzz.h"

using namespace warren;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t piece = data[0] % 64 + 1;
  std::string_view rest = fuzz::as_text(data + 1, size - 1);
  amqp::Decoder decoder;
  for (int rounds = 0; !rest.empty() && rounds < 100000; ++rounds) {
    amqp_frame_t frame{};
    const int n = decoder.feed(rest.data(), std::min(piece, rest.size()), &frame);
    if (n <= 0) break;
    rest.remove_prefix(static_cast<size_t>(n));
    if (frame.frame_type == AMQP_FRAME_HEADER && frame.payload.properties.class_id == AMQP_BASIC_CLASS &&
        frame.payload.properties.decoded)
      (void)amqp::properties_from_amqp(
          *static_cast<amqp_basic_properties_t*>(frame.payload.properties.decoded));
    if (frame.frame_type != 0) decoder.release(frame.channel);
  }
  return 0;
}
