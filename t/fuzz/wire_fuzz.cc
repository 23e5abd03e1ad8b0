// Connection bytes through the HTTP server's request reader, cut into reads at the input's NULs
// (so that one input is many read patterns), as a connection feeds it: every complete request
// taken, pipelined ones in turn, until it is refused or the bytes end. The worker's body budget
// (http.max_body_buffer) is partly held by other connections, as much as the input's first byte
// says. What must hold whatever the bytes: the reader never consumes more than it was given, a
// refusal is 400, 413, 431, 503 or 505, a request it hands over is within the limits, the budget
// is never overdrawn, and every byte the reader held in it comes back (taken, refused, or the
// reader gone).
#include <cstdlib>
#include <string>

#include "fuzz.h"
#include "http/wire.h"

using namespace warren;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  http::ByteBudget budget(300);
  const size_t others = data[0];  // 0..255 held by other connections
  if (!budget.take(others)) abort();
  const http::WireLimits limits{512, 256, &budget};
  {
    http::RequestReader reader(limits);
    std::string pending;
    std::string_view rest = fuzz::as_text(data + 1, size - 1);
    while (!rest.empty() && reader.state() != http::RequestReader::State::refused) {
      auto [read, after] = fuzz::split2(rest);
      rest = read.size() == rest.size() ? std::string_view() : after;
      pending.append(read);
      for (;;) {
        const size_t used = reader.feed(pending);
        if (used > pending.size() || budget.held() > budget.limit()) abort();
        pending.erase(0, used);
        if (reader.state() != http::RequestReader::State::complete) break;
        const http::WireRequest r = reader.take();
        if (r.body.size() > limits.max_body || r.head_bytes > limits.max_head) abort();
        if (budget.held() != others) abort();  // a request handed over takes its body out
        if (used == 0 && pending.empty()) break;
      }
    }
    if (reader.state() == http::RequestReader::State::refused) {
      const int s = reader.refused_status();
      if (s != 400 && s != 413 && s != 431 && s != 503 && s != 505) abort();
      if (budget.held() != others) abort();
    }
  }
  if (budget.held() != others) abort();  // a reader gone mid-body gives its bytes back
  return 0;
}
