#include "amqp/types.h"

#include <algorithm>
#include <chrono>
#include <random>

namespace warren::amqp {

const char* outcome_name(Outcome o) {
  switch (o) {
    case Outcome::ok: return "ok";
    case Outcome::nacked: return "nacked";
    case Outcome::returned: return "returned";
    case Outcome::channel_error: return "channel_error";
    case Outcome::connection_lost: return "connection_lost";
    case Outcome::timeout: return "timeout";
    case Outcome::refused: return "refused";
    case Outcome::invalid: return "invalid";
    case Outcome::displaced: return "displaced";
  }
  return "?";
}

Backoff::Backoff(double initial, double max)
    : initial_(initial), max_(std::max(max, initial)),
      seed_(std::random_device{}() ^
            static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count())) {}

double Backoff::next_delay() {
  double d = initial_;
  // doubling stops once max_ is reached, so the loop is short whatever attempt_ is
  for (int i = 0; i < attempt_ && d > 0 && d < max_; ++i) d *= 2;
  d = std::min(d, max_);
  ++attempt_;
  // xorshift: cheap, per-instance, good enough to spread reconnects
  seed_ ^= seed_ << 13;
  seed_ ^= seed_ >> 7;
  seed_ ^= seed_ << 17;
  double unit = static_cast<double>(seed_ >> 11) / static_cast<double>(1ULL << 53);
  return d / 2 + unit * d / 2;
}

}  // namespace warren::amqp
