// Connection bytes through the HTTP server's request reader, cut into reads at the input's NULs
// (so that one input is many read patterns), as a connection feeds it: every complete request
// taken, pipelined ones in turn, until it is refused or the bytes end. What must hold whatever
// the bytes: the reader never consumes more than it was given, a refusal is 400, 413, 431 or 505,
// and a request it hands over is within the limits.
#include <cstdlib>
#include <string>

#include "fuzz.h"
#include "http/wire.h"

using namespace warren;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr http::WireLimits kLimits{512, 256};
  http::RequestReader reader(kLimits);
  std::string pending;
  std::string_view rest = fuzz::as_text(data, size);
  while (!rest.empty() && reader.state() != http::RequestReader::State::refused) {
    auto [read, after] = fuzz::split2(rest);
    rest = read.size() == rest.size() ? std::string_view() : after;
    pending.append(read);
    for (;;) {
      const size_t used = reader.feed(pending);
      if (used > pending.size()) abort();
      pending.erase(0, used);
      if (reader.state() != http::RequestReader::State::complete) break;
      const http::WireRequest r = reader.take();
      if (r.body.size() > kLimits.max_body || r.head_bytes > kLimits.max_head) abort();
      if (used == 0 && pending.empty()) break;
    }
  }
  if (reader.state() == http::RequestReader::State::refused) {
    const int s = reader.refused_status();
    if (s != 400 && s != 413 && s != 431 && s != 505) abort();
  }
  return 0;
}
