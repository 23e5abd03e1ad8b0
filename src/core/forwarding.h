// The delivery rules of forwarding (AMQP -> HTTP), shared by every forwarder format: what a
// backend's answer means for the message (ack, retry later, dead-letter) and how long a retry
// waits. Pure functions; core/forwarder applies them.
#pragma once

#include <string>

namespace warren::core {

// A forwarder's retries (a forwarder's `retry:` keys).
struct RetryPolicy {
  int max_attempts = 5;
  double initial_delay = 1;
  double max_delay = 60;
};

// What happens to a consumed message once an attempt has ended.
enum class Disposition {
  ack,          // done: 2xx
  retry,        // 5xx, connection error or timeout with attempts left: try again after a delay
  dead_letter,  // 3xx or 4xx (retrying cannot help; redirects are not followed), a message that
                // cannot be translated, or retries exhausted: publish to dead_letter_exchange
                // (or reject without requeue)
};
const char* disposition_name(Disposition d);

// status: the backend's HTTP status, or 0 when there was none (connect failure, timeout, reset).
// attempt: 1 for the first try. max_attempts counts tries, not retries (1 = never retry).
[[nodiscard]] Disposition forward_disposition(int status, int attempt, int max_attempts);

// Seconds to wait before attempt `attempt + 1` after attempt `attempt` failed: initial_delay,
// doubled each time, capped at max_delay. No jitter: a forwarder's retries are already spread
// by when each message failed, and tests can count on the figures.
[[nodiscard]] double retry_delay(const RetryPolicy& retry, int attempt);

// "2xx", "3xx", "4xx", "5xx", or "error" (no HTTP status): the stats' classes.
const char* status_class(int status);

}  // namespace warren::core
